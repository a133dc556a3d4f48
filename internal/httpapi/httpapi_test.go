package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/leadflow/leadflow/internal/httpapi"
	"github.com/leadflow/leadflow/internal/metrics"
	"github.com/stretchr/testify/require"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	h := httpapi.Handler(
		httpapi.Check{Name: "database", Func: func(context.Context) error { return nil }},
		httpapi.Check{Name: "nats", Func: func(context.Context) error { return errors.New("not connected") }},
	)
	code, body := get(t, h, "/healthz")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"status":"ok"}`, body)

	code, body = get(t, h, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	var status map[string]string
	require.NoError(t, json.Unmarshal([]byte(body), &status))
	require.Equal(t, map[string]string{"database": "ok", "nats": "not connected"}, status)

	code, _ = get(t, h, "/metrics")
	require.Equal(t, http.StatusNotFound, code, "no metrics handler, no /metrics")
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	m := metrics.New(nil)
	m.Request("lead.qualify.requested", metrics.Acked, "", 5*time.Millisecond, 1)
	h := httpapi.HandlerWith(m.Handler(), httpapi.Check{Name: "database", Func: func(context.Context) error { return nil }})

	code, body := get(t, h, "/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `leadflow_requests_total{code="",result="acked",subject="lead.qualify.requested"} 1`+"\n")

	code, _ = get(t, h, "/readyz")
	require.Equal(t, http.StatusOK, code)
}
