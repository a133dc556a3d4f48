package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// txn is a transaction on a connection of its own whose BEGIN rides in its
// first round trip, and whose COMMIT in its last (write queues it): a
// transaction of pgx.Tx sends each in a round trip of its own, and a
// processing transaction makes only four or five.
type txn struct {
	conn *pgxpool.Conn
	// begin is queued ahead of the next batch sent, until it is sent.
	begin string
	// rehearsal: the last round trip rolls the transaction back rather
	// than commit it (Store.Warm).
	rehearsal bool
	// ended is set once the last round trip's COMMIT (ROLLBACK for a
	// rehearsal) succeeded.
	ended bool
}

// begin acquires a connection for a transaction that opens with sql
// (BEGIN, with its options).
func (s *Store) begin(ctx context.Context, sql string) (*txn, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	return &txn{conn: conn, begin: sql}, nil
}

// Conn is the transaction's connection.
func (t *txn) Conn() *pgx.Conn { return t.conn.Conn() }

// SendBatch sends b, opened by the transaction's BEGIN if it is not sent yet.
func (t *txn) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	t.queueBegin(b)
	return t.conn.SendBatch(ctx, b)
}

// queueBegin puts the transaction's BEGIN ahead of b's statements if it is
// not sent yet, and returns the number of statements it put there.
func (t *txn) queueBegin(b *pgx.Batch) int {
	if t.begin == "" {
		return 0
	}
	b.QueuedQueries = slices.Insert(b.QueuedQueries, 0, &pgx.QueuedQuery{SQL: t.begin})
	t.begin = ""
	return 1
}

// Exec runs sql in the transaction, which must have begun.
func (t *txn) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if t.begin != "" {
		return pgconn.CommandTag{}, fmt.Errorf("exec before begin: %s", sql)
	}
	return t.conn.Exec(ctx, sql, args...)
}

// rollbackTimeout bounds the wait for a rollback; the connection is closed
// after it, which ends the transaction as well.
const rollbackTimeout = 5 * time.Second

// finish is the statement that ends the transaction in its last round trip.
func (t *txn) finish() string {
	if t.rehearsal {
		return "ROLLBACK"
	}
	return "COMMIT"
}

// end rolls the transaction back unless it ended, and gives its connection
// back to the pool, which closes it if the rollback failed.
func (t *txn) end(ctx context.Context) {
	if !t.ended && t.begin == "" {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		_, _ = t.conn.Exec(ctx, "ROLLBACK")
		cancel()
	}
	t.conn.Release()
}
