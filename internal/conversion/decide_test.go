package conversion

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leadflow/leadflow/schemas"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

// testNow is the fixed clock of every decision under test.
var testNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// testID is the n-th id handed out by newTestIDs: UUID-shaped, so that events
// can be checked against their schemas.
func testID(n int) string { return fmt.Sprintf("0190a5c4-0000-7000-8000-%012d", n) }

// newTestIDs returns a deterministic NewID: testID(1), testID(2), ...
func newTestIDs() func() string {
	n := 0
	return func() string {
		n++
		return testID(n)
	}
}

// Ids of records that exist in the org before the request.
const (
	accID  = "0190a5c4-7a2b-7c3d-8e4f-00000000a001"
	acc2ID = "0190a5c4-7a2b-7c3d-8e4f-00000000a002"
	conID  = "0190a5c4-7a2b-7c3d-8e4f-00000000c001"
	con2ID = "0190a5c4-7a2b-7c3d-8e4f-00000000c002"
	oppID  = "0190a5c4-7a2b-7c3d-8e4f-00000000e001"
)

// baseRequest is a realistic request; the qualify-only fields are left out so
// that every subject accepts it.
const baseRequest = `{
	"idempotency_key": "k-1",
	"org_id": "acme",
	"actor": {"id": "u-actor", "roles": ["sales_agent"]},
	"lead": {
		"id": "L-1", "topic": "50 widgets", "first_name": "Ada", "last_name": "Lovelace",
		"company": "Contoso Ltd", "job_title": "CTO", "email": "Ada@Contoso.example",
		"business_phone": "+1 (555) 010-0100", "mobile_phone": "+1 555 010 0199",
		"website": "https://www.contoso.example/about",
		"street1": "1 Main St", "street2": "Suite 2", "street3": "Floor 3", "city": "Springfield",
		"state_province": "IL", "postal_code": "62701", "country": "US",
		"description": "Wants widgets", "source": "web", "budget_amount": 12500,
		"purchase_timeframe": "this_quarter", "owner_id": "u-lead-owner",
		"custom": {"budget_code": "B-12", "segment": "smb"}
	}
}`

// request builds a schema-valid request of subject from baseRequest after edit
// changes its top level (req) and its lead.
func request(t testing.TB, subject string, edit func(req, lead map[string]any)) *Request {
	t.Helper()
	p := Parse(subject, []byte(decideBody(t, subject, edit)))
	require.Nil(t, p.Invalid, "test request is invalid: %v", p.Invalid)
	return p.Request
}

// testBundle is what a decision test needs: an Input to adjust before Decide.
type testBundle struct {
	in Input
}

func setup(t testing.TB, subject string, edit func(req, lead map[string]any), settings string) *testBundle {
	t.Helper()
	return &testBundle{in: Input{
		Request:  request(t, subject, edit),
		Settings: mustSettings(t, settings),
		Existing: map[string]Existing{},
		Now:      testNow,
		NewID:    newTestIDs(),
	}}
}

// draftOf runs Decide on a qualify input that must pass.
func draftOf(t testing.TB, in Input) *Draft {
	t.Helper()
	d, p, rej := Decide(in)
	require.Nil(t, rej, "unexpected rejection: %v", rej)
	require.Nil(t, p)
	require.NotNil(t, d)
	return d
}

// planOf runs Decide and Resolve with no matches on a qualify input that must pass.
func planOf(t testing.TB, in Input) *Plan {
	t.Helper()
	p, rej := draftOf(t, in).Resolve(nil)
	require.Nil(t, rej, "unexpected rejection: %v", rej)
	require.NotNil(t, p)
	return p
}

func eventTypes(p *Plan) []string {
	var out []string
	for _, e := range p.Events {
		out = append(out, e.Type)
	}
	return out
}

func eventOf(t testing.TB, p *Plan, typ string) Event {
	t.Helper()
	for _, e := range p.Events {
		if e.Type == typ {
			return e
		}
	}
	require.Failf(t, "no such event", "%s not in %v", typ, eventTypes(p))
	return Event{}
}

// requireValidEvent checks an event's data, as JSON, against the schema of its type.
func requireValidEvent(t testing.TB, e Event) {
	t.Helper()
	path := "events/" + e.Type + ".schema.json"
	if strings.HasSuffix(e.Type, ".rejected") {
		path = "events/rejected.schema.json"
	}
	raw, err := json.Marshal(e.Data)
	require.NoError(t, err)
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	require.NoError(t, err)
	errs, err := schemas.Validate(path, doc)
	require.NoError(t, err)
	require.Empty(t, errs, "%s data does not match its schema: %s", e.Type, raw)
}

// requireValidRejection checks the rejection event built from rej against its schema.
func requireValidRejection(t testing.TB, in Input, rej *Rejection) {
	t.Helper()
	r := in.Request
	ev := RejectionEvent(r.Subject, &r.OrgID, &r.Lead.ID, &r.IdempotencyKey, rej, testID(999))
	require.Equal(t, RejectedSubject(r.Subject), ev.Type)
	requireValidEvent(t, ev)
}

func link(id, outcome string) Link {
	if id == "" {
		return Link{Outcome: outcome}
	}
	return Link{ID: &id, Outcome: outcome}
}

func qualifiedLead() *LeadState {
	return &LeadState{Status: StatusQualified, Conversion: &Conversion{
		Account:       link(accID, OutcomeCreated),
		Contact:       link(conID, OutcomeExisting),
		Opportunities: []Link{link(oppID, OutcomeCreated)},
	}}
}

func withOpportunities(n int, action string) func(req, lead map[string]any) {
	return func(req, _ map[string]any) {
		opps := []any{}
		for i := range n {
			if action == ActionExisting {
				opps = append(opps, map[string]any{"action": ActionExisting, "id": fmt.Sprintf("0190a5c4-7a2b-7c3d-8e4f-0000000e%04d", i)})
			} else {
				opps = append(opps, map[string]any{"action": ActionCreate})
			}
		}
		req["opportunities"] = opps
	}
}

func TestDecideRejects(t *testing.T) {
	t.Parallel()

	choose := func(kv ...any) func(req, lead map[string]any) {
		return func(req, _ map[string]any) {
			for i := 0; i < len(kv); i += 2 {
				req[kv[i].(string)] = kv[i+1]
			}
		}
	}
	roles := func(r ...string) func(req, lead map[string]any) {
		return func(req, _ map[string]any) {
			req["actor"].(map[string]any)["roles"] = append([]string{}, r...)
		}
	}
	allOff := `{"auto_create": {"account": false, "contact": false, "opportunity": false}}`

	cases := []struct {
		name     string
		subject  string // default qualify
		edit     func(req, lead map[string]any)
		settings string
		lead     *LeadState
		existing map[string]Existing
		code     string
		details  map[string]any
	}{
		// forbidden
		{
			name: "no role", edit: roles(),
			code: CodeForbidden, details: map[string]any{"action": "qualify", "actor_id": "u-actor", "roles": []string{}},
		},
		{
			name: "a role that may not qualify", edit: roles("viewer"),
			code: CodeForbidden, details: map[string]any{"action": "qualify", "actor_id": "u-actor", "roles": []string{"viewer"}},
		},
		{
			name: "custom qualify permission leaves out the default roles", settings: `{"permissions": {"qualify": ["admin"]}}`,
			code: CodeForbidden, details: map[string]any{"action": "qualify", "actor_id": "u-actor", "roles": []string{"sales_agent"}},
		},
		{
			name: "forbidden before the lead state is looked at", edit: roles("viewer"), lead: qualifiedLead(),
			code: CodeForbidden, details: map[string]any{"action": "qualify", "actor_id": "u-actor", "roles": []string{"viewer"}},
		},
		{
			name: "create_account permission missing", settings: `{"permissions": {"create_account": ["sales_manager"]}}`,
			code: CodeForbidden, details: map[string]any{"action": "create_account", "actor_id": "u-actor", "roles": []string{"sales_agent"}},
		},
		{
			name: "create_contact permission missing", settings: `{"permissions": {"create_contact": []}}`,
			code: CodeForbidden, details: map[string]any{"action": "create_contact", "actor_id": "u-actor", "roles": []string{"sales_agent"}},
		},
		{
			name: "create_opportunity permission missing", settings: `{"permissions": {"create_opportunity": ["sales_manager"]}}`,
			code: CodeForbidden, details: map[string]any{"action": "create_opportunity", "actor_id": "u-actor", "roles": []string{"sales_agent"}},
		},
		{
			name: "admin may qualify but not create by default", edit: roles("admin"), settings: `{"permissions": {"qualify": ["admin"]}}`,
			code: CodeForbidden, details: map[string]any{"action": "create_account", "actor_id": "u-actor", "roles": []string{"admin"}},
		},
		{
			name: "disqualify without a role", subject: SubjectDisqualify, edit: roles("viewer"),
			code: CodeForbidden, details: map[string]any{"action": "disqualify", "actor_id": "u-actor", "roles": []string{"viewer"}},
		},
		{
			name: "disqualify by managers only", subject: SubjectDisqualify, settings: `{"permissions": {"disqualify": ["sales_manager"]}}`,
			code: CodeForbidden, details: map[string]any{"action": "disqualify", "actor_id": "u-actor", "roles": []string{"sales_agent"}},
		},
		{
			name: "reactivate by nobody", subject: SubjectReactivate, settings: `{"permissions": {"reactivate": []}}`,
			lead: &LeadState{Status: StatusDisqualified},
			code: CodeForbidden, details: map[string]any{"action": "reactivate", "actor_id": "u-actor", "roles": []string{"sales_agent"}},
		},

		// lead state, qualify
		{
			name: "lead already qualified", lead: qualifiedLead(),
			code: CodeLeadAlreadyQualified, details: map[string]any{
				"account":       link(accID, OutcomeCreated),
				"contact":       link(conID, OutcomeExisting),
				"opportunities": []Link{link(oppID, OutcomeCreated)},
			},
		},
		{
			name: "lead already qualified as a consumer without opportunity",
			lead: &LeadState{Status: StatusQualified, Conversion: &Conversion{
				Account: link("", OutcomeSkipped), Contact: link(conID, OutcomeCreated), Opportunities: []Link{},
			}},
			code: CodeLeadAlreadyQualified, details: map[string]any{
				"account":       link("", OutcomeSkipped),
				"contact":       link(conID, OutcomeCreated),
				"opportunities": []Link{},
			},
		},
		{
			name: "lead disqualified", lead: &LeadState{Status: StatusDisqualified},
			code: CodeLeadDisqualified, details: map[string]any{"status": StatusDisqualified},
		},

		// selection_required
		{
			name: "account left to auto_create off", settings: `{"auto_create": {"account": false}}`,
			code: CodeSelectionRequired, details: map[string]any{"records": []string{RecordAccount}},
		},
		{
			name: "contact left to auto_create off", settings: `{"auto_create": {"contact": false}}`,
			code: CodeSelectionRequired, details: map[string]any{"records": []string{RecordContact}},
		},
		{
			name: "opportunities left to auto_create off", settings: `{"auto_create": {"opportunity": false}}`,
			code: CodeSelectionRequired, details: map[string]any{"records": []string{RecordOpportunity}},
		},
		{
			name: "everything left to auto_create off", settings: allOff,
			code: CodeSelectionRequired, details: map[string]any{"records": []string{RecordAccount, RecordContact, RecordOpportunity}},
		},
		{
			name: "only what the request leaves out is listed", settings: allOff,
			edit: choose("account", map[string]any{"action": "skip"}),
			code: CodeSelectionRequired, details: map[string]any{"records": []string{RecordContact, RecordOpportunity}},
		},
		{
			name: "account left out without a company", settings: `{"auto_create": {"account": false}}`,
			edit: func(_, lead map[string]any) { delete(lead, "company") },
			code: CodeSelectionRequired, details: map[string]any{"records": []string{RecordAccount}},
		},

		// too_many_opportunities
		{
			name: "six opportunities against the default max", edit: withOpportunities(6, ActionCreate),
			code: CodeTooManyOpportunities, details: map[string]any{"max_opportunities": 5, "requested": 6},
		},
		{
			name: "linked opportunities count too", edit: withOpportunities(6, ActionExisting),
			code: CodeTooManyOpportunities, details: map[string]any{"max_opportunities": 5, "requested": 6},
		},
		{
			name: "three opportunities against an org max of 2", edit: withOpportunities(3, ActionCreate), settings: `{"max_opportunities": 2}`,
			code: CodeTooManyOpportunities, details: map[string]any{"max_opportunities": 2, "requested": 3},
		},
		{
			name: "auto-created opportunity against an org max of 0", settings: `{"max_opportunities": 0}`,
			code: CodeTooManyOpportunities, details: map[string]any{"max_opportunities": 0, "requested": 1},
		},

		// not_found
		{
			name: "existing account not in the org",
			edit: choose("account", map[string]any{"action": "existing", "id": accID}),
			code: CodeNotFound, details: map[string]any{"records": []map[string]any{{"record_type": RecordAccount, "id": accID}}},
		},
		{
			name:     "existing contact id names an account",
			edit:     choose("contact", map[string]any{"action": "existing", "id": accID}),
			existing: map[string]Existing{accID: {Type: RecordAccount, ID: accID}},
			code:     CodeNotFound, details: map[string]any{"records": []map[string]any{{"record_type": RecordContact, "id": accID}}},
		},
		{
			name: "existing opportunity not in the org",
			edit: choose("opportunities", []any{map[string]any{"action": "existing", "id": oppID}}),
			code: CodeNotFound, details: map[string]any{"records": []map[string]any{{"record_type": RecordOpportunity, "id": oppID}}},
		},
		{
			name: "every missing record is listed",
			edit: choose(
				"account", map[string]any{"action": "existing", "id": accID},
				"contact", map[string]any{"action": "existing", "id": conID},
				"opportunities", []any{map[string]any{"action": "existing", "id": oppID}}),
			existing: map[string]Existing{conID: {Type: RecordContact, ID: conID, AccountID: accID}},
			code:     CodeNotFound, details: map[string]any{"records": []map[string]any{
				{"record_type": RecordAccount, "id": accID}, {"record_type": RecordOpportunity, "id": oppID},
			}},
		},

		// contact_account_mismatch
		{
			name: "existing contact of another account",
			edit: choose(
				"account", map[string]any{"action": "existing", "id": accID},
				"contact", map[string]any{"action": "existing", "id": conID}),
			existing: map[string]Existing{
				accID: {Type: RecordAccount, ID: accID},
				conID: {Type: RecordContact, ID: conID, AccountID: acc2ID},
			},
			code: CodeContactAccountMismatch, details: map[string]any{"account_id": accID, "contact_id": conID, "contact_account_id": acc2ID},
		},
		{
			name: "existing contact of no account",
			edit: choose(
				"account", map[string]any{"action": "existing", "id": accID},
				"contact", map[string]any{"action": "existing", "id": conID}),
			existing: map[string]Existing{
				accID: {Type: RecordAccount, ID: accID},
				conID: {Type: RecordContact, ID: conID},
			},
			code: CodeContactAccountMismatch, details: map[string]any{"account_id": accID, "contact_id": conID, "contact_account_id": nil},
		},

		// company_required
		{
			name: "account created from a lead without company",
			edit: func(req, lead map[string]any) {
				delete(lead, "company")
				req["account"] = map[string]any{"action": "create"}
			},
			code: CodeCompanyRequired, details: map[string]any{},
		},
		{
			name: "account created from a blank company",
			edit: func(req, lead map[string]any) {
				lead["company"] = "   "
				req["account"] = map[string]any{"action": "create"}
			},
			code: CodeCompanyRequired, details: map[string]any{},
		},
		{
			name: "an account name override does not stand in for the company",
			edit: func(req, lead map[string]any) {
				delete(lead, "company")
				req["account"] = map[string]any{"action": "create", "fields": map[string]any{"name": "Contoso"}}
			},
			code: CodeCompanyRequired, details: map[string]any{},
		},

		// customer_required
		{
			name: "business skips account and contact but creates an opportunity",
			edit: choose("account", map[string]any{"action": "skip"}, "contact", map[string]any{"action": "skip"}),
			code: CodeCustomerRequired, details: map[string]any{},
		},
		{
			name: "business skips both and asks for an opportunity explicitly",
			edit: choose("account", map[string]any{"action": "skip"}, "contact", map[string]any{"action": "skip"},
				"opportunities", []any{map[string]any{"action": "create"}}),
			code: CodeCustomerRequired, details: map[string]any{},
		},
		{
			name: "business without company skips the contact",
			edit: func(req, lead map[string]any) {
				delete(lead, "company")
				req["contact"] = map[string]any{"action": "skip"}
			},
			code: CodeCustomerRequired, details: map[string]any{},
		},
		{
			name: "consumer skips the contact",
			edit: choose("customer_type", "consumer", "contact", map[string]any{"action": "skip"}),
			code: CodeCustomerRequired, details: map[string]any{},
		},

		// disqualify
		{
			name: "disqualify a lead with an opportunity", subject: SubjectDisqualify, lead: qualifiedLead(),
			code: CodeLeadHasOpportunity, details: map[string]any{"opportunities": []Link{link(oppID, OutcomeCreated)}},
		},
		{
			name: "disqualify a disqualified lead", subject: SubjectDisqualify, lead: &LeadState{Status: StatusDisqualified},
			code: CodeLeadDisqualified, details: map[string]any{"status": StatusDisqualified},
		},
		{
			name: "disqualify a qualified lead without opportunity", subject: SubjectDisqualify,
			lead: &LeadState{Status: StatusQualified, Conversion: &Conversion{
				Account: link(accID, OutcomeCreated), Contact: link(conID, OutcomeCreated), Opportunities: []Link{},
			}},
			code: CodeLeadAlreadyQualified, details: map[string]any{
				"account": link(accID, OutcomeCreated), "contact": link(conID, OutcomeCreated), "opportunities": []Link{},
			},
		},

		// reactivate
		{
			name: "reactivate an unseen lead", subject: SubjectReactivate,
			code: CodeLeadNotDisqualified, details: map[string]any{"status": StatusOpen},
		},
		{
			name: "reactivate an open lead", subject: SubjectReactivate, lead: &LeadState{Status: StatusOpen},
			code: CodeLeadNotDisqualified, details: map[string]any{"status": StatusOpen},
		},
		{
			name: "reactivate a qualified lead", subject: SubjectReactivate, lead: qualifiedLead(),
			code: CodeLeadNotDisqualified, details: map[string]any{"status": StatusQualified},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			subject := tc.subject
			if subject == "" {
				subject = SubjectQualify
			}
			b := setup(t, subject, tc.edit, tc.settings)
			b.in.Lead = tc.lead
			if tc.existing != nil {
				b.in.Existing = tc.existing
			}
			d, p, rej := Decide(b.in)
			require.Nil(t, d)
			require.Nil(t, p)
			require.NotNil(t, rej)
			require.Equal(t, tc.code, rej.Code, rej.Message)
			require.NotEmpty(t, rej.Message)
			require.Equal(t, rej.Code+": "+rej.Message, rej.Error())
			require.Equal(t, tc.details, rej.Details)
			requireValidRejection(t, b.in, rej)
		})
	}
}

func TestDecideConsumerCannotCreateAnAccount(t *testing.T) {
	t.Parallel()

	for _, action := range []string{ActionCreate, ActionExisting} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			b := setup(t, SubjectQualify, func(req, _ map[string]any) {
				req["customer_type"] = "consumer"
				acc := map[string]any{"action": action}
				if action == ActionExisting {
					acc["id"] = accID
				}
				req["account"] = acc
			}, "")
			b.in.Existing[accID] = Existing{Type: RecordAccount, ID: accID}
			_, _, rej := Decide(b.in)
			require.Equal(t, []string{"/account/action"}, errorPaths(t, rej))
			requireValidRejection(t, b.in, rej)
		})
	}
}

func TestDecideMissingRequiredFields(t *testing.T) {
	t.Parallel()

	const required = `{"required_fields": {
		"account": ["website", "phone", "country"],
		"contact": ["email", "custom.segment"],
		"opportunity": ["close_date", "estimated_value", "name"]
	}}`
	cases := []struct {
		name     string
		edit     func(req, lead map[string]any)
		settings string
		missing  []string // nil: accepted
	}{
		{
			name: "every missing field is listed",
			edit: func(req, lead map[string]any) {
				delete(lead, "website")
				delete(lead, "business_phone")
				delete(lead, "email")
			},
			settings: required,
			missing:  []string{"account.website", "account.phone", "contact.email", "contact.custom.segment", "opportunity.close_date", "opportunity.estimated_value"},
		},
		{
			name:     "blank values count as missing",
			edit:     func(_, lead map[string]any) { lead["country"] = "  " },
			settings: `{"required_fields": {"account": ["country"], "contact": ["country"]}}`,
			missing:  []string{"account.country", "contact.country"},
		},
		{
			name: "overrides and the field map supply required fields",
			edit: func(req, _ map[string]any) {
				req["contact"] = map[string]any{"action": "create", "fields": map[string]any{"custom": map[string]any{"segment": "smb"}}}
				req["opportunities"] = []any{map[string]any{"action": "create", "fields": map[string]any{"close_date": "2025-06-30", "estimated_value": 100}}}
			},
			settings: `{"required_fields": {"contact": ["custom.segment"], "opportunity": ["close_date", "estimated_value", "custom.budget_code"]},
				"field_map": [{"from": "custom.budget_code", "to": "opportunity.custom.budget_code"}]}`,
		},
		{
			name:     "a custom field on the lead is not copied without a field map",
			settings: `{"required_fields": {"opportunity": ["custom.budget_code"]}}`,
			missing:  []string{"opportunity.custom.budget_code"},
		},
		{
			name: "linked and skipped records are not checked",
			edit: func(req, _ map[string]any) {
				req["account"] = map[string]any{"action": "existing", "id": accID}
				req["contact"] = map[string]any{"action": "skip"}
			},
			settings: `{"required_fields": {"account": ["custom.tier"], "contact": ["custom.tier"], "opportunity": ["currency"]}}`,
			missing:  []string{"opportunity.currency"},
		},
		{
			name: "no opportunity, no opportunity check",
			edit: func(req, _ map[string]any) {
				req["opportunities"] = []any{}
			},
			settings: `{"required_fields": {"opportunity": ["currency"]}}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, SubjectQualify, tc.edit, tc.settings)
			b.in.Existing[accID] = Existing{Type: RecordAccount, ID: accID}
			d, p, rej := Decide(b.in)
			require.Nil(t, p)
			if tc.missing == nil {
				require.Nil(t, rej, "unexpected rejection: %v", rej)
				require.NotNil(t, d)
				return
			}
			require.Nil(t, d)
			require.NotNil(t, rej)
			require.Equal(t, CodeMissingRequiredFields, rej.Code)
			require.ElementsMatch(t, tc.missing, rej.Details["missing"])
			for _, m := range tc.missing {
				require.Contains(t, rej.Message, m)
			}
			requireValidRejection(t, b.in, rej)
		})
	}
}

func TestDecideMissingRequiredFieldsListedOnce(t *testing.T) {
	t.Parallel()

	b := setup(t, SubjectQualify, withOpportunities(2, ActionCreate), `{"required_fields": {"opportunity": ["close_date", "currency"]}}`)
	_, _, rej := Decide(b.in)
	require.NotNil(t, rej)
	require.Equal(t, CodeMissingRequiredFields, rej.Code)
	require.ElementsMatch(t, []string{"opportunity.close_date", "opportunity.currency"}, rej.Details["missing"])
	requireValidRejection(t, b.in, rej)
}

func TestDecideAccepts(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name     string
		edit     func(req, lead map[string]any)
		settings string
		existing map[string]Existing
		// outcomes of account, contact and each opportunity.
		account, contact string
		opps             []string
	}{
		{
			name:    "defaults",
			account: OutcomeCreated, contact: OutcomeCreated, opps: []string{OutcomeCreated},
		},
		{
			name:     "auto_create off but the request chooses everything",
			settings: `{"auto_create": {"account": false, "contact": false, "opportunity": false}}`,
			edit: func(req, _ map[string]any) {
				req["account"] = map[string]any{"action": "create"}
				req["contact"] = map[string]any{"action": "create"}
				req["opportunities"] = []any{map[string]any{"action": "create"}}
			},
			account: OutcomeCreated, contact: OutcomeCreated, opps: []string{OutcomeCreated},
		},
		{
			name:     "auto_create off and the request skips or empties",
			settings: `{"auto_create": {"account": false, "contact": false, "opportunity": false}}`,
			edit: func(req, _ map[string]any) {
				req["account"] = map[string]any{"action": "skip"}
				req["contact"] = map[string]any{"action": "create"}
				req["opportunities"] = []any{}
			},
			account: OutcomeSkipped, contact: OutcomeCreated, opps: []string{},
		},
		{
			name:     "consumer needs no account selection",
			settings: `{"auto_create": {"account": false}}`,
			edit:     func(req, _ map[string]any) { req["customer_type"] = "consumer" },
			account:  OutcomeSkipped, contact: OutcomeCreated, opps: []string{OutcomeCreated},
		},
		{
			name:    "auto_create skips the account of a lead without company",
			edit:    func(_, lead map[string]any) { delete(lead, "company") },
			account: OutcomeSkipped, contact: OutcomeCreated, opps: []string{OutcomeCreated},
		},
		{
			name:    "five opportunities, the default max",
			edit:    withOpportunities(5, ActionCreate),
			account: OutcomeCreated, contact: OutcomeCreated,
			opps: []string{OutcomeCreated, OutcomeCreated, OutcomeCreated, OutcomeCreated, OutcomeCreated},
		},
		{
			name:     "skipping the account needs no create_account permission",
			settings: `{"permissions": {"create_account": []}}`,
			edit:     func(req, _ map[string]any) { req["account"] = map[string]any{"action": "skip"} },
			account:  OutcomeSkipped, contact: OutcomeCreated, opps: []string{OutcomeCreated},
		},
		{
			name:     "linking the account needs no create_account permission",
			settings: `{"permissions": {"create_account": []}}`,
			edit:     func(req, _ map[string]any) { req["account"] = map[string]any{"action": "existing", "id": accID} },
			existing: map[string]Existing{accID: {Type: RecordAccount, ID: accID}},
			account:  OutcomeExisting, contact: OutcomeCreated, opps: []string{OutcomeCreated},
		},
		{
			name: "custom permissions for a custom role",
			settings: `{"permissions": {"qualify": ["admin"], "create_account": ["admin"], "create_contact": ["admin"],
				"create_opportunity": ["admin"]}}`,
			edit:    func(req, _ map[string]any) { req["actor"].(map[string]any)["roles"] = []string{"admin"} },
			account: OutcomeCreated, contact: OutcomeCreated, opps: []string{OutcomeCreated},
		},
		{
			name: "existing contact of the existing account",
			edit: func(req, _ map[string]any) {
				req["account"] = map[string]any{"action": "existing", "id": accID}
				req["contact"] = map[string]any{"action": "existing", "id": conID}
				req["opportunities"] = []any{map[string]any{"action": "existing", "id": oppID}, map[string]any{"action": "create"}}
			},
			existing: map[string]Existing{
				accID: {Type: RecordAccount, ID: accID},
				conID: {Type: RecordContact, ID: conID, AccountID: accID},
				oppID: {Type: RecordOpportunity, ID: oppID},
			},
			account: OutcomeExisting, contact: OutcomeExisting, opps: []string{OutcomeExisting, OutcomeCreated},
		},
		{
			name: "existing contact without account when the account is created",
			edit: func(req, _ map[string]any) { req["contact"] = map[string]any{"action": "existing", "id": conID} },
			existing: map[string]Existing{
				conID: {Type: RecordContact, ID: conID},
			},
			account: OutcomeCreated, contact: OutcomeExisting, opps: []string{OutcomeCreated},
		},
		{
			name: "both skipped with no opportunity",
			edit: func(req, _ map[string]any) {
				req["account"] = map[string]any{"action": "skip"}
				req["contact"] = map[string]any{"action": "skip"}
				req["opportunities"] = []any{}
			},
			account: OutcomeSkipped, contact: OutcomeSkipped, opps: []string{},
		},
		{
			name: "consumer with a linked contact",
			edit: func(req, _ map[string]any) {
				req["customer_type"] = "consumer"
				req["contact"] = map[string]any{"action": "existing", "id": conID}
			},
			existing: map[string]Existing{conID: {Type: RecordContact, ID: conID}},
			account:  OutcomeSkipped, contact: OutcomeExisting, opps: []string{OutcomeCreated},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, SubjectQualify, tc.edit, tc.settings)
			if tc.existing != nil {
				b.in.Existing = tc.existing
			}
			p := planOf(t, b.in)
			require.Equal(t, StatusQualified, p.Status)
			require.Equal(t, tc.account, p.Conversion.Account.Outcome)
			require.Equal(t, tc.contact, p.Conversion.Contact.Outcome)
			var opps []string
			for _, o := range p.Conversion.Opportunities {
				opps = append(opps, o.Outcome)
			}
			require.Equal(t, tc.opps, append([]string{}, opps...))
			require.Equal(t, tc.account == OutcomeSkipped, p.Conversion.Account.ID == nil)
			require.Equal(t, tc.contact == OutcomeSkipped, p.Conversion.Contact.ID == nil)

			// One *.created event per created record, then lead.qualified.
			var want []string
			if tc.account == OutcomeCreated {
				want = append(want, "account.created")
			}
			if tc.contact == OutcomeCreated {
				want = append(want, "contact.created")
			}
			for _, o := range tc.opps {
				if o == OutcomeCreated {
					want = append(want, "opportunity.created")
				}
			}
			want = append(want, "lead.qualified")
			require.Equal(t, want, eventTypes(p))
			for _, e := range p.Events {
				requireValidEvent(t, e)
			}
		})
	}
}

func TestDecideBlankCompanyAutoCreate(t *testing.T) {
	t.Parallel()

	b := setup(t, SubjectQualify, func(_, lead map[string]any) { lead["company"] = "   " }, "")
	p := planOf(t, b.in)
	require.Equal(t, OutcomeSkipped, p.Conversion.Account.Outcome)
}

func TestDecideDefaultBusinessPlan(t *testing.T) {
	t.Parallel()

	b := setup(t, SubjectQualify, nil, "")
	p := planOf(t, b.in)

	require.Equal(t, StatusQualified, p.Status)
	require.Equal(t, StageDevelop, p.ProcessStage)
	require.Equal(t, []string{"account.created", "contact.created", "opportunity.created", "lead.qualified"}, eventTypes(p))
	for i, e := range p.Events {
		require.Equal(t, testID(4+i), e.ID, "event ids come after the record ids")
		requireValidEvent(t, e)
	}
	address := map[string]any{
		"street1": "1 Main St", "street2": "Suite 2", "street3": "Floor 3", "city": "Springfield",
		"state_province": "IL", "postal_code": "62701", "country": "US",
	}
	with := func(m map[string]any) map[string]any {
		for k, v := range address {
			m[k] = v
		}
		return m
	}
	require.Equal(t, with(map[string]any{
		"org_id": "acme", "lead_id": "L-1", "account_id": testID(1),
		"name": "Contoso Ltd", "website": "https://www.contoso.example/about", "phone": "+1 (555) 010-0100",
		"owner_id": "u-lead-owner", "custom": map[string]any{},
	}), p.Events[0].Data)
	require.Equal(t, with(map[string]any{
		"org_id": "acme", "lead_id": "L-1", "contact_id": testID(2), "account_id": testID(1),
		"first_name": "Ada", "last_name": "Lovelace", "job_title": "CTO", "email": "Ada@Contoso.example",
		"business_phone": "+1 (555) 010-0100", "mobile_phone": "+1 555 010 0199",
		"owner_id": "u-lead-owner", "custom": map[string]any{},
	}), p.Events[1].Data)
	require.Equal(t, map[string]any{
		"org_id": "acme", "lead_id": "L-1", "opportunity_id": testID(3), "account_id": testID(1), "contact_id": testID(2),
		"name": "50 widgets", "estimated_value": nil, "currency": nil, "close_date": nil,
		"budget_amount": 12500.0, "purchase_timeframe": "this_quarter", "stage": DefaultStage, "description": nil,
		"owner_id": "u-lead-owner", "custom": map[string]any{},
	}, p.Events[2].Data)
	require.Equal(t, map[string]any{
		"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-1", "customer_type": CustomerBusiness,
		"account":       link(testID(1), OutcomeCreated),
		"contact":       link(testID(2), OutcomeCreated),
		"opportunities": []Link{link(testID(3), OutcomeCreated)},
		"owner_id":      "u-lead-owner", "process_stage": StageDevelop, "qualified_at": "2025-03-01T12:00:00Z",
	}, p.Events[3].Data)

	require.Equal(t, &Conversion{
		Account:       link(testID(1), OutcomeCreated),
		Contact:       link(testID(2), OutcomeCreated),
		Opportunities: []Link{link(testID(3), OutcomeCreated)},
	}, p.Conversion)

	require.Len(t, p.Records, 3)
	require.Equal(t, []string{RecordAccount, RecordContact, RecordOpportunity},
		[]string{p.Records[0].Type, p.Records[1].Type, p.Records[2].Type})
	require.Equal(t, testID(1), p.Records[1].AccountID, "the contact belongs to the new account")
	require.Equal(t, testID(1), p.Records[2].AccountID)
	require.Equal(t, testID(2), p.Records[2].ContactID)

	require.Same(t, p.Records[2], p.NoteTarget, "notes go to the primary opportunity")
	require.Equal(t, "Lead summary\nWho: Ada Lovelace, CTO\nCompany: Contoso Ltd\nBudget: 12500\nTimeframe: this quarter\nSource: web", p.Summary)
}

func TestDecideQualifiedAtIsUTC(t *testing.T) {
	t.Parallel()

	b := setup(t, SubjectQualify, nil, "")
	b.in.Now = time.Date(2025, 3, 1, 13, 30, 0, 500, time.FixedZone("CET", 3600))
	p := planOf(t, b.in)
	require.Equal(t, "2025-03-01T12:30:00.0000005Z", eventOf(t, p, "lead.qualified").Data["qualified_at"])
}

func TestDecideOwner(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name string
		edit func(req, lead map[string]any)
		want string
	}{
		{"request owner_id wins", func(req, _ map[string]any) { req["owner_id"] = "u-request-owner" }, "u-request-owner"},
		{"else the lead's owner_id", nil, "u-lead-owner"},
		{"else the actor", func(_, lead map[string]any) { delete(lead, "owner_id") }, "u-actor"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, SubjectQualify, tc.edit, "")
			require.Equal(t, tc.want, Owner(b.in.Request))
			p := planOf(t, b.in)
			require.Len(t, p.Events, 4)
			for _, e := range p.Events {
				require.Equal(t, tc.want, e.Data["owner_id"], e.Type)
			}
		})
	}
}

// withOverrides gives the account, the contact and the first of two
// opportunities fields of the request's own, custom ones included.
func withOverrides(req, _ map[string]any) {
	req["account"] = map[string]any{"action": "create", "fields": map[string]any{
		"name": "Contoso Holdings", "city": "Chicago", "custom": map[string]any{"tier": "gold"},
	}}
	req["contact"] = map[string]any{"action": "create", "fields": map[string]any{"email": "ada@new.example", "job_title": "CEO"}}
	req["opportunities"] = []any{
		map[string]any{"action": "create", "fields": map[string]any{
			"name": "Big deal", "estimated_value": 100000, "currency": "EUR", "close_date": "2025-06-30",
			"stage": "propose", "custom": map[string]any{"budget_code": "OVERRIDE"},
		}},
		map[string]any{"action": "create"},
	}
}

func TestDecideOverridesAndFieldMap(t *testing.T) {
	t.Parallel()

	b := setup(t, SubjectQualify, withOverrides, `{"field_map": [
		{"from": "custom.budget_code", "to": "opportunity.custom.budget_code"},
		{"from": "source", "to": "contact.custom.lead_source"},
		{"from": "description", "to": "opportunity.description"},
		{"from": "custom.segment", "to": "account.custom.segment"},
		{"from": "custom.absent", "to": "account.custom.absent"},
		{"from": "city", "to": "account.city"}
	]}`)
	p := planOf(t, b.in)
	require.Equal(t, []string{"account.created", "contact.created", "opportunity.created", "opportunity.created", "lead.qualified"}, eventTypes(p))
	for _, e := range p.Events {
		requireValidEvent(t, e)
	}

	account := p.Events[0].Data
	require.Equal(t, "Contoso Holdings", account["name"], "fields override the default map")
	require.Equal(t, "Chicago", account["city"], "fields override the field map")
	require.Equal(t, "https://www.contoso.example/about", account["website"], "fields not overridden keep the lead's")
	require.Equal(t, map[string]any{"tier": "gold", "segment": "smb"}, account["custom"], "a lead custom field the lead lacks is not mapped")

	contact := p.Events[1].Data
	require.Equal(t, "ada@new.example", contact["email"])
	require.Equal(t, "CEO", contact["job_title"])
	require.Equal(t, "Ada", contact["first_name"])
	require.Equal(t, map[string]any{"lead_source": "web"}, contact["custom"])

	first := p.Events[2].Data
	require.Equal(t, "Big deal", first["name"])
	require.Equal(t, 100000.0, first["estimated_value"])
	require.Equal(t, "EUR", first["currency"])
	require.Equal(t, "2025-06-30", first["close_date"])
	require.Equal(t, "propose", first["stage"])
	require.Equal(t, "Wants widgets", first["description"], "field_map description → opportunity.description")
	require.Equal(t, map[string]any{"budget_code": "OVERRIDE"}, first["custom"], "fields override the field map")
	require.Equal(t, 12500.0, first["budget_amount"])

	second := p.Events[3].Data
	require.Equal(t, "50 widgets", second["name"], "the topic names an opportunity without override")
	require.Equal(t, DefaultStage, second["stage"])
	require.Equal(t, map[string]any{"budget_code": "B-12"}, second["custom"], "custom.budget_code → opportunity.custom.budget_code")
	require.Nil(t, second["estimated_value"])
	require.Equal(t, first["account_id"], second["account_id"])
	require.Equal(t, first["contact_id"], second["contact_id"])

	require.Same(t, p.Records[2], p.NoteTarget, "notes go to the first opportunity")
	require.Equal(t, StageDevelop, p.ProcessStage)
}

func TestDecideConsumer(t *testing.T) {
	t.Parallel()

	b := setup(t, SubjectQualify, func(req, _ map[string]any) { req["customer_type"] = "consumer" }, "")
	p := planOf(t, b.in)
	require.Equal(t, []string{"contact.created", "opportunity.created", "lead.qualified"}, eventTypes(p))
	for _, e := range p.Events {
		requireValidEvent(t, e)
	}
	contact := eventOf(t, p, "contact.created").Data
	require.Nil(t, contact["account_id"])
	opp := eventOf(t, p, "opportunity.created").Data
	require.Nil(t, opp["account_id"], "a consumer's opportunity has no account")
	require.Equal(t, contact["contact_id"], opp["contact_id"], "the contact is the customer")
	q := eventOf(t, p, "lead.qualified").Data
	require.Equal(t, CustomerConsumer, q["customer_type"])
	require.Equal(t, link("", OutcomeSkipped), q["account"])
	require.Equal(t, OutcomeCreated, q["contact"].(Link).Outcome)
	require.Equal(t, OutcomeSkipped, p.Records[0].Outcome)
	require.Empty(t, p.Records[0].ID)
}

func TestDecideNoOpportunities(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name       string
		edit       func(req, lead map[string]any)
		events     []string
		noteTarget string // record type; "" for none
	}{
		{
			name:       "notes go to the contact",
			edit:       func(req, _ map[string]any) { req["opportunities"] = []any{} },
			events:     []string{"account.created", "contact.created", "lead.qualified"},
			noteTarget: RecordContact,
		},
		{
			name: "notes go to the account without contact",
			edit: func(req, _ map[string]any) {
				req["opportunities"] = []any{}
				req["contact"] = map[string]any{"action": "skip"}
			},
			events:     []string{"account.created", "lead.qualified"},
			noteTarget: RecordAccount,
		},
		{
			name: "notes go to a linked contact",
			edit: func(req, _ map[string]any) {
				req["opportunities"] = []any{}
				req["contact"] = map[string]any{"action": "existing", "id": conID}
			},
			events:     []string{"account.created", "lead.qualified"},
			noteTarget: RecordContact,
		},
		{
			name: "nothing to carry notes to",
			edit: func(req, _ map[string]any) {
				req["opportunities"] = []any{}
				req["account"] = map[string]any{"action": "skip"}
				req["contact"] = map[string]any{"action": "skip"}
			},
			events: []string{"lead.qualified"},
		},
		{
			name: "a linked opportunity does not advance the stage",
			edit: func(req, _ map[string]any) {
				req["opportunities"] = []any{map[string]any{"action": "existing", "id": oppID}}
			},
			events:     []string{"account.created", "contact.created", "lead.qualified"},
			noteTarget: RecordOpportunity,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, SubjectQualify, tc.edit, "")
			b.in.Existing[conID] = Existing{Type: RecordContact, ID: conID}
			b.in.Existing[oppID] = Existing{Type: RecordOpportunity, ID: oppID}
			p := planOf(t, b.in)
			require.Equal(t, StageQualify, p.ProcessStage)
			require.Equal(t, tc.events, eventTypes(p))
			q := eventOf(t, p, "lead.qualified")
			require.Equal(t, StageQualify, q.Data["process_stage"])
			requireValidEvent(t, q)
			if tc.noteTarget == "" {
				require.Nil(t, p.NoteTarget)
				return
			}
			require.NotNil(t, p.NoteTarget)
			require.Equal(t, tc.noteTarget, p.NoteTarget.Type)
			if tc.noteTarget != RecordOpportunity {
				require.Empty(t, p.Summary, "the summary note needs an opportunity")
				require.Equal(t, []Link{}, q.Data["opportunities"])
			}
		})
	}
}

func TestDecideExistingRecordMerge(t *testing.T) {
	t.Parallel()

	existingAccount := Existing{Type: RecordAccount, ID: accID, Values: Values{
		Fields: map[string]any{"name": "Contoso (old)", "website": "", "phone": "+1 999 0000", "city": "  "},
		Custom: map[string]any{"budget_code": "OLD"},
	}}
	existingContact := Existing{Type: RecordContact, ID: conID, AccountID: accID, Values: Values{
		Fields: map[string]any{"first_name": "Augusta", "email": "ada@old.example"},
	}}
	const fieldMap = `{"field_map": [{"from": "custom.budget_code", "to": "account.custom.budget_code"}]}`

	cases := []struct {
		name      string
		overwrite bool
		account   map[string]any
		custom    map[string]any
		contact   map[string]any
	}{
		{
			name:    "fill only empty fields",
			account: map[string]any{"name": "Contoso (old)", "website": "https://www.contoso.example/about", "phone": "+1 999 0000", "city": "Springfield", "country": "US"},
			custom:  map[string]any{"budget_code": "OLD"},
			contact: map[string]any{"first_name": "Augusta", "last_name": "Lovelace", "email": "ada@old.example", "mobile_phone": "+1 555 010 0199"},
		},
		{
			name:      "overwrite",
			overwrite: true,
			account:   map[string]any{"name": "Contoso Ltd", "website": "https://www.contoso.example/about", "phone": "+1 (555) 010-0100", "city": "Springfield", "country": "US"},
			custom:    map[string]any{"budget_code": "B-12"},
			contact:   map[string]any{"first_name": "Ada", "last_name": "Lovelace", "email": "Ada@Contoso.example", "mobile_phone": "+1 555 010 0199"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, SubjectQualify, func(req, _ map[string]any) {
				req["account"] = map[string]any{"action": "existing", "id": accID}
				req["contact"] = map[string]any{"action": "existing", "id": conID}
				req["overwrite"] = tc.overwrite
			}, fieldMap)
			b.in.Existing[accID] = existingAccount
			b.in.Existing[conID] = existingContact
			p := planOf(t, b.in)
			require.Equal(t, []string{"opportunity.created", "lead.qualified"}, eventTypes(p), "linked records raise no created event")

			account, contact := p.Records[0], p.Records[1]
			require.Equal(t, OutcomeExisting, account.Outcome)
			require.Equal(t, accID, account.ID)
			require.True(t, account.Update)
			for k, v := range tc.account {
				require.Equal(t, v, account.Values.Fields[k], "account.%s", k)
			}
			require.Equal(t, tc.custom, account.Values.Custom)
			require.Equal(t, OutcomeExisting, contact.Outcome)
			require.True(t, contact.Update)
			for k, v := range tc.contact {
				require.Equal(t, v, contact.Values.Fields[k], "contact.%s", k)
			}

			opp := eventOf(t, p, "opportunity.created").Data
			require.Equal(t, accID, opp["account_id"])
			require.Equal(t, conID, opp["contact_id"])

			// The loaded records are not modified in place.
			require.Equal(t, "Contoso (old)", existingAccount.Values.Fields["name"])
			require.Equal(t, "", existingAccount.Values.Fields["website"])
			require.Equal(t, "OLD", existingAccount.Values.Custom["budget_code"])
		})
	}
}

func TestDecideExistingRecordUnchanged(t *testing.T) {
	t.Parallel()

	b := setup(t, SubjectQualify, func(req, lead map[string]any) {
		for k := range lead {
			if k != "id" && k != "company" {
				delete(lead, k)
			}
		}
		req["account"] = map[string]any{"action": "existing", "id": accID}
		req["contact"] = map[string]any{"action": "skip"}
		req["opportunities"] = []any{}
	}, "")
	b.in.Existing[accID] = Existing{Type: RecordAccount, ID: accID, Values: Values{Fields: map[string]any{"name": "Contoso (old)"}}}
	p := planOf(t, b.in)
	require.False(t, p.Records[0].Update, "a record whose fields are all filled is not updated")
	require.Equal(t, "Contoso (old)", p.Records[0].Values.Fields["name"])
}

func TestDecideExistingRecordUnchangedCustomOverwrite(t *testing.T) {
	t.Parallel()

	b := setup(t, SubjectQualify, func(req, lead map[string]any) {
		for k := range lead {
			if k != "id" && k != "company" && k != "custom" {
				delete(lead, k)
			}
		}
		req["account"] = map[string]any{"action": "existing", "id": accID}
		req["contact"] = map[string]any{"action": "skip"}
		req["opportunities"] = []any{}
		req["overwrite"] = true
	}, `{"field_map": [{"from": "custom.budget_code", "to": "account.custom.budget_code"}]}`)
	b.in.Existing[accID] = Existing{Type: RecordAccount, ID: accID, Values: Values{
		Fields: map[string]any{"name": "Contoso Ltd"}, Custom: map[string]any{"budget_code": "B-12"},
	}}
	p := planOf(t, b.in)
	require.False(t, p.Records[0].Update, "overwriting a value with the same value changes nothing")
}

// probeView is the observable part of a probe, for comparisons.
func probeView(p Probe) string {
	return fmt.Sprintf("%s %s %s lead=%q key=%q lookup=%t", p.RecordType, p.Rule.Name, p.Column, p.LeadValue, p.Key, p.Lookup)
}

func probeViews(ps []Probe) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, probeView(p))
	}
	return out
}

func TestDecideProbes(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name     string
		edit     func(req, lead map[string]any)
		settings string
		want     []string
	}{
		{
			name: "default rules",
			want: []string{
				`account account_name name lead="contoso ltd" key="contoso ltd" lookup=true`,
				`account account_website website lead="contoso.example" key="contoso.example" lookup=true`,
				`contact contact_email email lead="ada@contoso.example" key="ada@contoso.example" lookup=true`,
				`contact contact_phone business_phone lead="+15550100100" key="+15550100100" lookup=true`,
				`contact contact_phone mobile_phone lead="+15550100100" key="+15550100100" lookup=true`,
				`contact contact_phone business_phone lead="+15550100199" key="+15550100199" lookup=true`,
				`contact contact_phone mobile_phone lead="+15550100199" key="+15550100199" lookup=true`,
			},
		},
		{
			name: "blank values make no probe",
			edit: func(_, lead map[string]any) {
				delete(lead, "website")
				lead["mobile_phone"] = " - "
				delete(lead, "email")
			},
			want: []string{
				`account account_name name lead="contoso ltd" key="contoso ltd" lookup=true`,
				`contact contact_phone business_phone lead="+15550100100" key="+15550100100" lookup=true`,
				`contact contact_phone mobile_phone lead="+15550100100" key="+15550100100" lookup=true`,
			},
		},
		{
			name:     "match_blanks probes blank values",
			edit:     func(_, lead map[string]any) { delete(lead, "website") },
			settings: `{"duplicate_rules": {"account": [{"name": "site", "field": "website", "match": "exact", "match_blanks": true}], "contact": []}}`,
			want:     []string{`account site website lead="" key="" lookup=true`},
		},
		{
			name: "create_new still probes, without lookup",
			edit: func(req, _ map[string]any) {
				req["on_duplicate"] = "create_new"
				req["contact"] = map[string]any{"action": "skip"}
			},
			settings: "",
			want: []string{
				`account account_name name lead="contoso ltd" key="contoso ltd" lookup=false`,
				`account account_website website lead="contoso.example" key="contoso.example" lookup=false`,
			},
		},
		{
			name: "use_existing looks up",
			edit: func(req, _ map[string]any) {
				req["on_duplicate"] = "use_existing"
				req["contact"] = map[string]any{"action": "skip"}
			},
			want: []string{
				`account account_name name lead="contoso ltd" key="contoso ltd" lookup=true`,
				`account account_website website lead="contoso.example" key="contoso.example" lookup=true`,
			},
		},
		{
			name: "first_n and last_n keys",
			settings: `{"duplicate_rules": {
				"account": [{"name": "prefix", "field": "name", "match": "first_n", "n": 4}, {"name": "tail", "field": "phone", "match": "last_n", "n": 4}],
				"contact": [{"name": "surname", "field": "last_name", "match": "exact"}]}}`,
			want: []string{
				`account prefix name lead="contoso ltd" key="cont" lookup=true`,
				`account tail phone lead="+15550100100" key="0100" lookup=true`,
				`contact surname last_name lead="lovelace" key="lovelace" lookup=true`,
			},
		},
		{
			name: "probes come back in lock order, not rule order",
			edit: func(_, lead map[string]any) {
				lead["business_phone"] = "+1 555 010 0199"
				lead["mobile_phone"] = "+1 555 010 0100"
			},
			settings: `{"duplicate_rules": {
				"account": [{"name": "site", "field": "website", "match": "exact"}, {"name": "n", "field": "name", "match": "exact"}],
				"contact": [{"name": "tel", "field": "phone", "match": "exact"}]}}`,
			want: []string{
				`account n name lead="contoso ltd" key="contoso ltd" lookup=true`,
				`account site website lead="contoso.example" key="contoso.example" lookup=true`,
				`contact tel business_phone lead="+15550100100" key="+15550100100" lookup=true`,
				`contact tel mobile_phone lead="+15550100100" key="+15550100100" lookup=true`,
				`contact tel business_phone lead="+15550100199" key="+15550100199" lookup=true`,
				`contact tel mobile_phone lead="+15550100199" key="+15550100199" lookup=true`,
			},
		},
		{
			name:     "empty rule lists disable the checks",
			settings: `{"duplicate_rules": {"account": [], "contact": []}}`,
			want:     []string{},
		},
		{
			name: "overrides are what is checked",
			edit: func(req, _ map[string]any) {
				req["account"] = map[string]any{"action": "create", "fields": map[string]any{"name": "Fabrikam", "website": "fabrikam.example"}}
				req["contact"] = map[string]any{"action": "skip"}
			},
			want: []string{
				`account account_name name lead="fabrikam" key="fabrikam" lookup=true`,
				`account account_website website lead="fabrikam.example" key="fabrikam.example" lookup=true`,
			},
		},
		{
			name: "linked and skipped records are not checked",
			edit: func(req, _ map[string]any) {
				req["account"] = map[string]any{"action": "existing", "id": accID}
				req["contact"] = map[string]any{"action": "skip"}
			},
			want: []string{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, SubjectQualify, tc.edit, tc.settings)
			b.in.Existing[accID] = Existing{Type: RecordAccount, ID: accID}
			d := draftOf(t, b.in)
			require.Equal(t, tc.want, probeViews(d.Probes))
			require.True(t, slices.IsSortedFunc(d.Probes, func(a, b Probe) int { return strings.Compare(a.Lock, b.Lock) }), "probes are sorted by Lock")
			for _, p := range d.Probes {
				require.NotEmpty(t, p.Lock)
			}
		})
	}
}

func TestDecideProbeLocks(t *testing.T) {
	t.Parallel()

	locks := func(t *testing.T, org string, edit func(lead map[string]any)) map[string]string {
		b := setup(t, SubjectQualify, func(req, lead map[string]any) {
			req["org_id"] = org
			lead["id"] = "L-" + org
			if edit != nil {
				edit(lead)
			}
		}, "")
		out := map[string]string{}
		for _, p := range draftOf(t, b.in).Probes {
			out[p.RecordType+"/"+p.Rule.Name+"/"+p.Column+"/"+p.LeadValue] = p.Lock
		}
		return out
	}

	t.Run("same normalized values share locks across leads", func(t *testing.T) {
		t.Parallel()
		a := locks(t, "acme", nil)
		b := locks(t, "acme", func(lead map[string]any) {
			lead["company"] = "  CONTOSO   ltd "
			lead["website"] = "contoso.example"
			lead["email"] = "ADA@contoso.example"
			lead["business_phone"] = "+1 555 010 0100"
			lead["mobile_phone"] = "+1-555-010-0199"
		})
		require.Len(t, a, 7)
		require.Equal(t, a["account/account_name/name/contoso ltd"], b["account/account_name/name/contoso ltd"])
		require.Equal(t, a["account/account_website/website/contoso.example"], b["account/account_website/website/contoso.example"])
		require.Equal(t, a["contact/contact_email/email/ada@contoso.example"], b["contact/contact_email/email/ada@contoso.example"])
		require.Equal(t, a["contact/contact_phone/business_phone/+15550100100"], b["contact/contact_phone/business_phone/+15550100100"])
	})

	t.Run("one lead value locks once across columns", func(t *testing.T) {
		t.Parallel()
		a := locks(t, "acme", nil)
		require.Equal(t, a["contact/contact_phone/business_phone/+15550100100"], a["contact/contact_phone/mobile_phone/+15550100100"])
		require.NotEqual(t, a["contact/contact_phone/business_phone/+15550100100"], a["contact/contact_phone/business_phone/+15550100199"])
	})

	t.Run("orgs do not share locks", func(t *testing.T) {
		t.Parallel()
		a, b := locks(t, "acme", nil), locks(t, "globex", nil)
		for k, v := range a {
			require.NotEqual(t, v, b[k], k)
		}
	})

	t.Run("different values do not share locks", func(t *testing.T) {
		t.Parallel()
		a := locks(t, "acme", nil)
		b := locks(t, "acme", func(lead map[string]any) { lead["company"] = "Contoso Inc" })
		require.NotEqual(t, a["account/account_name/name/contoso ltd"], b["account/account_name/name/contoso inc"])
		require.NotEmpty(t, b["account/account_name/name/contoso inc"])
	})
}

// probeFor finds the draft's probe of a rule on a column.
func probeFor(t testing.TB, d *Draft, rule, column, leadValue string) Probe {
	t.Helper()
	for _, p := range d.Probes {
		if p.Rule.Name == rule && p.Column == column && (leadValue == "" || p.LeadValue == leadValue) {
			return p
		}
	}
	require.Failf(t, "no probe", "%s on %s in %v", rule, column, probeViews(d.Probes))
	return Probe{}
}

func dupRule(rule, field, lead, record string) map[string]any {
	return map[string]any{"rule": rule, "field": field, "lead_value": lead, "record_value": record}
}

func TestResolveRejects(t *testing.T) {
	t.Parallel()

	account := Existing{Type: RecordAccount, ID: accID, Values: Values{Fields: map[string]any{"name": "CONTOSO LTD", "website": "http://contoso.example"}}}
	account2 := Existing{Type: RecordAccount, ID: acc2ID, Values: Values{Fields: map[string]any{"name": "Contoso Ltd."}}}
	contact := Existing{Type: RecordContact, ID: conID, Values: Values{Fields: map[string]any{"email": "ada@contoso.example"}}}
	contact2 := Existing{Type: RecordContact, ID: con2ID, Values: Values{Fields: map[string]any{"business_phone": "+15550100199"}}}

	cases := []struct {
		name        string
		onDuplicate string
		found       func(t testing.TB, d *Draft) []Match
		code        string
		matches     []map[string]any
	}{
		{
			name: "an account matched by two rules is one match",
			found: func(t testing.TB, d *Draft) []Match {
				return []Match{
					{Probe: probeFor(t, d, "account_name", "name", ""), Record: account, RecordValue: "contoso ltd"},
					{Probe: probeFor(t, d, "account_website", "website", ""), Record: account, RecordValue: "contoso.example"},
				}
			},
			code: CodeDuplicatesFound,
			matches: []map[string]any{{"record_type": RecordAccount, "id": accID, "rules": []map[string]any{
				dupRule("account_name", "name", "contoso ltd", "contoso ltd"),
				dupRule("account_website", "website", "contoso.example", "contoso.example"),
			}}},
		},
		{
			name: "accounts and contacts, listed by type and id",
			found: func(t testing.TB, d *Draft) []Match {
				return []Match{
					{Probe: probeFor(t, d, "contact_phone", "business_phone", "+15550100199"), Record: contact2, RecordValue: "+15550100199"},
					{Probe: probeFor(t, d, "contact_email", "email", ""), Record: contact, RecordValue: "ada@contoso.example"},
					{Probe: probeFor(t, d, "account_website", "website", ""), Record: account, RecordValue: "contoso.example"},
				}
			},
			code: CodeDuplicatesFound,
			matches: []map[string]any{
				{"record_type": RecordAccount, "id": accID, "rules": []map[string]any{dupRule("account_website", "website", "contoso.example", "contoso.example")}},
				{"record_type": RecordContact, "id": conID, "rules": []map[string]any{dupRule("contact_email", "email", "ada@contoso.example", "ada@contoso.example")}},
				{"record_type": RecordContact, "id": con2ID, "rules": []map[string]any{dupRule("contact_phone", "phone", "+15550100199", "+15550100199")}},
			},
		},
		{
			name: "one phone found in both columns of a contact is one rule",
			found: func(t testing.TB, d *Draft) []Match {
				return []Match{
					{Probe: probeFor(t, d, "contact_phone", "business_phone", "+15550100100"), Record: contact, RecordValue: "+15550100100"},
					{Probe: probeFor(t, d, "contact_phone", "mobile_phone", "+15550100100"), Record: contact, RecordValue: "+15550100100"},
				}
			},
			code: CodeDuplicatesFound,
			matches: []map[string]any{{"record_type": RecordContact, "id": conID, "rules": []map[string]any{
				dupRule("contact_phone", "phone", "+15550100100", "+15550100100"),
			}}},
		},
		{
			name:        "use_existing with two account matches",
			onDuplicate: OnDuplicateUseExisting,
			found: func(t testing.TB, d *Draft) []Match {
				return []Match{
					{Probe: probeFor(t, d, "account_website", "website", ""), Record: account2, RecordValue: "contoso.example"},
					{Probe: probeFor(t, d, "account_name", "name", ""), Record: account, RecordValue: "contoso ltd"},
					{Probe: probeFor(t, d, "contact_email", "email", ""), Record: contact, RecordValue: "ada@contoso.example"},
				}
			},
			code: CodeAmbiguousDuplicates,
			matches: []map[string]any{
				{"record_type": RecordAccount, "id": accID, "rules": []map[string]any{dupRule("account_name", "name", "contoso ltd", "contoso ltd")}},
				{"record_type": RecordAccount, "id": acc2ID, "rules": []map[string]any{dupRule("account_website", "website", "contoso.example", "contoso.example")}},
			},
		},
		{
			name:        "use_existing with two contact matches",
			onDuplicate: OnDuplicateUseExisting,
			found: func(t testing.TB, d *Draft) []Match {
				return []Match{
					{Probe: probeFor(t, d, "contact_email", "email", ""), Record: contact, RecordValue: "ada@contoso.example"},
					{Probe: probeFor(t, d, "contact_phone", "mobile_phone", "+15550100199"), Record: contact2, RecordValue: "+15550100199"},
				}
			},
			code: CodeAmbiguousDuplicates,
			matches: []map[string]any{
				{"record_type": RecordContact, "id": conID, "rules": []map[string]any{dupRule("contact_email", "email", "ada@contoso.example", "ada@contoso.example")}},
				{"record_type": RecordContact, "id": con2ID, "rules": []map[string]any{dupRule("contact_phone", "phone", "+15550100199", "+15550100199")}},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, SubjectQualify, func(req, _ map[string]any) {
				if tc.onDuplicate != "" {
					req["on_duplicate"] = tc.onDuplicate
				}
			}, "")
			d := draftOf(t, b.in)
			p, rej := d.Resolve(tc.found(t, d))
			require.Nil(t, p)
			require.NotNil(t, rej)
			require.Equal(t, tc.code, rej.Code)
			require.NotEmpty(t, rej.Message)
			require.Equal(t, map[string]any{"matches": tc.matches}, rej.Details)
			requireValidRejection(t, b.in, rej)
		})
	}
}

func TestResolveBlankMatchValueIsNull(t *testing.T) {
	t.Parallel()

	b := setup(t, SubjectQualify, func(_, lead map[string]any) { delete(lead, "website") },
		`{"duplicate_rules": {"account": [{"name": "site", "field": "website", "match": "exact", "match_blanks": true}], "contact": []}}`)
	d := draftOf(t, b.in)
	_, rej := d.Resolve([]Match{{Probe: probeFor(t, d, "site", "website", ""), Record: Existing{Type: RecordAccount, ID: accID}, RecordValue: ""}})
	require.NotNil(t, rej)
	rules := rej.Details["matches"].([]map[string]any)[0]["rules"].([]map[string]any)
	require.Nil(t, rules[0]["lead_value"])
	require.Nil(t, rules[0]["record_value"])
}

func TestResolveUseExisting(t *testing.T) {
	t.Parallel()

	account := Existing{Type: RecordAccount, ID: accID, Values: Values{Fields: map[string]any{"name": "CONTOSO LTD", "website": "contoso.example"}}}
	contact := Existing{Type: RecordContact, ID: conID, AccountID: accID, Values: Values{Fields: map[string]any{"email": "ada@contoso.example"}}}

	t.Run("one account match is linked", func(t *testing.T) {
		t.Parallel()
		b := setup(t, SubjectQualify, func(req, _ map[string]any) { req["on_duplicate"] = "use_existing" }, "")
		d := draftOf(t, b.in)
		p, rej := d.Resolve([]Match{
			{Probe: probeFor(t, d, "account_name", "name", ""), Record: account, RecordValue: "contoso ltd"},
			{Probe: probeFor(t, d, "account_website", "website", ""), Record: account, RecordValue: "contoso.example"},
		})
		require.Nil(t, rej)
		require.Equal(t, []string{"contact.created", "opportunity.created", "lead.qualified"}, eventTypes(p), "no account.created")
		for _, e := range p.Events {
			requireValidEvent(t, e)
		}
		acc := p.Records[0]
		require.Equal(t, OutcomeExisting, acc.Outcome)
		require.Equal(t, accID, acc.ID)
		require.True(t, acc.Update)
		require.Equal(t, "CONTOSO LTD", acc.Values.Fields["name"], "without overwrite a filled field is kept")
		require.Equal(t, "+1 (555) 010-0100", acc.Values.Fields["phone"], "an empty field is filled from the lead")
		require.Equal(t, link(accID, OutcomeExisting), p.Conversion.Account)
		require.Equal(t, accID, eventOf(t, p, "contact.created").Data["account_id"])
		require.Equal(t, accID, eventOf(t, p, "opportunity.created").Data["account_id"])
		require.Equal(t, link(accID, OutcomeExisting), eventOf(t, p, "lead.qualified").Data["account"])
	})

	t.Run("an account and a contact match are both linked", func(t *testing.T) {
		t.Parallel()
		b := setup(t, SubjectQualify, func(req, _ map[string]any) {
			req["on_duplicate"] = "use_existing"
			req["overwrite"] = true
		}, "")
		d := draftOf(t, b.in)
		p, rej := d.Resolve([]Match{
			{Probe: probeFor(t, d, "contact_email", "email", ""), Record: contact, RecordValue: "ada@contoso.example"},
			{Probe: probeFor(t, d, "account_name", "name", ""), Record: account, RecordValue: "contoso ltd"},
		})
		require.Nil(t, rej)
		require.Equal(t, []string{"opportunity.created", "lead.qualified"}, eventTypes(p))
		require.Equal(t, link(accID, OutcomeExisting), p.Conversion.Account)
		require.Equal(t, link(conID, OutcomeExisting), p.Conversion.Contact)
		require.Equal(t, "Contoso Ltd", p.Records[0].Values.Fields["name"], "overwrite replaces filled fields")
		require.Equal(t, "Ada@Contoso.example", p.Records[1].Values.Fields["email"])
		opp := eventOf(t, p, "opportunity.created").Data
		require.Equal(t, accID, opp["account_id"])
		require.Equal(t, conID, opp["contact_id"])
	})

	t.Run("no match creates", func(t *testing.T) {
		t.Parallel()
		b := setup(t, SubjectQualify, func(req, _ map[string]any) { req["on_duplicate"] = "use_existing" }, "")
		p := planOf(t, b.in)
		require.Equal(t, []string{"account.created", "contact.created", "opportunity.created", "lead.qualified"}, eventTypes(p))
	})
}

func TestResolveCreateNewIgnoresMatches(t *testing.T) {
	t.Parallel()

	b := setup(t, SubjectQualify, func(req, _ map[string]any) { req["on_duplicate"] = "create_new" }, "")
	d := draftOf(t, b.in)
	for _, p := range d.Probes {
		require.False(t, p.Lookup)
	}
	account := Existing{Type: RecordAccount, ID: accID}
	account2 := Existing{Type: RecordAccount, ID: acc2ID}
	p, rej := d.Resolve([]Match{
		{Probe: probeFor(t, d, "account_name", "name", ""), Record: account, RecordValue: "contoso ltd"},
		{Probe: probeFor(t, d, "account_website", "website", ""), Record: account2, RecordValue: "contoso.example"},
	})
	require.Nil(t, rej)
	require.Equal(t, []string{"account.created", "contact.created", "opportunity.created", "lead.qualified"}, eventTypes(p))
	require.Equal(t, link(testID(1), OutcomeCreated), p.Conversion.Account)
}

func TestDecideDisqualifyPlan(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name string
		lead *LeadState
	}{
		{"unseen lead", nil},
		{"open lead", &LeadState{Status: StatusOpen}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, SubjectDisqualify, nil, "")
			b.in.Lead = tc.lead
			d, p, rej := Decide(b.in)
			require.Nil(t, rej)
			require.Nil(t, d)
			require.Equal(t, StatusDisqualified, p.Status)
			require.Equal(t, StageQualify, p.ProcessStage)
			require.Empty(t, p.Records)
			require.Equal(t, []Event{{Type: "lead.disqualified", ID: testID(1), Data: map[string]any{
				"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-1", "reason": "lost",
				"disqualified_at": "2025-03-01T12:00:00Z",
			}}}, p.Events)
			requireValidEvent(t, p.Events[0])
		})
	}
}

func TestDecideReactivatePlan(t *testing.T) {
	t.Parallel()

	b := setup(t, SubjectReactivate, nil, "")
	b.in.Lead = &LeadState{Status: StatusDisqualified}
	d, p, rej := Decide(b.in)
	require.Nil(t, rej)
	require.Nil(t, d)
	require.Equal(t, StatusOpen, p.Status)
	require.Equal(t, StageQualify, p.ProcessStage)
	require.Equal(t, []Event{{Type: "lead.reactivated", ID: testID(1), Data: map[string]any{
		"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-1", "reactivated_at": "2025-03-01T12:00:00Z",
	}}}, p.Events)
	requireValidEvent(t, p.Events[0])
}

func TestRejectionEventOfAnUnreadableRequest(t *testing.T) {
	t.Parallel()

	p := Parse(SubjectDisqualify, []byte(`{`))
	ev := RejectionEvent(p.Subject, p.OrgID, p.LeadID, p.Key, p.Invalid, testID(1))
	require.Equal(t, "lead.disqualify.rejected", ev.Type)
	require.Equal(t, testID(1), ev.ID)
	require.Nil(t, ev.Data["org_id"])
	require.Nil(t, ev.Data["lead_id"])
	require.Nil(t, ev.Data["idempotency_key"])
	require.Equal(t, CodeInvalidRequest, ev.Data["code"])
	requireValidEvent(t, ev)
}

func TestSummary(t *testing.T) {
	t.Parallel()
	budget := 0.5
	for _, c := range []struct {
		lead Lead
		want string
	}{
		{Lead{}, "Lead summary\nWho: unknown\nCompany: not given\nBudget: not given\nTimeframe: not given\nSource: not given"},
		{Lead{LastName: "Hopper", JobTitle: "Rear Admiral", Company: "100% Navy", BudgetAmount: &budget,
			PurchaseTimeframe: "next_fiscal_year", Source: "referral\n"},
			"Lead summary\nWho: Hopper, Rear Admiral\nCompany: 100% Navy\nBudget: 0.5\nTimeframe: next fiscal year\nSource: referral\n"},
	} {
		require.Equal(t, c.want, Summary(&c.lead))
	}
}
