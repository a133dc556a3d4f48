// Package worker is leadflow's door: it takes requests from the JetStream
// consumer, has the store apply each in one transaction, and acknowledges,
// retries or dead-letters it.
package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/leadflow/leadflow/internal/conversion"
	"github.com/leadflow/leadflow/internal/metrics"
	"github.com/leadflow/leadflow/internal/store"
	"github.com/leadflow/leadflow/internal/stream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Headers of a dead letter, beside the request's own.
const (
	HeaderError      = "Leadflow-Error"
	HeaderDeliveries = "Leadflow-Deliveries"
	HeaderSubject    = "Leadflow-Original-Subject"
	HeaderStreamSeq  = "Leadflow-Stream-Sequence"
)

// Config tunes a worker.
type Config struct {
	// Stream and Consumer name the durable consumer to read.
	Stream, Consumer string
	// Workers is how many transactions run at once while a deep backlog
	// waits; without one, at most two (gate).
	Workers int
	// Batch is the most requests one transaction applies (1: one each).
	Batch int
	// MaxDeliver is how many deliveries a request gets before it is dead-lettered.
	MaxDeliver int
	// AckWait is the consumer's ack wait; a request waiting for the database
	// is reported in progress well within it.
	AckWait time.Duration
	// BackoffMin and BackoffMax bound the redelivery delay after a failure.
	BackoffMin, BackoffMax time.Duration
	// Linger is how long a worker that found nothing waiting, once a
	// request arrives, waits for more to share its transaction (0: none).
	Linger time.Duration
}

// Worker consumes requests.
type Worker struct {
	cfg   Config
	js    jetstream.JetStream
	store *store.Store
	topo  stream.Topology
	m     *metrics.Metrics
	log   zerolog.Logger

	// afterCommit, when set, runs after a request's transaction committed
	// and before it is acknowledged; returning false leaves it unacknowledged,
	// as a crash there would.
	afterCommit func(jetstream.Msg) bool

	// fetching is held by the one worker that is fetching, so that idle
	// workers do not each take one request of a trickle: the others wait
	// their turn, and the requests that arrive meanwhile make one batch.
	fetching chan struct{}
	// backlog is set while fetches find requests waiting: from a wait that
	// lingered into a full batch, until a fetch that does not wait finds none.
	backlog atomic.Bool
	// gate lets all Workers run only while a deep backlog waits (gate).
	gate *gate
}

// lightWorkers is how many workers fetch and apply batches at once while no
// deep backlog waits, and slowBatch how long a batch may be applied before
// it no longer counts against that (gate).
const (
	lightWorkers = 2
	slowBatch    = 500 * time.Millisecond
)

// New returns a worker; Run starts it.
// m may be nil.
func New(cfg Config, js jetstream.JetStream, st *store.Store, topo stream.Topology, m *metrics.Metrics, log zerolog.Logger) *Worker {
	if cfg.Batch < 1 {
		cfg.Batch = 1
	}
	return &Worker{cfg: cfg, js: js, store: st, topo: topo, m: m, log: log.With().Str("component", "worker").Logger(),
		fetching: make(chan struct{}, 1), gate: newGate(lightWorkers, cfg.Workers, slowBatch)}
}

// Run handles requests until ctx is done. Then it stops fetching, finishes the
// requests in flight (each within the ack wait) and returns.
//
// Each of the Workers goroutines fetches only when it is free, and only what
// it will handle at once: nothing waits in a client-side buffer, where its ack
// wait would run out unseen (while the database is down, say) and burn its
// deliveries.
func (w *Worker) Run(ctx context.Context) error {
	cons, err := w.js.Consumer(ctx, w.cfg.Stream, w.cfg.Consumer)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", w.cfg.Consumer, err)
	}
	var wg sync.WaitGroup
	for range w.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				s := w.gate.enter(ctx)
				if s == nil {
					return
				}
				batch, err := w.fetch(ctx, cons)
				if err != nil {
					w.gate.leave(s)
					if ctx.Err() == nil {
						w.log.Warn().Err(err).Msg("fetching requests failed; retrying")
						time.Sleep(w.cfg.BackoffMin)
					}
					continue
				}
				if len(batch) > 0 {
					w.gate.applying(s)
					w.handleBatch(ctx, batch)
				}
				w.gate.leave(s)
			}
		}()
	}
	wg.Wait()
	return nil
}

// fetchWait bounds how long an idle worker waits for a request, and so how
// long shutdown waits for an idle worker.
const fetchWait = time.Second

// fetch takes the requests already waiting, up to Batch. When there are
// none, it waits up to fetchWait for one, then up to Linger for more. One
// worker fetches at a time: under load each takes a full batch at once; at
// a moderate rate the requests that arrive while the others are busy make
// one transaction rather than one each. A fetch is a pull request with a
// subscription of its own to the server: at a moderate rate, where the last
// batch was not full, the look for requests already waiting is left out,
// as the wait for one finds those at once.
func (w *Worker) fetch(ctx context.Context, cons jetstream.Consumer) ([]jetstream.Msg, error) {
	select {
	case w.fetching <- struct{}{}:
	case <-ctx.Done():
		return nil, nil
	}
	defer func() { <-w.fetching }()
	if w.backlog.Load() {
		batch, err := drain(cons.FetchNoWait(w.cfg.Batch))
		if len(batch) > 0 || err != nil {
			w.noteDepth(batch)
			return batch, err
		}
	}
	batch, err := drain(cons.Fetch(1, jetstream.FetchMaxWait(fetchWait)))
	if len(batch) == 0 || err != nil || w.cfg.Batch == 1 || w.cfg.Linger <= 0 {
		w.backlog.Store(len(batch) == w.cfg.Batch)
		w.noteDepth(batch)
		return batch, err
	}
	// A pull request that expires within milliseconds is not always
	// answered on time; one that does not wait always is.
	time.Sleep(w.cfg.Linger)
	more, err := drain(cons.FetchNoWait(w.cfg.Batch - 1))
	if err != nil {
		// What was fetched is handled; the error shows on the next fetch.
		w.log.Debug().Err(err).Msg("fetching more requests failed")
	}
	batch = append(batch, more...)
	w.backlog.Store(len(batch) == w.cfg.Batch)
	w.noteDepth(batch)
	return batch, nil
}

// noteDepth tells the gate whether the backlog is deep: a full batch
// fetched, and behind it enough requests waiting to fill a batch for each
// of the other workers.
func (w *Worker) noteDepth(batch []jetstream.Msg) {
	deep := false
	if len(batch) == w.cfg.Batch {
		if md, err := batch[len(batch)-1].Metadata(); err == nil {
			deep = md.NumPending >= uint64(max(w.cfg.Workers-lightWorkers, 1)*w.cfg.Batch)
		}
	}
	w.gate.setBacklog(deep)
}

func drain(mb jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, err
	}
	var batch []jetstream.Msg
	for m := range mb.Messages() {
		batch = append(batch, m)
	}
	if err := mb.Error(); err != nil && len(batch) == 0 && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		return nil, err
	}
	return batch, nil
}

// item is one delivered request on its way through the worker.
type item struct {
	msg     jetstream.Msg
	md      *jetstream.MsgMetadata
	subject string
	p       *conversion.Parsed
	log     zerolog.Logger
	start   time.Time
	// settled is set once the request was acknowledged, scheduled for
	// redelivery or terminated: no more progress reports for it.
	settled atomic.Bool
}

// handleBatch applies a batch of requests and acknowledges them. Until a
// request is settled, it is reported in progress every third of the ack
// wait: a batch that waits for a lock, or requests that wait their turn
// after a failed batch, are not redelivered meanwhile, and their deliveries
// count only real failures. A redelivered request failed or was cut short
// before: the redelivered ones are applied together, apart from the fresh,
// so that one that fails again or runs slow holds back only its kind; and
// applied together, requests cut short by a crash commit together, rather
// than one by one, each exposed to the next crash until its turn comes.
func (w *Worker) handleBatch(shutdown context.Context, msgs []jetstream.Msg) {
	items := make([]*item, 0, len(msgs))
	for _, msg := range msgs {
		if it := w.receive(msg); it != nil {
			items = append(items, it)
		}
	}
	if len(items) == 0 {
		return
	}
	defer w.heartbeat(items)()
	var fresh, again []*item
	for _, it := range items {
		if it.md.NumDelivered > 1 {
			again = append(again, it)
		} else {
			fresh = append(fresh, it)
		}
	}
	w.apply(shutdown, again)
	w.apply(shutdown, fresh)
}

// apply applies items in one transaction. When that fails, the halves are
// applied on their own, down to single requests, so that one bad request
// fails alone and costs its neighbours a few transactions rather than one
// each. A batch that ran out of time goes one by one at once: halving it
// would let a slow request run out of time again in each half.
func (w *Worker) apply(shutdown context.Context, items []*item) {
	switch len(items) {
	case 0:
		return
	case 1:
		w.handle(shutdown, items[0])
		return
	}
	ps := make([]*conversion.Parsed, len(items))
	msgs := make([]jetstream.Msg, len(items))
	for i, it := range items {
		ps[i], msgs[i] = it.p, it.msg
	}
	var outs []store.Outcome
	var err error
	for waits := 0; ; waits++ {
		outs, err = w.processBatch(shutdown, ps)
		if err == nil || !w.unavailable(shutdown, err) || waits == 3 {
			break
		}
		w.log.Warn().Str("error", store.Redact(err)).Int("requests", len(items)).Msg("database unavailable; holding the requests until it is back")
		if !w.waitForDatabase(shutdown, msgs) {
			break
		}
	}
	if err != nil {
		w.log.Debug().Str("error", store.Redact(err)).Int("requests", len(items)).Msg("batch failed; applying its requests apart")
		if errors.Is(err, context.DeadlineExceeded) || store.Unavailable(err) {
			for _, it := range items {
				w.handle(shutdown, it)
			}
			return
		}
		w.apply(shutdown, items[:len(items)/2])
		w.apply(shutdown, items[len(items)/2:])
		return
	}
	for i, it := range items {
		switch {
		case outs[i].Deferred:
			w.handle(shutdown, it)
		case outs[i].Err != nil:
			w.fail(it, outs[i].Err)
		default:
			w.done(it, outs[i])
		}
	}
}

// heartbeat reports the unsettled items in progress every third of the ack
// wait until the returned stop is called.
func (w *Worker) heartbeat(items []*item) (stop func()) {
	quit := make(chan struct{})
	go func() {
		t := time.NewTicker(max(w.cfg.AckWait/3, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				for _, it := range items {
					if !it.settled.Load() {
						_ = it.msg.InProgress()
					}
				}
			}
		}
	}()
	return func() { close(quit) }
}

// unavailable reports whether err means the database cannot be reached: a
// connection error, or a transaction that ran out of time while the database
// does not answer a ping either. A timeout while it answers is the request's
// (or the batch's) own.
func (w *Worker) unavailable(shutdown context.Context, err error) bool {
	if store.Unavailable(err) {
		return true
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(shutdown), 2*time.Second)
	defer cancel()
	return w.store.Ping(ctx) != nil
}

// receive parses a delivered request. A request delivered more often than
// allowed was being handled by workers that died or stalled each time: it is
// let through only to replay the outcome it already has, and dead-lettered
// otherwise.
func (w *Worker) receive(msg jetstream.Msg) *item {
	md, err := msg.Metadata()
	if err != nil {
		w.log.Error().Err(err).Str("subject", msg.Subject()).Msg("message without JetStream metadata; terminated")
		_ = msg.Term()
		return nil
	}
	it := &item{msg: msg, md: md, subject: w.topo.Unprefixed(msg.Subject()), start: time.Now()}
	it.p = conversion.Parse(it.subject, msg.Data())
	if h := msg.Headers(); h != nil {
		it.p.Traceparent, it.p.Tracestate = h.Get("traceparent"), h.Get("tracestate")
	}
	it.log = w.requestLogger(it.p, md)
	if int(md.NumDelivered) > w.cfg.MaxDeliver {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		recorded, err := w.store.Recorded(ctx, it.p)
		cancel()
		switch {
		case err != nil:
			it.log.Warn().Str("error", store.Redact(err)).Msg("cannot tell whether the request has an outcome; will be redelivered")
			it.settled.Store(true)
			_ = msg.NakWithDelay(w.cfg.BackoffMax)
			return nil
		case recorded:
			return it
		}
		w.deadLetter(it, fmt.Errorf("delivered %d times without an outcome", md.NumDelivered))
		return nil
	}
	return it
}

// handle takes one request to a terminal state on its own: acknowledged
// (converted or rejected), scheduled for redelivery, or dead-lettered.
// shutdown only stops waiting for an unreachable database; work under way
// is finished.
func (w *Worker) handle(shutdown context.Context, it *item) {
	out, err := w.process(shutdown, it.msg, it.p, it.log)
	if err != nil {
		w.fail(it, err)
		return
	}
	w.done(it, out)
}

// fail schedules a request whose transaction failed for redelivery with
// backoff, or dead-letters it after its last allowed delivery.
func (w *Worker) fail(it *item, err error) {
	if int(it.md.NumDelivered) >= w.cfg.MaxDeliver {
		w.deadLetter(it, err)
		return
	}
	w.m.Request(it.subject, metrics.Retried, "", time.Since(it.start), it.md.NumDelivered)
	delay := w.redeliveryDelay(int(it.md.NumDelivered))
	it.log.Warn().Str("error", store.Redact(err)).Dur("retry_in", delay).Msg("request failed; will be redelivered")
	it.settled.Store(true)
	_ = it.msg.NakWithDelay(delay)
}

// crashAfterCommit is a fault point between a request's commit and its
// acknowledgement. It is nil but in a binary built with the faults tag
// (faultpoint.go), where LEADFLOW_FAULT_CRASH_AFTER_COMMIT sets it.
var crashAfterCommit func(p *conversion.Parsed, replayed bool)

// done acknowledges a request whose transaction committed.
func (w *Worker) done(it *item, out store.Outcome) {
	it.settled.Store(true)
	if w.afterCommit != nil && !w.afterCommit(it.msg) {
		return
	}
	if crashAfterCommit != nil {
		crashAfterCommit(it.p, out.Replayed)
	}
	if err := it.msg.Ack(); err != nil {
		// Committed: a redelivery replays the recorded outcome.
		it.log.Warn().Err(err).Msg("ack failed after commit")
	}
	took := time.Since(it.start)
	result := metrics.Acked
	switch {
	case out.Replayed:
		result = metrics.Replayed
	case out.Code != "":
		result = metrics.Rejected
	}
	w.m.Request(it.subject, result, out.Code, took, it.md.NumDelivered)
	ev := it.log.Info().Str("outcome", out.Event).Dur("took", took)
	if out.Code != "" {
		ev = ev.Str("code", out.Code)
	}
	ev.Bool("replayed", out.Replayed).Msg("request handled")
}

// process applies a request. While the database is unreachable it holds the
// request, reporting progress to JetStream (which does not count as a
// delivery): an outage is no fault of the request.
func (w *Worker) process(shutdown context.Context, msg jetstream.Msg, p *conversion.Parsed, log zerolog.Logger) (store.Outcome, error) {
	for waits := 0; ; waits++ {
		out, err := w.processOnce(shutdown, p)
		// A request that fails as "unavailable" while the database answers
		// pings is at fault after all: give up on it after a few rounds.
		if err == nil || !w.unavailable(shutdown, err) || waits == 3 {
			return out, err
		}
		log.Warn().Str("error", store.Redact(err)).Msg("database unavailable; holding the request until it is back")
		if !w.waitForDatabase(shutdown, []jetstream.Msg{msg}) {
			return out, err
		}
	}
}

func (w *Worker) processBatch(shutdown context.Context, ps []*conversion.Parsed) ([]store.Outcome, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(shutdown), w.cfg.AckWait)
	defer cancel()
	return w.store.ProcessBatch(ctx, ps)
}

func (w *Worker) processOnce(shutdown context.Context, p *conversion.Parsed) (store.Outcome, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(shutdown), w.cfg.AckWait)
	defer cancel()
	return w.store.Process(ctx, p)
}

// waitForDatabase holds msgs, reporting them in progress, until the database
// answers; false when shut down first.
func (w *Worker) waitForDatabase(shutdown context.Context, msgs []jetstream.Msg) bool {
	b := w.newBackoff()
	for {
		for _, m := range msgs {
			_ = m.InProgress()
		}
		t := time.NewTimer(min(b.NextBackOff(), w.cfg.AckWait/3))
		select {
		case <-shutdown.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(shutdown, 2*time.Second)
		err := w.store.Ping(pctx)
		cancel()
		if err == nil {
			w.log.Info().Msg("database reachable again")
			for _, m := range msgs {
				_ = m.InProgress()
			}
			return true
		}
	}
}

func (w *Worker) newBackoff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = w.cfg.BackoffMin
	b.MaxInterval = w.cfg.BackoffMax
	b.Multiplier = 2
	b.RandomizationFactor = 0.2
	b.MaxElapsedTime = 0
	b.Reset()
	return b
}

// redeliveryDelay is the exponential backoff after the n-th failed delivery.
func (w *Worker) redeliveryDelay(n int) time.Duration {
	b := w.newBackoff()
	d := b.NextBackOff()
	for i := 1; i < n; i++ {
		d = b.NextBackOff()
	}
	return d
}

// deadLetter publishes the raw request, its headers and the last error to
// the dead-letter subject, then terminates it. If that publish fails, the
// request is redelivered and dead-lettered on its next delivery.
func (w *Worker) deadLetter(it *item, cause error) {
	it.settled.Store(true)
	msg, md := it.msg, it.md
	dead := &nats.Msg{Subject: w.topo.DeadLetterSubject(it.subject), Data: msg.Data(), Header: nats.Header{}}
	for k, v := range msg.Headers() {
		dead.Header[k] = v
	}
	dead.Header.Set(HeaderError, cause.Error())
	dead.Header.Set(HeaderDeliveries, strconv.FormatUint(md.NumDelivered, 10))
	dead.Header.Set(HeaderSubject, msg.Subject())
	dead.Header.Set(HeaderStreamSeq, strconv.FormatUint(md.Sequence.Stream, 10))
	if dead.Header.Get(jetstream.MsgIDHeader) == "" {
		// A re-published dead letter (after a lost PubAck) is then dropped.
		dead.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dead-%s-%d", md.Stream, md.Sequence.Stream))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.js.PublishMsg(ctx, dead); err != nil {
		it.log.Error().Str("error", store.Redact(err)).Msg("publishing the dead letter failed; will be redelivered")
		_ = msg.NakWithDelay(w.cfg.BackoffMin)
		return
	}
	_ = msg.Term()
	w.m.Request(it.subject, metrics.DeadLettered, "", time.Since(it.start), md.NumDelivered)
	it.log.Error().Str("error", store.Redact(cause)).Str("dead_letter_subject", dead.Subject).Uint64("deliveries", md.NumDelivered).
		Msg("request dead-lettered after its last delivery")
}

// requestLogger carries the request's identifiers, never its content.
func (w *Worker) requestLogger(p *conversion.Parsed, md *jetstream.MsgMetadata) zerolog.Logger {
	c := w.log.With().Str("subject", p.Subject).Uint64("stream_seq", md.Sequence.Stream).Uint64("delivery", md.NumDelivered)
	if p.OrgID != nil {
		c = c.Str("org_id", *p.OrgID)
	}
	if p.LeadID != nil {
		c = c.Str("lead_id", *p.LeadID)
	}
	if p.Key != nil {
		c = c.Str("idempotency_key", *p.Key)
	}
	return c.Logger()
}
