package service_test

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/leadflow/leadflow/internal/config"
	"github.com/leadflow/leadflow/internal/service"
	"github.com/leadflow/leadflow/internal/testenv"
	"github.com/leadflow/leadflow/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

// event is a received CloudEvent, with its raw bytes and NATS headers.
type event struct {
	ID            string         `json:"id"`
	Type          string         `json:"type"`
	Source        string         `json:"source"`
	Subject       string         `json:"subject"`
	SpecVersion   string         `json:"specversion"`
	Time          string         `json:"time"`
	OrgID         string         `json:"orgid"`
	CorrelationID string         `json:"correlationid"`
	Data          map[string]any `json:"data"`
	raw           []byte
	msgID         string
}

// collector records every event on the events stream, in stream order.
type collector struct {
	mu     sync.Mutex
	events []event
	added  chan struct{}
}

type bundle struct {
	t      *testing.T
	cfg    config.Config
	dbURL  string
	nats   *testenv.NATS
	nc     *nats.Conn
	js     jetstream.JetStream
	pool   *pgxpool.Pool
	events *collector
	stop   func()
	logs   *syncBuffer
	addr   string // leadflow's HTTP address
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

func testConfig(dbURL, natsURL string) config.Config {
	return config.Config{
		DatabaseURL: dbURL, NATSURL: natsURL, HTTPAddr: "127.0.0.1:0", Workers: 4, Batch: 16, LogLevel: "debug",
		DeadLetterPrefix: "leadflow.dead", RequestsStream: "LEAD_REQUESTS", EventsStream: "LEAD_EVENTS",
		DeadLetterStream: "LEAD_DEAD_LETTERS", RequestsRetention: "limits", RequestsMaxAge: time.Hour,
		EventsMaxAge: time.Hour, Replicas: 1, DuplicateWindow: 2 * time.Minute, Consumer: "leadflow",
		AckWait: 5 * time.Second, MaxDeliver: 3, MaxAckPending: 100, BackoffMin: 50 * time.Millisecond,
		BackoffMax: 200 * time.Millisecond, RelayBatch: 100, RelayPoll: 200 * time.Millisecond, RelayMaxBackoff: time.Second,
	}
}

// setup starts leadflow against a fresh database and NATS server, and
// collects the events it publishes.
func setup(t *testing.T, opts ...func(*config.Config)) *bundle {
	t.Helper()
	b := &bundle{t: t, dbURL: testenv.Database(t), nats: testenv.StartNATS(t), logs: &syncBuffer{}}
	b.cfg = testConfig(b.dbURL, b.nats.URL())
	for _, o := range opts {
		o(&b.cfg)
	}
	require.NoError(t, b.cfg.Validate())
	b.startService()

	var err error
	b.nc, err = nats.Connect(b.nats.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(b.nc.Close)
	b.js, err = jetstream.New(b.nc)
	require.NoError(t, err)
	b.pool, err = pgxpool.New(context.Background(), b.dbURL)
	require.NoError(t, err)
	t.Cleanup(b.pool.Close)
	b.events = b.collect()
	return b
}

// startService starts leadflow; b.stop stops it gracefully and waits.
func (b *bundle) startService() {
	t := b.t
	log := zerolog.New(io.MultiWriter(b.logs)).Level(zerolog.DebugLevel)
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := service.Start(ctx, b.cfg, log)
	require.NoError(t, err)
	b.addr = svc.Addr()
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
		if t.Failed() && dumpLogs {
			t.Logf("leadflow logs:\n%s", b.logs.String())
		}
	})
}

var dumpLogs bool

func (b *bundle) collect() *collector {
	c := &collector{added: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	b.t.Cleanup(cancel)
	cons, err := b.js.OrderedConsumer(ctx, "LEAD_EVENTS", jetstream.OrderedConsumerConfig{})
	require.NoError(b.t, err)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var e event
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			b.t.Errorf("event is not JSON: %v: %s", err, m.Data())
			return
		}
		e.raw, e.msgID = m.Data(), m.Headers().Get(jetstream.MsgIDHeader)
		c.mu.Lock()
		c.events = append(c.events, e)
		c.mu.Unlock()
		select {
		case c.added <- struct{}{}:
		default:
		}
	})
	require.NoError(b.t, err)
	b.t.Cleanup(cc.Stop)
	return c
}

// deadLetters reads LEAD_DEAD_LETTERS from its start.
func (b *bundle) deadLetters() jetstream.Consumer {
	b.t.Helper()
	cons, err := b.js.OrderedConsumer(context.Background(), "LEAD_DEAD_LETTERS", jetstream.OrderedConsumerConfig{})
	require.NoError(b.t, err)
	return cons
}

func (c *collector) all() []event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]event(nil), c.events...)
}

// waitFor waits until pred holds for the events received so far.
func (b *bundle) waitFor(what string, pred func([]event) bool) []event {
	b.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		evs := b.events.all()
		if pred(evs) {
			return evs
		}
		select {
		case <-b.events.added:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			b.t.Fatalf("timed out waiting for %s; have %d events", what, len(evs))
		}
	}
}

func isTerminal(typ string) bool {
	return strings.HasSuffix(typ, ".rejected") || typ == "lead.qualified" || typ == "lead.disqualified" || typ == "lead.reactivated" ||
		typ == "lead.unqualified"
}

// eventsFor returns the events of the request with idempotency key key.
func eventsFor(evs []event, key string) []event {
	var out []event
	for _, e := range evs {
		if e.CorrelationID == key {
			out = append(out, e)
		}
	}
	return out
}

// outcome waits for the terminal event of the request with key and returns
// all of its events in order.
func (b *bundle) outcome(key string) []event {
	b.t.Helper()
	evs := b.waitFor("outcome of "+key, func(evs []event) bool {
		for _, e := range eventsFor(evs, key) {
			if isTerminal(e.Type) {
				return true
			}
		}
		return false
	})
	return eventsFor(evs, key)
}

func (b *bundle) publish(subject string, body any) {
	b.t.Helper()
	raw, ok := body.([]byte)
	if !ok {
		var err error
		raw, err = json.Marshal(body)
		require.NoError(b.t, err)
	}
	msg := &nats.Msg{Subject: subject, Data: raw, Header: nats.Header{}}
	if m, ok := body.(map[string]any); ok {
		if k, ok := m["idempotency_key"].(string); ok {
			msg.Header.Set(jetstream.MsgIDHeader, k)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := b.js.PublishMsg(ctx, msg)
	require.NoError(b.t, err)
}

// qualify publishes a qualify request and returns its events.
func (b *bundle) qualify(req map[string]any) []event {
	b.t.Helper()
	b.publish("lead.qualify.requested", req)
	return b.outcome(req["idempotency_key"].(string))
}

func (b *bundle) count(sql string, args ...any) int {
	b.t.Helper()
	var n int
	require.NoError(b.t, b.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func (b *bundle) putSettings(org, settings string) {
	b.t.Helper()
	_, err := b.pool.Exec(context.Background(), `INSERT INTO org_settings (org_id, settings) VALUES ($1, $2)
		ON CONFLICT (org_id) DO UPDATE SET settings = excluded.settings`, org, settings)
	require.NoError(b.t, err)
}

var keySeq struct {
	sync.Mutex
	n int
}

// request builds a qualify request for a fresh lead in org, with extra fields merged.
func request(org, key, leadID string, lead map[string]any, extra map[string]any) map[string]any {
	l := map[string]any{"id": leadID}
	for k, v := range lead {
		l[k] = v
	}
	r := map[string]any{
		"idempotency_key": key, "org_id": org,
		"actor": map[string]any{"id": "user-1", "roles": []any{"sales_agent"}},
		"lead":  l,
	}
	for k, v := range extra {
		r[k] = v
	}
	return r
}

func acmeLead() map[string]any {
	return map[string]any{
		"topic": "50 laptops", "first_name": "Ada", "last_name": "Lovelace", "company": "Acme Corp",
		"job_title": "CTO", "email": "Ada@Acme.example", "business_phone": "+1 (555) 010-0001",
		"mobile_phone": "+1 555 010 0002", "website": "https://www.acme.example/about", "street1": "1 Main St",
		"city": "Springfield", "state_province": "IL", "postal_code": "62701", "country": "US",
		"description": "wants laptops", "source": "web", "budget_amount": 50000, "purchase_timeframe": "this_quarter",
		"owner_id": "owner-7", "custom": map[string]any{"budget_code": "BC-1"},
		"notes":       []any{map[string]any{"id": "n1", "title": "call", "body": "called Ada", "created_at": "2026-11-01T10:00:00Z"}},
		"attachments": []any{map[string]any{"id": "a1", "file_name": "rfp.pdf", "mime_type": "application/pdf", "size_bytes": 1234, "url": "https://files.example/rfp.pdf"}},
	}
}

// validateEvent checks an event against the envelope schema and its data schema.
func validateEvent(t *testing.T, e event) {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(e.raw)))
	require.NoError(t, err)
	errs, err := schemas.Validate("events/cloudevent.schema.json", doc)
	require.NoError(t, err)
	require.Empty(t, errs, "envelope of %s", e.Type)
	dataPath := "events/" + e.Type + ".schema.json"
	if strings.HasSuffix(e.Type, ".rejected") {
		dataPath = "events/rejected.schema.json"
	}
	errs, err = schemas.Validate(dataPath, doc.(map[string]any)["data"])
	require.NoError(t, err)
	require.Empty(t, errs, "data of %s: %s", e.Type, e.raw)
	require.Equal(t, e.ID, e.msgID, "Nats-Msg-Id is the event id")
}

func types(evs []event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

func init() {
	dumpLogs = true
}

func newPool(url string) (*pgxpool.Pool, error) { return pgxpool.New(context.Background(), url) }

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	return string(raw)
}
