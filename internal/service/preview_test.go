package service_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"testing"
	"time"

	"github.com/leadflow/leadflow/internal/conversion"
	"github.com/leadflow/leadflow/schemas"
	"github.com/nats-io/nats.go/micro"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

// validateJSON checks a document against a schema ("": none).
func validateJSON(t *testing.T, schema string, raw []byte) {
	t.Helper()
	if schema == "" {
		return
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	require.NoError(t, err)
	errs, err := schemas.Validate(schema, doc)
	require.NoError(t, err)
	require.Empty(t, errs, "%s: %s", schema, raw)
}

// ask sends a request to the leadflow NATS service and returns the reply,
// decoded, and the error code of an error reply ("" for none). Replies are
// checked against schema, error replies against the error schema.
func (b *bundle) ask(subject string, body any, schema string) (map[string]any, string) {
	b.t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(b.t, err)
	msg, err := b.nc.Request(subject, raw, 10*time.Second)
	require.NoError(b.t, err)
	code := msg.Header.Get(micro.ErrorCodeHeader)
	if code != "" {
		schema = "service/error.schema.json"
	}
	validateJSON(b.t, schema, msg.Data)
	var reply map[string]any
	require.NoError(b.t, json.Unmarshal(msg.Data, &reply))
	return reply, code
}

func (b *bundle) preview(req map[string]any) map[string]any {
	b.t.Helper()
	reply, code := b.ask("leadflow.qualify.preview", req, "service/qualify.preview.reply.schema.json")
	require.Empty(b.t, code, "preview refused: %v", reply)
	return reply
}

// requireNothingFor checks that nothing was written or published for a lead.
func (b *bundle) requireNothingFor(org, leadID, key string) {
	b.t.Helper()
	require.Zero(b.t, b.count(`SELECT count(*) FROM leads WHERE org_id = $1 AND id = $2`, org, leadID))
	require.Zero(b.t, b.count(`SELECT count(*) FROM idempotency_keys WHERE org_id = $1 AND key = $2`, org, key))
	require.Zero(b.t, b.count(`SELECT count(*) FROM notes WHERE org_id = $1 AND lead_id = $2`, org, leadID))
	// Earlier requests' rows may still wait for the relay to delete them.
	require.Zero(b.t, b.count(`SELECT count(*) FROM outbox_events
		WHERE convert_from(payload, 'UTF8')::jsonb->>'correlationid' = $1`, key))
	require.Empty(b.t, eventsFor(b.events.all(), key))
}

// requireSameFields checks that a record of a preview has the values its
// *.created event then carried.
func requireSameFields(t *testing.T, typ string, preview, created map[string]any) {
	t.Helper()
	fields := preview["fields"].(map[string]any)
	for _, f := range conversion.RecordFields(typ) {
		require.Equal(t, created[f], fields[f], "%s.%s", typ, f)
	}
	require.Equal(t, created["custom"], preview["custom"], "%s custom", typ)
}

// TestPreviewIsWhatQualificationDoes: a preview writes and publishes nothing,
// and the qualification of the same request then does what it said: the
// same records with the same values, the same duplicate matches, the same
// events; and for a request it would refuse, the same rejection.
func TestPreviewIsWhatQualificationDoes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const org = "org-preview"
	b.putSettings(org, `{"field_map": [{"from": "custom.budget_code", "to": "opportunity.custom.budget_code"}],
		"required_fields": {"opportunity": ["close_date"]}}`)
	seed := b.qualify(request(org, "pv-seed", "lead-0", map[string]any{"company": "Acme Corp", "website": "acme.example",
		"last_name": "Seed", "email": "seed@acme.example"}, map[string]any{"opportunities": []any{}}))
	accountID := seed[0].Data["account_id"]

	t.Run("linking a duplicate", func(t *testing.T) {
		lead := acmeLead()
		// A new contact: no duplicate of the seed's.
		lead["email"], lead["business_phone"] = "ada@lovelace.example", "+44 20 7946 0000"
		delete(lead, "mobile_phone")
		req := request(org, "pv-1", "lead-1", lead, map[string]any{"on_duplicate": "use_existing",
			"contact":       map[string]any{"action": "create", "fields": map[string]any{"job_title": "Countess"}},
			"opportunities": []any{map[string]any{"action": "create", "fields": map[string]any{"close_date": "2027-01-31", "currency": "EUR"}}}})

		p := b.preview(req)
		b.requireNothingFor(org, "lead-1", "pv-1")
		require.Nil(t, p["rejection"])
		require.Equal(t, []any{}, p["missing_required_fields"])
		require.Equal(t, []any{"contact.created", "opportunity.created", "lead.qualified"}, p["events"])
		require.Equal(t, "develop", p["process_stage"])
		require.Equal(t, "owner-7", p["owner_id"])
		require.Nil(t, p["replay"])
		require.Equal(t, []any{map[string]any{"record_type": "account", "id": accountID, "rules": []any{
			map[string]any{"rule": "account_name", "field": "name", "lead_value": "acme corp", "record_value": "acme corp"},
			map[string]any{"rule": "account_website", "field": "website", "lead_value": "acme.example", "record_value": "acme.example"},
		}}}, p["duplicates"])
		records := p["records"].([]any)
		require.Len(t, records, 3)
		account, contact, opp := records[0].(map[string]any), records[1].(map[string]any), records[2].(map[string]any)
		require.Equal(t, "existing", account["action"])
		require.Equal(t, accountID, account["id"])
		require.Equal(t, true, account["update"], "the lead fills the account's empty fields")
		require.Equal(t, "Springfield", account["fields"].(map[string]any)["city"])
		require.Equal(t, "create", contact["action"])
		require.Nil(t, contact["id"])
		require.Equal(t, "Countess", contact["fields"].(map[string]any)["job_title"], "overrides applied")
		require.Equal(t, map[string]any{"budget_code": "BC-1"}, opp["custom"], "field map applied")

		evs := b.qualify(req)
		require.Equal(t, p["events"], anys(types(evs)))
		requireSameFields(t, "contact", contact, evs[0].Data)
		requireSameFields(t, "opportunity", opp, evs[1].Data)
		require.Equal(t, map[string]any{"id": accountID, "outcome": "existing"}, evs[2].Data["account"])
		require.Equal(t, p["process_stage"], evs[2].Data["process_stage"])
		require.Equal(t, 1, b.count(`SELECT count(*) FROM accounts WHERE org_id = $1 AND id = $2 AND city = 'Springfield'`, org, accountID))
	})

	t.Run("refused for duplicates", func(t *testing.T) {
		req := request(org, "pv-2", "lead-2", map[string]any{"company": "ACME corp", "last_name": "Byron",
			"email": "seed@acme.example"}, map[string]any{"opportunities": []any{
			map[string]any{"action": "create", "fields": map[string]any{"close_date": "2027-02-28"}}}})
		p := b.preview(req)
		b.requireNothingFor(org, "lead-2", "pv-2")
		rej := p["rejection"].(map[string]any)
		require.Equal(t, "duplicates_found", rej["code"])
		require.Equal(t, []any{"lead.qualify.rejected"}, p["events"])
		require.Equal(t, []any{}, p["records"])
		require.Nil(t, p["process_stage"])
		require.Equal(t, []any{}, p["missing_required_fields"])
		require.Equal(t, p["duplicates"], rej["details"].(map[string]any)["matches"])
		require.Len(t, p["duplicates"], 2, "the account and the contact")

		b.publish("lead.qualify.requested", req)
		data := b.rejection("pv-2", "duplicates_found")
		require.Equal(t, rej["details"], data["details"])
		require.Equal(t, rej["message"], data["message"])
	})

	t.Run("refused for another reason, and missing fields", func(t *testing.T) {
		req := request(org, "pv-3", "lead-3", map[string]any{"last_name": "Babbage", "topic": "engines"},
			map[string]any{"account": map[string]any{"action": "create"}})
		p := b.preview(req)
		rej := p["rejection"].(map[string]any)
		require.Equal(t, "company_required", rej["code"])
		require.Equal(t, []any{"opportunity.close_date"}, p["missing_required_fields"],
			"the opportunity would lack its close date, too")
		b.publish("lead.qualify.requested", req)
		require.Equal(t, rej["message"], b.rejection("pv-3", "company_required")["message"])
	})

	t.Run("refused for missing fields", func(t *testing.T) {
		req := request(org, "pv-4", "lead-4", map[string]any{"last_name": "Somerville", "topic": "tides"}, nil)
		p := b.preview(req)
		rej := p["rejection"].(map[string]any)
		require.Equal(t, "missing_required_fields", rej["code"])
		require.Equal(t, []any{"opportunity.close_date"}, p["missing_required_fields"])
		b.publish("lead.qualify.requested", req)
		require.Equal(t, rej["details"], b.rejection("pv-4", "missing_required_fields")["details"])
	})
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// TestServiceLookups: leadflow.lead.get answers for a lead of the request's
// org only; leadflow.duplicates.find finds an org's candidates by its rules;
// actors without a role are refused.
func TestServiceLookups(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.qualify(request("org-a", "sl-1", "lead-1", acmeLead(), nil))
	accountID, contactID, oppID := q[0].Data["account_id"], q[1].Data["contact_id"], q[2].Data["opportunity_id"]
	agent := map[string]any{"id": "u", "roles": []any{"sales_agent"}}

	reply, code := b.ask("leadflow.lead.get", map[string]any{"org_id": "org-a", "actor": agent, "lead_id": "lead-1"},
		"service/lead.get.reply.schema.json")
	require.Empty(t, code)
	lead := reply["lead"].(map[string]any)
	require.Equal(t, "qualified", lead["status"])
	require.Equal(t, "develop", lead["process_stage"])
	require.Equal(t, map[string]any{"account_id": accountID, "contact_id": contactID, "opportunity_ids": []any{oppID}}, lead["created"])
	require.Equal(t, q[3].Data["account"], lead["conversion"].(map[string]any)["account"])
	require.Equal(t, "Acme Corp", lead["fields"].(map[string]any)["company"])
	require.EqualValues(t, 50000, lead["fields"].(map[string]any)["budget_amount"])

	reply, code = b.ask("leadflow.lead.get", map[string]any{"org_id": "org-b", "actor": agent, "lead_id": "lead-1"}, "")
	require.Equal(t, "not_found", code, "a lead of another org")
	require.Equal(t, "not_found", reply["code"])

	reply, code = b.ask("leadflow.lead.get", map[string]any{"org_id": "org-a", "lead_id": "lead-1",
		"actor": map[string]any{"id": "u", "roles": []any{"intern"}}}, "")
	require.Equal(t, "forbidden", code)

	reply, code = b.ask("leadflow.duplicates.find", map[string]any{"org_id": "org-a", "actor": agent, "record_type": "contact",
		"fields": map[string]any{"email": " ADA@acme.example", "mobile_phone": "+1-555-010-0002"}}, "service/duplicates.find.reply.schema.json")
	require.Empty(t, code)
	require.Equal(t, []any{map[string]any{"record_type": "contact", "id": contactID,
		"rules": []any{
			map[string]any{"rule": "contact_email", "field": "email", "lead_value": "ada@acme.example", "record_value": "ada@acme.example"},
			map[string]any{"rule": "contact_phone", "field": "phone", "lead_value": "+15550100002", "record_value": "+15550100002"},
		},
		"fields": map[string]any{"first_name": "Ada", "last_name": "Lovelace", "job_title": "CTO", "email": "Ada@Acme.example",
			"business_phone": "+1 (555) 010-0001", "mobile_phone": "+1 555 010 0002", "street1": "1 Main St", "city": "Springfield",
			"state_province": "IL", "postal_code": "62701", "country": "US"},
		"custom": map[string]any{}}}, reply["duplicates"])

	reply, code = b.ask("leadflow.duplicates.find", map[string]any{"org_id": "org-b", "actor": agent, "record_type": "account",
		"fields": map[string]any{"name": "Acme Corp"}}, "service/duplicates.find.reply.schema.json")
	require.Empty(t, code)
	require.Equal(t, []any{}, reply["duplicates"], "another org's records are no candidates")
}

// TestServiceDiscovery: the service answers $SRV.PING, $SRV.INFO and
// $SRV.STATS, and counts the requests it answered.
func TestServiceDiscovery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.ask("leadflow.lead.get", map[string]any{"org_id": "o", "actor": map[string]any{"id": "u", "roles": []any{"sales_agent"}},
		"lead_id": "x"}, "")
	for _, subject := range []string{"$SRV.PING", "$SRV.PING.leadflow", "$SRV.INFO.leadflow", "$SRV.STATS.leadflow"} {
		msg, err := b.nc.Request(subject, nil, 5*time.Second)
		require.NoError(t, err, subject)
		var reply map[string]any
		require.NoError(t, json.Unmarshal(msg.Data, &reply))
		require.Equal(t, "leadflow", reply["name"], subject)
	}
	// micro counts a request once its handler has returned, which is after
	// the reply went out: the count may lag the reply by a moment.
	want := map[string]int{"leadflow.qualify.preview": 0, "leadflow.lead.get": 1, "leadflow.duplicates.find": 0}
	got := map[string]int{}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		msg, err := b.nc.Request("$SRV.STATS.leadflow", nil, 5*time.Second)
		require.NoError(t, err)
		var stats micro.Stats
		require.NoError(t, json.Unmarshal(msg.Data, &stats))
		clear(got)
		for _, e := range stats.Endpoints {
			got[e.Subject] = e.NumRequests
		}
		if maps.Equal(want, got) || time.Now().After(deadline) {
			break
		}
	}
	require.Equal(t, want, got)

	msg, err := b.nc.Request("$SRV.INFO.leadflow", nil, 5*time.Second)
	require.NoError(t, err)
	var info micro.Info
	require.NoError(t, json.Unmarshal(msg.Data, &info))
	require.Len(t, info.Endpoints, 3)
	require.NotEmpty(t, info.Description)
}
