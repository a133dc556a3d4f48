package devstack_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/leadflow/leadflow/internal/devstack"
	"github.com/leadflow/leadflow/internal/testenv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// dataDir is a data folder that the postgres OS user can enter: as root,
// PostgreSQL runs as postgres, and t.TempDir's folders are private (0700).
func dataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "leadflow-devstack-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// start starts a dev stack on dir, stopped when the test ends.
func start(t *testing.T, o devstack.Options) *devstack.Stack {
	t.Helper()
	o.Log = zerolog.New(zerolog.NewTestWriter(t))
	if o.NATSPort == 0 {
		o.NATSPort = -1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := devstack.Start(ctx, o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Stop(context.Background()) })
	return st
}

func stop(t *testing.T, st *devstack.Stack) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, st.Stop(ctx))
}

func jetStream(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestStartStopAndReuse(t *testing.T) {
	t.Parallel()
	dir := dataDir(t)
	ctx := context.Background()

	st := start(t, devstack.Options{Dir: dir})
	js := jetStream(t, st.NATSURL())
	_, err := js.AccountInfo(ctx)
	require.NoError(t, err, "JetStream answers")
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "KEPT", Subjects: []string{"kept"}, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "kept", []byte("hello"))
	require.NoError(t, err)

	conn := connect(t, st.DatabaseURL())
	var one int
	require.NoError(t, conn.QueryRow(ctx, `select 1`).Scan(&one))
	require.Equal(t, 1, one)
	var db string
	require.NoError(t, conn.QueryRow(ctx, `select current_database()`).Scan(&db))
	require.Equal(t, "leadflow", db)
	_, err = conn.Exec(ctx, `CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)`)
	require.NoError(t, err)
	conn.Close(ctx)

	env, err := os.ReadFile(st.EnvFile())
	require.NoError(t, err)
	require.Equal(t, "export LEADFLOW_NATS_URL="+st.NATSURL()+"\nexport LEADFLOW_DATABASE_URL='"+st.DatabaseURL()+"'\n", string(env))

	_, err = devstack.Start(ctx, devstack.Options{Dir: dir, NATSPort: -1, Log: zerolog.Nop()})
	require.ErrorContains(t, err, "in use by another leadflow dev")

	stop(t, st)
	require.NoError(t, st.Stop(ctx), "stopping twice is harmless")
	_, err = pgx.Connect(ctx, st.DatabaseURL())
	require.Error(t, err, "PostgreSQL is stopped")
	_, err = nats.Connect(st.NATSURL())
	require.Error(t, err, "NATS is stopped")
	require.NoFileExists(t, st.EnvFile())

	// The second run finds what the first one left.
	st = start(t, devstack.Options{Dir: dir})
	conn = connect(t, st.DatabaseURL())
	var x int
	require.NoError(t, conn.QueryRow(ctx, `SELECT x FROM kept`).Scan(&x))
	require.Equal(t, 42, x)
	conn.Close(ctx)
	s, err := jetStream(t, st.NATSURL()).Stream(ctx, "KEPT")
	require.NoError(t, err)
	require.EqualValues(t, 1, s.CachedInfo().State.Msgs)
	stop(t, st)
}

func TestDatabaseOfYourOwn(t *testing.T) {
	t.Parallel()
	dir, url := dataDir(t), testenv.Database(t)
	st := start(t, devstack.Options{Dir: dir, DatabaseURL: url})
	require.Equal(t, url, st.DatabaseURL())
	require.NoDirExists(t, filepath.Join(dir, "pg"), "no PostgreSQL of its own")
	_, err := jetStream(t, st.NATSURL()).AccountInfo(context.Background())
	require.NoError(t, err)
	stop(t, st)
}
