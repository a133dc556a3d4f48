package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/leadflow/leadflow/internal/conversion"
)

// state is what a decision needs, loaded in the transaction's first round trip.
type state struct {
	req        *conversion.Request
	leadFound  bool
	status     string
	conversion []byte
	settings   *[]byte
	existing   map[string]conversion.Existing
	undo       *conversion.UndoState // unqualify only; see undo.go
}

// lockKey names an advisory lock. Locks are taken per idempotency key and
// per lead, so that requests under one key, or for one lead, run one at a
// time whether or not their rows exist yet.
func lockKey(parts ...string) string { return strings.Join(parts, "\x1f") }

// queueLoad queues the reads of the records a request names by id (locked,
// since linking may update them). The caller reads the lead and the org's
// settings, which land in settings.
func queueLoad(b *pgx.Batch, r *conversion.Request, settings *[]byte) *state {
	st := &state{req: r, existing: map[string]conversion.Existing{}, settings: settings}
	if r.Subject != conversion.SubjectQualify {
		return st
	}
	var accounts, contacts, opps []string
	if c := r.Account; c != nil && c.Action == conversion.ActionExisting {
		accounts = append(accounts, c.ID)
	}
	if c := r.Contact; c != nil && c.Action == conversion.ActionExisting {
		contacts = append(contacts, c.ID)
	}
	if r.Opportunities != nil {
		for _, o := range *r.Opportunities {
			if o.Action == conversion.ActionExisting {
				opps = append(opps, o.ID)
			}
		}
	}
	for _, q := range []struct {
		typ string
		ids []string
	}{{conversion.RecordAccount, accounts}, {conversion.RecordContact, contacts}, {conversion.RecordOpportunity, opps}} {
		if len(q.ids) == 0 {
			continue
		}
		typ := q.typ
		sql := fmt.Sprintf(`SELECT %s FROM %s WHERE org_id = $1 AND id = ANY($2::uuid[]) ORDER BY id FOR NO KEY UPDATE`,
			selectList(typ, ""), tables[typ])
		b.Queue(sql, r.OrgID, q.ids).Query(func(rows pgx.Rows) error {
			return scanRecords(rows, typ, func(e conversion.Existing, _ string) { st.existing[e.ID] = e })
		})
	}
	return st
}

func (st *state) input(now time.Time) (conversion.Input, error) {
	s, err := conversion.ParseSettings(*st.settings)
	if err != nil {
		return conversion.Input{}, err
	}
	in := conversion.Input{Request: st.req, Settings: s, Existing: st.existing, Undo: st.undo, Now: now, NewID: newID}
	if st.leadFound {
		l := &conversion.LeadState{Status: st.status}
		if st.conversion != nil {
			l.Conversion = &conversion.Conversion{}
			if err := json.Unmarshal(st.conversion, l.Conversion); err != nil {
				return in, fmt.Errorf("read conversion of lead %q: %w", st.req.Lead.ID, err)
			}
		}
		in.Lead = l
	}
	return in, nil
}

var tables = map[string]string{
	conversion.RecordAccount:     "accounts",
	conversion.RecordContact:     "contacts",
	conversion.RecordOpportunity: "opportunities",
}

// selectList is the columns scanRecords reads: id, the text fields (none for
// opportunities), custom, account_id, and normColumn when given.
func selectList(typ, normColumn string) string {
	cols := []string{"id::text"}
	if typ != conversion.RecordOpportunity {
		cols = append(cols, conversion.RecordFields(typ)...)
	}
	cols = append(cols, "custom")
	if typ == conversion.RecordAccount {
		cols = append(cols, "NULL::text")
	} else {
		cols = append(cols, "account_id::text")
	}
	if normColumn != "" {
		cols = append(cols, normColumn+"_norm")
	} else {
		cols = append(cols, "''")
	}
	return strings.Join(cols, ", ")
}

// scanRecords reads the rows of a selectList; first, when given, receives
// what the rows carry before it (as a probe's index).
func scanRecords(rows pgx.Rows, typ string, each func(conversion.Existing, string), first ...any) error {
	var fields []string
	if typ != conversion.RecordOpportunity {
		fields = conversion.RecordFields(typ)
	}
	for rows.Next() {
		var id string
		var custom map[string]any
		var accountID *string
		var norm string
		vals := make([]*string, len(fields))
		dest := append(append([]any{}, first...), &id)
		for i := range vals {
			dest = append(dest, &vals[i])
		}
		dest = append(dest, &custom, &accountID, &norm)
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		e := conversion.Existing{Type: typ, ID: id, Values: conversion.Values{Fields: map[string]any{}, Custom: custom}}
		for i, f := range fields {
			if vals[i] != nil {
				e.Values.Fields[f] = *vals[i]
			}
		}
		if accountID != nil {
			e.AccountID = *accountID
		}
		each(e, norm)
	}
	return rows.Err()
}
