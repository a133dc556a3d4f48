package store_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
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
// limit, before any request needs them.
func TestWarm(t *testing.T) {
	t.Parallel()
	st := openStoreConns(t, 5)
	require.NoError(t, st.Warm(context.Background(), 3))
	require.Equal(t, int32(3), st.Pool().Stat().TotalConns())
	require.Equal(t, int32(3), st.Pool().Stat().IdleConns(), "and gives them back")
	require.NoError(t, st.Warm(context.Background(), 9))
	require.Equal(t, int32(5), st.Pool().Stat().TotalConns())
}
