package worker

import (
	"context"
	"sync"
	"time"
)

// gate bounds how many workers fetch and apply batches at once. Without a
// backlog, few: the requests that arrive meanwhile wait in the stream and
// make the next batches larger, and the transactions running do not share
// the cores with more of their kind. A batch costs PostgreSQL and the broker
// about as much again as its requests do, so that many small transactions at
// once, when a moment's delay hands the workers a burst, cost the most
// precisely when the machine has the least to spare. With a backlog (a full
// batch fetched with enough more waiting to fill every other worker's), all
// Workers run. A batch applied for longer than slow no longer counts, so that
// one held up (by a lock, a database that went away) cannot hold back the
// requests behind it for longer than that.
type gate struct {
	floor, max int
	slow       time.Duration
	now        func() time.Time

	mu      sync.Mutex
	slots   map[*slot]struct{}
	backlog bool
	// changed is closed, and replaced, when a slot is freed or the bound
	// rises: waiters look again.
	changed chan struct{}
}

// slot is a worker let through the gate: fetching while since is zero,
// then applying its batch from since on.
type slot struct{ since time.Time }

func newGate(floor, max int, slow time.Duration) *gate {
	return &gate{floor: min(floor, max), max: max, slow: slow, now: time.Now,
		slots: map[*slot]struct{}{}, changed: make(chan struct{})}
}

// enter waits until a worker may fetch, and returns its slot; nil when ctx
// ends first.
func (g *gate) enter(ctx context.Context) *slot {
	for {
		g.mu.Lock()
		counted, next := g.counted()
		if counted < g.bound() {
			s := &slot{}
			g.slots[s] = struct{}{}
			g.mu.Unlock()
			return s
		}
		changed := g.changed
		g.mu.Unlock()
		var t *time.Timer
		var stops <-chan time.Time
		if !next.IsZero() {
			t = time.NewTimer(next.Sub(g.now()))
			stops = t.C
		}
		select {
		case <-changed:
		case <-stops:
		case <-ctx.Done():
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// applying records that s's batch is being applied from now on; those
// waiting look again, to know when it stops counting.
func (g *gate) applying(s *slot) {
	g.mu.Lock()
	s.since = g.now()
	g.wake()
	g.mu.Unlock()
}

// leave frees s.
func (g *gate) leave(s *slot) {
	g.mu.Lock()
	delete(g.slots, s)
	g.wake()
	g.mu.Unlock()
}

// setBacklog records whether the last fetch found a backlog.
func (g *gate) setBacklog(backlog bool) {
	g.mu.Lock()
	if backlog != g.backlog {
		g.backlog = backlog
		if backlog {
			g.wake()
		}
	}
	g.mu.Unlock()
}

// bound is how many slots may count at once.
func (g *gate) bound() int {
	if g.backlog {
		return g.max
	}
	return g.floor
}

// counted is how many slots count against the bound, and when the next of
// them stops counting (zero when none will). The caller holds mu.
func (g *gate) counted() (int, time.Time) {
	now := g.now()
	n := 0
	var next time.Time
	for s := range g.slots {
		if s.since.IsZero() {
			n++
			continue
		}
		end := s.since.Add(g.slow)
		if !end.After(now) {
			continue
		}
		n++
		if next.IsZero() || end.Before(next) {
			next = end
		}
	}
	return n, next
}

// wake tells the waiters to look again. The caller holds mu.
func (g *gate) wake() {
	close(g.changed)
	g.changed = make(chan struct{})
}
