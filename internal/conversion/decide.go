package conversion

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Lead statuses.
const (
	StatusOpen         = "open"
	StatusQualified    = "qualified"
	StatusDisqualified = "disqualified"
)

// Process stages of a lead.
const (
	StageQualify = "qualify"
	StageDevelop = "develop"
)

// Outcomes of a record in a qualification.
const (
	OutcomeCreated  = "created"
	OutcomeExisting = "existing"
	OutcomeSkipped  = "skipped"
)

// Link is what a qualification did about one record. ID is nil when skipped.
type Link struct {
	ID      *string `json:"id"`
	Outcome string  `json:"outcome"`
}

// Conversion is what a lead's qualification created or linked.
type Conversion struct {
	Account       Link   `json:"account"`
	Contact       Link   `json:"contact"`
	Opportunities []Link `json:"opportunities"`
}

// LeadState is what the store knows of a lead before the request.
type LeadState struct {
	Status     string
	Conversion *Conversion
}

// Existing is a record of the org loaded by id or found as a duplicate.
type Existing struct {
	Type string
	ID   string
	// AccountID is the account a contact belongs to ("" for none).
	AccountID string
	Values    Values
}

// Input is everything a decision needs.
type Input struct {
	Request  *Request
	Settings Settings
	// Lead is nil when leadflow has not seen the lead yet.
	Lead *LeadState
	// Existing holds the records the request names by id that exist in its org.
	Existing map[string]Existing
	// Undo is the state of the lead's qualification (unqualify only).
	Undo *UndoState
	Now  time.Time
	// NewID returns a new UUID for a record or an event.
	NewID func() string
}

// Target is one record a qualification creates, links or skips.
type Target struct {
	Type    string
	Outcome string
	ID      string
	// Values are the created record's values, or the linked record's values
	// after the lead's were merged in.
	Values Values
	// Update is set when a linked record's values changed.
	Update bool
	// AccountID is the account a created contact or opportunity belongs to.
	AccountID string
	// ContactID is the contact a created opportunity belongs to.
	ContactID string
	// incoming are the lead's mapped values, kept to merge into a duplicate
	// chosen by use_existing.
	incoming Values
}

// Probe is one duplicate lookup: records of RecordType whose normalized
// Column matches Key under Rule.
type Probe struct {
	RecordType string
	Rule       Rule
	Column     string
	LeadValue  string
	Key        string
	// Lock names the value being claimed: conversions that would create
	// records matching each other under Rule share it.
	Lock string
	// Lookup is false when on_duplicate is create_new: the lock is still
	// taken so that racing conversions that do check see this one's record.
	Lookup bool
}

// Draft is a qualification that passed every check but duplicates.
type Draft struct {
	in            Input
	account       *Target
	contact       *Target
	opportunities []*Target
	// Probes are the duplicate lookups to run, sorted by Lock.
	Probes []Probe
}

// Decide takes the first half of a decision: it checks a qualify request
// against the lead, the settings and the records it names, and plans what to
// create. The caller runs the draft's probes and finishes with Resolve.
// Disqualify, reactivate and unqualify requests are decided whole: their plan
// comes back at once.
func Decide(in Input) (*Draft, *Plan, *Rejection) {
	switch in.Request.Subject {
	case SubjectDisqualify:
		p, rej := disqualify(in)
		return nil, p, rej
	case SubjectReactivate:
		p, rej := reactivate(in)
		return nil, p, rej
	case SubjectUnqualify:
		p, rej := unqualify(in)
		return nil, p, rej
	}
	d, rej := draft(in)
	return d, nil, rej
}

func draft(in Input) (*Draft, *Rejection) {
	r, s := in.Request, &in.Settings
	if !s.allowed("qualify", r.Actor.Roles) {
		return nil, forbidden("qualify", r.Actor)
	}
	if rej := leadOpen(in.Lead, "qualify"); rej != nil {
		return nil, rej
	}
	consumer := r.CustomerType == CustomerConsumer
	if consumer && r.Account != nil && r.Account.Action != ActionSkip {
		return nil, InvalidRequest([]FieldError{{Path: "/account/action", Message: "must be skip for a consumer: a consumer conversion creates no account"}})
	}

	sel := selectRecords(r, s)
	account, contact, opps, unselected := sel.account, sel.contact, sel.opps, sel.unselected
	if len(unselected) > 0 {
		return nil, reject(CodeSelectionRequired, map[string]any{"records": unselected},
			"this org does not create %s automatically: say in the request whether to create, link or skip it", strings.Join(unselected, ", "))
	}
	if max := s.maxOpportunities(); len(opps) > max {
		return nil, reject(CodeTooManyOpportunities, map[string]any{"max_opportunities": max, "requested": len(opps)},
			"the request asks for %d opportunities; this org allows at most %d per lead", len(opps), max)
	}

	// Permission to create each record type.
	creates := map[string]bool{
		RecordAccount: account.Action == ActionCreate,
		RecordContact: contact.Action == ActionCreate,
	}
	for _, o := range opps {
		creates[RecordOpportunity] = creates[RecordOpportunity] || o.Action == ActionCreate
	}
	for _, typ := range []string{RecordAccount, RecordContact, RecordOpportunity} {
		if creates[typ] && !s.allowed("create_"+typ, r.Actor.Roles) {
			return nil, forbidden("create_"+typ, r.Actor)
		}
	}

	// Records named by id must exist in the org.
	var missing []map[string]any
	need := func(typ, id string) {
		if e, ok := in.Existing[id]; !ok || e.Type != typ {
			missing = append(missing, map[string]any{"record_type": typ, "id": id})
		}
	}
	if account.Action == ActionExisting {
		need(RecordAccount, account.ID)
	}
	if contact.Action == ActionExisting {
		need(RecordContact, contact.ID)
	}
	for _, o := range opps {
		if o.Action == ActionExisting {
			need(RecordOpportunity, o.ID)
		}
	}
	if len(missing) > 0 {
		return nil, reject(CodeNotFound, map[string]any{"records": missing},
			"%s %s does not exist in org %q", missing[0]["record_type"], missing[0]["id"], r.OrgID)
	}
	if account.Action == ActionExisting && contact.Action == ActionExisting {
		if c := in.Existing[contact.ID]; c.AccountID != account.ID {
			return nil, reject(CodeContactAccountMismatch,
				map[string]any{"account_id": account.ID, "contact_id": contact.ID, "contact_account_id": nilIfEmpty(c.AccountID)},
				"contact %s does not belong to account %s", contact.ID, account.ID)
		}
	}
	if account.Action == ActionCreate && strings.TrimSpace(r.Lead.Company) == "" {
		return nil, reject(CodeCompanyRequired, nil,
			"an account can be created only from a lead with a company: set lead.company, link an existing account or skip it")
	}
	if creates[RecordOpportunity] && account.Action == ActionSkip && contact.Action == ActionSkip {
		return nil, reject(CodeCustomerRequired, nil,
			"an opportunity needs a customer: create or link an account or a contact")
	}

	d := &Draft{in: in}
	d.account = d.target(RecordAccount, account.Action, account.ID, account.Fields)
	d.contact = d.target(RecordContact, contact.Action, contact.ID, contact.Fields)
	for _, o := range opps {
		d.opportunities = append(d.opportunities, d.target(RecordOpportunity, o.Action, o.ID, o.Fields))
	}

	var absent []string
	for _, t := range d.targets() {
		if t.Outcome != OutcomeCreated {
			continue
		}
		absent = append(absent, requiredMissing(s, t.Type, t.Values)...)
	}
	if len(absent) > 0 {
		absent = unique(absent)
		return nil, reject(CodeMissingRequiredFields, map[string]any{"missing": absent},
			"required fields are missing: %s", strings.Join(absent, ", "))
	}
	d.Probes = d.probes()
	return d, nil
}

// selection is what a qualify request does about each record once the
// org's auto_create settings filled in what the request left out.
type selection struct {
	account, contact *Choice
	opps             []OpportunityChoice
	// unselected are the record types the request left out and the org does
	// not create automatically.
	unselected []string
}

func selectRecords(r *Request, s *Settings) selection {
	var sel selection
	consumer := r.CustomerType == CustomerConsumer
	sel.account, sel.contact = r.Account, r.Contact
	if sel.account == nil && !consumer {
		if !s.autoCreate(RecordAccount) {
			sel.unselected = append(sel.unselected, RecordAccount)
		} else if strings.TrimSpace(r.Lead.Company) != "" {
			sel.account = &Choice{Action: ActionCreate}
		}
	}
	if sel.account == nil {
		sel.account = &Choice{Action: ActionSkip}
	}
	if sel.contact == nil {
		if !s.autoCreate(RecordContact) {
			sel.unselected = append(sel.unselected, RecordContact)
		}
		sel.contact = &Choice{Action: ActionCreate}
	}
	if r.Opportunities != nil {
		sel.opps = *r.Opportunities
	} else if !s.autoCreate(RecordOpportunity) {
		sel.unselected = append(sel.unselected, RecordOpportunity)
	} else {
		sel.opps = []OpportunityChoice{{Action: ActionCreate}}
	}
	return sel
}

// requiredMissing lists, as "record_type.field", the org's required fields
// of typ that a new record with values lacks.
func requiredMissing(s *Settings, typ string, v Values) []string {
	var out []string
	for _, f := range s.required(typ) {
		if v.Get(f) == nil {
			out = append(out, typ+"."+f)
		}
	}
	return out
}

func (d *Draft) target(typ, action, id string, overrides map[string]any) *Target {
	r := d.in.Request
	switch action {
	case ActionSkip:
		return &Target{Type: typ, Outcome: OutcomeSkipped}
	case ActionExisting:
		t := &Target{Type: typ, Outcome: OutcomeExisting, ID: id}
		if typ != RecordOpportunity {
			t.Values, t.Update = merge(d.in.Existing[id].Values, mapValues(typ, &r.Lead, d.in.Settings.FieldMap, nil), r.Overwrite)
		}
		return t
	}
	v := mapValues(typ, &r.Lead, d.in.Settings.FieldMap, overrides)
	return &Target{Type: typ, Outcome: OutcomeCreated, ID: d.in.NewID(), Values: v, incoming: v}
}

func (d *Draft) targets() []*Target {
	return append([]*Target{d.account, d.contact}, d.opportunities...)
}

func (d *Draft) probes() []Probe {
	lookup := d.in.Request.OnDuplicate != OnDuplicateCreateNew
	return probesFor(d.in.Request.OrgID, &d.in.Settings, lookup, d.account, d.contact)
}

// probesFor are the duplicate lookups, sorted by lock, for the targets that
// would be created.
func probesFor(org string, s *Settings, lookup bool, targets ...*Target) []Probe {
	out := make([]Probe, 0, 8)
	for _, t := range targets {
		if t.Outcome != OutcomeCreated {
			continue
		}
		norm := NormalizeRecord(t.Type, t.Values.Fields)
		for _, rule := range s.Rules(t.Type) {
			cols := RuleColumns(t.Type, rule.Field)
			for _, leadCol := range cols {
				v := norm[leadCol]
				if v == "" && !rule.MatchBlanks {
					continue
				}
				key := matchKey(rule, v)
				lock := "dup\x1f" + org + "\x1f" + t.Type + "\x1f" + rule.Field + "\x1f" + rule.Match + "\x1f" +
					strconv.Itoa(rule.N) + "\x1f" + key
				for _, col := range cols {
					out = append(out, Probe{RecordType: t.Type, Rule: rule, Column: col, LeadValue: v, Key: key, Lock: lock, Lookup: lookup})
				}
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Probe) int { return strings.Compare(a.Lock, b.Lock) })
	return out
}

// Match is an existing record found by one probe.
type Match struct {
	Probe       Probe
	Record      Existing
	RecordValue string
}

// Resolve finishes a qualification given the records the draft's probes found.
func (d *Draft) Resolve(found []Match) (*Plan, *Rejection) {
	r := d.in.Request
	groups := groupMatches(found)
	if r.OnDuplicate != OnDuplicateCreateNew && len(groups) > 0 {
		if r.OnDuplicate == OnDuplicateReject {
			return nil, reject(CodeDuplicatesFound, map[string]any{"matches": matchDetails(groups)},
				"%s: resend with on_duplicate use_existing or create_new, or link the record with action existing", describe(groups))
		}
		var ambiguous []matchGroup
		for _, typ := range []string{RecordAccount, RecordContact} {
			if n := countType(groups, typ); n > 1 {
				for _, g := range groups {
					if g.record.Type == typ {
						ambiguous = append(ambiguous, g)
					}
				}
			}
		}
		if len(ambiguous) > 0 {
			return nil, reject(CodeAmbiguousDuplicates, map[string]any{"matches": matchDetails(ambiguous)},
				"%s: link one of them with action existing", describe(ambiguous))
		}
		for _, g := range groups {
			t := d.account
			if g.record.Type == RecordContact {
				t = d.contact
			}
			t.Outcome, t.ID = OutcomeExisting, g.record.ID
			t.Values, t.Update = merge(g.record.Values, t.incoming, r.Overwrite)
		}
	}
	return d.plan(), nil
}

type matchGroup struct {
	record Existing
	rules  []map[string]any
}

func groupMatches(found []Match) []matchGroup {
	var groups []matchGroup
	index := map[string]int{}
	for _, m := range found {
		k := m.Record.Type + "/" + m.Record.ID
		i, ok := index[k]
		if !ok {
			i = len(groups)
			index[k] = i
			groups = append(groups, matchGroup{record: m.Record})
		}
		rule := map[string]any{"rule": m.Probe.Rule.Name, "field": m.Probe.Rule.Field,
			"lead_value": nilIfEmpty(m.Probe.LeadValue), "record_value": nilIfEmpty(m.RecordValue)}
		if !slices.ContainsFunc(groups[i].rules, func(x map[string]any) bool {
			return x["rule"] == rule["rule"] && x["lead_value"] == rule["lead_value"] && x["record_value"] == rule["record_value"]
		}) {
			groups[i].rules = append(groups[i].rules, rule)
		}
	}
	slices.SortStableFunc(groups, func(a, b matchGroup) int {
		if a.record.Type != b.record.Type {
			return strings.Compare(a.record.Type, b.record.Type)
		}
		return strings.Compare(a.record.ID, b.record.ID)
	})
	return groups
}

func countType(groups []matchGroup, typ string) int {
	n := 0
	for _, g := range groups {
		if g.record.Type == typ {
			n++
		}
	}
	return n
}

func matchDetails(groups []matchGroup) []map[string]any {
	out := make([]map[string]any, 0, len(groups))
	for _, g := range groups {
		out = append(out, map[string]any{"record_type": g.record.Type, "id": g.record.ID, "rules": g.rules})
	}
	return out
}

func describe(groups []matchGroup) string {
	a, c := countType(groups, RecordAccount), countType(groups, RecordContact)
	var parts []string
	if a > 0 {
		parts = append(parts, plural(a, "existing account matches", "existing accounts match")+" the lead")
	}
	if c > 0 {
		parts = append(parts, plural(c, "existing contact matches", "existing contacts match")+" the lead")
	}
	return strings.Join(parts, " and ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func forbidden(action string, a Actor) *Rejection {
	return reject(CodeForbidden, map[string]any{"action": action, "actor_id": a.ID, "roles": a.Roles},
		"actor %q has no role that may %s in this org", a.ID, strings.ReplaceAll(action, "_", " "))
}

// leadOpen refuses a request on a lead that is not open.
func leadOpen(l *LeadState, verb string) *Rejection {
	if l == nil || l.Status == StatusOpen {
		return nil
	}
	if l.Status == StatusDisqualified {
		return reject(CodeLeadDisqualified, map[string]any{"status": l.Status},
			"the lead is disqualified: reactivate it before you %s it", verb)
	}
	details := map[string]any{}
	if c := l.Conversion; c != nil {
		details = map[string]any{"account": c.Account, "contact": c.Contact, "opportunities": c.Opportunities}
	}
	return reject(CodeLeadAlreadyQualified, details, "the lead is already qualified")
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// unique drops repeated strings, keeping the first of each in order.
func unique(in []string) []string {
	seen := map[string]bool{}
	out := in[:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
