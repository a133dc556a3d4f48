package conversion

import (
	"strconv"
	"strings"
	"time"
)

// Plan is what an accepted request writes, in one transaction.
type Plan struct {
	// Status is the lead's status afterwards.
	Status string
	// ProcessStage is the lead's process stage afterwards.
	ProcessStage string
	// Records are the account, contact and opportunities in event order
	// (qualify only; skipped ones included).
	Records []*Target
	// Conversion is what the qualification created or linked (qualify only).
	Conversion *Conversion
	// NoteTarget is the record the lead's notes and attachments move to
	// (qualify only; zero when every record was skipped).
	NoteTarget *Target
	// Summary is the text of the summary note on the primary opportunity
	// ("" when no opportunity).
	Summary string
	// Events are the events to publish, in order.
	Events []Event
	// Undo is what an unqualify request deletes (unqualify only).
	Undo *Undo
}

// Event is one event a decision publishes.
type Event struct {
	Type string
	ID   string
	Data map[string]any
}

func (d *Draft) plan() *Plan {
	in := d.in
	r := in.Request
	owner := ownerOf(r)
	p := &Plan{Status: StatusQualified, ProcessStage: StageQualify, Records: d.targets()}

	link := func(t *Target) Link {
		if t.Outcome == OutcomeSkipped {
			return Link{Outcome: OutcomeSkipped}
		}
		id := t.ID
		return Link{ID: &id, Outcome: t.Outcome}
	}
	conv := &Conversion{Account: link(d.account), Contact: link(d.contact), Opportunities: []Link{}}
	for _, o := range d.opportunities {
		conv.Opportunities = append(conv.Opportunities, link(o))
		if o.Outcome == OutcomeCreated {
			p.ProcessStage = StageDevelop
		}
	}
	p.Conversion = conv

	accountID := ""
	if d.account.Outcome != OutcomeSkipped {
		accountID = d.account.ID
	}
	contactID := ""
	if d.contact.Outcome != OutcomeSkipped {
		contactID = d.contact.ID
	}
	if d.contact.Outcome == OutcomeCreated {
		d.contact.AccountID = accountID
	}
	for _, o := range d.opportunities {
		if o.Outcome == OutcomeCreated {
			o.AccountID, o.ContactID = accountID, contactID
		}
	}

	switch {
	case len(d.opportunities) > 0:
		p.NoteTarget = d.opportunities[0]
		p.Summary = Summary(&r.Lead)
	case contactID != "":
		p.NoteTarget = d.contact
	case accountID != "":
		p.NoteTarget = d.account
	}

	base := func(idKey string, id string) map[string]any {
		// Sized for a record's event: its ids, its fields, owner and custom.
		m := make(map[string]any, 24)
		m["org_id"], m["lead_id"], m[idKey] = r.OrgID, r.Lead.ID, id
		return m
	}
	if t := d.account; t.Outcome == OutcomeCreated {
		data := base("account_id", t.ID)
		putFields(data, RecordAccount, t.Values, owner)
		p.Events = append(p.Events, Event{Type: "account.created", ID: in.NewID(), Data: data})
	}
	if t := d.contact; t.Outcome == OutcomeCreated {
		data := base("contact_id", t.ID)
		data["account_id"] = nilIfEmpty(t.AccountID)
		putFields(data, RecordContact, t.Values, owner)
		p.Events = append(p.Events, Event{Type: "contact.created", ID: in.NewID(), Data: data})
	}
	for _, t := range d.opportunities {
		if t.Outcome != OutcomeCreated {
			continue
		}
		data := base("opportunity_id", t.ID)
		data["account_id"] = nilIfEmpty(t.AccountID)
		data["contact_id"] = nilIfEmpty(t.ContactID)
		putFields(data, RecordOpportunity, t.Values, owner)
		p.Events = append(p.Events, Event{Type: "opportunity.created", ID: in.NewID(), Data: data})
	}
	data := base("idempotency_key", r.IdempotencyKey)
	data["customer_type"] = r.CustomerType
	data["account"] = conv.Account
	data["contact"] = conv.Contact
	data["opportunities"] = conv.Opportunities
	data["owner_id"] = owner
	data["process_stage"] = p.ProcessStage
	data["qualified_at"] = timestamp(in.Now)
	p.Events = append(p.Events, Event{Type: "lead.qualified", ID: in.NewID(), Data: data})
	return p
}

func putFields(data map[string]any, typ string, v Values, owner string) {
	for _, f := range recordFields[typ] {
		data[f] = v.Get(f)
	}
	data["owner_id"] = owner
	custom := v.Custom
	if custom == nil {
		custom = map[string]any{}
	}
	data["custom"] = custom
}

// OwnerOf is who owns the records a request creates: the request's owner_id,
// else the lead's, else the actor.
func ownerOf(r *Request) string {
	switch {
	case r.OwnerID != "":
		return r.OwnerID
	case r.Lead.OwnerID != "":
		return r.Lead.OwnerID
	}
	return r.Actor.ID
}

// Owner is who owns the records a request creates.
func Owner(r *Request) string { return ownerOf(r) }

func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func disqualify(in Input) (*Plan, *Rejection) {
	r := in.Request
	if !in.Settings.allowed("disqualify", r.Actor.Roles) {
		return nil, forbidden("disqualify", r.Actor)
	}
	if l := in.Lead; l != nil {
		switch l.Status {
		case StatusDisqualified:
			return nil, reject(CodeLeadDisqualified, map[string]any{"status": l.Status}, "the lead is already disqualified")
		case StatusQualified:
			if c := l.Conversion; c != nil && len(c.Opportunities) > 0 {
				return nil, reject(CodeLeadHasOpportunity, map[string]any{"opportunities": c.Opportunities},
					"the lead has an opportunity: a lead with an opportunity cannot be disqualified")
			}
			return nil, leadOpen(l, "disqualify")
		}
	}
	data := map[string]any{"org_id": r.OrgID, "lead_id": r.Lead.ID, "idempotency_key": r.IdempotencyKey,
		"reason": r.Reason, "disqualified_at": timestamp(in.Now)}
	return &Plan{Status: StatusDisqualified, ProcessStage: StageQualify,
		Events: []Event{{Type: "lead.disqualified", ID: in.NewID(), Data: data}}}, nil
}

func reactivate(in Input) (*Plan, *Rejection) {
	r := in.Request
	if !in.Settings.allowed("reactivate", r.Actor.Roles) {
		return nil, forbidden("reactivate", r.Actor)
	}
	if in.Lead == nil || in.Lead.Status != StatusDisqualified {
		status := StatusOpen
		if in.Lead != nil {
			status = in.Lead.Status
		}
		return nil, reject(CodeLeadNotDisqualified, map[string]any{"status": status},
			"only a disqualified lead can be reactivated; this one is %s", status)
	}
	data := map[string]any{"org_id": r.OrgID, "lead_id": r.Lead.ID, "idempotency_key": r.IdempotencyKey,
		"reactivated_at": timestamp(in.Now)}
	return &Plan{Status: StatusOpen, ProcessStage: StageQualify,
		Events: []Event{{Type: "lead.reactivated", ID: in.NewID(), Data: data}}}, nil
}

// RejectionEvent is the *.rejected event of a request. orgID, leadID and key
// are nil when the request was too broken to read them.
func RejectionEvent(subject string, orgID, leadID, key *string, rej *Rejection, id string) Event {
	details := rej.Details
	if details == nil {
		details = map[string]any{}
	}
	return Event{Type: RejectedSubject(subject), ID: id, Data: map[string]any{
		"org_id": orgID, "lead_id": leadID, "idempotency_key": key,
		"code": rej.Code, "message": rej.Message, "details": details,
	}}
}

// Summary is a short plain-text summary of a lead: who, company, budget,
// timeframe and source.
func Summary(l *Lead) string {
	var b strings.Builder
	b.Grow(160)
	who := strings.TrimSpace(l.FirstName + " " + l.LastName)
	if who == "" {
		who = "unknown"
	}
	if l.JobTitle != "" {
		who += ", " + l.JobTitle
	}
	line := func(label, v string) {
		if v == "" {
			v = "not given"
		}
		b.WriteString("\n")
		b.WriteString(label)
		b.WriteString(": ")
		b.WriteString(v)
	}
	b.WriteString("Lead summary")
	line("Who", who)
	line("Company", l.Company)
	budget := ""
	if l.BudgetAmount != nil {
		budget = strconv.FormatFloat(*l.BudgetAmount, 'f', -1, 64)
	}
	line("Budget", budget)
	line("Timeframe", strings.ReplaceAll(l.PurchaseTimeframe, "_", " "))
	line("Source", l.Source)
	return b.String()
}
