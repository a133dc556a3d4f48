package service_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

func (b *bundle) get(path string) (int, string) {
	b.t.Helper()
	resp, err := http.Get("http://" + b.addr + path)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	return resp.StatusCode, string(body)
}

// TestHealthAndMetrics: /healthz, /readyz and /metrics answer, and the
// metrics count what happened.
func TestHealthAndMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	code, body := b.get("/healthz")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"status":"ok"}`, body)
	code, body = b.get("/readyz")
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"database":"ok","nats":"ok","streams":"ok"}`, body)

	b.qualify(request("org-m", "m1", "m1", acmeLead(), nil))
	b.publish("lead.qualify.requested", request("org-m", "m2", "m2", map[string]any{"email": "x"}, nil))
	b.rejection("m2", "invalid_request")
	require.Eventually(t, func() bool {
		_, body = b.get("/metrics")
		return strings.Contains(body, `leadflow_requests_total{code="",result="acked",subject="lead.qualify.requested"} 1`) &&
			strings.Contains(body, `leadflow_requests_total{code="invalid_request",result="rejected",subject="lead.qualify.requested"} 1`) &&
			strings.Contains(body, `leadflow_events_published_total{type="lead.qualified"} 1`)
	}, 5*time.Second, 50*time.Millisecond, body)
	require.Contains(t, body, "leadflow_request_duration_seconds_bucket")
	require.Contains(t, body, "leadflow_outbox_backlog ")
	require.Contains(t, body, "leadflow_db_pool_")

	// The streams gone: not ready.
	require.NoError(t, b.js.DeleteStream(context.Background(), "LEAD_DEAD_LETTERS"))
	code, body = b.get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "LEAD_DEAD_LETTERS")
}

// TestTraceContext: a request's traceparent and tracestate reach every event
// it produces, as NATS headers and as CloudEvents attributes.
func TestTraceContext(t *testing.T) {
	t.Parallel()
	b := setup(t)
	raw, err := json.Marshal(request("org-t", "t1", "t1", acmeLead(), nil))
	require.NoError(t, err)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	msg := &nats.Msg{Subject: "lead.qualify.requested", Data: raw, Header: nats.Header{}}
	msg.Header.Set("traceparent", tp)
	msg.Header.Set("tracestate", "vendor=x")
	msg.Header.Set(jetstream.MsgIDHeader, "t1")
	_, err = b.js.PublishMsg(context.Background(), msg)
	require.NoError(t, err)
	evs := b.outcome("t1")
	require.Len(t, evs, 4)

	cons, err := b.js.OrderedConsumer(context.Background(), "LEAD_EVENTS", jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	for range evs {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		require.NoError(t, err)
		require.Equal(t, tp, m.Headers().Get("traceparent"), m.Subject())
		require.Equal(t, "vendor=x", m.Headers().Get("tracestate"))
		var e map[string]any
		require.NoError(t, json.Unmarshal(m.Data(), &e))
		require.Equal(t, tp, e["traceparent"])
	}
	for _, e := range evs {
		validateEvent(t, e)
	}
}

// TestNoPIIInLogs: no log line carries a lead's names, email or phones.
func TestNoPIIInLogs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	lead := map[string]any{"first_name": "Canaryfirst", "last_name": "Canarylast", "company": "Canaryco",
		"email": "canary@canary.example", "business_phone": "+1 555 424 2424", "mobile_phone": "+1 555 898 9898",
		"notes": []any{map[string]any{"id": "n", "body": "Canarybody"}}}
	b.qualify(request("org-pii", "p1", "p1", lead, nil))
	b.publish("lead.qualify.requested", request("org-pii", "p2", "p2", lead, nil))
	b.rejection("p2", "duplicates_found")
	bad := map[string]any{"email": "canary-bad-email", "first_name": "Canaryfirst"}
	b.publish("lead.qualify.requested", request("org-pii", "p3", "p3", bad, nil))
	b.rejection("p3", "invalid_request")
	b.stop()
	logs := strings.ToLower(b.logs.String())
	require.NotEmpty(t, logs)
	for _, canary := range []string{"canaryfirst", "canarylast", "canary@", "canary-bad", "5554242424", "424 2424", "898 9898", "canarybody"} {
		require.NotContains(t, logs, canary)
	}
}
