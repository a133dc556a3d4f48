package store

import (
	_ "embed"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/leadflow/leadflow/internal/conversion"
)

// Undoing a qualification (lead.unqualify.requested): what the request's
// transaction reads besides the lead, and what it writes. The decision is
// conversion's; load, addPlan and writes.queue call in here.

//go:embed undo_references.sql
var undoReferencesSQL string

// createdIDsSQL selects the ids of the records the qualification of lead $2
// of org $1 created, from the lead's recorded conversion.
const createdIDsSQL = `SELECT (e->>'id')::uuid FROM leads l,
	jsonb_array_elements(jsonb_build_array(l.conversion->'account', l.conversion->'contact')
		|| COALESCE(l.conversion->'opportunities', '[]'::jsonb)) e
	WHERE l.org_id = $1 AND l.id = $2 AND l.status = 'qualified' AND e->>'outcome' = 'created'`

// queueUndoLoads queues, for each unqualify request, the reads of its
// decision: when the lead was qualified, the records its qualification
// created (locked, in the order a qualification locks the records it links,
// so that no conversion can link or reference them until this transaction
// ends) and every row outside the qualification that references them. They
// come after the lead locks, so that they see the qualification that the
// lead's own read sees, and the reads of references come after the record
// locks, so that they see what any conversion holding the records committed.
func queueUndoLoads(b *pgx.Batch, reqs []*request) {
	for _, r := range reqs {
		if r.st != nil && r.st.req.Subject == conversion.SubjectUnqualify {
			r.st.undo = queueUndoLoad(b, r.st.req)
		}
	}
}

func queueUndoLoad(b *pgx.Batch, r *conversion.Request) *conversion.UndoState {
	u := &conversion.UndoState{Records: map[string]conversion.CreatedRecord{}}
	b.Queue(`SELECT qualified_at FROM leads WHERE org_id = $1 AND id = $2 AND status = 'qualified'`, r.OrgID, r.Lead.ID).
		QueryRow(func(row pgx.Row) error {
			var at *time.Time
			err := row.Scan(&at)
			if err == pgx.ErrNoRows {
				return nil
			}
			if at != nil {
				u.QualifiedAt = *at
			}
			return err
		})
	for _, typ := range []string{conversion.RecordAccount, conversion.RecordContact, conversion.RecordOpportunity} {
		// created_at and updated_at are both the inserting transaction's
		// now(): a later update moves updated_at alone.
		sql := fmt.Sprintf(`SELECT id::text, updated_at > created_at FROM %s
			WHERE org_id = $1 AND id IN (%s) ORDER BY id FOR UPDATE`, tables[typ], createdIDsSQL)
		b.Queue(sql, r.OrgID, r.Lead.ID).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				rec := conversion.CreatedRecord{Ref: conversion.Ref{Type: typ}}
				if err := rows.Scan(&rec.ID, &rec.Changed); err != nil {
					return err
				}
				u.Records[rec.ID] = rec
			}
			return rows.Err()
		})
	}
	b.Queue(undoReferencesSQL, r.OrgID, r.Lead.ID).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var ref conversion.Reference
			if err := rows.Scan(&ref.To.Type, &ref.To.ID, &ref.From.Type, &ref.From.ID); err != nil {
				return err
			}
			u.References = append(u.References, ref)
		}
		return rows.Err()
	})
	return u
}

// undoWrite is what an accepted unqualify request writes besides its events
// and outcome.
type undoWrite struct {
	orgID, leadID string
	plan          *conversion.Plan
	now           time.Time
	owner         int
}

// addUndo adds what an accepted unqualify request writes.
func (t *request) addUndo(w *writes, plan *conversion.Plan) error {
	r := t.p.Request
	w.undos = append(w.undos, &undoWrite{orgID: r.OrgID, leadID: r.Lead.ID, plan: plan, now: t.now})
	last, err := t.addOutbox(w, plan.Events)
	if err != nil {
		return err
	}
	terminal := plan.Events[len(plan.Events)-1]
	t.addOutcome(w, terminal, last)
	t.out = Outcome{Event: terminal.Type, Events: len(plan.Events)}
	return nil
}

// queueUndos queues the undos' statements: the summary note goes, the lead's
// notes and attachments go back to the lead, the lead reopens without its
// links, and the records its qualification created are deleted, dependents
// first. Undos are rare: each takes statements of its own.
func queueUndos(b *pgx.Batch, undos []*undoWrite, keep func(owner int) bool) {
	for _, u := range undos {
		if keep != nil && !keep(u.owner) {
			continue
		}
		b.Queue(`DELETE FROM notes WHERE org_id = $1 AND lead_id = $2 AND kind = 'summary'`, u.orgID, u.leadID)
		for _, table := range []string{"notes", "attachments"} {
			b.Queue(fmt.Sprintf(`UPDATE %s SET account_id = NULL, contact_id = NULL, opportunity_id = NULL
				WHERE org_id = $1 AND lead_id = $2
					AND (account_id IS NOT NULL OR contact_id IS NOT NULL OR opportunity_id IS NOT NULL)`, table),
				u.orgID, u.leadID)
		}
		b.Queue(`UPDATE leads SET status = $3, process_stage = $4, customer_type = NULL, account_id = NULL,
			contact_id = NULL, opportunity_ids = '{}', conversion = NULL, qualified_at = NULL, unqualified_at = $5,
			updated_at = now()
			WHERE org_id = $1 AND id = $2`, u.orgID, u.leadID, u.plan.Status, u.plan.ProcessStage, u.now)
		for _, rec := range u.plan.Undo.Delete {
			b.Queue(fmt.Sprintf(`DELETE FROM %s WHERE org_id = $1 AND id = $2`, tables[rec.Type]), u.orgID, rec.ID)
		}
	}
}
