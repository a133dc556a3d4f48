package conversion

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMissingRequiredFieldsAgreesWithDecide: for a request that Decide
// refuses with missing_required_fields, the list is the same.
func TestMissingRequiredFieldsAgreesWithDecide(t *testing.T) {
	t.Parallel()
	settings := `{"required_fields": {"account": ["phone", "custom.tier"], "contact": ["email", "job_title"],
		"opportunity": ["close_date", "estimated_value"]}}`
	b := setup(t, SubjectQualify, func(req, lead map[string]any) {
		delete(lead, "business_phone")
		delete(lead, "job_title")
		req["opportunities"] = []any{map[string]any{"action": "create"}, map[string]any{"action": "create", "fields": map[string]any{"close_date": "2025-06-30"}}}
	}, settings)
	_, _, rej := Decide(b.in)
	require.NotNil(t, rej)
	require.Equal(t, CodeMissingRequiredFields, rej.Code)
	require.Equal(t, rej.Details["missing"], MissingRequiredFields(b.in.Request, b.in.Settings))
	require.Equal(t, []string{"account.phone", "account.custom.tier", "contact.job_title", "opportunity.close_date",
		"opportunity.estimated_value"}, MissingRequiredFields(b.in.Request, b.in.Settings))
}

// TestMissingRequiredFieldsBehindAnotherRejection: a request refused first
// for another reason still reports what its records would lack; linked and
// skipped records are not checked.
func TestMissingRequiredFieldsBehindAnotherRejection(t *testing.T) {
	t.Parallel()
	settings := `{"required_fields": {"account": ["website"], "contact": ["email"], "opportunity": ["close_date"]}}`
	b := setup(t, SubjectQualify, func(req, lead map[string]any) {
		delete(lead, "website")
		req["account"] = map[string]any{"action": "create"}
		delete(lead, "company")
	}, settings)
	_, _, rej := Decide(b.in)
	require.Equal(t, CodeCompanyRequired, rej.Code)
	require.Equal(t, []string{"account.website", "opportunity.close_date"}, MissingRequiredFields(b.in.Request, b.in.Settings))

	b = setup(t, SubjectQualify, func(req, lead map[string]any) {
		delete(lead, "email")
		req["contact"] = map[string]any{"action": "existing", "id": conID}
		req["account"] = map[string]any{"action": "skip"}
		req["opportunities"] = []any{}
	}, settings)
	require.Equal(t, []string{}, MissingRequiredFields(b.in.Request, b.in.Settings))
}

// TestDuplicateProbesAreTheDraftsProbes: the lookups for a record's fields
// are those a qualification creating it runs.
func TestDuplicateProbesAreTheDraftsProbes(t *testing.T) {
	t.Parallel()
	settings := `{"duplicate_rules": {"contact": [{"name": "email", "field": "email", "match": "exact"},
		{"name": "phone_tail", "field": "phone", "match": "last_n", "n": 7}]}}`
	b := setup(t, SubjectQualify, func(req, _ map[string]any) {
		req["account"] = map[string]any{"action": "skip"}
	}, settings)
	d := draftOf(t, b.in)
	fields := map[string]any{"first_name": "Ada", "last_name": "Lovelace", "email": "Ada@Contoso.example",
		"business_phone": "+1 (555) 010-0100", "mobile_phone": "+1 555 010 0199"}
	require.Equal(t, d.Probes, DuplicateProbes("acme", RecordContact, fields, b.in.Settings))
	require.Empty(t, DuplicateProbes("acme", RecordContact, map[string]any{}, b.in.Settings), "blanks match nothing")
}

func TestMatchDetails(t *testing.T) {
	t.Parallel()
	rule := Rule{Name: "account_name", Field: "name", Match: MatchExact}
	site := Rule{Name: "account_website", Field: "website", Match: MatchExact}
	rec := Existing{Type: RecordAccount, ID: accID}
	found := []Match{
		{Probe: Probe{RecordType: RecordAccount, Rule: site, Column: "website", LeadValue: "contoso.example"}, Record: rec, RecordValue: "contoso.example"},
		{Probe: Probe{RecordType: RecordAccount, Rule: rule, Column: "name", LeadValue: "contoso ltd"}, Record: rec, RecordValue: "contoso ltd"},
	}
	require.Equal(t, []map[string]any{{"record_type": RecordAccount, "id": accID, "rules": []map[string]any{
		{"rule": "account_website", "field": "website", "lead_value": "contoso.example", "record_value": "contoso.example"},
		{"rule": "account_name", "field": "name", "lead_value": "contoso ltd", "record_value": "contoso ltd"},
	}}}, MatchDetails(found))
}
