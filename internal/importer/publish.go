package importer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/leadflow/leadflow/internal/conversion"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"
)

// publishAndWait publishes the valid rows and waits for their outcomes.
func (im *importer) publishAndWait(ctx context.Context, nc *nats.Conn) (err error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(im.opts.InFlight),
		jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		return err
	}
	requests, err := js.Stream(ctx, im.cfg.RequestsStream)
	if err != nil {
		return fmt.Errorf("stream %s: %w (leadflow creates its streams when it starts: is it running against this NATS?)", im.cfg.RequestsStream, err)
	}
	events, err := js.Stream(ctx, im.cfg.EventsStream)
	if err != nil {
		return fmt.Errorf("stream %s: %w (leadflow creates its streams when it starts: is it running against this NATS?)", im.cfg.EventsStream, err)
	}
	// An outcome that JetStream kept from this import was stored at most a
	// duplicate window before its first publish: the history is read from
	// there (less a minute for the clocks' disagreement).
	window := max(requests.CachedInfo().Config.Duplicates, events.CachedInfo().Config.Duplicates)
	im.historyFrom = time.Now().Add(-window - time.Minute)
	results, err := createResults(im.opts.Results)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, results.close()) }()
	im.tracker.setResults(results)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	im.fail = func(err error) { cancel(err) }

	// Outcomes are followed from before the first publish, so that none is
	// missed; what was stored earlier is looked up later, if needed.
	defer im.tracker.stop()
	cc, err := im.follow(ctx, js, events.CachedInfo().State.LastSeq)
	if err != nil {
		return err
	}
	defer cc.Stop()

	im.progress.total.Store(int64(im.scan.rows - im.scan.invalid))
	im.progress.setPhase(phasePublishing)
	published := time.Now()
	err = im.publishFile(ctx, js)
	im.sum.Publishing = time.Since(published)
	if err != nil {
		im.sum.Missing, _ = im.tracker.waiting()
		return im.stopped(ctx, err)
	}
	if err := im.wait(ctx, js); err != nil {
		im.sum.Missing, _ = im.tracker.waiting()
		return im.stopped(ctx, err)
	}
	if im.sum.Missing, _ = im.tracker.waiting(); im.sum.Missing == 0 {
		return nil
	}
	if err := im.recordMissing(ctx); err != nil {
		return err
	}
	if im.sum.MissingDropped > 0 {
		return fmt.Errorf("%d rows have no outcome after %s without one, %d of them dropped by JetStream as duplicates of "+
			"requests with the same idempotency key published moments before (the same file imported into another org, or with other flags?): "+
			"is leadflow running? Importing the same file again resumes", im.sum.Missing, im.opts.Wait, im.sum.MissingDropped)
	}
	return fmt.Errorf("%d rows have no outcome after %s without one: is leadflow running? Importing the same file again resumes",
		im.sum.Missing, im.opts.Wait)
}

// stopped explains an import that ended early.
func (im *importer) stopped(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	return fmt.Errorf("import stopped with %d rows waiting for their outcome (importing the same file again resumes): %w", im.sum.Missing, err)
}

// publishFile reads the file again and publishes each valid row, with at
// most InFlight publishes awaiting their acknowledgement.
func (im *importer) publishFile(ctx context.Context, js jetstream.JetStream) error {
	h := sha256.New()
	rows, b, closer, err := im.open(im.scan.hash, h)
	if err != nil {
		return err
	}
	defer closer.Close()

	var limiter *rate.Limiter
	if im.opts.Rate > 0 {
		limiter = rate.NewLimiter(rate.Limit(im.opts.Rate), max(1, int(im.opts.Rate/10)))
	}
	subject := im.cfg.SubjectPrefix + conversion.SubjectQualify
	futures := make(chan published, im.opts.InFlight)
	acked := make(chan error, 1)
	go func() { acked <- im.awaitAcks(ctx, js, futures) }()
	err = func() error {
		defer close(futures)
		for {
			rec, err := rows.next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", im.path, err)
			}
			req := b.build(rec)
			if im.scan.bad.has(rec.line) {
				if err := im.tracker.invalid(rec.line, req.key, validate(req)); err != nil {
					return err
				}
				continue
			}
			if len(req.problems) > 0 {
				return fmt.Errorf("%s changed since it was validated (line %d)", im.path, rec.line)
			}
			im.tracker.add(req.org, req.key, rec.line)
			if limiter != nil {
				if err := limiter.Wait(ctx); err != nil {
					return err
				}
			}
			msg := &nats.Msg{Subject: subject, Data: req.body, Header: nats.Header{}}
			msg.Header.Set(jetstream.MsgIDHeader, req.key)
			f, err := publishAsync(ctx, js, msg)
			if err != nil {
				return fmt.Errorf("publish row %d: %w", rec.line, err)
			}
			select {
			case futures <- published{f, rec.line}:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}()
	if aerr := <-acked; err == nil {
		err = aerr
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(h.Sum(nil), im.scan.hash) {
		return fmt.Errorf("%s changed while it was imported", im.path)
	}
	return nil
}

// publishAsync publishes msg, waiting while InFlight publishes are
// unacknowledged.
func publishAsync(ctx context.Context, js jetstream.JetStream, msg *nats.Msg) (jetstream.PubAckFuture, error) {
	for {
		f, err := js.PublishMsgAsync(msg, jetstream.WithStallWait(time.Second))
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return f, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// published is a row's publish awaiting its acknowledgement.
type published struct {
	f    jetstream.PubAckFuture
	line int
}

// awaitAcks waits for each publish's acknowledgement in order; a publish that
// failed is retried with the same message id, which JetStream stores once.
func (im *importer) awaitAcks(ctx context.Context, js jetstream.JetStream, futures <-chan published) error {
	var failed error
	for p := range futures {
		f := p.f
		if failed != nil {
			continue
		}
		var ack *jetstream.PubAck
		select {
		case ack = <-f.Ok():
		case err := <-f.Err():
			m := f.Msg()
			ack, failed = backoff.RetryWithData(func() (*jetstream.PubAck, error) {
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				return js.PublishMsg(pctx, &nats.Msg{Subject: m.Subject, Data: m.Data, Header: m.Header})
			}, backoff.WithContext(backoff.WithMaxRetries(backoff.NewExponentialBackOff(), 5), ctx))
			if failed != nil {
				failed = fmt.Errorf("publish %s: %w (first attempt: %v)", m.Header.Get(jetstream.MsgIDHeader), failed, err)
				continue
			}
		case <-ctx.Done():
			failed = ctx.Err()
			continue
		}
		im.sum.Published++
		if ack.Duplicate {
			im.sum.Duplicates++
			im.dropped.set(p.line)
		}
		im.progress.published.Add(1)
	}
	return failed
}

// wait waits for the outcomes of the published rows. When they stop arriving
// for Settle, the ones still missing are looked up in the events stream's
// history, once; then it waits until none has arrived for Wait. When every
// request was one JetStream had already, this run causes no new outcome, and
// the history is read at once.
func (im *importer) wait(ctx context.Context, js jetstream.JetStream) error {
	im.progress.setPhase(phaseWaiting)
	since := time.Now()
	rerun := im.sum.Published > 0 && im.sum.Duplicates == im.sum.Published
	looked := false
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		n, last := im.tracker.waiting()
		if n == 0 {
			return nil
		}
		if last.After(since) {
			since = last
		}
		idle := time.Since(since)
		if !looked && (idle >= im.opts.Settle || rerun) {
			looked = true
			im.progress.setPhase(phaseLookingUp)
			lctx, cancel := context.WithTimeout(ctx, im.opts.Wait)
			err := im.lookUp(lctx, js)
			cancel()
			im.progress.setPhase(phaseWaiting)
			if err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			since = time.Now()
			continue
		}
		if idle >= im.opts.Wait {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-im.tracker.changed:
		case <-tick.C:
		}
	}
}

// droppedMessage explains a row without an outcome whose request JetStream
// took for a duplicate.
const droppedMessage = "JetStream dropped the request as a duplicate: a request with the same idempotency key " +
	"(its Nats-Msg-Id) was published within the duplicate window, and no outcome arrived for this org and key. " +
	"If the same file was just imported into another org or with other flags, import again after the window (LEADFLOW_DUPLICATE_WINDOW)"

// recordMissing reads the file a last time to write the rows without an
// outcome to the results, each with its key, and to count those whose
// request JetStream dropped as a duplicate.
func (im *importer) recordMissing(ctx context.Context) error {
	rows, b, closer, err := im.open(im.scan.hash, nil)
	if err != nil {
		return err
	}
	defer closer.Close()
	for ctx.Err() == nil {
		rec, err := rows.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", im.path, err)
		}
		if im.scan.bad.has(rec.line) {
			continue
		}
		req := b.build(rec)
		msg := ""
		if im.dropped.has(rec.line) {
			msg = droppedMessage
		}
		missing, err := im.tracker.missing(req.org, req.key, rec.line, msg)
		if err != nil {
			return err
		}
		if missing && msg != "" {
			im.sum.MissingDropped++
		}
	}
	return ctx.Err()
}
