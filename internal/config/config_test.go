package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLoadDefaults(t *testing.T) {
	c, err := Load()
	require.NoError(t, err)
	require.Equal(t, 8, c.Workers)
	require.Equal(t, 32, c.Batch)
	require.Equal(t, 5*time.Millisecond, c.BatchLinger)
	require.Equal(t, "LEAD_REQUESTS", c.RequestsStream)
	require.Equal(t, 30*time.Second, c.AckWait)
	require.Equal(t, int32(12), c.MaxConns())
}

// TestValidateNamesTheVariable: every invalid setting is reported with the
// variable to fix.
func TestValidateNamesTheVariable(t *testing.T) {
	cases := map[string]string{
		"LEADFLOW_WORKERS":            "0",
		"LEADFLOW_BATCH":              "5000",
		"LEADFLOW_BATCH_LINGER":       "2s",
		"LEADFLOW_REQUESTS_RETENTION": "forever",
		"LEADFLOW_EVENTS_STREAM":      "has.dot",
		"LEADFLOW_SUBJECT_PREFIX":     "crm",
		"LEADFLOW_ACK_WAIT":           "10ms",
		"LEADFLOW_MAX_DELIVER":        "0",
		"LEADFLOW_RELAY_MAX_BACKOFF":  "5m",
		"LEADFLOW_STREAM_REPLICAS":    "7",
	}
	for name, value := range cases {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, value)
			_, err := Load()
			require.ErrorContains(t, err, name)
		})
	}
	t.Run("unparsable", func(t *testing.T) {
		t.Setenv("LEADFLOW_ACK_WAIT", "soon")
		_, err := Load()
		require.ErrorContains(t, err, "ACK_WAIT")
	})
}
