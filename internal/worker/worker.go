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
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/leadflow/leadflow/internal/conversion"
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
	// Workers is how many requests are handled at once.
	Workers int
	// MaxDeliver is how many deliveries a request gets before it is dead-lettered.
	MaxDeliver int
	// AckWait is the consumer's ack wait; a request waiting for the database
	// is reported in progress well within it.
	AckWait time.Duration
	// BackoffMin and BackoffMax bound the redelivery delay after a failure.
	BackoffMin, BackoffMax time.Duration
}

// Worker consumes requests.
type Worker struct {
	cfg   Config
	js    jetstream.JetStream
	store *store.Store
	topo  stream.Topology
	log   zerolog.Logger

	// afterCommit, when set, runs after a request's transaction committed
	// and before it is acknowledged; returning false leaves it unacknowledged,
	// as a crash there would.
	afterCommit func(jetstream.Msg) bool
}

// New returns a worker; Run starts it.
func New(cfg Config, js jetstream.JetStream, st *store.Store, topo stream.Topology, log zerolog.Logger) *Worker {
	return &Worker{cfg: cfg, js: js, store: st, topo: topo, log: log.With().Str("component", "worker").Logger()}
}

// Run handles requests until ctx is done. Then it stops fetching, finishes the
// requests in flight (each within the ack wait) and returns.
func (w *Worker) Run(ctx context.Context) error {
	cons, err := w.js.Consumer(ctx, w.cfg.Stream, w.cfg.Consumer)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", w.cfg.Consumer, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(w.cfg.Workers))
	if err != nil {
		return fmt.Errorf("consume %s: %w", w.cfg.Consumer, err)
	}
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()

	sem := make(chan struct{}, w.cfg.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			w.log.Warn().Err(err).Msg("fetching requests failed; retrying")
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			w.handle(ctx, msg)
		}()
	}
}

// handle takes one request to a terminal state: acknowledged (converted or
// rejected), scheduled for redelivery, or dead-lettered. shutdown only stops
// waiting for an unreachable database; work under way is finished.
func (w *Worker) handle(shutdown context.Context, msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		w.log.Error().Err(err).Str("subject", msg.Subject()).Msg("message without JetStream metadata; terminated")
		_ = msg.Term()
		return
	}
	subject := w.topo.Unprefixed(msg.Subject())
	p := conversion.Parse(subject, msg.Data())
	log := w.requestLogger(p, md)

	if int(md.NumDelivered) > w.cfg.MaxDeliver {
		w.deadLetter(msg, md, subject, fmt.Errorf("delivered %d times without an outcome", md.NumDelivered), log)
		return
	}

	start := time.Now()
	out, err := w.process(shutdown, msg, p, log)
	if err != nil {
		if int(md.NumDelivered) >= w.cfg.MaxDeliver {
			w.deadLetter(msg, md, subject, err, log)
			return
		}
		delay := w.redeliveryDelay(int(md.NumDelivered))
		log.Warn().Err(err).Dur("retry_in", delay).Msg("request failed; will be redelivered")
		_ = msg.NakWithDelay(delay)
		return
	}
	if w.afterCommit != nil && !w.afterCommit(msg) {
		return
	}
	if err := msg.Ack(); err != nil {
		// Committed: a redelivery replays the recorded outcome.
		log.Warn().Err(err).Msg("ack failed after commit")
	}
	ev := log.Info().Str("outcome", out.Event).Dur("took", time.Since(start))
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
		if err == nil || !store.Unavailable(err) || waits == 3 {
			return out, err
		}
		log.Warn().Err(err).Msg("database unavailable; holding the request until it is back")
		if !w.waitForDatabase(shutdown, msg, log) {
			return out, err
		}
	}
}

func (w *Worker) processOnce(shutdown context.Context, p *conversion.Parsed) (store.Outcome, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(shutdown), w.cfg.AckWait)
	defer cancel()
	return w.store.Process(ctx, p)
}

// waitForDatabase holds msg until the database answers; false when shut down.
func (w *Worker) waitForDatabase(shutdown context.Context, msg jetstream.Msg, log zerolog.Logger) bool {
	b := w.newBackoff()
	for {
		_ = msg.InProgress()
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
			log.Info().Msg("database reachable again")
			_ = msg.InProgress()
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
func (w *Worker) deadLetter(msg jetstream.Msg, md *jetstream.MsgMetadata, subject string, cause error, log zerolog.Logger) {
	dead := &nats.Msg{Subject: w.topo.DeadLetterSubject(subject), Data: msg.Data(), Header: nats.Header{}}
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
		log.Error().Err(err).Msg("publishing the dead letter failed; will be redelivered")
		_ = msg.NakWithDelay(w.cfg.BackoffMin)
		return
	}
	_ = msg.Term()
	log.Error().Err(cause).Str("dead_letter_subject", dead.Subject).Uint64("deliveries", md.NumDelivered).
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
