package importer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leadflow/leadflow/internal/config"
	"github.com/leadflow/leadflow/internal/importer"
	"github.com/stretchr/testify/require"
)

// childArgs, when set in the environment, makes the test binary run
// "leadflow import" with these (JSON-encoded) arguments instead of the tests:
// BenchmarkImport measures the importer's own memory in a process of its own.
const childArgs = "LEADFLOW_IMPORT_TEST_CHILD_ARGS"

func TestMain(m *testing.M) {
	if raw := os.Getenv(childArgs); raw != "" {
		os.Exit(runChild(raw))
	}
	os.Exit(m.Run())
}

func runChild(raw string) int {
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg, err := config.Load()
	if err == nil {
		err = importer.Command(context.Background(), cfg, args, os.Stdout, os.Stderr)
	}
	// The peak of this process's own memory after exec: the parent's
	// rusage for it would count the parent's pages too (fork shares them).
	if status, rerr := os.ReadFile("/proc/self/status"); rerr == nil {
		for _, l := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(l, "VmHWM:") {
				fmt.Fprintln(os.Stderr, "peak RSS:", strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:")))
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "import:", err)
		return 1
	}
	return 0
}

// BenchmarkImport imports 100,000 generated rows (LEADFLOW_BENCH_ROWS to
// change it) into a running leadflow, with `leadflow import` in a process of
// its own, and reports the rows converted per second end to end, the rows
// published per second and the importer's peak resident memory.
//
//	go test -run '^$' -bench BenchmarkImport -benchtime 1x -timeout 60m ./internal/importer/
func BenchmarkImport(b *testing.B) {
	rows := 100000
	if s := os.Getenv("LEADFLOW_BENCH_ROWS"); s != "" {
		var err error
		rows, err = strconv.Atoi(s)
		require.NoError(b, err)
	}
	bb := setup(b, func(c *config.Config) { c.Workers, c.MaxAckPending = 16, 4096 })
	exe, err := os.Executable()
	require.NoError(b, err)

	var elapsed, publishing time.Duration
	var maxRSS int64
	for i := 0; b.Loop(); i++ {
		dir := filepath.Join(bb.dir, strconv.Itoa(i))
		require.NoError(b, os.MkdirAll(dir, 0o700))
		f := writeLeads(b, dir, rows)
		args, err := json.Marshal([]string{"--org", "bench-" + strconv.Itoa(i), "--actor", "u-bench", "--skip-invalid",
			"--on-duplicate", "use_existing", "--results", filepath.Join(dir, "results.csv"), f.path})
		require.NoError(b, err)
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), childArgs+"="+string(args), "LEADFLOW_NATS_URL="+bb.cfg.NATSURL)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err = cmd.Run()
		took := time.Since(start)
		require.NoError(b, err, "stdout:\n%s\nstderr (tail):\n%s", stdout.String(), tail(stderr.Bytes(), 2000))
		b.Logf("\n%s", stdout.String())
		elapsed += took
		publishing += parsePublishing(b, stdout.String())
		maxRSS = max(maxRSS, parsePeakRSS(b, stderr.String()))
		require.Equal(b, f.rows-len(f.invalid), bb.count(`SELECT count(*) FROM leads WHERE org_id = $1`, "bench-"+strconv.Itoa(i)))
	}
	n := float64(b.N * rows)
	b.ReportMetric(n/elapsed.Seconds(), "rows/s")
	b.ReportMetric(n/publishing.Seconds(), "published-rows/s")
	b.ReportMetric(float64(maxRSS)/1024, "peak-RSS-MiB")
	b.ReportMetric(0, "ns/op")
}

// parsePeakRSS reads the child's "peak RSS: N kB" line, in KiB.
func parsePeakRSS(t testing.TB, stderr string) int64 {
	i := strings.LastIndex(stderr, "peak RSS: ")
	require.GreaterOrEqual(t, i, 0, "the importer reports its peak RSS")
	f := strings.Fields(stderr[i+len("peak RSS: "):])
	require.NotEmpty(t, f)
	kib, err := strconv.ParseInt(f[0], 10, 64)
	require.NoError(t, err)
	return kib
}

// parsePublishing reads "(N published in D)" from a summary.
func parsePublishing(t testing.TB, summary string) time.Duration {
	i := bytes.Index([]byte(summary), []byte(" published in "))
	require.GreaterOrEqual(t, i, 0, summary)
	rest := summary[i+len(" published in "):]
	j := bytes.IndexByte([]byte(rest), ')')
	d, err := time.ParseDuration(rest[:j])
	require.NoError(t, err)
	return d
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
