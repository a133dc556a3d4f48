package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/leadflow/leadflow/internal/store"
	"github.com/leadflow/leadflow/internal/stream"
	"github.com/leadflow/leadflow/internal/testenv"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

type bundle struct {
	st   *store.Store
	js   jetstream.JetStream
	topo stream.Topology
}

func setup(t *testing.T) bundle {
	ctx := context.Background()
	st, err := store.Open(ctx, testenv.Database(t), 8)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	js, topo := testenv.Streams(t, time.Second)
	return bundle{st: st, js: js, topo: topo}
}

// fill writes n events for one lead into the outbox, in rows of 1, 2, 3, …
// 7 events as transactions would, and returns their ids in order.
func (b bundle) fill(t *testing.T, n int) []string {
	ids := make([]string, n)
	for i, size := 0, 1; i < n; i, size = i+size, size%7+1 {
		row := ids[i:min(i+size, n)]
		payloads := make([][]byte, len(row))
		for k := range row {
			row[k] = uuid.Must(uuid.NewV7()).String()
			payloads[k] = fmt.Appendf(nil, `{"n":%d}`, i+k)
		}
		b.insert(t, row, payloads, make([]*string, len(row)))
	}
	return ids
}

// insert writes one outbox row of lead.qualified events, as a transaction
// would.
func (b bundle) insert(t *testing.T, ids []string, payloads [][]byte, headers []*string) {
	t.Helper()
	_, err := b.st.Pool().Exec(context.Background(), `INSERT INTO outbox (org_id, event_ids, subjects, payloads, headers)
		VALUES ('o', $1::text[]::uuid[], array_fill('lead.qualified'::text, ARRAY[$4::int]), $2, $3::text[]::jsonb[])`,
		ids, payloads, headers, len(ids))
	require.NoError(t, err)
}

func (b bundle) published(t *testing.T) []string {
	ctx := context.Background()
	cons, err := b.js.OrderedConsumer(ctx, "LEAD_EVENTS", jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	info, err := b.js.Stream(ctx, "LEAD_EVENTS")
	require.NoError(t, err)
	var ids []string
	for range info.CachedInfo().State.Msgs {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		require.NoError(t, err)
		ids = append(ids, m.Headers().Get(jetstream.MsgIDHeader))
	}
	return ids
}

// outboxLen is the number of events in the outbox.
func (b bundle) outboxLen(t *testing.T) int {
	var n int
	require.NoError(t, b.st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM outbox_events`).Scan(&n))
	return n
}

// TestCrashAfterPublishBeforeMark: a relay that dies after JetStream stored
// its batch and before deleting it leaves the batch to the next relay, whose
// re-publish JetStream drops as duplicates: every event once, in order.
func TestCrashAfterPublishBeforeMark(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.fill(t, 50)
	cfg := Config{Batch: 20, Poll: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}

	crashing := New(b.st.Pool(), b.js, b.topo, cfg, nil, zerolog.Nop())
	ctx, crash := context.WithCancel(context.Background())
	crashed := make(chan struct{})
	crashing.afterPublish = func() error {
		crash()
		close(crashed)
		return errors.New("crash")
	}
	go crashing.Run(ctx, 0) //nolint:errcheck
	<-crashed
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, 50, b.outboxLen(t), "nothing was marked")

	healthy := New(b.st.Pool(), b.js, b.topo, cfg, nil, zerolog.Nop())
	hctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { healthy.Run(hctx, time.Second); close(done) }() //nolint:errcheck
	require.Eventually(t, func() bool { return b.outboxLen(t) == 0 }, 10*time.Second, 20*time.Millisecond)
	stop()
	<-done
	require.Equal(t, ids, b.published(t), "each event once, in commit order")
}

// TestOneRelayPublishes: of two relays on one database, one publishes and the
// other takes over when it stops.
func TestOneRelayPublishes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := Config{Batch: 10, Poll: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	first, second := New(b.st.Pool(), b.js, b.topo, cfg, nil, zerolog.Nop()), New(b.st.Pool(), b.js, b.topo, cfg, nil, zerolog.Nop())
	ctx1, stop1 := context.WithCancel(context.Background())
	ctx2, stop2 := context.WithCancel(context.Background())
	defer stop2()
	done1 := make(chan struct{})
	go func() { first.Run(ctx1, time.Second); close(done1) }() //nolint:errcheck
	go second.Run(ctx2, time.Second)                           //nolint:errcheck

	ids := b.fill(t, 30)
	require.Eventually(t, func() bool { return b.outboxLen(t) == 0 }, 10*time.Second, 20*time.Millisecond)
	stop1()
	<-done1
	more := b.fill(t, 30)
	require.Eventually(t, func() bool { return b.outboxLen(t) == 0 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, append(ids, more...), b.published(t))
}

// TestRowsLargerThanABatch: a transaction's row is published whole even when
// it holds more events than a batch, in order, with each event's headers.
func TestRowsLargerThanABatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var ids []string
	for row := range 3 {
		n := []int{12, 1, 9}[row]
		part := make([]string, n)
		payloads := make([][]byte, n)
		headers := make([]*string, n)
		for k := range part {
			part[k] = uuid.Must(uuid.NewV7()).String()
			payloads[k] = []byte(`{}`)
			h := fmt.Sprintf(`{"traceparent": "00-%032x-%016x-01"}`, row+1, k+1)
			headers[k] = &h
		}
		b.insert(t, part, payloads, headers)
		ids = append(ids, part...)
	}
	r := New(b.st.Pool(), b.js, b.topo, Config{Batch: 5, Poll: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}, nil, zerolog.Nop())
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { r.Run(rctx, time.Second); close(done) }() //nolint:errcheck
	require.Eventually(t, func() bool { return b.outboxLen(t) == 0 }, 10*time.Second, 20*time.Millisecond)
	stop()
	<-done
	require.Equal(t, ids, b.published(t))

	cons, err := b.js.OrderedConsumer(ctx, "LEAD_EVENTS", jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	for i := range ids {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		require.NoError(t, err)
		row, k := 1, i+1
		if i >= 12 {
			row, k = 2, 1
		}
		if i >= 13 {
			row, k = 3, i-12
		}
		require.Equal(t, fmt.Sprintf("00-%032x-%016x-01", row, k), m.Headers().Get("traceparent"), "event %d", i)
	}
}

// TestLeaderGivesBackItsConnection: a relay that stops leading gives its
// connection back to the pool as it found it: no leader lock, no LISTEN,
// and every statement planned with its values again.
func TestLeaderGivesBackItsConnection(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	r := New(b.st.Pool(), b.js, b.topo, Config{Batch: 10, Poll: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}, nil, zerolog.Nop())
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { r.Run(rctx, time.Second); close(done) }() //nolint:errcheck
	ids := b.fill(t, 5)
	require.Eventually(t, func() bool { return b.outboxLen(t) == 0 }, 10*time.Second, 20*time.Millisecond)
	var locks int
	require.NoError(t, b.st.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&locks))
	require.Equal(t, 1, locks, "the leader holds its lock while it publishes")
	stop()
	<-done
	require.Equal(t, ids, b.published(t))

	require.NoError(t, b.st.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&locks))
	require.Zero(t, locks)
	conns := b.st.Pool().AcquireAllIdle(ctx)
	require.NotEmpty(t, conns)
	for _, c := range conns {
		var mode, seqscan string
		var channels int
		require.NoError(t, c.QueryRow(ctx, `SELECT current_setting('plan_cache_mode'), current_setting('enable_seqscan'),
			(SELECT count(*) FROM pg_listening_channels())`).Scan(&mode, &seqscan, &channels))
		require.Equal(t, "force_custom_plan", mode)
		require.Equal(t, "on", seqscan)
		require.Zero(t, channels)
		c.Release()
	}
}

// TestPlansUseThePrimaryKey: the leader's statements, planned once while the
// outbox may be empty, reach its rows through the primary key, so that a
// backlog of any size is read from its head.
func TestPlansUseThePrimaryKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	pc, err := b.st.Pool().Acquire(ctx)
	require.NoError(t, err)
	conn := pc.Hijack()
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; PREPARE r AS "+readOutbox+
		"; PREPARE d AS DELETE FROM outbox WHERE seq = ANY($1::bigint[])")
	require.NoError(t, err)
	for _, explain := range []string{`EXPLAIN EXECUTE r(512)`, `EXPLAIN EXECUTE d('{1,2}')`} {
		rows, err := conn.Query(ctx, explain, pgx.QueryExecModeSimpleProtocol)
		require.NoError(t, err)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		plan := strings.Join(lines, "\n")
		require.Regexp(t, `Index Scan (using )?on outbox_pkey|Index Scan using outbox_pkey`, plan, explain)
		require.NotContains(t, plan, "Seq Scan", explain)
		require.NotContains(t, plan, "Sort", explain)
	}
}
