package worker

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// TestCrashBetweenCommitAndAck: a worker that dies after its transactions
// commit and before it acknowledges leaves the requests to be redelivered;
// the redeliveries convert nothing twice and re-publish the same outcomes,
// and they are applied together, not in a transaction each.
func TestCrashBetweenCommitAndAck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, js, topo := setup(t, time.Second)
	wcfg := Config{Stream: "LEAD_REQUESTS", Consumer: "leadflow", Workers: 4, MaxDeliver: 5, AckWait: time.Second,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond}

	const n = 20
	for i := range n {
		publishQualify(t, js, "org-crash", "Crash", i)
	}

	// A worker that commits every request and never acknowledges one.
	crashing := New(wcfg, js, st, topo, nil, zerolog.Nop())
	committed := make(chan struct{}, n)
	crashing.afterCommit = func(jetstream.Msg) bool { committed <- struct{}{}; return false }
	cctx, crash := context.WithCancel(ctx)
	go crashing.Run(cctx) //nolint:errcheck
	for range n {
		select {
		case <-committed:
		case <-time.After(20 * time.Second):
			t.Fatal("the crashing worker did not commit every request")
		}
	}
	crash()

	hcfg := wcfg
	hcfg.Workers, hcfg.Batch, hcfg.Linger = 1, 32, 50*time.Millisecond
	healthy := New(hcfg, js, st, topo, nil, zerolog.Nop())
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	go healthy.Run(hctx) //nolint:errcheck
	require.Eventually(t, func() bool {
		c, err := js.Consumer(ctx, "LEAD_REQUESTS", "leadflow")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0 && info.NumRedelivered == 0 && info.AckFloor.Stream == n
	}, 20*time.Second, 50*time.Millisecond)

	require.Equal(t, n, countRows(t, st, `SELECT count(*) FROM accounts WHERE org_id = 'org-crash'`))
	require.Equal(t, n, countRows(t, st, `SELECT count(*) FROM opportunities WHERE org_id = 'org-crash'`))
	// Each request: 4 events from its conversion, and its outcome again from
	// each replay, with the same id.
	require.Equal(t, 4*n, countRows(t, st, `SELECT count(DISTINCT event_id) FROM outbox_events`))
	require.Equal(t, 3*n, countRows(t, st, `SELECT count(*) FROM outbox_events WHERE subject <> 'lead.qualified'`))
	require.Equal(t, n, countRows(t, st, `SELECT count(*) FROM (SELECT event_id FROM outbox_events WHERE subject = 'lead.qualified' GROUP BY event_id HAVING count(*) >= 2) x`))
	// The outcomes re-published by one transaction share its outbox row.
	replays := countRows(t, st, `SELECT count(DISTINCT o.seq) FROM outbox_events o
		WHERE EXISTS (SELECT 1 FROM outbox_events p WHERE p.event_id = o.event_id AND p.seq < o.seq)`)
	require.Less(t, replays, n/2, "transactions that replayed the %d redeliveries", n)
}
