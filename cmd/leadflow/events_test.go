package main

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadflow/leadflow/internal/config"
	"github.com/leadflow/leadflow/internal/event"
	"github.com/leadflow/leadflow/internal/stream"
	"github.com/leadflow/leadflow/internal/testenv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Split(strings.TrimSuffix(l.b.String(), "\n"), "\n")
}

type eventsBundle struct {
	t   *testing.T
	cfg config.Config
	js  jetstream.JetStream
}

// setupEvents starts a NATS server with leadflow's streams.
func setupEvents(t *testing.T, opts ...func(*config.Config)) *eventsBundle {
	t.Helper()
	n := testenv.StartNATS(t)
	cfg := config.Config{
		NATSURL: n.URL(), DeadLetterPrefix: "leadflow.dead", RequestsStream: "LEAD_REQUESTS", EventsStream: "LEAD_EVENTS",
		DeadLetterStream: "LEAD_DEAD_LETTERS", RequestsRetention: "limits", RequestsMaxAge: time.Hour, EventsMaxAge: time.Hour,
		Replicas: 1, DuplicateWindow: 2 * time.Minute, Consumer: "leadflow", AckWait: 5 * time.Second, MaxAckPending: 100,
	}
	for _, o := range opts {
		o(&cfg)
	}
	nc, err := nats.Connect(n.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, stream.New(cfg).Ensure(ctx, js))
	return &eventsBundle{t: t, cfg: cfg, js: js}
}

// publish puts one CloudEvent on the events stream, as the relay does; it
// returns its JSON.
func (b *eventsBundle) publish(typ, id, org, lead, key string, data map[string]any) string {
	b.t.Helper()
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	raw, err := event.Marshal(event.Meta{LeadID: lead, OrgID: org, CorrelationID: key, Time: at}, typ, id, data)
	require.NoError(b.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = b.js.Publish(ctx, b.cfg.SubjectPrefix+typ, raw, jetstream.WithMsgID(id))
	require.NoError(b.t, err)
	return string(raw)
}

// follow runs `leadflow events args...` until stop is called.
func (b *eventsBundle) follow(args ...string) (out *lockedBuffer, stop func() error) {
	b.t.Helper()
	out = &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- followEvents(ctx, b.cfg, zerolog.Nop(), args, out) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				b.t.Errorf("leadflow events did not stop")
			}
		})
		return err
	}
	b.t.Cleanup(func() { _ = stop() })
	return out, stop
}

// waitFollowing waits until the follower's consumer exists, so that what is
// published next is new to it.
func (b *eventsBundle) waitFollowing() {
	b.t.Helper()
	require.Eventually(b.t, func() bool {
		s, err := b.js.Stream(context.Background(), b.cfg.EventsStream)
		return err == nil && s.CachedInfo().State.Consumers > 0
	}, 10*time.Second, 10*time.Millisecond)
}

func waitLines(t *testing.T, out *lockedBuffer, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return len(out.lines()) >= n && out.lines()[0] != "" },
		10*time.Second, 10*time.Millisecond, "want %d lines, have %q", n, out.lines())
}

func TestEventsFromStartFilteredAsText(t *testing.T) {
	t.Parallel()
	b := setupEvents(t)
	b.publish("account.created", "e1", "acme", "L1", "k1", map[string]any{"account_id": "a1"})
	b.publish("lead.qualified", "e2", "acme", "L1", "k1", map[string]any{"lead_id": "L1"})
	b.publish("lead.qualified", "e3", "globex", "L2", "k2", map[string]any{"lead_id": "L2"})
	b.publish("lead.qualify.rejected", "e4", "acme", "L3", "k3", map[string]any{"code": "duplicates_found", "message": "m"})
	b.publish("lead.disqualified", "e5", "acme", "L4", "k4", map[string]any{"lead_id": "L4"})

	out, stop := b.follow("--from-start", "--org", "acme", "--type", "lead.qualified,lead.qualify.rejected", "--format", "text")
	waitLines(t, out, 2)
	// It follows: what comes next is printed too.
	b.publish("lead.qualified", "e6", "acme", "L5", "", map[string]any{"lead_id": "L5"})
	b.publish("account.created", "e7", "acme", "L5", "", map[string]any{"account_id": "a2"})
	b.publish("lead.qualified", "e8", "acme", "L6", "k8", map[string]any{"lead_id": "L6"})
	waitLines(t, out, 4)
	require.NoError(t, stop())
	require.Equal(t, []string{
		"2026-11-01T10:00:00Z lead.qualified acme L1 k1",
		"2026-11-01T10:00:00Z lead.qualify.rejected acme L3 k3 duplicates_found",
		"2026-11-01T10:00:00Z lead.qualified acme L5 -",
		"2026-11-01T10:00:00Z lead.qualified acme L6 k8",
	}, out.lines())
}

func TestEventsOnlyNewAsJSON(t *testing.T) {
	t.Parallel()
	b := setupEvents(t, func(c *config.Config) { c.SubjectPrefix = "crm." })
	b.publish("lead.qualified", "old", "acme", "L1", "k0", map[string]any{"lead_id": "L1"})

	out, stop := b.follow("--lead", "L1", "--type", "account.created", "--type", "lead.qualified")
	b.waitFollowing()
	want1 := b.publish("account.created", "e1", "acme", "L1", "k1", map[string]any{"account_id": "a1", "name": "Acme Corp"})
	b.publish("lead.qualified", "e2", "acme", "L2", "k2", map[string]any{"lead_id": "L2"})
	b.publish("contact.created", "e3", "acme", "L1", "k1", map[string]any{"contact_id": "c1"})
	want4 := b.publish("lead.qualified", "e4", "acme", "L1", "k1", map[string]any{"lead_id": "L1"})
	waitLines(t, out, 2)
	require.NoError(t, stop())
	require.Equal(t, []string{want1, want4}, out.lines())
}

func TestEventsStopsWhenOutputCloses(t *testing.T) {
	t.Parallel()
	b := setupEvents(t)
	b.publish("lead.qualified", "e1", "acme", "L1", "k1", map[string]any{"lead_id": "L1"})
	r, w := io.Pipe()
	require.NoError(t, r.Close())
	done := make(chan error, 1)
	go func() { done <- followEvents(context.Background(), b.cfg, zerolog.Nop(), []string{"--from-start"}, w) }()
	select {
	case err := <-done:
		require.ErrorIs(t, err, io.ErrClosedPipe)
	case <-time.After(10 * time.Second):
		t.Fatal("leadflow events went on writing to a closed output")
	}
}

func TestEventsFlags(t *testing.T) {
	t.Parallel()
	cfg := config.Config{NATSURL: "nats://127.0.0.1:1", EventsStream: "LEAD_EVENTS"}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"unknown type":   {[]string{"--type", "lead.qualified,lead.converted"}, `unknown event type "lead.converted"; known: lead.qualified,`},
		"bad format":     {[]string{"--format", "yaml"}, "--format must be json or text"},
		"extra argument": {[]string{"acme"}, `unexpected argument "acme"`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := followEvents(context.Background(), cfg, zerolog.Nop(), tc.args, io.Discard)
			require.ErrorContains(t, err, tc.want)
		})
	}
}
