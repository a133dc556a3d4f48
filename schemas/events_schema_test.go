package schemas

import (
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

const (
	schemaBaseURL = "https://leadflow.dev/schemas/"
	draft202012   = "https://json-schema.org/draft/2020-12/schema"
	schemaSuffix  = ".schema.json"
)

// schemaSet is every *.schema.json file under schemas/, compiled by one compiler.
type schemaSet struct {
	docs     map[string]map[string]any     // by path relative to schemas/
	compiled map[string]*jsonschema.Schema // by path relative to schemas/
}

// loadSchemas walks the schemas directory, registers every schema file under
// its $id (so that relative $refs between files resolve) and compiles each.
func loadSchemas(t *testing.T) *schemaSet {
	t.Helper()
	fsys := os.DirFS(".")
	set := &schemaSet{docs: map[string]map[string]any{}, compiled: map[string]*jsonschema.Schema{}}

	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()

	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, schemaSuffix) {
			return err
		}
		f, err := fsys.Open(path)
		require.NoError(t, err)
		defer f.Close()
		doc, err := jsonschema.UnmarshalJSON(f)
		require.NoError(t, err, "%s: not valid JSON", path)
		obj, ok := doc.(map[string]any)
		require.True(t, ok, "%s: a schema file must hold a JSON object", path)
		require.Equal(t, draft202012, obj["$schema"], "%s: $schema", path)
		require.Equal(t, schemaBaseURL+path, obj["$id"], "%s: $id must be the base URL plus the file's path", path)
		require.NoError(t, c.AddResource(schemaBaseURL+path, doc), path)
		set.docs[path] = obj
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, set.docs, "no *.schema.json files found")

	for path := range set.docs {
		sch, err := c.Compile(schemaBaseURL + path)
		require.NoError(t, err, "%s does not compile", path)
		set.compiled[path] = sch
	}
	return set
}

func (s *schemaSet) schema(t *testing.T, path string) *jsonschema.Schema {
	t.Helper()
	sch, ok := s.compiled[path]
	require.True(t, ok, "schema %s not found", path)
	return sch
}

func parse(t *testing.T, doc string) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(doc))
	require.NoError(t, err, "example is not valid JSON: %s", doc)
	return v
}

// edit replaces the first occurrence of old in doc, and panics when there is
// none, so that an invalid example cannot silently stay valid.
func edit(doc, old, replacement string) string {
	if !strings.Contains(doc, old) {
		panic(fmt.Sprintf("example edit: %q not found", old))
	}
	return strings.Replace(doc, old, replacement, 1)
}

// dataSchemaFor maps an event type to the schema of its data.
func dataSchemaFor(eventType string) string {
	if strings.HasSuffix(eventType, ".rejected") {
		return "events/rejected.schema.json"
	}
	return "events/" + eventType + schemaSuffix
}

type example struct {
	name   string
	schema string // path relative to schemas/
	doc    string
	valid  bool
}

func runExamples(t *testing.T, set *schemaSet, examples []example) {
	t.Helper()
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			t.Parallel()
			err := set.schema(t, ex.schema).Validate(parse(t, ex.doc))
			if ex.valid {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				t.Logf("rejected as expected: %v", err)
			}
		})
	}
}

func TestSchemasCompile(t *testing.T) {
	t.Parallel()
	set := loadSchemas(t)
	for path, doc := range set.docs {
		title, _ := doc["title"].(string)
		desc, _ := doc["description"].(string)
		require.NotEmpty(t, title, "%s: title", path)
		require.NotEmpty(t, desc, "%s: description", path)
	}
}

func TestEveryEventTypeHasADataSchema(t *testing.T) {
	t.Parallel()
	set := loadSchemas(t)
	envelope := set.docs["events/cloudevent.schema.json"]
	require.NotNil(t, envelope)
	props := envelope["properties"].(map[string]any)
	types := props["type"].(map[string]any)["enum"].([]any)
	require.ElementsMatch(t, []any{
		"lead.qualified", "lead.disqualified", "lead.reactivated",
		"lead.qualify.rejected", "lead.disqualify.rejected", "lead.reactivate.rejected",
		"account.created", "contact.created", "opportunity.created",
		"lead.unqualified", "lead.unqualify.rejected", "account.deleted", "contact.deleted", "opportunity.deleted",
	}, types)
	for _, typ := range types {
		set.schema(t, dataSchemaFor(typ.(string)))
	}
}

const (
	validQualified = `{
		"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-1",
		"customer_type": "business",
		"account": {"id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f6", "outcome": "created"},
		"contact": {"id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f7", "outcome": "existing"},
		"opportunities": [{"id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f8", "outcome": "created"}],
		"owner_id": "u-7", "process_stage": "develop", "qualified_at": "2025-03-01T12:00:00Z"
	}`
	validAccountCreated = `{
		"org_id": "acme", "lead_id": "L-1", "account_id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f6",
		"name": "Contoso", "website": "https://contoso.example", "phone": null,
		"street1": "1 Main St", "street2": null, "street3": null, "city": "Springfield",
		"state_province": null, "postal_code": "12345", "country": "US",
		"owner_id": "u-7", "custom": {"budget_code": "B-12", "score": 7}
	}`
	validContactCreated = `{
		"org_id": "acme", "lead_id": "L-1", "contact_id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f7",
		"account_id": null, "first_name": "Ada", "last_name": "Lovelace", "job_title": null,
		"email": "ada@example.com", "business_phone": null, "mobile_phone": "+1 555 0100",
		"street1": null, "street2": null, "street3": null, "city": null,
		"state_province": null, "postal_code": null, "country": null,
		"owner_id": "u-7", "custom": {}
	}`
	validOpportunityCreated = `{
		"org_id": "acme", "lead_id": "L-1", "opportunity_id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f8",
		"account_id": null, "contact_id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f7",
		"name": "50 widgets", "estimated_value": 12500.5, "currency": "EUR", "close_date": "2025-06-30",
		"budget_amount": null, "purchase_timeframe": "this_quarter", "stage": "qualify",
		"description": null, "owner_id": "u-7", "custom": {}
	}`
)

func TestEventExamples(t *testing.T) {
	t.Parallel()
	set := loadSchemas(t)
	const (
		qualified   = "events/lead.qualified.schema.json"
		disq        = "events/lead.disqualified.schema.json"
		react       = "events/lead.reactivated.schema.json"
		account     = "events/account.created.schema.json"
		contact     = "events/contact.created.schema.json"
		opportunity = "events/opportunity.created.schema.json"
		rejected    = "events/rejected.schema.json"
	)
	runExamples(t, set, []example{
		{"qualified", qualified, validQualified, true},
		{"qualified consumer without opportunity", qualified, `{
			"org_id": "acme", "lead_id": "L-2", "idempotency_key": "k-2", "customer_type": "consumer",
			"account": {"id": null, "outcome": "skipped"},
			"contact": {"id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f7", "outcome": "created"},
			"opportunities": [], "owner_id": "u-7", "process_stage": "qualify",
			"qualified_at": "2025-03-01T12:00:00+01:00"}`, true},
		{"qualified with wrong customer_type", qualified, edit(validQualified, `"business"`, `"company"`), false},
		{"qualified with skipped account that has an id", qualified, edit(validQualified, `"outcome": "created"}`, `"outcome": "skipped"}`), false},
		{"qualified with created account without id", qualified, edit(validQualified, `"id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f6"`, `"id": null`), false},
		{"qualified with skipped opportunity", qualified, edit(validQualified, `e5f8", "outcome": "created"`, `e5f8", "outcome": "skipped"`), false},
		{"qualified without qualified_at", qualified, edit(validQualified, `, "qualified_at": "2025-03-01T12:00:00Z"`, ``), false},
		{"qualified with bad timestamp", qualified, edit(validQualified, `2025-03-01T12:00:00Z`, `yesterday`), false},
		{"qualified with extra field", qualified, edit(validQualified, `"org_id"`, `"extra": 1, "org_id"`), false},

		{"account created", account, validAccountCreated, true},
		{"account created with bad uuid", account, edit(validAccountCreated, `0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f6`, `acct-1`), false},
		{"account created without country", account, edit(validAccountCreated, `, "country": "US"`, ``), false},
		{"account created with custom not an object", account, edit(validAccountCreated, `{"budget_code": "B-12", "score": 7}`, `[]`), false},

		{"contact created", contact, validContactCreated, true},
		{"contact created with extra field", contact, edit(validContactCreated, `"custom": {}`, `"custom": {}, "phone": null`), false},
		{"contact created without email", contact, edit(validContactCreated, `"email": "ada@example.com", `, ``), false},

		{"opportunity created", opportunity, validOpportunityCreated, true},
		{"opportunity created with nulls", opportunity, strings.NewReplacer(
			`"name": "50 widgets"`, `"name": null`, `12500.5`, `null`, `"EUR"`, `null`,
			`"2025-06-30"`, `null`, `"this_quarter"`, `null`).Replace(validOpportunityCreated), true},
		{"opportunity created with wrong timeframe", opportunity, edit(validOpportunityCreated, `"this_quarter"`, `"someday"`), false},
		{"opportunity created with bad close_date", opportunity, edit(validOpportunityCreated, `2025-06-30`, `2025-06-31`), false},
		{"opportunity created with string value", opportunity, edit(validOpportunityCreated, `12500.5`, `"12500.5"`), false},
		{"opportunity created with null stage", opportunity, edit(validOpportunityCreated, `"stage": "qualify"`, `"stage": null`), false},

		{"disqualified", disq, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-3",
			"reason": "cannot_contact", "disqualified_at": "2025-03-01T12:00:00Z"}`, true},
		{"disqualified with wrong reason", disq, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-3",
			"reason": "too_expensive", "disqualified_at": "2025-03-01T12:00:00Z"}`, false},
		{"disqualified without reason", disq, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-3",
			"disqualified_at": "2025-03-01T12:00:00Z"}`, false},

		{"reactivated", react, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-4",
			"reactivated_at": "2025-03-02T08:30:00.123Z"}`, true},
		{"reactivated with null key", react, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": null,
			"reactivated_at": "2025-03-02T08:30:00Z"}`, false},

		{"rejected invalid_request, unreadable request", rejected, `{"org_id": null, "lead_id": null, "idempotency_key": null,
			"code": "invalid_request", "message": "request is not JSON",
			"details": {"errors": [{"path": "", "message": "invalid character 'x'"}]}}`, true},
		{"rejected invalid_request", rejected, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-5",
			"code": "invalid_request", "message": "invalid request",
			"details": {"errors": [{"path": "/lead/email", "message": "not an email"}]}}`, true},
		{"rejected invalid_request without errors", rejected, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-5",
			"code": "invalid_request", "message": "invalid request", "details": {}}`, false},
		{"rejected invalid_request with a bad path", rejected, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-5",
			"code": "invalid_request", "message": "invalid request",
			"details": {"errors": [{"path": "lead.email", "message": "not an email"}]}}`, false},
		{"rejected forbidden", rejected, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-6",
			"code": "forbidden", "message": "actor may not qualify", "details": {}}`, true},
		{"rejected with unknown code", rejected, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-6",
			"code": "teapot", "message": "no", "details": {}}`, false},
		{"rejected without details", rejected, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-6",
			"code": "forbidden", "message": "no"}`, false},
		{"rejected missing_required_fields", rejected, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-7",
			"code": "missing_required_fields", "message": "missing required fields",
			"details": {"missing": ["account.website", "opportunity.custom.budget_code"]}}`, true},
		{"rejected missing_required_fields with a bare field", rejected, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-7",
			"code": "missing_required_fields", "message": "missing required fields",
			"details": {"missing": ["website"]}}`, false},
		{"rejected duplicates_found", rejected, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-8",
			"code": "duplicates_found", "message": "1 duplicate account",
			"details": {"matches": [{"record_type": "account", "id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f6",
				"rules": [{"rule": "account_name", "field": "name", "lead_value": "contoso", "record_value": "contoso"},
				          {"rule": "account_website", "field": "website", "lead_value": "contoso.example", "record_value": "contoso.example"}]}]}}`, true},
		{"rejected ambiguous_duplicates with wrong record_type", rejected, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-8",
			"code": "ambiguous_duplicates", "message": "2 duplicate leads",
			"details": {"matches": [{"record_type": "lead", "id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f6",
				"rules": [{"rule": "r", "field": "name", "lead_value": "a", "record_value": "a"}]}]}}`, false},
		{"rejected lead_already_qualified", rejected, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-9",
			"code": "lead_already_qualified", "message": "lead already qualified",
			"details": {"account": {"id": null, "outcome": "skipped"},
				"contact": {"id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f7", "outcome": "created"},
				"opportunities": [{"id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f8", "outcome": "existing"}]}}`, true},
		{"rejected lead_already_qualified without opportunities", rejected, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-9",
			"code": "lead_already_qualified", "message": "lead already qualified",
			"details": {"account": {"id": null, "outcome": "skipped"}, "contact": {"id": null, "outcome": "skipped"}}}`, false},
	})
}

func TestCloudEventExamples(t *testing.T) {
	t.Parallel()
	set := loadSchemas(t)
	envelope := set.schema(t, "events/cloudevent.schema.json")

	wrap := func(typ, data string, extra string) string {
		return `{"specversion": "1.0", "id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f9", "source": "leadflow",
			"type": "` + typ + `", "time": "2025-03-01T12:00:00Z", "datacontenttype": "application/json"` + extra + `,
			"data": ` + data + `}`
	}
	const ext = `, "subject": "L-1", "orgid": "acme", "correlationid": "k-1"`
	unreadable := `{"org_id": null, "lead_id": null, "idempotency_key": null, "code": "invalid_request",
		"message": "request is not JSON", "details": {"errors": [{"path": "", "message": "unexpected EOF"}]}}`

	cases := []struct {
		name  string
		doc   string
		valid bool
	}{
		{"lead.qualified", wrap("lead.qualified", validQualified, ext+`, "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"`), true},
		{"account.created", wrap("account.created", validAccountCreated, ext), true},
		{"contact.created", wrap("contact.created", validContactCreated, ext), true},
		{"opportunity.created", wrap("opportunity.created", validOpportunityCreated, ext), true},
		{"rejected without subject and extensions", wrap("lead.qualify.rejected", unreadable, ""), true},
		{"wrong specversion", edit(wrap("lead.qualified", validQualified, ext), `"1.0"`, `"0.3"`), false},
		{"wrong source", edit(wrap("lead.qualified", validQualified, ext), `"leadflow",`, `"crm",`), false},
		{"unknown type", wrap("lead.converted", validQualified, ext), false},
		{"id not a uuid", edit(wrap("lead.qualified", validQualified, ext), `0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f9`, `evt-1`), false},
		{"missing time", edit(wrap("lead.qualified", validQualified, ext), `"time": "2025-03-01T12:00:00Z", `, ``), false},
		{"unknown attribute", wrap("lead.qualified", validQualified, ext+`, "dataschema": "x"`), false},
		{"data not an object", wrap("lead.qualified", `[]`, ext), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc := parse(t, tc.doc)
			err := envelope.Validate(doc)
			if !tc.valid {
				require.Error(t, err)
				t.Logf("rejected as expected: %v", err)
				return
			}
			require.NoError(t, err)
			// The envelope's data must also match the schema of its type.
			obj := doc.(map[string]any)
			require.NoError(t, set.schema(t, dataSchemaFor(obj["type"].(string))).Validate(obj["data"]))
		})
	}
}

func TestOrgSettingsExamples(t *testing.T) {
	t.Parallel()
	set := loadSchemas(t)
	const settings = "org-settings.schema.json"
	full := `{
		"auto_create": {"account": true, "contact": true, "opportunity": false},
		"max_opportunities": 3,
		"duplicate_rules": {
			"account": [{"name": "account_name", "field": "name", "match": "exact"},
			            {"name": "account_phone_tail", "field": "phone", "match": "last_n", "n": 7, "match_blanks": false}],
			"contact": []
		},
		"required_fields": {"account": ["website"], "contact": ["email", "custom.segment"], "opportunity": ["close_date"]},
		"field_map": [{"from": "custom.budget_code", "to": "opportunity.custom.budget_code"},
		              {"from": "source", "to": "contact.custom.lead_source"}],
		"permissions": {"qualify": ["sales_agent", "sales_manager"], "disqualify": ["sales_manager"], "reactivate": [],
		                "create_account": ["sales_manager"], "create_contact": ["sales_agent"], "create_opportunity": ["sales_agent"]}
	}`
	runExamples(t, set, []example{
		{"empty", settings, `{}`, true},
		{"full", settings, full, true},
		{"unknown top-level setting", settings, `{"auto_qualify": true}`, false},
		{"unknown auto_create key", settings, `{"auto_create": {"lead": true}}`, false},
		{"auto_create not boolean", settings, `{"auto_create": {"account": "yes"}}`, false},
		{"max_opportunities too large", settings, `{"max_opportunities": 101}`, false},
		{"max_opportunities not an integer", settings, `{"max_opportunities": 2.5}`, false},
		{"account rule on a contact field", settings, `{"duplicate_rules": {"account": [{"name": "r", "field": "email", "match": "exact"}]}}`, false},
		{"contact rule on mobile_phone", settings, `{"duplicate_rules": {"contact": [{"name": "r", "field": "mobile_phone", "match": "first_n", "n": 5}]}}`, true},
		{"first_n rule without n", settings, `{"duplicate_rules": {"contact": [{"name": "r", "field": "email", "match": "first_n"}]}}`, false},
		{"rule with n out of range", settings, `{"duplicate_rules": {"contact": [{"name": "r", "field": "email", "match": "last_n", "n": 0}]}}`, false},
		{"rule with wrong match", settings, `{"duplicate_rules": {"contact": [{"name": "r", "field": "email", "match": "fuzzy"}]}}`, false},
		{"rule without name", settings, `{"duplicate_rules": {"contact": [{"field": "email", "match": "exact"}]}}`, false},
		{"rule with extra key", settings, `{"duplicate_rules": {"contact": [{"name": "r", "field": "email", "match": "exact", "weight": 2}]}}`, false},
		{"unknown record type in duplicate_rules", settings, `{"duplicate_rules": {"lead": []}}`, false},
		{"required field with bad name", settings, `{"required_fields": {"account": ["Website"]}}`, false},
		{"required field for unknown record type", settings, `{"required_fields": {"lead": ["email"]}}`, false},
		{"field_map without record type", settings, `{"field_map": [{"from": "custom.x", "to": "custom.x"}]}`, false},
		{"field_map without to", settings, `{"field_map": [{"from": "custom.x"}]}`, false},
		{"permissions with empty role", settings, `{"permissions": {"qualify": [""]}}`, false},
		{"permissions for unknown action", settings, `{"permissions": {"delete": ["admin"]}}`, false},
	})
}
