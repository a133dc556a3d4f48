package schemas

import "testing"

const (
	validUnqualified = `{
		"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-u",
		"account": {"id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f6", "outcome": "deleted"},
		"contact": {"id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f7", "outcome": "unlinked"},
		"opportunities": [{"id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f8", "outcome": "deleted"}],
		"process_stage": "qualify", "qualified_at": "2025-03-01T12:00:00Z", "unqualified_at": "2025-03-01T13:00:00Z"
	}`
)

func TestUndoSchemaExamples(t *testing.T) {
	t.Parallel()
	set := loadSchemas(t)
	const (
		request     = "requests/lead.unqualify.requested.schema.json"
		unqualified = "events/lead.unqualified.schema.json"
		deleted     = "events/account.deleted.schema.json"
		rejected    = "events/rejected.schema.json"
		settings    = "org-settings.schema.json"
	)
	runExamples(t, set, []example{
		{"unqualify request", request, `{"idempotency_key": "k-u", "org_id": "acme",
			"actor": {"id": "u-7", "roles": ["sales_agent"]}, "lead": {"id": "L-1"}}`, true},
		{"unqualify request without lead", request, `{"idempotency_key": "k-u", "org_id": "acme",
			"actor": {"id": "u-7", "roles": ["sales_agent"]}}`, false},
		{"unqualify request with a reason", request, `{"idempotency_key": "k-u", "org_id": "acme",
			"actor": {"id": "u-7", "roles": ["sales_agent"]}, "lead": {"id": "L-1"}, "reason": "lost"}`, false},

		{"unqualified", unqualified, validUnqualified, true},
		{"unqualified with a created outcome", unqualified, edit(validUnqualified, `"outcome": "deleted"`, `"outcome": "created"`), false},
		{"unqualified with a skipped account that has an id", unqualified, edit(validUnqualified, `"outcome": "deleted"}`, `"outcome": "skipped"}`), false},
		{"unqualified in develop", unqualified, edit(validUnqualified, `"process_stage": "qualify"`, `"process_stage": "develop"`), false},

		{"account deleted", deleted, `{"org_id": "acme", "lead_id": "L-1", "account_id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f6"}`, true},
		{"account deleted without id", deleted, `{"org_id": "acme", "lead_id": "L-1"}`, false},

		{"rejected undo_conflict", rejected, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-u",
			"code": "undo_conflict", "message": "cannot be undone",
			"details": {"blockers": [
				{"record_type": "account", "id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f6", "reason": "referenced",
				 "referenced_by": {"record_type": "contact", "id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f9"}},
				{"record_type": "account", "id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f6", "reason": "changed"}]}}`, true},
		{"rejected undo_conflict without blockers", rejected, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-u",
			"code": "undo_conflict", "message": "cannot be undone", "details": {}}`, false},
		{"rejected undo_conflict referenced by nobody", rejected, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-u",
			"code": "undo_conflict", "message": "cannot be undone",
			"details": {"blockers": [{"record_type": "account", "id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f6", "reason": "referenced"}]}}`, false},
		{"rejected undo_window_expired", rejected, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-u",
			"code": "undo_window_expired", "message": "too late",
			"details": {"qualified_at": "2025-03-01T12:00:00Z", "undo_window": "24h0m0s", "expired_at": "2025-03-02T12:00:00Z"}}`, true},
		{"rejected lead_not_qualified", rejected, `{"org_id": "acme", "lead_id": "L-1", "idempotency_key": "k-u",
			"code": "lead_not_qualified", "message": "open", "details": {"status": "open"}}`, true},

		{"undo_window", settings, `{"undo_window": "1h30m", "permissions": {"unqualify": ["sales_manager"]}}`, true},
		{"undo_window in milliseconds", settings, `{"undo_window": "250ms"}`, true},
		{"undo_window as seconds", settings, `{"undo_window": 3600}`, false},
		{"undo_window in days", settings, `{"undo_window": "1d"}`, false},
	})
}
