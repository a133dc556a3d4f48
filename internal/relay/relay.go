// Package relay publishes the outbox: the events that committed transactions
// wrote, in commit order per lead, each exactly once by id.
package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/leadflow/leadflow/internal/metrics"
	"github.com/leadflow/leadflow/internal/store"
	"github.com/leadflow/leadflow/internal/stream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// leaderLock is the session advisory lock held by the one relay that publishes.
// Replicas stand by, so that events of one lead are never published by two
// relays at once and out of order.
const leaderLock = 0x6c656164666c6f77 // "leadflow"

// Channel is the LISTEN/NOTIFY channel a committing transaction notifies.
const Channel = "leadflow_outbox"

// Config tunes a relay.
type Config struct {
	// Batch is about how many events one round publishes before their rows
	// are deleted (a transaction's row is read whole), and how many may
	// await their PubAcks at once.
	Batch int
	// Poll is how often the outbox is read when no notification arrives.
	Poll time.Duration
	// MaxBackoff is the longest wait before retrying after a failure.
	MaxBackoff time.Duration
	// PublishTimeout bounds the wait for one batch's PubAcks.
	PublishTimeout time.Duration
}

// Relay moves events from the outbox to JetStream.
type Relay struct {
	pool *pgxpool.Pool
	js   jetstream.JetStream
	topo stream.Topology
	cfg  Config
	m    *metrics.Metrics
	log  zerolog.Logger

	// afterPublish, when set, runs after a batch was acknowledged by
	// JetStream and before it is deleted; an error stops the relay there.
	afterPublish func() error
}

// New returns a relay; Run starts it.
// m may be nil.
func New(pool *pgxpool.Pool, js jetstream.JetStream, topo stream.Topology, cfg Config, m *metrics.Metrics, log zerolog.Logger) *Relay {
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = 10 * time.Second
	}
	return &Relay{pool: pool, js: js, topo: topo, cfg: cfg, m: m, log: log.With().Str("component", "relay").Logger()}
}

// Run publishes until ctx is done, then publishes what is left (bounded by
// flushTimeout) and returns. Only one relay per database publishes at a time;
// the others wait to take over.
func (r *Relay) Run(ctx context.Context, flushTimeout time.Duration) error {
	bo := r.backoff()
	for ctx.Err() == nil {
		err := r.lead(ctx, flushTimeout)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			r.log.Warn().Str("error", store.Redact(err)).Msg("relay stopped publishing; retrying")
		}
		sleep(ctx, bo.NextBackOff())
	}
	return nil
}

// lead takes the leader lock and publishes while it holds it.
func (r *Relay) lead(ctx context.Context, flushTimeout time.Duration) error {
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()
	var leader bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(leaderLock)).Scan(&leader); err != nil {
		return fmt.Errorf("take leader lock: %w", err)
	}
	if !leader {
		sleep(ctx, r.cfg.Poll)
		return nil
	}
	defer func() {
		// The lock and the settings are the connection's: a connection that
		// cannot give them up must not go back to the pool with them.
		uctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, fmt.Sprintf("SELECT pg_advisory_unlock(%d); RESET plan_cache_mode; RESET enable_seqscan; UNLISTEN *",
			int64(leaderLock))); err != nil {
			conn.Conn().Close(uctx) //nolint:errcheck
		}
	}()
	// The leader reads and deletes on its own connection, with plans made
	// once: both statements have the primary key as their only way in.
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; LISTEN "+Channel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	r.log.Info().Msg("relay publishing")

	bo := r.backoff()
	for {
		dropNotifications(conn.Conn())
		_, more, err := r.flush(ctx, conn.Conn())
		if ctx.Err() != nil {
			fctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
			defer cancel()
			for fctx.Err() == nil {
				if n, _, err := r.flush(fctx, conn.Conn()); err != nil || n == 0 {
					return err
				}
			}
			return nil
		}
		if err != nil {
			// A broken connection loses the leader lock: start over.
			if conn.Conn().IsClosed() {
				return err
			}
			r.log.Warn().Str("error", store.Redact(err)).Msg("publishing the outbox failed; retrying")
			sleep(ctx, bo.NextBackOff())
			continue
		}
		bo.Reset()
		if more {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, r.cfg.Poll)
		_, err = conn.Conn().WaitForNotification(wctx)
		cancel()
		if err != nil && ctx.Err() == nil && wctx.Err() == nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
	}
}

// dropNotifications discards the notifications already received: each
// followed a commit that the read about to be sent will see, and would only
// wake the relay for a read that finds nothing. Those still on their way
// are left to wake it.
func dropNotifications(conn *pgx.Conn) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for {
		// With a done context it returns at once: a received notification,
		// or none without reading from the connection.
		if n, _ := conn.WaitForNotification(done); n == nil {
			return
		}
	}
}

// readOutbox reads the oldest outbox rows, in order, until they hold at
// least $1 events (or $1 rows). A row holds the events of one transaction
// for one org; it is read whole.
const readOutbox = `SELECT seq, event_ids::text[], subjects, payloads, headers::text[] FROM (
	SELECT seq, event_ids, subjects, payloads, headers,
		sum(cardinality(event_ids)) OVER (ORDER BY seq) - cardinality(event_ids) AS before
	FROM outbox ORDER BY seq LIMIT $1) o
WHERE before < $1 ORDER BY seq`

// entry is one outbox row.
type entry struct {
	seq      int64
	ids      []string
	subjects []string
	payloads [][]byte
	headers  []*string
}

// flush publishes the events of the oldest outbox rows, about one batch of
// them, with at most one batch awaiting PubAcks at a time, and deletes the
// rows whose every event JetStream acknowledged. It returns how many events
// were acknowledged, and whether more rows may be waiting.
func (r *Relay) flush(ctx context.Context, conn *pgx.Conn) (int, bool, error) {
	// A statement cut short closes its connection, and with it the leader
	// lock: statements run to their end however the publishing ends.
	dbctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
	defer cancel()
	rows, err := conn.Query(dbctx, readOutbox, r.cfg.Batch)
	if err != nil {
		return 0, false, fmt.Errorf("read outbox: %w", err)
	}
	batch, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (entry, error) {
		var e entry
		err := row.Scan(&e.seq, &e.ids, &e.subjects, &e.payloads, &e.headers)
		return e, err
	})
	if err != nil {
		return 0, false, fmt.Errorf("read outbox: %w", err)
	}
	if len(batch) == 0 {
		return 0, false, nil
	}

	// Only the rows whose events were all acknowledged are deleted, so that a
	// failure re-publishes from the first row not wholly acknowledged, in
	// order; what was stored already is dropped as a duplicate.
	timeout := time.NewTimer(r.cfg.PublishTimeout)
	defer timeout.Stop()
	var futures []jetstream.PubAckFuture
	acked := 0
	await := func(n int) error {
		for ; acked < n; acked++ {
			select {
			case <-futures[acked].Ok():
			case err := <-futures[acked].Err():
				return err
			case <-timeout.C:
				return errors.New("timed out waiting for PubAcks")
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	var pubErr error
	ends := make([]int, 0, len(batch)) // per row, the futures published up to its last event
publish:
	for _, e := range batch {
		for i := range e.ids {
			if len(futures)-acked >= r.cfg.Batch {
				if pubErr = await(acked + 1); pubErr != nil {
					break publish
				}
			}
			f, err := r.js.PublishMsgAsync(r.message(e, i))
			if err != nil {
				pubErr = err
				break publish
			}
			futures = append(futures, f)
		}
		ends = append(ends, len(futures))
	}
	if pubErr == nil {
		pubErr = await(len(futures))
	}
	done := 0
	for done < len(ends) && ends[done] <= acked {
		done++
	}
	if done > 0 {
		if r.afterPublish != nil {
			if err := r.afterPublish(); err != nil {
				return 0, false, err
			}
		}
		seqs := make([]int64, done)
		for i := range seqs {
			seqs[i] = batch[i].seq
		}
		if _, err := conn.Exec(dbctx, `DELETE FROM outbox WHERE seq = ANY($1)`, seqs); err != nil {
			return 0, false, fmt.Errorf("mark published: %w", err)
		}
		for _, e := range batch[:done] {
			for _, sub := range e.subjects {
				r.m.Published(sub, 1)
			}
		}
	}
	if pubErr != nil {
		return acked, false, fmt.Errorf("publish: %w", pubErr)
	}
	// Every event read was published and acknowledged.
	return acked, len(batch) == r.cfg.Batch || acked >= r.cfg.Batch, nil
}

// message is the i-th event of e as it is published: its id is the
// deduplication id, so that an event published again is stored once.
func (r *Relay) message(e entry, i int) *nats.Msg {
	msg := &nats.Msg{Subject: r.topo.Subject(e.subjects[i]), Data: e.payloads[i], Header: nats.Header{}}
	if h := e.headers[i]; h != nil {
		var headers map[string]string
		if err := json.Unmarshal([]byte(*h), &headers); err != nil {
			// Written by leadflow as a JSON object of strings: this cannot
			// happen short of someone editing the outbox by hand.
			r.log.Warn().Int64("seq", e.seq).Msg("outbox event headers are not a JSON object of strings; published without them")
		}
		for k, v := range headers {
			msg.Header.Set(k, v)
		}
	}
	msg.Header.Set(jetstream.MsgIDHeader, e.ids[i])
	return msg
}

func (r *Relay) backoff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = r.cfg.MaxBackoff
	b.MaxElapsedTime = 0
	b.Reset()
	return b
}

// sleep waits d or until ctx is done; it reports whether ctx is done.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return false
	case <-ctx.Done():
		return true
	}
}
