package importer_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kelseyhightower/envconfig"
	"github.com/leadflow/leadflow/internal/config"
	"github.com/leadflow/leadflow/internal/importer"
	"github.com/leadflow/leadflow/internal/service"
	"github.com/leadflow/leadflow/internal/testenv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// bundle is a running leadflow, against its own database and NATS server,
// and what a test needs to import into it and look at the result.
type bundle struct {
	t    testing.TB
	cfg  config.Config
	nats *testenv.NATS
	nc   *nats.Conn
	js   jetstream.JetStream
	pool *pgxpool.Pool
	dir  string
	// stop stops leadflow gracefully; start starts it again.
	stop func()
	logs *syncBuffer
}

// testConfig is leadflow's default configuration (whatever the environment
// says), made quick to fail over and to shut down.
func testConfig(t testing.TB, dbURL, natsURL string) config.Config {
	var c config.Config
	// No variable has this prefix: every field gets its default.
	require.NoError(t, envconfig.Process("leadflow_importer_test_defaults", &c))
	c.DatabaseURL, c.NATSURL, c.HTTPAddr, c.LogLevel = dbURL, natsURL, "127.0.0.1:0", "warn"
	c.RequestsMaxAge, c.EventsMaxAge = time.Hour, time.Hour
	c.AckWait, c.MaxDeliver, c.BackoffMin, c.BackoffMax = 5*time.Second, 3, 50*time.Millisecond, 200*time.Millisecond
	c.RelayPoll, c.RelayMaxBackoff = 200*time.Millisecond, time.Second
	return c
}

// setup starts leadflow against a fresh database and NATS server.
func setup(t testing.TB, opts ...func(*config.Config)) *bundle {
	t.Helper()
	b := &bundle{t: t, nats: testenv.StartNATS(t), dir: t.TempDir(), logs: &syncBuffer{}}
	b.cfg = testConfig(t, testenv.Database(t), b.nats.URL())
	for _, o := range opts {
		o(&b.cfg)
	}
	require.NoError(t, b.cfg.Validate())
	b.start()

	var err error
	b.nc, err = nats.Connect(b.nats.URL())
	require.NoError(t, err)
	t.Cleanup(b.nc.Close)
	b.js, err = jetstream.New(b.nc)
	require.NoError(t, err)
	b.pool, err = pgxpool.New(context.Background(), b.cfg.DatabaseURL)
	require.NoError(t, err)
	t.Cleanup(b.pool.Close)
	return b
}

// start starts leadflow; b.stop stops it and waits.
func (b *bundle) start() {
	t := b.t
	log := zerolog.New(b.logs).Level(zerolog.WarnLevel)
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := service.Start(ctx, b.cfg, log)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	b.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(b.cfg.AckWait + 10*time.Second):
				t.Errorf("leadflow did not stop within the ack wait")
			}
		})
	}
	t.Cleanup(b.stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("leadflow logs:\n%s", b.logs.String())
		}
	})
}

// importFile runs an import of path with the test's configuration.
func (b *bundle) importFile(path string, o importer.Options) (*importer.Summary, error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if o.Settle == 0 {
		o.Settle = 300 * time.Millisecond
	}
	return importer.Run(ctx, b.nc, b.cfg, path, o)
}

func (b *bundle) count(sql string, args ...any) int {
	b.t.Helper()
	var n int
	require.NoError(b.t, b.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// requests is the number of messages in the requests stream.
func (b *bundle) requests() uint64 {
	b.t.Helper()
	s, err := b.js.Stream(context.Background(), b.cfg.RequestsStream)
	require.NoError(b.t, err)
	return s.CachedInfo().State.Msgs
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// readResults reads a results file into one map per row, by column.
func readResults(t *testing.T, path string) map[string]map[string]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	r := csv.NewReader(bytes.NewReader(raw))
	header, err := r.Read()
	require.NoError(t, err)
	require.Equal(t, importer.ResultsHeader, header)
	out := map[string]map[string]string{}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		m := map[string]string{}
		for i, h := range header {
			m[h] = rec[i]
		}
		_, dup := out[m["row"]]
		require.False(t, dup, "row %s has two results", m["row"])
		out[m["row"]] = m
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
