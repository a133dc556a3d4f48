package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/leadflow/leadflow/internal/conversion"
)

// writes collects what a batch writes, table by table, so that each table
// takes one statement however many requests the batch holds. Every row
// knows the request it is written for (own), so that a statement can be
// written again for some of the requests only (writeApart).
type writes struct {
	leads, outbox, notes, attachments, targets, summaries, outcomes *rows
	accounts, contacts, opportunities                               *rows
	updates                                                         []*update
	undos                                                           []*undoWrite // undo.go
	// owned counts the updates and undos that own has marked.
	ownedUpdates, ownedUndos int
}

// dry drops every row while keeping the multi-row statements, for a
// rehearsal (Store.Warm): each runs without a row, which leaves nothing in
// the tables, not even the index entries of rolled-back rows.
func (w *writes) dry() {
	for _, r := range w.tables() {
		*r = *r.empty(true)
	}
}

// update is a linked record whose fields a conversion changed.
type update struct {
	orgID string
	rec   *conversion.Target
	owner int
}

var leadColumns = []string{"topic", "first_name", "last_name", "company", "job_title", "email",
	"business_phone", "mobile_phone", "website", "street1", "street2", "street3", "city",
	"state_province", "postal_code", "country", "description", "source", "purchase_timeframe", "owner_id"}

func newWrites() *writes {
	leadSpec := []string{"org_id text", "id text", "status text", "process_stage text"}
	for _, c := range leadColumns {
		leadSpec = append(leadSpec, c+" text")
	}
	leadSpec = append(leadSpec, "budget_amount numeric", "custom jsonb", "customer_type text", "account_id uuid",
		"contact_id uuid", "opportunity_ids uuid[]", "conversion jsonb", "disqualify_reason text", "qualified_at timestamptz",
		"disqualified_at timestamptz", "reactivated_at timestamptz")
	return &writes{
		leads:         newRows(leadSpec...),
		accounts:      newRows(recordSpec(conversion.RecordAccount)...),
		contacts:      newRows(recordSpec(conversion.RecordContact)...),
		opportunities: newRows(recordSpec(conversion.RecordOpportunity)...),
		notes: newRows("org_id text", "lead_id text", "id uuid", "upstream_id text", "title text", "body text",
			"created_at timestamptz", "account_id uuid", "contact_id uuid", "opportunity_id uuid"),
		attachments: newRows("org_id text", "lead_id text", "id uuid", "upstream_id text", "file_name text",
			"mime_type text", "url text", "size_bytes bigint", "account_id uuid", "contact_id uuid", "opportunity_id uuid"),
		targets: newRows("org_id text", "lead_id text", "account_id uuid", "contact_id uuid", "opportunity_id uuid"),
		summaries: newRows("org_id text", "id uuid", "lead_id text", "kind text", "opportunity_id uuid", "title text",
			"body text", "created_at timestamptz"),
		// One row per event here; queueOutbox writes them as one outbox row
		// per org and reads these columns by position.
		outbox: newRows("org_id text", "event_id uuid", "subject text", "payload bytea", "headers jsonb"),
		outcomes: newRows("org_id text", "key text", "subject text", "request_hash bytea", "outcome text",
			"event_subject text", "event bytea", "event_id uuid"),
	}
}

func (w *writes) tables() []*rows {
	return []*rows{w.leads, w.outbox, w.notes, w.attachments, w.targets, w.summaries, w.outcomes,
		w.accounts, w.contacts, w.opportunities}
}

// own marks what was added since its last call as written for owner: the
// index of a request among the batch's writers.
func (w *writes) own(owner int) {
	for _, r := range w.tables() {
		for len(r.owner) < r.len() {
			r.owner = append(r.owner, owner)
		}
	}
	for ; w.ownedUpdates < len(w.updates); w.ownedUpdates++ {
		w.updates[w.ownedUpdates].owner = owner
	}
	for ; w.ownedUndos < len(w.undos); w.ownedUndos++ {
		w.undos[w.ownedUndos].owner = owner
	}
}

// recordSpec is the columns a record type's INSERT writes.
func recordSpec(typ string) []string {
	spec := []string{"org_id text", "id uuid"}
	for _, f := range conversion.RecordFields(typ) {
		t := "text"
		switch f {
		case "estimated_value", "budget_amount":
			t = "numeric"
		case "close_date":
			t = "date"
		}
		spec = append(spec, f+" "+t)
	}
	spec = append(spec, "owner_id text", "custom jsonb", "lead_id text")
	if typ != conversion.RecordAccount {
		spec = append(spec, "account_id uuid")
	}
	if typ == conversion.RecordOpportunity {
		spec = append(spec, "contact_id uuid")
	}
	for _, n := range conversion.NormColumns(typ) {
		spec = append(spec, n+"_norm text")
	}
	return spec
}

// upsertLeads writes each lead as its request carries it, with its new status.
var upsertLeads = func() string {
	var set []string
	for _, c := range newWrites().leads.cols[2:] {
		switch {
		case c == "opportunity_ids":
			set = append(set, "opportunity_ids = CASE WHEN cardinality(excluded.opportunity_ids) > 0 THEN excluded.opportunity_ids ELSE leads.opportunity_ids END")
		case strings.HasSuffix(c, "_at") || c == "disqualify_reason" || c == "customer_type" ||
			c == "account_id" || c == "contact_id" || c == "conversion":
			// Keep what earlier requests recorded when this one says nothing.
			set = append(set, fmt.Sprintf("%s = COALESCE(excluded.%s, leads.%s)", c, c, c))
		default:
			set = append(set, fmt.Sprintf("%s = excluded.%s", c, c))
		}
	}
	return "ON CONFLICT (org_id, id) DO UPDATE SET " + strings.Join(set, ", ") + ", updated_at = now()"
}()

// A step is a part of a batch's writes: the statements that write one
// table, or make one kind of change, for the rows whose owner keep admits
// (all of them when keep is nil).
type step func(b *pgx.Batch, keep func(owner int) bool)

// steps is the batch's writes, in an order that satisfies the foreign keys:
// leads, records, notes, then the outbox.
func (w *writes) steps() []step {
	moves := func(b *pgx.Batch, keep func(int) bool) {
		targets := w.targets.filter(keep)
		if targets.len() == 0 {
			return
		}
		// By lead: the upstream-id index, which a generic plan could not
		// tell from the primary key.
		custom(b, true, func() {
			for _, table := range []string{"notes", "attachments"} {
				b.Queue(fmt.Sprintf(`UPDATE %s x SET account_id = t.account_id, contact_id = t.contact_id, opportunity_id = t.opportunity_id
					FROM (%s) AS t(org_id, lead_id, account_id, contact_id, opportunity_id)
					WHERE x.org_id = t.org_id AND x.lead_id = t.lead_id
					AND (x.account_id, x.contact_id, x.opportunity_id) IS DISTINCT FROM (t.account_id, t.contact_id, t.opportunity_id)`, table, targets.selectSQL), targets.args()...)
			}
		})
	}
	return []step{
		func(b *pgx.Batch, keep func(int) bool) {
			custom(b, true, func() { queueUndos(b, w.undos, keep) }) // undo.go: writes run in processing transactions
		},
		w.leads.insert("leads", upsertLeads),
		w.accounts.insert("accounts", ""),
		w.contacts.insert("contacts", ""),
		w.opportunities.insert("opportunities", ""),
		func(b *pgx.Batch, keep func(int) bool) {
			for _, u := range w.updates {
				if keep == nil || keep(u.owner) {
					queueUpdate(b, u.orgID, u.rec)
				}
			}
		},
		w.notes.insert("notes", `ON CONFLICT (org_id, lead_id, upstream_id) DO UPDATE
			SET title = excluded.title, body = excluded.body, created_at = excluded.created_at`),
		w.attachments.insert("attachments", `ON CONFLICT (org_id, lead_id, upstream_id) DO UPDATE
			SET file_name = excluded.file_name, mime_type = excluded.mime_type, url = excluded.url, size_bytes = excluded.size_bytes`),
		moves,
		w.summaries.insert("notes", ""),
		func(b *pgx.Batch, keep func(int) bool) { queueOutbox(b, w.outbox.filter(keep)) },
		// Under the key's lock (load): no other transaction writes it
		// meanwhile, so a conflict is a fault, never a silent skip.
		w.outcomes.insert("idempotency_keys", ""),
		func(b *pgx.Batch, keep func(int) bool) {
			if slices.ContainsFunc(w.outbox.owner, func(o int) bool { return keep == nil || keep(o) }) {
				b.Queue(`SELECT pg_notify('leadflow_outbox', '')`)
			}
		},
	}
}

// insertOutbox writes one outbox row: an org's events of one transaction,
// in the order they were written.
const insertOutbox = `INSERT INTO outbox (org_id, event_ids, subjects, payloads, headers)
	VALUES ($1, $2::text[]::uuid[], $3::text[], $4::bytea[], $5::text[]::jsonb[])`

// queueOutbox queues the events as one outbox row per org, in the order of
// each org's first event; the relay publishes the rows in that order, and
// the events of each row in theirs.
func queueOutbox(b *pgx.Batch, events *rows) {
	orgs := events.vals[0]
	var groups [][]int // per org, the indexes of its events
	for j := range orgs {
		k := slices.IndexFunc(groups, func(g []int) bool { return sameOrg(orgs[g[0]], orgs[j]) })
		if k < 0 {
			groups, k = append(groups, nil), len(groups)
		}
		groups[k] = append(groups[k], j)
	}
	for _, g := range groups {
		b.Queue(insertOutbox, orgs[g[0]], textArray(pick(events.vals[1], g)),
			textArray(pick(events.vals[2], g)), byteaArray(pick(events.bins[3], g)),
			textArray(pick(events.vals[4], g)))
	}
}

// pick is the elements of col at the indexes in g, in g's order; col itself
// when g is all of it (one org, as most batches are).
func pick[T any](col []T, g []int) []T {
	if len(g) == len(col) {
		return col
	}
	out := make([]T, len(g))
	for k, j := range g {
		out[k] = col[j]
	}
	return out
}

func sameOrg(a, b *string) bool { return a == b || a != nil && b != nil && *a == *b }

// addPlan adds what an accepted request's plan writes: the lead, its
// records, notes and attachments, the idempotency record and the events.
func (t *request) addPlan(w *writes, plan *conversion.Plan) error {
	if plan.Undo != nil {
		return t.addUndo(w, plan) // undo.go
	}
	r := t.p.Request
	if err := t.addLead(w, plan); err != nil {
		return err
	}
	owner := conversion.Owner(r)
	for _, rec := range plan.Records {
		switch {
		case rec.Outcome == conversion.OutcomeCreated:
			addRecord(w, r, rec, owner)
		case rec.Outcome == conversion.OutcomeExisting && rec.Update:
			w.updates = append(w.updates, &update{orgID: r.OrgID, rec: rec})
		}
	}
	ids := map[string]any{}
	if target := plan.NoteTarget; target != nil {
		ids[target.Type] = target.ID
	}
	addNotes(w, r, ids[conversion.RecordAccount], ids[conversion.RecordContact], ids[conversion.RecordOpportunity])
	if target := plan.NoteTarget; target != nil {
		if t.st == nil || t.st.leadFound {
			// Notes that earlier requests left on the lead move too. A lead
			// new in this batch has none: a batch holds one request per lead.
			w.targets.add(r.OrgID, r.Lead.ID, ids[conversion.RecordAccount], ids[conversion.RecordContact], ids[conversion.RecordOpportunity])
		}
		if plan.Summary != "" {
			w.summaries.add(r.OrgID, newID(), r.Lead.ID, "summary", target.ID, "Lead summary", plan.Summary, t.now)
		}
	}
	last, err := t.addOutbox(w, plan.Events)
	if err != nil {
		return err
	}
	terminal := plan.Events[len(plan.Events)-1]
	t.addOutcome(w, terminal, last)
	t.out = Outcome{Event: terminal.Type, Events: len(plan.Events)}
	return nil
}

func (t *request) addLead(w *writes, plan *conversion.Plan) error {
	r := t.p.Request
	l := &r.Lead
	vals := []any{r.OrgID, l.ID, plan.Status, plan.ProcessStage}
	for _, c := range leadColumns {
		vals = append(vals, l.Field(c))
	}
	custom := l.Custom
	if custom == nil {
		custom = map[string]any{}
	}
	vals = append(vals, l.BudgetAmount, custom)

	var customerType, reason, accountID, contactID, convJSON any
	oppIDs := "{}"
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
		ids := make([]string, 0, len(c.Opportunities))
		for _, o := range c.Opportunities {
			ids = append(ids, *o.ID)
		}
		oppIDs = "{" + strings.Join(ids, ",") + "}"
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
	w.leads.add(append(vals, customerType, accountID, contactID, oppIDs, convJSON, reason, qualifiedAt, disqualifiedAt, reactivatedAt)...)
	return nil
}

// recordValues is a record's row after (org_id, id), in recordSpec's order.
func recordValues(rec *conversion.Target, owner, leadID string) []any {
	norm := conversion.NormalizeRecord(rec.Type, rec.Values.Fields)
	var vals []any
	for _, f := range conversion.RecordFields(rec.Type) {
		vals = append(vals, rec.Values.Get(f))
	}
	custom := rec.Values.Custom
	if custom == nil {
		custom = map[string]any{}
	}
	vals = append(vals, owner, custom, leadID)
	if rec.Type != conversion.RecordAccount {
		vals = append(vals, nullable(rec.AccountID))
	}
	if rec.Type == conversion.RecordOpportunity {
		vals = append(vals, nullable(rec.ContactID))
	}
	for _, n := range conversion.NormColumns(rec.Type) {
		vals = append(vals, norm[n])
	}
	return vals
}

func addRecord(w *writes, r *conversion.Request, rec *conversion.Target, owner string) {
	table := map[string]*rows{conversion.RecordAccount: w.accounts, conversion.RecordContact: w.contacts,
		conversion.RecordOpportunity: w.opportunities}[rec.Type]
	table.add(append([]any{r.OrgID, rec.ID}, recordValues(rec, owner, r.Lead.ID)...)...)
}

// queueUpdate writes a linked record whose empty fields the lead filled (or,
// with overwrite, whose fields it replaced). Its owner, lead and links stay.
func queueUpdate(b *pgx.Batch, orgID string, rec *conversion.Target) {
	spec := recordSpec(rec.Type)[2:]
	vals := recordValues(rec, "", "")
	args := []any{orgID, rec.ID}
	var set []string
	for i, s := range spec {
		col, typ, _ := strings.Cut(s, " ")
		if col == "lead_id" || col == "owner_id" || col == "account_id" || col == "contact_id" {
			continue
		}
		args = append(args, text(vals[i]))
		set = append(set, fmt.Sprintf("%s = $%d::text::%s", col, len(args), typ))
	}
	b.Queue(fmt.Sprintf(`UPDATE %s SET %s, updated_at = now() WHERE org_id = $1 AND id = $2`,
		tables[rec.Type], strings.Join(set, ", ")), args...)
}

// addNotes adds the notes and attachments the request carries, new ones
// already on the record the plan moves the lead's notes to (nil ids: they
// stay with the lead).
func addNotes(w *writes, r *conversion.Request, accountID, contactID, opportunityID any) {
	l := &r.Lead
	// One statement cannot write a row twice: of notes (or attachments) that
	// share an id, the last one stands, as upstream would have it.
	seen := map[string]bool{}
	for i := len(l.Notes) - 1; i >= 0; i-- {
		if n := l.Notes[i]; !seen[n.ID] {
			seen[n.ID] = true
			w.notes.add(r.OrgID, l.ID, newID(), n.ID, nullable(n.Title), nullable(n.Body), n.CreatedAt,
				accountID, contactID, opportunityID)
		}
	}
	clear(seen)
	for i := len(l.Attachments) - 1; i >= 0; i-- {
		if a := l.Attachments[i]; !seen[a.ID] {
			seen[a.ID] = true
			w.attachments.add(r.OrgID, l.ID, newID(), a.ID, a.FileName, nullable(a.MimeType), nullable(a.URL), a.SizeBytes,
				accountID, contactID, opportunityID)
		}
	}
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
