package service_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/leadflow/leadflow/internal/config"
	"github.com/leadflow/leadflow/internal/testenv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// TestDatabaseUnreachable: while PostgreSQL cannot be reached, requests are
// held and retried; when it is back every one is converted once and none is
// dead-lettered, however long the outage against MaxDeliver.
func TestDatabaseUnreachable(t *testing.T) {
	t.Parallel()
	dbURL := testenv.Database(t)
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	proxy := testenv.StartProxy(t, u.Host)
	u.Host = proxy.Addr()
	b := setup(t, func(c *config.Config) {
		c.DatabaseURL = u.String()
		c.AckWait = 2 * time.Second
		c.MaxDeliver = 2
	})
	// setup made its own database; point the assertions at the proxied one.
	b.pool.Close()
	var perr error
	b.pool, perr = newPool(dbURL)
	require.NoError(t, perr)

	b.qualify(request("org-out", "warm", "warm", acmeLead(), nil))
	proxy.Cut()
	for i := range 20 {
		lead := map[string]any{"company": fmt.Sprintf("Outage %d", i), "last_name": "O", "topic": "t"}
		b.publish("lead.qualify.requested", request("org-out", fmt.Sprintf("out-%d", i), fmt.Sprintf("out-%d", i), lead, nil))
	}
	// Longer than AckWait × MaxDeliver: without holding, these would be dead.
	time.Sleep(6 * time.Second)
	proxy.Restore()
	for i := range 20 {
		evs := b.outcome(fmt.Sprintf("out-%d", i))
		require.Equal(t, "lead.qualified", evs[len(evs)-1].Type)
	}
	require.Equal(t, 21, b.count(`SELECT count(*) FROM accounts WHERE org_id = 'org-out'`))
	info, err := b.js.Stream(context.Background(), "LEAD_DEAD_LETTERS")
	require.NoError(t, err)
	require.Zero(t, info.CachedInfo().State.Msgs)
	require.Contains(t, b.logs.String(), "database unavailable")
}

// TestPoisonRequestDeadLettered: a request that fails every time goes, after
// MaxDeliver deliveries, to leadflow.dead.<subject> with its headers and the
// last error; the others are converted.
func TestPoisonRequestDeadLettered(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) { c.MaxDeliver = 3 })
	_, err := b.pool.Exec(context.Background(), `
		CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.id = 'poison' THEN RAISE EXCEPTION 'poisoned lead'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER poison BEFORE INSERT ON leads FOR EACH ROW EXECUTE FUNCTION poison();`)
	require.NoError(t, err)

	req := request("org-p", "poison-key", "poison", acmeLead(), nil)
	b.publish("lead.qualify.requested", req)
	b.qualify(request("org-p", "fine", "fine", map[string]any{"company": "Fine Co", "last_name": "F"}, nil))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cons := b.deadLetters()
	msg, err := cons.Next(jetstream.FetchMaxWait(15 * time.Second))
	require.NoError(t, err)
	require.Equal(t, "leadflow.dead.lead.qualify.requested", msg.Subject())
	require.JSONEq(t, mustJSON(t, req), string(msg.Data()))
	require.Equal(t, "poison-key", msg.Headers().Get("Nats-Msg-Id"), "the request's own headers are kept")
	require.Contains(t, msg.Headers().Get("Leadflow-Error"), "poisoned lead")
	require.Equal(t, "3", msg.Headers().Get("Leadflow-Deliveries"))
	require.Eventually(t, func() bool { return strings.Contains(b.logs.String(), "dead-lettered") }, 5*time.Second, 20*time.Millisecond)

	// Terminated: nothing is pending on the consumer, and no event was published for it.
	require.Eventually(t, func() bool {
		ci, err := b.js.Consumer(ctx, "LEAD_REQUESTS", "leadflow")
		if err != nil {
			return false
		}
		info, err := ci.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	}, 10*time.Second, 100*time.Millisecond)
	require.Empty(t, eventsFor(b.events.all(), "poison-key"))
}

// TestGracefulShutdown: on shutdown the requests in flight finish and their
// events are published; a restarted leadflow converts the rest once.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := range 100 {
		lead := map[string]any{"company": fmt.Sprintf("Stop %d", i), "last_name": "S", "topic": "t"}
		b.publish("lead.qualify.requested", request("org-stop", fmt.Sprintf("stop-%d", i), fmt.Sprintf("stop-%d", i), lead, nil))
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	b.stop()
	require.Less(t, time.Since(start), b.cfg.AckWait)
	require.Equal(t, 0, b.count(`SELECT count(*) FROM outbox`), "the relay flushed before exit")
	converted := b.count(`SELECT count(*) FROM leads WHERE org_id = 'org-stop'`)
	t.Logf("%d of 100 converted before the shutdown", converted)

	b.startService()
	for i := range 100 {
		evs := b.outcome(fmt.Sprintf("stop-%d", i))
		require.Equal(t, "lead.qualified", evs[len(evs)-1].Type)
	}
	require.Equal(t, 100, b.count(`SELECT count(*) FROM accounts WHERE org_id = 'org-stop'`))
	qualified := 0
	for _, e := range b.events.all() {
		if e.Type == "lead.qualified" && strings.HasPrefix(e.CorrelationID, "stop-") {
			qualified++
		}
	}
	require.Equal(t, 100, qualified, "each request's outcome published once")
}

// TestPoisonAmongNeighbours: a poisoned request fails its batch; its
// neighbours are then handled one by one, for longer than the ack wait in
// all. They stay in progress meanwhile: each is converted once, on its first
// delivery, none is dead-lettered, and only the poisoned one goes to the
// dead letters. The database's error text, which may quote a lead's values,
// stays out of the logs (its SQLSTATE is there).
func TestPoisonAmongNeighbours(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) {
		c.MaxDeliver, c.AckWait, c.Workers, c.Batch = 1, time.Second, 1, 16
	})
	_, err := b.pool.Exec(context.Background(), `
		CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.id = 'poison' THEN RAISE EXCEPTION 'poisoned lead %', NEW.email; END IF;
			PERFORM pg_sleep(0.15);
			RETURN NEW;
		END $$;
		CREATE TRIGGER poison BEFORE INSERT ON leads FOR EACH ROW EXECUTE FUNCTION poison();`)
	require.NoError(t, err)

	const n = 12
	var keys []string
	for i := range n {
		if i == 3 {
			b.publish("lead.qualify.requested", request("org-pn", "poison-key", "poison",
				map[string]any{"company": "Poison Co", "last_name": "P", "email": "canary-7731@example.com"}, nil))
		}
		key := fmt.Sprintf("neighbour-%d", i)
		keys = append(keys, key)
		b.publish("lead.qualify.requested", request("org-pn", key, key, map[string]any{"company": fmt.Sprintf("Neighbour %d", i), "last_name": "N"}, nil))
	}
	for _, key := range keys {
		evs := b.outcome(key)
		require.Equal(t, "lead.qualified", evs[len(evs)-1].Type, key)
	}

	cons := b.deadLetters()
	msg, err := cons.Next(jetstream.FetchMaxWait(15 * time.Second))
	require.NoError(t, err)
	require.Equal(t, "poison-key", msg.Headers().Get("Nats-Msg-Id"))
	require.Contains(t, msg.Headers().Get("Leadflow-Error"), "poisoned lead", "the dead letter keeps the whole error")
	_, err = cons.Next(jetstream.FetchMaxWait(2 * time.Second))
	require.ErrorIs(t, err, nats.ErrTimeout, "only the poisoned request is dead-lettered")

	logs := b.logs.String()
	require.NotContains(t, logs, `"delivery":2`, "no request was redelivered")
	require.NotContains(t, logs, "canary-7731")
	require.NotContains(t, logs, "poisoned lead")
	require.Contains(t, logs, "SQLSTATE P0001")
	for _, key := range keys {
		require.Len(t, eventsFor(b.events.all(), key), 4, "%s: account, contact, its note moves, lead.qualified: once each", key)
	}
}
