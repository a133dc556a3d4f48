package schemas

import "testing"

const (
	validPreview = `{
		"rejection": null,
		"records": [
			{"record_type": "account", "action": "existing", "id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f6",
			 "fields": {"name": "Contoso"}, "custom": {}, "update": true},
			{"record_type": "contact", "action": "create", "id": null,
			 "fields": {"first_name": "Ada", "email": "ada@contoso.example"}, "custom": {"segment": "smb"}, "update": false},
			{"record_type": "opportunity", "action": "create", "id": null,
			 "fields": {"name": "50 laptops", "budget_amount": 50000, "stage": "develop"}, "custom": {}, "update": false}
		],
		"duplicates": [{"record_type": "account", "id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f6",
			"rules": [{"rule": "account_name", "field": "name", "lead_value": "contoso", "record_value": "contoso"}]}],
		"missing_required_fields": [],
		"events": ["contact.created", "opportunity.created", "lead.qualified"],
		"owner_id": "u-7", "process_stage": "develop", "replay": null
	}`
	validLeadGet = `{"lead": {
		"org_id": "acme", "id": "L-1", "status": "qualified", "process_stage": "develop", "customer_type": "business",
		"conversion": {"account": {"id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f6", "outcome": "existing"},
			"contact": {"id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f7", "outcome": "created"},
			"opportunities": [{"id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f8", "outcome": "created"}]},
		"created": {"account_id": null, "contact_id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f7",
			"opportunity_ids": ["0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f8"]},
		"fields": {"topic": "50 laptops", "budget_amount": 50000}, "custom": {},
		"disqualify_reason": null, "qualified_at": "2025-03-01T12:00:00Z", "disqualified_at": null,
		"reactivated_at": null, "unqualified_at": null,
		"created_at": "2025-03-01T11:00:00Z", "updated_at": "2025-03-01T12:00:00Z"
	}}`
)

func TestServiceSchemaExamples(t *testing.T) {
	t.Parallel()
	set := loadSchemas(t)
	const (
		preview     = "service/qualify.preview.reply.schema.json"
		getRequest  = "service/lead.get.request.schema.json"
		getReply    = "service/lead.get.reply.schema.json"
		findRequest = "service/duplicates.find.request.schema.json"
		findReply   = "service/duplicates.find.reply.schema.json"
		serviceErr  = "service/error.schema.json"
	)
	runExamples(t, set, []example{
		{"preview", preview, validPreview, true},
		{"preview rejected", preview, `{"rejection": {"code": "company_required", "message": "no company", "details": {}},
			"records": [], "duplicates": [], "missing_required_fields": ["account.website"],
			"events": ["lead.qualify.rejected"], "owner_id": "u-7", "process_stage": null, "replay": null}`, true},
		{"preview with an unknown action", preview, edit(validPreview, `"action": "existing"`, `"action": "merge"`), false},
		{"preview with an unknown event", preview, edit(validPreview, `"lead.qualified"]`, `"lead.converted"]`), false},
		{"preview with an unknown code", preview, edit(validPreview, `"rejection": null`, `"rejection": {"code": "teapot", "message": "no", "details": {}}`), false},
		{"preview without duplicates", preview, edit(validPreview, `"missing_required_fields": [],`, ``), false},

		{"lead.get request", getRequest, `{"org_id": "acme", "actor": {"id": "u-7", "roles": ["sales_agent"]}, "lead_id": "L-1"}`, true},
		{"lead.get request without actor", getRequest, `{"org_id": "acme", "lead_id": "L-1"}`, false},
		{"lead.get reply", getReply, validLeadGet, true},
		{"lead.get reply with unknown status", getReply, edit(validLeadGet, `"status": "qualified"`, `"status": "won"`), false},

		{"duplicates.find account", findRequest, `{"org_id": "acme", "actor": {"id": "u-7", "roles": ["sales_agent"]},
			"record_type": "account", "fields": {"name": "Contoso", "website": "contoso.example"}}`, true},
		{"duplicates.find account by email", findRequest, `{"org_id": "acme", "actor": {"id": "u-7", "roles": ["sales_agent"]},
			"record_type": "account", "fields": {"email": "ada@contoso.example"}}`, false},
		{"duplicates.find contact", findRequest, `{"org_id": "acme", "actor": {"id": "u-7", "roles": ["sales_agent"]},
			"record_type": "contact", "fields": {"email": "ada@contoso.example", "mobile_phone": "+1 555 0100"}}`, true},
		{"duplicates.find opportunity", findRequest, `{"org_id": "acme", "actor": {"id": "u-7", "roles": ["sales_agent"]},
			"record_type": "opportunity", "fields": {}}`, false},
		{"duplicates.find reply", findReply, `{"duplicates": [{"record_type": "contact", "id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f7",
			"rules": [{"rule": "contact_email", "field": "email", "lead_value": "ada@contoso.example", "record_value": "ada@contoso.example"}],
			"fields": {"email": "Ada@Contoso.example"}, "custom": {}}]}`, true},
		{"duplicates.find reply without rules", findReply, `{"duplicates": [{"record_type": "contact", "id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f7",
			"rules": [], "fields": {}, "custom": {}}]}`, false},

		{"error", serviceErr, `{"code": "forbidden", "message": "no", "details": {"action": "qualify"}}`, true},
		{"error with unknown code", serviceErr, `{"code": "teapot", "message": "no", "details": {}}`, false},
	})
}
