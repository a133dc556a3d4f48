package worker

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// entered starts an enter and returns a channel that yields its slot.
func entered(ctx context.Context, g *gate) <-chan *slot {
	ch := make(chan *slot, 1)
	go func() { ch <- g.enter(ctx) }()
	return ch
}

func requireWaiting(t *testing.T, ch <-chan *slot) {
	t.Helper()
	select {
	case s := <-ch:
		t.Fatalf("entered (slot %v) while the gate should hold it", s)
	case <-time.After(50 * time.Millisecond):
	}
}

func requireEntered(t *testing.T, ch <-chan *slot) *slot {
	t.Helper()
	select {
	case s := <-ch:
		require.NotNil(t, s)
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting at the gate")
		return nil
	}
}

// TestGateLetsFewThroughWithoutABacklog: without a backlog two workers are
// let through; a third waits until one of them leaves.
func TestGateLetsFewThroughWithoutABacklog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := newGate(2, 8, time.Hour)
	a := requireEntered(t, entered(ctx, g))
	requireEntered(t, entered(ctx, g))
	third := entered(ctx, g)
	requireWaiting(t, third)
	g.applying(a)
	requireWaiting(t, third)
	g.leave(a)
	requireEntered(t, third)
}

// TestGateLetsAllThroughWithABacklog: with a deep backlog every worker is
// let through, the waiting ones at once; when it is gone, the bound is two
// again for those who come next.
func TestGateLetsAllThroughWithABacklog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := newGate(2, 4, time.Hour)
	var slots []*slot
	for range 2 {
		slots = append(slots, requireEntered(t, entered(ctx, g)))
	}
	third := entered(ctx, g)
	requireWaiting(t, third)
	g.setBacklog(true)
	slots = append(slots, requireEntered(t, third))
	slots = append(slots, requireEntered(t, entered(ctx, g)))
	fifth := entered(ctx, g)
	requireWaiting(t, fifth)

	g.setBacklog(false)
	g.leave(slots[0])
	g.leave(slots[1])
	requireWaiting(t, fifth) // two still in
	g.leave(slots[2])
	requireEntered(t, fifth)
}

// TestGateStopsCountingASlowBatch: a batch applied for longer than slow no
// longer holds back the worker waiting behind it; a batch still being
// fetched does.
func TestGateStopsCountingASlowBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const slow = 200 * time.Millisecond
	g := newGate(1, 4, slow)
	a := requireEntered(t, entered(ctx, g))
	second := entered(ctx, g)
	time.Sleep(2 * slow) // a is fetching: it counts however long it takes
	requireWaiting(t, second)

	start := time.Now()
	g.applying(a)
	requireEntered(t, second)
	require.GreaterOrEqual(t, time.Since(start), slow)
}

// TestGateWaitEndsWithItsContext: a worker waiting at the gate gives up
// when its context ends.
func TestGateWaitEndsWithItsContext(t *testing.T) {
	t.Parallel()
	g := newGate(1, 1, time.Hour)
	requireEntered(t, entered(context.Background(), g))
	ctx, cancel := context.WithCancel(context.Background())
	waiting := entered(ctx, g)
	requireWaiting(t, waiting)
	cancel()
	select {
	case s := <-waiting:
		require.Nil(t, s)
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after its context ended")
	}
}
