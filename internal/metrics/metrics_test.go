package metrics_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/leadflow/leadflow/internal/metrics"
	"github.com/leadflow/leadflow/internal/testenv"
	"github.com/stretchr/testify/require"
)

// scrape fetches the exposition text from the metrics handler over HTTP.
func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// value is the sample of one series in exposition text, or fails the test.
func value(t *testing.T, text, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	require.NotNil(t, m, "series %s in:\n%s", series, text)
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

func TestRequestsAndEvents(t *testing.T) {
	t.Parallel()
	m := metrics.New(nil)
	const q = "lead.qualify.requested"
	m.Request(q, metrics.Acked, "", 3*time.Millisecond, 1)
	m.Request(q, metrics.Rejected, "duplicates_found", 20*time.Millisecond, 1)
	m.Request(q, metrics.Retried, "", 400*time.Millisecond, 2)
	m.Request(q, metrics.Replayed, "", 2*time.Millisecond, 3)
	m.Request("lead.disqualify.requested", metrics.DeadLettered, "", 12*time.Second, 10)
	m.Published("account.created", 1)
	m.Published("lead.qualified", 2)
	m.Published("lead.qualified", 1)
	m.Published("lead.qualified", 0)

	text := scrape(t, m)
	for series, want := range map[string]float64{
		`leadflow_requests_total{code="",result="acked",subject="lead.qualify.requested"}`:                    1,
		`leadflow_requests_total{code="duplicates_found",result="rejected",subject="lead.qualify.requested"}`: 1,
		`leadflow_requests_total{code="",result="retried",subject="lead.qualify.requested"}`:                  1,
		`leadflow_requests_total{code="",result="replayed",subject="lead.qualify.requested"}`:                 1,
		`leadflow_requests_total{code="",result="dead_lettered",subject="lead.disqualify.requested"}`:         1,
		// Series of the contract's subjects exist before their first request.
		`leadflow_requests_total{code="",result="acked",subject="lead.reactivate.requested"}`: 0,
		`leadflow_redeliveries_total{subject="lead.qualify.requested"}`:                       2,
		`leadflow_redeliveries_total{subject="lead.disqualify.requested"}`:                    1,
		`leadflow_redeliveries_total{subject="lead.reactivate.requested"}`:                    0,

		`leadflow_request_duration_seconds_count{subject="lead.qualify.requested"}`:               4,
		`leadflow_request_duration_seconds_bucket{subject="lead.qualify.requested",le="0.001"}`:   0,
		`leadflow_request_duration_seconds_bucket{subject="lead.qualify.requested",le="0.0025"}`:  1,
		`leadflow_request_duration_seconds_bucket{subject="lead.qualify.requested",le="0.005"}`:   2,
		`leadflow_request_duration_seconds_bucket{subject="lead.qualify.requested",le="0.025"}`:   3,
		`leadflow_request_duration_seconds_bucket{subject="lead.qualify.requested",le="0.5"}`:     4,
		`leadflow_request_duration_seconds_bucket{subject="lead.disqualify.requested",le="10"}`:   0,
		`leadflow_request_duration_seconds_bucket{subject="lead.disqualify.requested",le="+Inf"}`: 1,

		`leadflow_events_published_total{type="lead.qualified"}`:      3,
		`leadflow_events_published_total{type="account.created"}`:     1,
		`leadflow_events_published_total{type="opportunity.created"}`: 0,
	} {
		require.Equal(t, want, value(t, text, series), series)
	}
	require.InDelta(t, 0.425, value(t, text, `leadflow_request_duration_seconds_sum{subject="lead.qualify.requested"}`), 1e-9)
	// The Go runtime and the process.
	require.Greater(t, value(t, text, "go_goroutines"), 0.0)
	require.Greater(t, value(t, text, "process_resident_memory_bytes"), 0.0)
	// Without a pool there is no database series.
	require.NotContains(t, text, "leadflow_outbox_backlog")
	require.NotContains(t, text, "leadflow_db_pool_")
}

func TestNilRecordsNothing(t *testing.T) {
	t.Parallel()
	var m *metrics.Metrics
	m.Request("lead.qualify.requested", metrics.Acked, "", time.Millisecond, 1)
	m.Published("lead.qualified", 1)
}

// Not parallel: AllocsPerRun counts the allocations of the whole process.
func TestRecordingDoesNotAllocate(t *testing.T) {
	m := metrics.New(nil)
	m.Request("lead.qualify.requested", metrics.Rejected, "forbidden", time.Millisecond, 1)
	allocs := testing.AllocsPerRun(1000, func() {
		m.Request("lead.qualify.requested", metrics.Acked, "", time.Millisecond, 2)
		m.Request("lead.qualify.requested", metrics.Rejected, "forbidden", time.Millisecond, 1)
		m.Published("lead.qualified", 4)
	})
	require.Zero(t, allocs)
}

func BenchmarkRequest(b *testing.B) {
	m := metrics.New(nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Request("lead.qualify.requested", metrics.Acked, "", time.Millisecond, 1)
		}
	})
}

func setupDB(t *testing.T) (*pgxpool.Pool, *metrics.Metrics) {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), testenv.Database(t)+"&pool_max_conns=3")
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool, metrics.New(pool)
}

func TestOutboxAndPool(t *testing.T) {
	t.Parallel()
	pool, m := setupDB(t)
	ctx := context.Background()

	text := scrape(t, m)
	require.Equal(t, 0.0, value(t, text, "leadflow_outbox_backlog"))
	require.Equal(t, 0.0, value(t, text, "leadflow_outbox_oldest_age_seconds"))

	// Two rows, one of two events and one of one.
	_, err := pool.Exec(ctx, `INSERT INTO outbox (org_id, event_ids, subjects, payloads, headers, created_at) VALUES
		('acme', ARRAY[gen_random_uuid(), gen_random_uuid()], '{account.created,lead.qualified}', '{"\\x7b7d","\\x7b7d"}', '{NULL,NULL}', now() - interval '90 seconds'),
		('acme', ARRAY[gen_random_uuid()], '{contact.created}', '{"\\x7b7d"}', '{NULL}', now())`)
	require.NoError(t, err)

	text = scrape(t, m)
	require.Equal(t, 3.0, value(t, text, "leadflow_outbox_backlog"))
	age := value(t, text, "leadflow_outbox_oldest_age_seconds")
	require.GreaterOrEqual(t, age, 90.0)
	require.Less(t, age, 150.0)

	require.Equal(t, 3.0, value(t, text, "leadflow_db_pool_max_conns"))
	require.GreaterOrEqual(t, value(t, text, "leadflow_db_pool_total_conns"), 1.0)
	require.GreaterOrEqual(t, value(t, text, "leadflow_db_pool_acquires_total"), 2.0)
	// The outbox query may hold a connection while the pool is read.
	require.LessOrEqual(t, value(t, text, "leadflow_db_pool_acquired_conns"), 1.0)
	for _, s := range []string{"idle_conns", "constructing_conns", "acquire_duration_seconds_total",
		"canceled_acquires_total", "empty_acquires_total", "new_conns_total"} {
		value(t, text, "leadflow_db_pool_"+s)
	}
}

func TestOutboxQueryFailureKeepsTheRest(t *testing.T) {
	t.Parallel()
	pool, m := setupDB(t)
	_, err := pool.Exec(context.Background(), `DROP TABLE outbox CASCADE`)
	require.NoError(t, err)
	m.Request("lead.qualify.requested", metrics.Acked, "", time.Millisecond, 1)

	text := scrape(t, m)
	require.NotContains(t, text, "leadflow_outbox_backlog")
	require.Contains(t, text, "leadflow_db_pool_total_conns")
	// The handler counts the failed gathering after it served the scrape.
	text = scrape(t, m)
	require.Equal(t, 1.0, value(t, text, `promhttp_metric_handler_errors_total{cause="gathering"}`))
	require.Equal(t, 1.0, value(t, text, `leadflow_requests_total{code="",result="acked",subject="lead.qualify.requested"}`))
	require.Equal(t, 3.0, value(t, text, "leadflow_db_pool_max_conns"))
}
