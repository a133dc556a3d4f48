package faults

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Verdict is what the invariants found after a scenario.
type Verdict struct {
	Requests int
	// Lost: requests with neither a terminal event nor a dead letter.
	Lost int
	// Duplicated: requests with more than one distinct terminal event id,
	// plus events stored more than once under one id (Copies) unless the
	// scenario re-sends requests after the duplicate window on purpose.
	Duplicated int
	Copies     int
	// Dead is the number of dead letters.
	Dead int
	// Problems lists every broken invariant, with examples.
	Problems []string
	// Outcomes counts terminal outcomes by type and code.
	Outcomes map[string]int
}

// Pass reports whether every invariant held.
func (v *Verdict) Pass() bool { return len(v.Problems) == 0 }

func (v *Verdict) problem(format string, args ...any) {
	v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
}

func examples(list []string) string {
	sort.Strings(list)
	if len(list) > 3 {
		return strings.Join(list[:3], ", ") + fmt.Sprintf(" (+%d)", len(list)-3)
	}
	return strings.Join(list, ", ")
}

// checkOptions relax invariants a scenario breaks on purpose.
type checkOptions struct {
	// allowCopies: a request re-sent after the duplicate window re-publishes
	// its recorded outcome under the same id, which JetStream then stores.
	allowCopies bool
}

// verify checks the invariants of reqs against what the observer saw and
// what the database holds.
func verify(ctx context.Context, pool *pgxpool.Pool, o *Observer, reqs []*Request, opt checkOptions) (*Verdict, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	v := &Verdict{Requests: len(reqs), Outcomes: map[string]int{}, Dead: len(o.dead)}

	// Every request: exactly one terminal outcome (by distinct event id), or
	// exactly the dead letter it was meant to get.
	var lost, dup, wrong, unexpectedDead, missingDead []string
	seen := map[string]bool{}
	for _, r := range reqs {
		if seen[r.Key] {
			continue
		}
		seen[r.Key] = true
		ids := o.terminal[r.Key]
		dead := o.deadByKey[r.Key]
		switch {
		case r.Expect.Dead:
			if dead == 0 {
				missingDead = append(missingDead, r.Key)
			}
			if len(ids) > 0 {
				wrong = append(wrong, fmt.Sprintf("%s: %s instead of a dead letter", r.Key, o.events[ids[0]].Type))
			}
			if dead == 0 && len(ids) == 0 {
				lost = append(lost, r.Key)
			}
			continue
		case dead > 0:
			unexpectedDead = append(unexpectedDead, r.Key)
			if len(ids) == 0 {
				continue
			}
		case len(ids) == 0:
			lost = append(lost, r.Key)
			continue
		}
		if len(ids) > 1 {
			dup = append(dup, fmt.Sprintf("%s (%d outcomes)", r.Key, len(ids)))
		}
		e := o.events[ids[0]]
		label := e.Type
		if e.Code != "" {
			label += "/" + e.Code
		}
		v.Outcomes[label]++
		if r.Expect.Type != "" && (e.Type != r.Expect.Type || e.Code != r.Expect.Code) {
			wrong = append(wrong, fmt.Sprintf("%s: %s, expected %s%s", r.Key, label, r.Expect.Type, map[bool]string{true: "/" + r.Expect.Code}[r.Expect.Code != ""]))
		}
	}
	v.Lost = len(lost)
	if len(lost) > 0 {
		v.problem("%d requests lost (no outcome, no dead letter): %s", len(lost), examples(lost))
	}
	if len(dup) > 0 {
		v.problem("%d requests with more than one outcome: %s", len(dup), examples(dup))
	}
	if len(wrong) > 0 {
		v.problem("%d unexpected outcomes: %s", len(wrong), examples(wrong))
	}
	if len(unexpectedDead) > 0 {
		v.problem("%d requests dead-lettered that should have converted: %s", len(unexpectedDead), examples(unexpectedDead))
	}
	if len(missingDead) > 0 {
		v.problem("%d poisoned requests not dead-lettered: %s", len(missingDead), examples(missingDead))
	}
	var copied []string
	for id, n := range o.copies {
		if n > 1 {
			v.Copies += n - 1
			if e := o.events[id]; e != nil {
				copied = append(copied, fmt.Sprintf("%s %s of %s ×%d", e.Type, id, e.Corr, n))
			}
		}
	}
	v.Duplicated = len(dup)
	if v.Copies > 0 && !opt.allowCopies {
		v.Duplicated += v.Copies
		v.problem("%d events stored more than once under one id: %s", v.Copies, examples(copied))
	}
	if o.gaps > 0 {
		v.problem("%d gaps in the LEAD_EVENTS sequence seen by the observer", o.gaps)
	}
	if o.decodeErrs > 0 {
		v.problem("%d events are not JSON", o.decodeErrs)
	}

	// The database against the events: every row created has its *.created
	// event and every such event its row; every qualified lead exactly one
	// lead.qualified id; every recorded outcome was published.
	if err := checkRows(ctx, pool, o, v); err != nil {
		return v, err
	}
	return v, nil
}

func checkRows(ctx context.Context, pool *pgxpool.Pool, o *Observer, v *Verdict) error {
	ids := func(sql string) (map[string]bool, error) {
		rows, err := pool.Query(ctx, sql)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		out := map[string]bool{}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				return nil, err
			}
			out[s] = true
		}
		return out, rows.Err()
	}
	events := map[string]map[string]bool{"account.created": {}, "contact.created": {}, "opportunity.created": {}}
	qualified := map[string][]string{}
	published := map[string]bool{}
	for id, e := range o.events {
		published[id] = true
		switch e.Type {
		case "account.created":
			events[e.Type][e.AccountID] = true
		case "contact.created":
			events[e.Type][e.ContactID] = true
		case "opportunity.created":
			events[e.Type][e.OpportunityID] = true
		case "lead.qualified":
			k := e.Org + "\x1f" + e.Lead
			qualified[k] = append(qualified[k], id)
		}
	}
	for _, t := range []struct{ table, event string }{
		{"accounts", "account.created"}, {"contacts", "contact.created"}, {"opportunities", "opportunity.created"}} {
		rows, err := ids(`SELECT id::text FROM ` + t.table)
		if err != nil {
			return fmt.Errorf("read %s: %w", t.table, err)
		}
		var unpublished, phantom []string
		for id := range rows {
			if !events[t.event][id] {
				unpublished = append(unpublished, id)
			}
		}
		for id := range events[t.event] {
			if !rows[id] {
				phantom = append(phantom, id)
			}
		}
		if len(unpublished) > 0 {
			v.problem("%d %s rows without %s event: %s", len(unpublished), t.table, t.event, examples(unpublished))
		}
		if len(phantom) > 0 {
			v.problem("%d %s events without a row (published, never committed): %s", len(phantom), t.event, examples(phantom))
		}
	}
	leads, err := ids(`SELECT org_id || chr(31) || id FROM leads WHERE status = 'qualified'`)
	if err != nil {
		return fmt.Errorf("read leads: %w", err)
	}
	var noEvent, phantom, twice []string
	for k := range leads {
		switch n := len(qualified[k]); {
		case n == 0:
			noEvent = append(noEvent, strings.ReplaceAll(k, "\x1f", "/"))
		case n > 1:
			twice = append(twice, fmt.Sprintf("%s (%d)", strings.ReplaceAll(k, "\x1f", "/"), n))
		}
	}
	for k := range qualified {
		if !leads[k] {
			phantom = append(phantom, strings.ReplaceAll(k, "\x1f", "/"))
		}
	}
	if len(noEvent) > 0 {
		v.problem("%d qualified leads without lead.qualified: %s", len(noEvent), examples(noEvent))
	}
	if len(twice) > 0 {
		v.problem("%d leads qualified more than once (distinct lead.qualified ids): %s", len(twice), examples(twice))
	}
	if len(phantom) > 0 {
		v.problem("%d lead.qualified events for leads not qualified in the database: %s", len(phantom), examples(phantom))
	}
	recorded, err := ids(`SELECT event_id::text FROM idempotency_keys WHERE event_id IS NOT NULL`)
	if err != nil {
		return fmt.Errorf("read idempotency_keys: %w", err)
	}
	var unpub []string
	for id := range recorded {
		if !published[id] {
			unpub = append(unpub, id)
		}
	}
	if len(unpub) > 0 {
		v.problem("%d recorded outcomes never published: %s", len(unpub), examples(unpub))
	}
	var open int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM idempotency_keys WHERE event_id IS NULL`).Scan(&open); err != nil {
		return err
	}
	if open > 0 {
		v.problem("%d idempotency records without an outcome", open)
	}
	rows, err := pool.Query(ctx, `SELECT org_id, name_norm, count(*) FROM accounts WHERE name_norm <> ''
		GROUP BY 1, 2 HAVING count(*) > 1 ORDER BY 3 DESC LIMIT 5`)
	if err != nil {
		return err
	}
	var twins []string
	for rows.Next() {
		var org, name string
		var n int
		if err := rows.Scan(&org, &name, &n); err != nil {
			rows.Close()
			return err
		}
		twins = append(twins, fmt.Sprintf("%s/%q ×%d", org, name, n))
	}
	rows.Close()
	if len(twins) > 0 {
		v.problem("companies with more than one account under use_existing: %s", strings.Join(twins, ", "))
	}
	var outbox int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&outbox); err != nil {
		return err
	}
	if outbox > 0 {
		v.problem("%d outbox rows left", outbox)
	}
	return nil
}
