package store_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/leadflow/leadflow/internal/conversion"
	"github.com/leadflow/leadflow/internal/store"
	"github.com/leadflow/leadflow/internal/testenv"
	"github.com/stretchr/testify/require"
)

// trips records the round trips that leadflow makes, each as its
// statements; a statement prepared is a round trip of its own.
type trips struct {
	mu  sync.Mutex
	all [][]string
}

func (r *trips) start(sqls ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, sqls)
}

func (r *trips) add(sql string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all[len(r.all)-1] = append(r.all[len(r.all)-1], sql)
}

// take returns the round trips recorded so far and forgets them.
func (r *trips) take() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	all := r.all
	r.all = nil
	return all
}

func (r *trips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.start(d.SQL)
	return ctx
}
func (r *trips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *trips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.start()
	return ctx
}
func (r *trips) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	r.add(store.StatementSQL(d.SQL))
}
func (r *trips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

type preparing struct{}

func (r *trips) TracePrepareStart(ctx context.Context, _ *pgx.Conn, d pgx.TracePrepareStartData) context.Context {
	return context.WithValue(ctx, preparing{}, d.SQL)
}
func (r *trips) TracePrepareEnd(ctx context.Context, _ *pgx.Conn, d pgx.TracePrepareEndData) {
	if !d.AlreadyPrepared {
		r.start("PREPARE " + ctx.Value(preparing{}).(string))
	}
}

// TestTransactionRoundTrips: a transaction that converts a lead into a new
// account and contact makes four round trips on a connection that has run
// one before: its BEGIN rides with the loads, its COMMIT with the writes,
// and the duplicate probes take one round trip without locks and one with.
func TestTransactionRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rec := &trips{}
	st, err := store.OpenTraced(ctx, testenv.Database(t), 1, rec)
	require.NoError(t, err)
	defer st.Close()

	o, err := st.Process(ctx, parsed(t, "k1", "lead-1", "Acme"))
	require.NoError(t, err)
	require.Equal(t, "lead.qualified", o.Event)
	rec.take()

	o, err = st.Process(ctx, parsed(t, "k2", "lead-2", "Initech"))
	require.NoError(t, err)
	require.Equal(t, "lead.qualified", o.Event)
	got := rec.take()
	require.Len(t, got, 4, "%q", got)
	require.Equal(t, "BEGIN", got[0][0])
	require.Equal(t, "COMMIT", got[3][len(got[3])-1])
	require.Contains(t, strings.Join(got[3], "\n"), "INSERT INTO accounts")
	for _, trip := range got[1:3] {
		require.NotContains(t, strings.ToUpper(strings.Join(trip, "\n")), "INSERT", "the probes write nothing")
	}
	require.Equal(t, 1, countOf(t, st, `SELECT count(*) FROM accounts WHERE name = 'Initech'`))
}

// TestCommitFails: a deferred constraint that fails at COMMIT, in the round
// trip of the writes, fails the batch with a commit error and leaves
// nothing behind; the connection goes on serving.
func TestCommitFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStoreConns(t, 1)
	// A lead of company "Dangling" points at an account that never exists:
	// leads' foreign keys to accounts are checked at commit.
	_, err := st.Pool().Exec(ctx, `
		CREATE FUNCTION dangle() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.company = 'Dangling' AND NEW.account_id IS NOT NULL THEN NEW.account_id := gen_random_uuid(); END IF;
		RETURN NEW; END $$;
		CREATE TRIGGER dangle BEFORE INSERT OR UPDATE ON leads FOR EACH ROW EXECUTE FUNCTION dangle();`)
	require.NoError(t, err)

	for _, batch := range [][]*conversion.Parsed{
		{parsed(t, "d1", "lead-d1", "Dangling")},
		{parsed(t, "f1", "lead-f1", "Fine"), parsed(t, "d2", "lead-d2", "Dangling")},
	} {
		_, err = st.ProcessBatch(ctx, batch)
		require.ErrorContains(t, err, "commit")
		require.ErrorContains(t, err, "foreign key")
	}
	require.Zero(t, countOf(t, st, `SELECT count(*) FROM leads`))
	require.Zero(t, countOf(t, st, `SELECT count(*) FROM accounts`))
	require.Zero(t, countOf(t, st, `SELECT count(*) FROM idempotency_keys`))

	o, err := st.Process(ctx, parsed(t, "f1", "lead-f1", "Fine"))
	require.NoError(t, err)
	require.Equal(t, "lead.qualified", o.Event)
	require.Equal(t, 1, countOf(t, st, `SELECT count(*) FROM leads`))
}

// TestWarm: Warm opens the connections it is asked for, within the pool's
// bound, and rehearses on each the transaction that processes requests: its
// statements are prepared there, and nothing of it stays in the database,
// not even an index entry.
func TestWarm(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStoreConns(t, 5)
	require.NoError(t, st.Warm(ctx, 3))
	require.Equal(t, int32(3), st.Pool().Stat().TotalConns())
	require.Equal(t, int32(3), st.Pool().Stat().IdleConns(), "and gives them back")
	// Held together, so that each is a connection of its own; given back
	// however the checks end, so that the pool can close.
	var conns []*pgxpool.Conn
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for range 3 {
		c, err := st.Pool().Acquire(ctx)
		require.NoError(t, err)
		conns = append(conns, c)
		var prepared int
		require.NoError(t, c.QueryRow(ctx, `SELECT count(DISTINCT substring(statement FROM '^INSERT INTO (\w+)'))
			FROM pg_prepared_statements WHERE statement ~ '^INSERT INTO (leads|accounts|contacts|opportunities|notes|idempotency_keys) '`).Scan(&prepared))
		require.Equal(t, 6, prepared, "the writes of a conversion, table by table, are prepared on every connection")
		var lockers, probes int
		require.NoError(t, c.QueryRow(ctx, `SELECT count(*) FILTER (WHERE statement ~ 'pg_advisory_xact_lock'),
			count(*) FILTER (WHERE statement ~ 'CROSS JOIN LATERAL')
			FROM pg_prepared_statements WHERE statement !~ 'pg_prepared_statements'`).Scan(&lockers, &probes))
		require.Positive(t, lockers, "and the loads, which lock")
		require.Positive(t, probes, "and the duplicate probes")
		require.Equal(t, byte('I'), c.Conn().PgConn().TxStatus(), "no transaction is left open")
		var locks int
		require.NoError(t, c.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'`).Scan(&locks))
		require.Zero(t, locks, "nor a lock")
	}
	for _, c := range conns {
		c.Release()
	}
	conns = nil
	for _, table := range []string{"leads", "accounts", "contacts", "opportunities", "notes", "outbox", "idempotency_keys"} {
		require.Zero(t, countOf(t, st, "SELECT count(*) FROM "+table), table)
		require.Zero(t, countOf(t, st, "SELECT pg_relation_size('"+table+"')"), "%s: no row was ever written", table)
	}
	require.NoError(t, st.Warm(ctx, 9))
	require.Equal(t, int32(5), st.Pool().Stat().TotalConns())

	// What is rehearsed is the whole of a conversion: processed for real,
	// the rehearsal's requests convert, apart, in one batch.
	outs, err := st.ProcessBatch(ctx, store.Rehearsal(0))
	require.NoError(t, err)
	require.Len(t, outs, 2)
	for _, o := range outs {
		require.Equal(t, "lead.qualified", o.Event)
		require.False(t, o.Deferred)
		require.NoError(t, o.Err)
		require.Equal(t, 4, o.Events, "account, contact and opportunity created, lead qualified")
	}
}
