package devstack_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leadflow/leadflow/internal/devstack"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// buildLeadflow builds the leadflow command into a temporary folder.
func buildLeadflow(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "leadflow")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/leadflow/leadflow/cmd/leadflow").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// lockedLog collects a child's output for the failure report.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLeadflowDev runs `leadflow dev` as a user would: it waits for the
// printed NATS URL, qualifies one lead, sees the event, and stops it with
// Ctrl-C (SIGINT).
func TestLeadflowDev(t *testing.T) {
	t.Parallel()
	bin, dir, httpAddr := buildLeadflow(t), dataDir(t), freeAddr(t)

	cmd := exec.Command(bin, "dev", "--data", dir)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEADFLOW_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "LEADFLOW_HTTP_ADDR="+httpAddr, "LEADFLOW_LOG_LEVEL=info")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr := &lockedLog{}
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var printed lockedLog
	natsURL := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		re := regexp.MustCompile(`NATS:\s+(nats://\S+)`)
		for sc.Scan() {
			fmt.Fprintln(&printed, sc.Text())
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				natsURL <- m[1]
			}
		}
	}()
	stopped := false
	t.Cleanup(func() {
		if stopped {
			return
		}
		_ = cmd.Process.Kill()
		<-exited
		// Stop the PostgreSQL server the killed process left running.
		st, err := devstack.Start(context.Background(), devstack.Options{Dir: dir, NATSPort: -1, Log: zerolog.Nop()})
		if err == nil {
			_ = st.Stop(context.Background())
		}
	})
	defer func() {
		if t.Failed() {
			t.Logf("leadflow dev printed:\n%s\nand logged:\n%s", printed.String(), stderr.String())
		}
	}()

	var url string
	select {
	case url = <-natsURL:
	case err := <-exited:
		stopped = true
		t.Fatalf("leadflow dev exited before it was ready: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("leadflow dev did not print its NATS URL within 2 minutes")
	}

	resp, err := http.Get("http://" + httpAddr + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, "LEAD_EVENTS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"lead.qualified"}})
	require.NoError(t, err)

	key := fmt.Sprintf("dev-test-%d", time.Now().UnixNano())
	body, err := json.Marshal(map[string]any{
		"idempotency_key": key, "org_id": "demo",
		"actor": map[string]any{"id": "user-1", "roles": []any{"sales_agent"}},
		"lead": map[string]any{
			"id": "crm-1", "topic": "50 laptops", "first_name": "Ada", "last_name": "Lovelace",
			"company": "Acme Corp", "email": "ada@acme.example", "website": "https://www.acme.example",
		},
	})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "lead.qualify.requested", body, jetstream.WithMsgID(key))
	require.NoError(t, err)

	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(time.Until(deadline(ctx))))
		require.NoError(t, err, "waiting for lead.qualified")
		var e struct {
			Type          string `json:"type"`
			Subject       string `json:"subject"`
			OrgID         string `json:"orgid"`
			CorrelationID string `json:"correlationid"`
		}
		require.NoError(t, json.Unmarshal(msg.Data(), &e))
		if e.CorrelationID == key {
			require.Equal(t, "lead.qualified", e.Type)
			require.Equal(t, "crm-1", e.Subject)
			require.Equal(t, "demo", e.OrgID)
			break
		}
	}

	require.Contains(t, printed.String(), "LEADFLOW_NATS_URL="+url+" ", "a line to paste")

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	select {
	case err := <-exited:
		stopped = true
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("leadflow dev exited with %d after SIGINT", exit.ExitCode())
		}
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("leadflow dev did not exit within 30 s of SIGINT")
	}
	require.NoFileExists(t, filepath.Join(dir, "env"))
	require.NoFileExists(t, filepath.Join(dir, "pg", "postmaster.pid"), "PostgreSQL is stopped")
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}
