package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/leadflow/leadflow/internal/store"
	"github.com/leadflow/leadflow/internal/stream"
	"github.com/leadflow/leadflow/internal/testenv"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// setup opens a store on a fresh database and a NATS server of its own with
// leadflow's streams, whose consumer has ackWait.
func setup(t *testing.T, ackWait time.Duration) (*store.Store, jetstream.JetStream, stream.Topology) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, testenv.Database(t), 8)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	js, topo := testenv.Streams(t, ackWait)
	return st, js, topo
}

// publishQualify publishes the qualify request k<i> for lead l<i> of org,
// which creates the account "<company> <i>".
func publishQualify(t *testing.T, js jetstream.JetStream, org, company string, i int) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"idempotency_key": fmt.Sprintf("k%d", i), "org_id": org,
		"actor": map[string]any{"id": "u", "roles": []string{"sales_agent"}},
		"lead":  map[string]any{"id": fmt.Sprintf("l%d", i), "company": fmt.Sprintf("%s %d", company, i), "last_name": "C"}})
	require.NoError(t, err)
	_, err = js.Publish(context.Background(), "lead.qualify.requested", body)
	require.NoError(t, err)
}

// countRows runs a count query against st.
func countRows(t *testing.T, st *store.Store, sql string) int {
	t.Helper()
	var c int
	require.NoError(t, st.Pool().QueryRow(context.Background(), sql).Scan(&c))
	return c
}
