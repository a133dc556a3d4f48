package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/leadflow/leadflow/internal/conversion"
	"github.com/leadflow/leadflow/internal/event"
)

// Outcome is what processing a request did.
type Outcome struct {
	// Event is the type of the terminal event: lead.qualified, lead.qualify.rejected, ...
	Event string
	// Code is the rejection code, "" when accepted.
	Code string
	// Replayed is set when the request repeated an earlier one with the same
	// idempotency key and body: nothing was done but re-publishing its outcome.
	Replayed bool
	// Events is the number of events written to the outbox.
	Events int
}

// maxTxAttempts bounds how often one request's transaction is re-run after a
// serialization failure or deadlock before the error goes back to the caller.
const maxTxAttempts = 5

// Process applies one parsed request in one transaction: idempotency record,
// lead, records, notes and the events in the outbox. A rejection is an
// outcome, not an error; an error means nothing was committed and the request
// may be tried again.
func (s *Store) Process(ctx context.Context, p *conversion.Parsed) (Outcome, error) {
	for attempt := 1; ; attempt++ {
		out, err := s.process(ctx, p)
		if err == nil || !retryable(err) || attempt == maxTxAttempts {
			return out, err
		}
		time.Sleep(time.Duration(rand.IntN(5*attempt)+1) * time.Millisecond)
	}
}

// tx is one request's transaction and what it writes.
type tx struct {
	pgx.Tx
	p      *conversion.Parsed
	now    time.Time
	events []conversion.Event
}

func (s *Store) process(ctx context.Context, p *conversion.Parsed) (Outcome, error) {
	dbtx, err := s.pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return Outcome{}, fmt.Errorf("begin: %w", err)
	}
	defer dbtx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after commit
	t := &tx{Tx: dbtx, p: p, now: time.Now()}

	out, err := t.apply(ctx)
	if err != nil {
		return Outcome{}, err
	}
	if err := dbtx.Commit(ctx); err != nil {
		return Outcome{}, fmt.Errorf("commit: %w", err)
	}
	return out, nil
}

func (t *tx) apply(ctx context.Context) (Outcome, error) {
	p := t.p
	if !p.Readable() {
		// Nothing names the request: no idempotency record can hold it. Its
		// event id derives from its content, so that a redelivery publishes
		// the same event and JetStream drops the copy.
		id := uuid.NewSHA1(eventNamespace, append([]byte("unreadable\x00"), p.Hash...)).String()
		return t.rejectOnly(ctx, p.Invalid, id)
	}

	b := &pgx.Batch{}
	var inserted bool
	var stored struct {
		hash    []byte
		subject *string
		event   []byte
		eventID *uuid.UUID
	}
	b.Queue(`INSERT INTO idempotency_keys (org_id, key, subject, request_hash) VALUES ($1, $2, $3, $4)
		ON CONFLICT DO NOTHING RETURNING true`, *p.OrgID, *p.Key, p.Subject, p.Hash).
		QueryRow(func(r pgx.Row) error {
			err := r.Scan(&inserted)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			return err
		})
	// A separate statement, so that it sees a row that a concurrent
	// transaction committed while the insert waited for it.
	b.Queue(`SELECT request_hash, event_subject, event, event_id FROM idempotency_keys WHERE org_id = $1 AND key = $2`,
		*p.OrgID, *p.Key).QueryRow(func(r pgx.Row) error {
		return r.Scan(&stored.hash, &stored.subject, &stored.event, &stored.eventID)
	})
	var st *state
	if p.Request != nil {
		st = queueLoad(b, p.Request)
	}
	if err := t.SendBatch(ctx, b).Close(); err != nil {
		return Outcome{}, fmt.Errorf("load: %w", err)
	}

	if !inserted {
		if !bytes.Equal(stored.hash, p.Hash) {
			id := uuid.NewSHA1(eventNamespace, append([]byte("reused\x00"+*p.OrgID+"\x00"+*p.Key+"\x00"), p.Hash...)).String()
			return t.rejectOnly(ctx, conversion.KeyReused(*p.Key), id)
		}
		if stored.event == nil {
			return Outcome{}, fmt.Errorf("idempotency record %q of org %q has no outcome", *p.Key, *p.OrgID)
		}
		if err := t.replay(ctx, *stored.subject, stored.eventID.String(), stored.event); err != nil {
			return Outcome{}, err
		}
		return Outcome{Event: *stored.subject, Code: codeOf(*stored.subject, stored.event), Replayed: true, Events: 1}, nil
	}

	if p.Invalid != nil {
		return t.reject(ctx, p.Invalid)
	}
	in, err := st.input(t.now)
	if err != nil {
		return Outcome{}, err
	}
	draft, plan, rej := conversion.Decide(in)
	if rej != nil {
		return t.reject(ctx, rej)
	}
	if draft != nil {
		found, err := t.probe(ctx, p.Request.OrgID, draft.Probes)
		if err != nil {
			return Outcome{}, err
		}
		if plan, rej = draft.Resolve(found); rej != nil {
			return t.reject(ctx, rej)
		}
	}
	return t.write(ctx, plan)
}

// eventNamespace seeds the name-based UUIDs of events that must come out the
// same on every delivery of the same request.
var eventNamespace = uuid.MustParse("0b6f8a52-6d0e-4a8e-9a3b-6c1f2e7d9f10")

func newID() string { return uuid.Must(uuid.NewV7()).String() }

func codeOf(subject string, event []byte) string {
	if !strings.HasSuffix(subject, ".rejected") {
		return ""
	}
	i := bytes.Index(event, []byte(`"code":"`))
	if i < 0 {
		return ""
	}
	rest := event[i+8:]
	return string(rest[:bytes.IndexByte(rest, '"')])
}

func (t *tx) meta() event.Meta {
	m := event.Meta{Time: t.now}
	if t.p.LeadID != nil {
		m.LeadID = *t.p.LeadID
	}
	if t.p.OrgID != nil {
		m.OrgID = *t.p.OrgID
	}
	if t.p.Key != nil {
		m.CorrelationID = *t.p.Key
	}
	return m
}

// rejectOnly writes a rejection that no idempotency record can hold.
func (t *tx) rejectOnly(ctx context.Context, rej *conversion.Rejection, id string) (Outcome, error) {
	ev := conversion.RejectionEvent(t.p.Subject, t.p.OrgID, t.p.LeadID, t.p.Key, rej, id)
	b := &pgx.Batch{}
	if _, err := t.queueOutbox(b, []conversion.Event{ev}); err != nil {
		return Outcome{}, err
	}
	if err := t.SendBatch(ctx, b).Close(); err != nil {
		return Outcome{}, fmt.Errorf("write rejection: %w", err)
	}
	return Outcome{Event: ev.Type, Code: rej.Code, Events: 1}, nil
}

// reject records a rejection against the request's idempotency key.
func (t *tx) reject(ctx context.Context, rej *conversion.Rejection) (Outcome, error) {
	ev := conversion.RejectionEvent(t.p.Subject, t.p.OrgID, t.p.LeadID, t.p.Key, rej, newID())
	b := &pgx.Batch{}
	last, err := t.queueOutbox(b, []conversion.Event{ev})
	if err != nil {
		return Outcome{}, err
	}
	t.queueRecord(b, ev, last)
	if err := t.SendBatch(ctx, b).Close(); err != nil {
		return Outcome{}, fmt.Errorf("write rejection: %w", err)
	}
	return Outcome{Event: ev.Type, Code: rej.Code, Events: 1}, nil
}

func (t *tx) replay(ctx context.Context, subject, id string, payload []byte) error {
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO outbox (org_id, event_id, subject, payload) VALUES ($1, $2, $3, $4)`, t.p.OrgID, id, subject, payload)
	b.Queue(`SELECT pg_notify('leadflow_outbox', '')`)
	if err := t.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("replay outcome: %w", err)
	}
	return nil
}

// queueOutbox queues the events' outbox rows and returns the last one's payload.
func (t *tx) queueOutbox(b *pgx.Batch, events []conversion.Event) ([]byte, error) {
	m := t.meta()
	ids := make([]string, len(events))
	subjects := make([]string, len(events))
	payloads := make([][]byte, len(events))
	for i, e := range events {
		raw, err := event.Marshal(m, e.Type, e.ID, e.Data)
		if err != nil {
			return nil, fmt.Errorf("render %s event: %w", e.Type, err)
		}
		ids[i], subjects[i], payloads[i] = e.ID, e.Type, raw
	}
	b.Queue(`INSERT INTO outbox (org_id, event_id, subject, payload)
		SELECT $1, unnest($2::uuid[]), unnest($3::text[]), unnest($4::bytea[])`, t.p.OrgID, ids, subjects, payloads)
	b.Queue(`SELECT pg_notify('leadflow_outbox', '')`)
	return payloads[len(payloads)-1], nil
}

// queueRecord stores the terminal event against the idempotency key.
func (t *tx) queueRecord(b *pgx.Batch, terminal conversion.Event, payload []byte) {
	outcome := terminal.Type
	if c, ok := terminal.Data["code"].(string); ok {
		outcome = c
	}
	b.Queue(`UPDATE idempotency_keys SET outcome = $3, event_subject = $4, event = $5, event_id = $6
		WHERE org_id = $1 AND key = $2`, *t.p.OrgID, *t.p.Key, outcome, terminal.Type, payload, terminal.ID)
}
