package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
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
	// Err is set when the request's own writes failed within a batch that
	// committed the others: nothing was written for it, and it may be tried
	// again on its own.
	Err error
	// Deferred is set when the request was left out of its batch because it
	// shares a lead, an idempotency key or a new record's duplicate key with
	// an earlier request of the same batch: nothing was written for it, and
	// it must be processed again on its own.
	Deferred bool
}

// maxTxAttempts bounds how often a transaction is re-run after a
// serialization failure or deadlock before the error goes back to the caller.
const maxTxAttempts = 5

// Process applies one parsed request in one transaction. A rejection is an
// outcome, not an error; an error means nothing was committed and the
// request may be tried again.
func (s *Store) Process(ctx context.Context, p *conversion.Parsed) (Outcome, error) {
	outs, err := s.ProcessBatch(ctx, []*conversion.Parsed{p})
	if err != nil {
		return Outcome{}, err
	}
	return outs[0], nil
}

// ProcessBatch applies several requests in one transaction, in a fixed
// number of round trips whatever their count: each request is decided on its
// own, as Process would, and the transaction commits all of them or none. A
// request that would race another of the same batch comes back Deferred. An
// error means nothing was committed: the caller should then process the
// requests one by one, so that one bad request cannot hold back the others.
func (s *Store) ProcessBatch(ctx context.Context, ps []*conversion.Parsed) ([]Outcome, error) {
	for attempt := 1; ; attempt++ {
		outs, err := s.processBatch(ctx, ps)
		if err == nil || !retryable(err) || attempt == maxTxAttempts {
			return outs, err
		}
		time.Sleep(time.Duration(rand.IntN(5*attempt)+1) * time.Millisecond)
	}
}

// request is one request's progress through a transaction.
type request struct {
	p   *conversion.Parsed
	now time.Time

	// Loaded in the first round trip. fresh: no outcome is recorded under
	// its key.
	fresh  bool
	stored storedOutcome
	st     *state

	// Decided.
	draft  *conversion.Draft
	plan   *conversion.Plan
	rej    *conversion.Rejection
	rejID  string // the rejection event's id
	record bool   // the outcome is recorded against the idempotency key
	replay bool
	found  []conversion.Match
	hits   [][]conversion.Match // per probe, while its lookups run

	out Outcome

	// preview is set for a request decided without writing or locking,
	// outside a processing transaction: its statements are planned with
	// their values, as every statement outside one is (genericPlans).
	preview bool
}

func (s *Store) processBatch(ctx context.Context, ps []*conversion.Parsed) ([]Outcome, error) {
	tx, err := s.begin(ctx, "BEGIN")
	if err != nil {
		return nil, err
	}
	defer tx.end(ctx)
	return process(ctx, tx, ps)
}

// process applies ps in tx, which has not begun.
func process(ctx context.Context, tx *txn, ps []*conversion.Parsed) ([]Outcome, error) {
	now := time.Now()
	reqs := make([]*request, len(ps))
	keys, leads := map[string]bool{}, map[string]bool{}
	for i, p := range ps {
		r := &request{p: p, now: now}
		reqs[i] = r
		// Two requests of one batch for the same key or lead would both read
		// the state before either wrote it: the later waits for a batch of its own.
		if p.Readable() {
			k := lockKey(*p.OrgID, *p.Key)
			r.out.Deferred = keys[k]
			keys[k] = true
		}
		if p.Request != nil && !r.out.Deferred {
			l := lockKey(p.Request.OrgID, p.Request.Lead.ID)
			r.out.Deferred = leads[l]
			leads[l] = true
		}
	}
	active := slices.DeleteFunc(slices.Clone(reqs), func(r *request) bool { return r.out.Deferred })

	if err := load(ctx, tx, active); err != nil {
		return nil, err
	}
	for _, r := range active {
		if err := r.decide(); err != nil {
			return nil, err
		}
	}
	if err := probe(ctx, tx, active); err != nil {
		return nil, err
	}

	w := newWrites()
	var writers []*request
	for _, r := range reqs {
		if r.out.Deferred {
			continue
		}
		if err := r.addWrite(w); err != nil {
			return nil, err
		}
		w.own(len(writers))
		writers = append(writers, r)
	}
	if tx.rehearsal {
		w.dry()
	}
	if err := write(ctx, tx, writers, w); err != nil {
		return nil, err
	}
	outs := make([]Outcome, len(reqs))
	for i, r := range reqs {
		outs[i] = r.out
	}
	return outs, nil
}

// write writes the batch in one round trip. When a statement fails for a
// request's data (a constraint, a trigger, a value out of range), what
// preceded it stays, and that statement alone is written again for halves of
// its requests (apart.halve), until the requests at fault fail alone. They
// come back with Err and nothing of theirs written, and the batch
// goes on without them from the next statement; or, should they have rows in
// an earlier statement, from the first (what was read and locked stays
// either way). A fault thus costs its batch a few round trips of one
// statement, not a second write.
func write(ctx context.Context, tx *txn, writers []*request, w *writes) error {
	steps := w.steps()
	if len(writers) < 2 {
		b := &pgx.Batch{}
		for _, s := range steps {
			s(b, nil)
		}
		if _, err := send(ctx, tx, b, true); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		return nil
	}
	// Prepared while the transaction can prepare: they run after a failure,
	// in the round trip that rolls it back.
	for _, sql := range []string{"ROLLBACK TO SAVEPOINT batch", "ROLLBACK TO SAVEPOINT part", "ROLLBACK TO SAVEPOINT half",
		"RELEASE SAVEPOINT half", "SAVEPOINT half"} {
		if _, err := tx.Conn().Prepare(ctx, statementName(sql), sql); err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
	}
	a := &apart{ctx: ctx, tx: tx}
	faulty := map[int]bool{}
	keep := func(owner int) bool { return !faulty[owner] }
	savepoint := "batch" // the first round's; "part" for the others
	for from := 0; ; {
		// A failed try is rolled back first, in a round trip of its own: a
		// statement prepared in an aborted transaction would fail.
		if err := a.flush(); err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue("SAVEPOINT " + savepoint)
		starts := make([]int, 0, len(steps)-from)
		for _, s := range steps[from:] {
			starts = append(starts, b.Len())
			s(b, keep)
		}
		at, err := send(ctx, tx, b, true)
		if err == nil {
			return nil
		}
		if !requestFault(err) || len(starts) == 0 || at < starts[0] {
			return fmt.Errorf("write: %w", err)
		}
		k := from
		for k+1 < len(steps) && at >= starts[k+1-from] {
			k++
		}
		// Back to before the round, then what preceded the failed statement again.
		b = &pgx.Batch{}
		b.Queue("ROLLBACK TO SAVEPOINT " + savepoint)
		for _, s := range steps[from:k] {
			s(b, keep)
		}
		if _, err := send(ctx, tx, b, false); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		owners := slices.DeleteFunc(stepOwners(steps[k]), func(o int) bool { return faulty[o] })
		a.found = map[int]error{}
		if err := a.halve(steps[k], owners, err); err != nil {
			return err
		}
		var before []int // owners with rows in an earlier statement
		if len(a.found) > 0 {
			for _, s := range steps[:k] {
				before = append(before, stepOwners(s)...)
			}
		}
		earlier := false
		for o, err := range a.found {
			faulty[o] = true
			r := writers[o]
			r.out = Outcome{Err: fmt.Errorf("write: %w", err)}
			earlier = earlier || slices.Contains(before, o)
		}
		from, savepoint = k+1, "part"
		if earlier {
			b := &pgx.Batch{}
			a.queueRollback(b)
			b.Queue("ROLLBACK TO SAVEPOINT batch")
			if _, err := send(ctx, tx, b, false); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			from, savepoint = 0, "batch"
		}
	}
}

// apart singles out the requests at fault in a statement that failed for
// some of them.
type apart struct {
	ctx context.Context
	tx  *txn
	// found holds the owners at fault, with their error.
	found map[int]error
	// rollback is set when the last try failed: the next round trip opens
	// by rolling it back.
	rollback bool
}

// halve writes step s for owners, whose rows failed together with fault:
// their first half under a savepoint, then the second. A half that fails is
// rolled back and halved in turn, down to the owners at fault, which go to
// found with the fault of the smallest part that held them. A second half
// after a first that succeeded is known to fail (a fault of its own, or one
// with rows of the first), and is halved at once.
func (a *apart) halve(s step, owners []int, fault error) error {
	if len(owners) == 1 {
		if owners[0] < 0 {
			// Not a request's row: the batch cannot go on without it.
			return fmt.Errorf("write: %w", fault)
		}
		a.found[owners[0]] = fault
		return nil
	}
	first, second := owners[:len(owners)/2], owners[len(owners)/2:]
	f, err := a.try(s, first)
	if err != nil {
		return err
	}
	if f == nil {
		return a.halve(s, second, fault)
	}
	if err := a.halve(s, first, f); err != nil {
		return err
	}
	if f, err = a.try(s, second); err != nil || f == nil {
		return err
	}
	return a.halve(s, second, f)
}

// try writes s for owners under a savepoint. It returns the fault of their
// rows when that failed for their data, and an error when it failed
// otherwise.
func (a *apart) try(s step, owners []int) (fault, err error) {
	b := &pgx.Batch{}
	pre := a.queueRollback(b)
	b.Queue("SAVEPOINT half")
	s(b, func(o int) bool { return slices.Contains(owners, o) })
	b.Queue("RELEASE SAVEPOINT half")
	at, err := send(a.ctx, a.tx, b, false)
	if err == nil {
		return nil, nil
	}
	if !requestFault(err) || at < pre {
		return nil, fmt.Errorf("write: %w", err)
	}
	a.rollback = true
	return err, nil
}

// flush rolls back a failed try, if one is pending, in a round trip of its
// own.
func (a *apart) flush() error {
	if !a.rollback {
		return nil
	}
	a.rollback = false
	if _, err := a.tx.Exec(a.ctx, "ROLLBACK TO SAVEPOINT half; RELEASE SAVEPOINT half"); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// queueRollback queues the rollback of a failed try, if one is pending, and
// returns the number of statements queued.
func (a *apart) queueRollback(b *pgx.Batch) int {
	if !a.rollback {
		return 0
	}
	a.rollback = false
	b.Queue("ROLLBACK TO SAVEPOINT half")
	b.Queue("RELEASE SAVEPOINT half")
	return 2
}

// send sends b and reads its results, and tells which statement of b
// failed. Its statements run as prepared statements of their own (prepare).
// With commit, b ends with the transaction's COMMIT (a rehearsal's
// ROLLBACK), which runs only if every statement before it succeeded (a
// failure skips the rest of a round trip); should the COMMIT fail, at is -1.
func send(ctx context.Context, tx *txn, b *pgx.Batch, commit bool) (at int, err error) {
	if commit {
		b.Queue(tx.finish())
	}
	if b.Len() == 0 {
		return 0, nil
	}
	shift := tx.queueBegin(b)
	if err := prepare(ctx, tx.Conn(), b); err != nil {
		return 0, err
	}
	br := tx.conn.SendBatch(ctx, b)
	for at = range b.Len() {
		if _, err = br.Exec(); err != nil {
			_ = br.Close()
			if commit && at == b.Len()-1 {
				return -1, fmt.Errorf("commit: %w", err)
			}
			return at - shift, err
		}
	}
	if err := br.Close(); err != nil {
		return 0, err
	}
	if commit {
		tx.ended = true
	}
	return 0, nil
}

// statementNames maps the SQL of the write statements to the names they are
// prepared under.
var statementNames sync.Map

// prepare has b's statements run as named prepared statements, each
// prepared on conn the first time it runs there. pgx drops the statements of
// its own cache that a failed batch holds, and would prepare (and plan)
// them again at their next use: a request's fault would cost every
// statement of the write that it failed. A statement prepared by name
// stays.
func prepare(ctx context.Context, conn *pgx.Conn, b *pgx.Batch) error {
	for _, q := range b.QueuedQueries {
		name := statementName(q.SQL)
		if _, err := conn.Prepare(ctx, name, q.SQL); err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		q.SQL = name
	}
	return nil
}

// statementName is the name sql is prepared under.
func statementName(sql string) string {
	name, ok := statementNames.Load(sql)
	if !ok {
		sum := sha256.Sum256([]byte(sql))
		name, _ = statementNames.LoadOrStore(sql, "leadflow_"+hex.EncodeToString(sum[:16]))
	}
	return name.(string)
}

// stepOwners is the owners of the rows that s writes, in their order.
func stepOwners(s step) []int {
	var owners []int
	s(&pgx.Batch{}, func(o int) bool {
		if !slices.Contains(owners, o) {
			owners = append(owners, o)
		}
		return false
	})
	return owners
}

// load reads, in one round trip and a fixed number of statements, what the
// requests' decisions need: their idempotency records, their leads, the
// orgs' settings and the records they name. It first takes a
// transaction-scoped lock on each request's idempotency key and on each
// lead, all in one statement and in a fixed order, so that two batches
// cannot deadlock: requests under one key, or for one lead, run one at a
// time, whether or not their rows exist yet, and each sees what the one
// before it committed. A request's idempotency record is then written once,
// with its outcome (write.go).
func load(ctx context.Context, tx *txn, reqs []*request) error {
	b := &pgx.Batch{}
	generic := len(reqs) > 0 && !reqs[0].preview
	if generic {
		b.Queue(genericPlans)
	}
	byKey := map[string]*request{}
	var locks, orgs, keys []string
	for _, r := range reqs {
		if !r.p.Readable() {
			continue
		}
		byKey[r.keyLock()] = r
		orgs, keys = append(orgs, *r.p.OrgID), append(keys, *r.p.Key)
		r.fresh = true
		locks = append(locks, r.keyLock())
		if l := r.leadLock(); l != "" {
			locks = append(locks, l)
		}
	}
	if len(locks) > 0 && generic {
		b.Queue(locksSQL, locks)
	}
	if len(keys) > 0 {
		// After the locks, in a statement of its own: it sees what the
		// transactions that held them committed.
		b.Queue(`SELECT i.org_id, i.key, i.request_hash, i.event_subject, i.event, i.event_id FROM idempotency_keys i
			JOIN unnest($1::text[], $2::text[]) AS k(org_id, key) ON i.org_id = k.org_id AND i.key = k.key`, orgs, keys).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var org, key string
					var st storedOutcome
					if err := rows.Scan(&org, &key, &st.hash, &st.subject, &st.event, &st.eventID); err != nil {
						return err
					}
					r := byKey[keyLock(org, key)]
					r.stored, r.fresh = st, false
				}
				return rows.Err()
			})
	}

	byLead := map[string]*request{}
	var leadOrgs, leadIDs []string
	settings := map[string]*[]byte{}
	var settingOrgs []string
	for _, r := range reqs {
		if r.p.Request == nil || !r.p.Readable() {
			continue
		}
		q := r.p.Request
		byLead[lockKey(q.OrgID, q.Lead.ID)] = r
		leadOrgs, leadIDs = append(leadOrgs, q.OrgID), append(leadIDs, q.Lead.ID)
		raw, ok := settings[q.OrgID]
		if !ok {
			raw = new([]byte)
			settings[q.OrgID] = raw
			settingOrgs = append(settingOrgs, q.OrgID)
		}
		r.st = queueLoad(b, q, raw)
	}
	if len(leadIDs) > 0 {
		b.Queue(`SELECT l.org_id, l.id, l.status, l.conversion FROM leads l
			JOIN unnest($1::text[], $2::text[]) AS k(org_id, id) ON l.org_id = k.org_id AND l.id = k.id`, leadOrgs, leadIDs).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var org, id, status string
					var conv []byte
					if err := rows.Scan(&org, &id, &status, &conv); err != nil {
						return err
					}
					st := byLead[lockKey(org, id)].st
					st.leadFound, st.status, st.conversion = true, status, conv
				}
				return rows.Err()
			})
		b.Queue(`SELECT org_id, settings FROM org_settings WHERE org_id = ANY($1)`, settingOrgs).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var org string
				var raw []byte
				if err := rows.Scan(&org, &raw); err != nil {
					return err
				}
				*settings[org] = raw
			}
			return rows.Err()
		})
	}
	custom(b, generic, func() { queueUndoLoads(b, reqs) }) // undo.go: after the lead locks
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	return nil
}

// locksSQL takes a transaction-scoped advisory lock on each of $1, in order.
const locksSQL = `SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM (SELECT k FROM unnest($1::text[]) k ORDER BY k COLLATE "C") s`

// storedOutcome is an idempotency record as read.
type storedOutcome struct {
	hash    []byte
	subject *string
	event   []byte
	eventID *uuid.UUID
}

func (r *request) keyLock() string {
	if !r.p.Readable() {
		return ""
	}
	return keyLock(*r.p.OrgID, *r.p.Key)
}

// keyLock names the lock on an idempotency key.
func keyLock(org, key string) string { return lockKey("key", org, key) }

func (r *request) leadLock() string {
	if r.p.Request == nil {
		return ""
	}
	return lockKey("lead", r.p.Request.OrgID, r.p.Request.Lead.ID)
}

// decide settles what the request does, but for duplicates.
func (r *request) decide() error {
	p := r.p
	switch {
	case !p.Readable():
		// Nothing names the request: no idempotency record can hold it. Its
		// event id derives from its content, so that a redelivery publishes
		// the same event and JetStream drops the copy.
		r.rej = p.Invalid
		r.rejID = uuid.NewSHA1(eventNamespace, append([]byte("unreadable\x00"), p.Hash...)).String()
		return nil
	case !r.fresh && !bytes.Equal(r.stored.hash, p.Hash):
		r.rej = conversion.KeyReused(*p.Key)
		r.rejID = uuid.NewSHA1(eventNamespace, append([]byte("reused\x00"+*p.OrgID+"\x00"+*p.Key+"\x00"), p.Hash...)).String()
		return nil
	case !r.fresh:
		if r.stored.event == nil {
			// Written once with its outcome under the key's lock, a record
			// has one; should it not, run again rather than guess.
			return errRace
		}
		r.replay = true
		return nil
	}
	r.record, r.rejID = true, newID()
	if p.Invalid != nil {
		r.rej = p.Invalid
		return nil
	}
	in, err := r.st.input(r.now)
	if err != nil {
		return err
	}
	r.draft, r.plan, r.rej = conversion.Decide(in)
	return nil
}

// probe runs the drafts' duplicate lookups and resolves them. A match that
// is committed stays a match, so the first round looks without locks. A
// request whose plan then creates an account or contact is looked up again
// in a second round, after a transaction-scoped advisory lock on each value
// of the record types it would create (taken in a fixed order, so that two
// transactions cannot deadlock on them): of two conversions racing to create
// the same company, the second waits until the first commits and then finds
// its account. A unique index could not say this, since duplicate rules are
// per org, may compare prefixes or suffixes, and create_new deliberately
// creates a duplicate. Requests that link what exists take no lock, and so
// never queue behind each other. Within one batch the locks cannot separate
// two requests, so the later of two that claim the same value is deferred.
func probe(ctx context.Context, tx *txn, reqs []*request) error {
	claimed := map[string]*request{}
	var active []*request
	for _, r := range reqs {
		if r.draft == nil {
			continue
		}
		for _, pr := range r.draft.Probes {
			if owner, ok := claimed[pr.Lock]; ok && owner != r {
				r.out.Deferred = true
			}
		}
		if r.out.Deferred {
			continue
		}
		for _, pr := range r.draft.Probes {
			claimed[pr.Lock] = r
		}
		active = append(active, r)
	}
	if err := lookup(ctx, tx, active, nil); err != nil {
		return err
	}
	if len(active) == 0 || active[0].preview {
		return nil
	}
	var creators []*request
	var locks []string
	locked := map[*request][]string{} // the record types whose values each creator locked
	for _, r := range active {
		if r.plan == nil {
			continue
		}
		created := createdTypes(r.plan)
		if len(created) == 0 {
			continue
		}
		// Decide afresh: the first round's matches are merged into its draft.
		r.found = nil
		if err := r.decide(); err != nil {
			return err
		}
		if r.draft == nil {
			continue
		}
		locked[r] = created
		creators = append(creators, r)
		for _, pr := range r.draft.Probes {
			if slices.Contains(created, pr.RecordType) {
				locks = append(locks, pr.Lock)
			}
		}
	}
	if len(creators) == 0 {
		return nil
	}
	if err := lookup(ctx, tx, creators, locks); err != nil {
		return err
	}
	for _, r := range creators {
		if r.plan == nil {
			continue
		}
		for _, typ := range createdTypes(r.plan) {
			if !slices.Contains(locked[r], typ) {
				// A record it matched unlocked is gone (undone meanwhile):
				// run the whole transaction again.
				return errRace
			}
		}
	}
	return nil
}

// lookup takes locks, when there are any, then runs the drafts' probes in one
// round trip and resolves each draft with its matches.
func lookup(ctx context.Context, tx *txn, reqs []*request, locks []string) error {
	b := &pgx.Batch{}
	if len(locks) > 0 {
		b.Queue(locksSQL, locks)
	}
	queueProbes(b, reqs)
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("find duplicates: %w", err)
		}
	}
	gatherProbes(reqs)
	for _, r := range reqs {
		r.plan, r.rej = r.draft.Resolve(r.found)
	}
	return nil
}

// createdTypes lists the record types that duplicate rules compare (account,
// contact) of which a plan creates a record.
func createdTypes(p *conversion.Plan) []string {
	var types []string
	for _, t := range p.Records {
		if t.Outcome == conversion.OutcomeCreated && (t.Type == conversion.RecordAccount || t.Type == conversion.RecordContact) {
			types = append(types, t.Type)
		}
	}
	return types
}

// errRace is a transaction that found what a concurrent one left half done
// (an idempotency record without its outcome, a matched record undone
// meanwhile); it is retried like a serialization failure.
var errRace = errors.New("raced a concurrent transaction")

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

func (r *request) meta() event.Meta {
	p := r.p
	m := event.Meta{Time: r.now, Traceparent: p.Traceparent, Tracestate: p.Tracestate}
	if p.LeadID != nil {
		m.LeadID = *p.LeadID
	}
	if p.OrgID != nil {
		m.OrgID = *p.OrgID
	}
	if p.Key != nil {
		m.CorrelationID = *p.Key
	}
	return m
}

// addWrite adds what the decided request writes.
func (r *request) addWrite(w *writes) error {
	p := r.p
	switch {
	case r.replay:
		w.outbox.add(p.OrgID, r.stored.eventID.String(), *r.stored.subject, r.stored.event, r.headersArg())
		r.out = Outcome{Event: *r.stored.subject, Code: codeOf(*r.stored.subject, r.stored.event), Replayed: true, Events: 1}
		return nil
	case r.rej != nil:
		ev := conversion.RejectionEvent(p.Subject, p.OrgID, p.LeadID, p.Key, r.rej, r.rejID)
		last, err := r.addOutbox(w, []conversion.Event{ev})
		if err != nil {
			return err
		}
		if r.record {
			r.addOutcome(w, ev, last)
		}
		r.out = Outcome{Event: ev.Type, Code: r.rej.Code, Events: 1}
		return nil
	}
	return r.addPlan(w, r.plan)
}

// headersArg is the NATS headers the request's events carry: its trace
// context, or nil (NULL) when it has none.
func (r *request) headersArg() any {
	if r.p.Traceparent == "" {
		return nil
	}
	h := map[string]string{"traceparent": r.p.Traceparent}
	if r.p.Tracestate != "" {
		h["tracestate"] = r.p.Tracestate
	}
	return h
}

// addOutbox adds the events' outbox rows and returns the last one's payload.
func (r *request) addOutbox(w *writes, events []conversion.Event) ([]byte, error) {
	m := r.meta()
	var last []byte
	headers := r.headersArg()
	for _, e := range events {
		raw, err := event.Marshal(m, e.Type, e.ID, e.Data)
		if err != nil {
			return nil, fmt.Errorf("render %s event: %w", e.Type, err)
		}
		w.outbox.add(r.p.OrgID, e.ID, e.Type, raw, headers)
		last = raw
	}
	return last, nil
}

// addOutcome stores the terminal event against the idempotency key.
func (r *request) addOutcome(w *writes, terminal conversion.Event, payload []byte) {
	outcome := terminal.Type
	if c, ok := terminal.Data["code"].(string); ok {
		outcome = c
	}
	w.outcomes.add(*r.p.OrgID, *r.p.Key, r.p.Subject, r.p.Hash, outcome, terminal.Type, payload, terminal.ID)
}

// Preview is what a request would do, decided against the committed state.
type Preview struct {
	// Plan is what an accepted request would write; nil when rejected.
	Plan *conversion.Plan
	// Rejection is the rejection the request would get; nil when accepted.
	Rejection *conversion.Rejection
	// Matches are the duplicate candidates found for the records it would create.
	Matches []conversion.Match
	// Replay is set when the request repeats one already processed: its
	// recorded outcome event, as it was published.
	Replay []byte
}

// Preview decides a request exactly as Process would, in a read-only
// transaction that takes no locks and writes nothing.
func (s *Store) Preview(ctx context.Context, p *conversion.Parsed) (Preview, error) {
	if p.Invalid != nil {
		return Preview{Rejection: p.Invalid}, nil
	}
	tx, err := s.begin(ctx, "BEGIN READ ONLY")
	if err != nil {
		return Preview{}, err
	}
	defer tx.end(ctx)
	r := &request{p: p, now: time.Now(), preview: true}
	reqs := []*request{r}
	if err := load(ctx, tx, reqs); err != nil {
		return Preview{}, err
	}
	if err := r.decide(); err != nil {
		return Preview{}, err
	}
	if err := probe(ctx, tx, reqs); err != nil {
		return Preview{}, err
	}
	if r.replay {
		return Preview{Replay: r.stored.event}, nil
	}
	return Preview{Plan: r.plan, Rejection: r.rej, Matches: r.found}, nil
}
