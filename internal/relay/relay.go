// Package relay publishes the outbox: the events that committed transactions
// wrote, in commit order per lead, each exactly once by id.
package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
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
	// Batch is how many events are published before they are marked (deleted).
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
		// The lock is the connection's: a connection that cannot unlock must
		// not go back to the pool still holding it.
		uctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, int64(leaderLock)); err != nil {
			conn.Conn().Close(uctx) //nolint:errcheck
		}
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer conn.Exec(context.Background(), "UNLISTEN "+Channel) //nolint:errcheck
	r.log.Info().Msg("relay publishing")

	bo := r.backoff()
	for {
		n, err := r.flush(ctx)
		if ctx.Err() != nil {
			fctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
			defer cancel()
			for fctx.Err() == nil {
				if n, err := r.flush(fctx); err != nil || n == 0 {
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
		if n == r.cfg.Batch {
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

// flush publishes up to one batch of the oldest events and deletes those
// JetStream acknowledged. It returns how many it published.
func (r *Relay) flush(ctx context.Context) (int, error) {
	rows, err := r.pool.Query(ctx, `SELECT seq, event_id::text, subject, payload, headers FROM outbox ORDER BY seq LIMIT $1`, r.cfg.Batch)
	if err != nil {
		return 0, fmt.Errorf("read outbox: %w", err)
	}
	type row struct {
		seq     int64
		id, sub string
		payload []byte
		headers map[string]string
	}
	var batch []row
	for rows.Next() {
		var x row
		if err := rows.Scan(&x.seq, &x.id, &x.sub, &x.payload, &x.headers); err != nil {
			rows.Close()
			return 0, fmt.Errorf("read outbox: %w", err)
		}
		batch = append(batch, x)
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read outbox: %w", err)
	}
	if len(batch) == 0 {
		return 0, nil
	}

	futures := make([]jetstream.PubAckFuture, 0, len(batch))
	var pubErr error
	for _, x := range batch {
		msg := &nats.Msg{Subject: r.topo.Subject(x.sub), Data: x.payload, Header: nats.Header{}}
		for k, v := range x.headers {
			msg.Header.Set(k, v)
		}
		msg.Header.Set(jetstream.MsgIDHeader, x.id)
		f, err := r.js.PublishMsgAsync(msg)
		if err != nil {
			pubErr = err
			break
		}
		futures = append(futures, f)
	}
	// Only a prefix of the batch that JetStream acknowledged is deleted, so
	// that a failure re-publishes from the first unacknowledged event on, in
	// order; what was stored already is dropped as a duplicate.
	timeout := time.NewTimer(r.cfg.PublishTimeout)
	defer timeout.Stop()
	acked := 0
wait:
	for _, f := range futures {
		select {
		case <-f.Ok():
			acked++
		case err := <-f.Err():
			pubErr = err
			break wait
		case <-timeout.C:
			pubErr = errors.New("timed out waiting for PubAcks")
			break wait
		case <-ctx.Done():
			pubErr = ctx.Err()
			break wait
		}
	}
	if acked > 0 {
		if r.afterPublish != nil {
			if err := r.afterPublish(); err != nil {
				return 0, err
			}
		}
		seqs := make([]int64, acked)
		for i := range seqs {
			seqs[i] = batch[i].seq
		}
		if _, err := r.pool.Exec(ctx, `DELETE FROM outbox WHERE seq = ANY($1)`, seqs); err != nil {
			return 0, fmt.Errorf("mark published: %w", err)
		}
		for _, x := range batch[:acked] {
			r.m.Published(x.sub, 1)
		}
	}
	if pubErr != nil {
		return acked, fmt.Errorf("publish: %w", pubErr)
	}
	return acked, nil
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
