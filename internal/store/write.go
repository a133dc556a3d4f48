package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/leadflow/leadflow/internal/conversion"
)

// queuePlan queues what an accepted request's plan writes: the lead, its
// records, notes and attachments, the idempotency record and the events.
func (t *request) queuePlan(b *pgx.Batch, plan *conversion.Plan) error {
	r := t.p.Request
	if err := t.queueLead(b, plan); err != nil {
		return err
	}
	owner := conversion.Owner(r)
	for _, rec := range plan.Records {
		switch {
		case rec.Outcome == conversion.OutcomeCreated:
			queueInsert(b, r, rec, owner)
		case rec.Outcome == conversion.OutcomeExisting && rec.Update:
			queueUpdate(b, r.OrgID, rec)
		}
	}
	queueNotes(b, r)
	if target := plan.NoteTarget; target != nil {
		col := map[string]string{conversion.RecordAccount: "account_id", conversion.RecordContact: "contact_id",
			conversion.RecordOpportunity: "opportunity_id"}[target.Type]
		for _, table := range []string{"notes", "attachments"} {
			b.Queue(fmt.Sprintf(`UPDATE %s SET %s = $3 WHERE org_id = $1 AND lead_id = $2`, table, col),
				r.OrgID, r.Lead.ID, target.ID)
		}
		if plan.Summary != "" {
			b.Queue(`INSERT INTO notes (org_id, id, lead_id, kind, opportunity_id, title, body, created_at)
				VALUES ($1, $2, $3, 'summary', $4, 'Lead summary', $5, $6)`,
				r.OrgID, newID(), r.Lead.ID, target.ID, plan.Summary, t.now)
		}
	}
	last, err := t.queueOutbox(b, plan.Events)
	if err != nil {
		return err
	}
	terminal := plan.Events[len(plan.Events)-1]
	t.queueRecord(b, terminal, last)
	t.out = Outcome{Event: terminal.Type, Events: len(plan.Events)}
	return nil
}

var leadColumns = []string{"topic", "first_name", "last_name", "company", "job_title", "email",
	"business_phone", "mobile_phone", "website", "street1", "street2", "street3", "city",
	"state_province", "postal_code", "country", "description", "source", "purchase_timeframe", "owner_id"}

// upsertLeadSQL writes a lead as the request carries it, with its new status.
var upsertLeadSQL = func() string {
	cols := append([]string{"org_id", "id", "status", "process_stage"}, leadColumns...)
	cols = append(cols, "budget_amount", "custom", "customer_type", "account_id", "contact_id",
		"opportunity_ids", "conversion", "disqualify_reason", "qualified_at", "disqualified_at", "reactivated_at")
	ph := make([]string, len(cols))
	var set []string
	for i, c := range cols {
		ph[i] = fmt.Sprintf("$%d", i+1)
		if c == "opportunity_ids" {
			ph[i] = fmt.Sprintf("COALESCE($%d::uuid[], '{}')", i+1)
			set = append(set, "opportunity_ids = CASE WHEN cardinality(excluded.opportunity_ids) > 0 THEN excluded.opportunity_ids ELSE leads.opportunity_ids END")
			continue
		}
		if i >= 2 {
			if strings.HasSuffix(c, "_at") || c == "disqualify_reason" || c == "customer_type" ||
				c == "account_id" || c == "contact_id" || c == "conversion" {
				// Keep what earlier requests recorded when this one says nothing.
				set = append(set, fmt.Sprintf("%s = COALESCE(excluded.%s, leads.%s)", c, c, c))
			} else {
				set = append(set, fmt.Sprintf("%s = excluded.%s", c, c))
			}
		}
	}
	return fmt.Sprintf(`INSERT INTO leads (%s) VALUES (%s) ON CONFLICT (org_id, id) DO UPDATE SET %s, updated_at = now()`,
		strings.Join(cols, ", "), strings.Join(ph, ", "), strings.Join(set, ", "))
}()

func (t *request) queueLead(b *pgx.Batch, plan *conversion.Plan) error {
	r := t.p.Request
	l := &r.Lead
	args := []any{r.OrgID, l.ID, plan.Status, plan.ProcessStage}
	for _, c := range leadColumns {
		args = append(args, l.Field(c))
	}
	custom := l.Custom
	if custom == nil {
		custom = map[string]any{}
	}
	args = append(args, l.BudgetAmount, custom)

	var customerType, reason any
	var accountID, contactID, convJSON any
	var oppIDs []string
	var qualifiedAt, disqualifiedAt, reactivatedAt any
	switch plan.Status {
	case conversion.StatusQualified:
		c := plan.Conversion
		customerType, qualifiedAt = r.CustomerType, t.now
		if c.Account.ID != nil {
			accountID = *c.Account.ID
		}
		if c.Contact.ID != nil {
			contactID = *c.Contact.ID
		}
		for _, o := range c.Opportunities {
			oppIDs = append(oppIDs, *o.ID)
		}
		raw, err := json.Marshal(c)
		if err != nil {
			return err
		}
		convJSON = raw
	case conversion.StatusDisqualified:
		reason, disqualifiedAt = r.Reason, t.now
	case conversion.StatusOpen:
		reactivatedAt = t.now
	}
	var oppArg any
	if oppIDs != nil {
		oppArg = oppIDs
	}
	args = append(args, customerType, accountID, contactID, oppArg, convJSON, reason, qualifiedAt, disqualifiedAt, reactivatedAt)
	b.Queue(upsertLeadSQL, args...)
	return nil
}

// recordSQL is the INSERT and UPDATE of each record type, and the value
// columns they take after (org_id, id).
type recordSQL struct {
	insert, update string
	columns        []string
}

var recordStatements = func() map[string]recordSQL {
	casts := map[string]string{"estimated_value": "::numeric", "budget_amount": "::numeric", "close_date": "::date"}
	out := map[string]recordSQL{}
	for _, typ := range []string{conversion.RecordAccount, conversion.RecordContact, conversion.RecordOpportunity} {
		cols := append([]string{}, conversion.RecordFields(typ)...)
		cols = append(cols, "owner_id", "custom", "lead_id")
		if typ != conversion.RecordAccount {
			cols = append(cols, "account_id")
		}
		if typ == conversion.RecordOpportunity {
			cols = append(cols, "contact_id")
		}
		for _, n := range conversion.NormColumns(typ) {
			cols = append(cols, n+"_norm")
		}
		ph := []string{"$1", "$2"}
		var set []string
		for i, c := range cols {
			ph = append(ph, fmt.Sprintf("$%d%s", i+3, casts[c]))
			if updatable(c) {
				set = append(set, fmt.Sprintf("%s = $%d%s", c, len(set)+3, casts[c]))
			}
		}
		out[typ] = recordSQL{
			insert:  fmt.Sprintf(`INSERT INTO %s (org_id, id, %s) VALUES (%s)`, tables[typ], strings.Join(cols, ", "), strings.Join(ph, ", ")),
			update:  fmt.Sprintf(`UPDATE %s SET %s, updated_at = now() WHERE org_id = $1 AND id = $2`, tables[typ], strings.Join(set, ", ")),
			columns: cols,
		}
	}
	return out
}()

func recordArgs(orgID string, rec *conversion.Target, owner, leadID string) []any {
	stmt := recordStatements[rec.Type]
	norm := conversion.NormalizeRecord(rec.Type, rec.Values.Fields)
	args := []any{orgID, rec.ID}
	for _, c := range stmt.columns {
		switch {
		case c == "owner_id":
			args = append(args, owner)
		case c == "custom":
			custom := rec.Values.Custom
			if custom == nil {
				custom = map[string]any{}
			}
			args = append(args, custom)
		case c == "lead_id":
			args = append(args, leadID)
		case c == "account_id":
			args = append(args, nullable(rec.AccountID))
		case c == "contact_id":
			args = append(args, nullable(rec.ContactID))
		case strings.HasSuffix(c, "_norm"):
			args = append(args, norm[strings.TrimSuffix(c, "_norm")])
		default:
			args = append(args, rec.Values.Get(c))
		}
	}
	return args
}

func queueInsert(b *pgx.Batch, r *conversion.Request, rec *conversion.Target, owner string) {
	b.Queue(recordStatements[rec.Type].insert, recordArgs(r.OrgID, rec, owner, r.Lead.ID)...)
}

// queueUpdate writes a linked record whose empty fields the lead filled (or,
// with overwrite, whose fields it replaced). Its owner, lead and links stay.
func queueUpdate(b *pgx.Batch, orgID string, rec *conversion.Target) {
	stmt := recordStatements[rec.Type]
	all := recordArgs(orgID, rec, "", "")
	args := all[:2]
	for i, c := range stmt.columns {
		if updatable(c) {
			args = append(args, all[i+2])
		}
	}
	b.Queue(stmt.update, args...)
}

// updatable reports whether linking a record may change column c.
func updatable(c string) bool {
	return c != "lead_id" && c != "owner_id" && c != "account_id" && c != "contact_id"
}

// queueNotes upserts the notes and attachments the request carries.
func queueNotes(b *pgx.Batch, r *conversion.Request) {
	l := &r.Lead
	if len(l.Notes) > 0 {
		n := len(l.Notes)
		ids, ups, titles, bodies := make([]string, n), make([]string, n), make([]*string, n), make([]*string, n)
		created := make([]*time.Time, n)
		for i, note := range l.Notes {
			ids[i], ups[i], created[i] = newID(), note.ID, note.CreatedAt
			titles[i], bodies[i] = nullable(note.Title), nullable(note.Body)
		}
		b.Queue(`INSERT INTO notes (org_id, lead_id, id, upstream_id, title, body, created_at)
			SELECT $1, $2, unnest($3::uuid[]), unnest($4::text[]), unnest($5::text[]), unnest($6::text[]), unnest($7::timestamptz[])
			ON CONFLICT (org_id, lead_id, upstream_id) DO UPDATE
			SET title = excluded.title, body = excluded.body, created_at = excluded.created_at`,
			r.OrgID, l.ID, ids, ups, titles, bodies, created)
	}
	if len(l.Attachments) > 0 {
		n := len(l.Attachments)
		ids, ups, names := make([]string, n), make([]string, n), make([]string, n)
		mimes, urls, sizes := make([]*string, n), make([]*string, n), make([]*int64, n)
		for i, a := range l.Attachments {
			ids[i], ups[i], names[i] = newID(), a.ID, a.FileName
			mimes[i], urls[i], sizes[i] = nullable(a.MimeType), nullable(a.URL), a.SizeBytes
		}
		b.Queue(`INSERT INTO attachments (org_id, lead_id, id, upstream_id, file_name, mime_type, url, size_bytes)
			SELECT $1, $2, unnest($3::uuid[]), unnest($4::text[]), unnest($5::text[]), unnest($6::text[]), unnest($7::text[]), unnest($8::bigint[])
			ON CONFLICT (org_id, lead_id, upstream_id) DO UPDATE
			SET file_name = excluded.file_name, mime_type = excluded.mime_type, url = excluded.url, size_bytes = excluded.size_bytes`,
			r.OrgID, l.ID, ids, ups, names, mimes, urls, sizes)
	}
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
