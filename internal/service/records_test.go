package service_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConsumerAndChoices(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	// Consumer: a contact and an opportunity whose customer is the contact.
	evs := b.qualify(request("org-ch", "cons", "cons-1", acmeLead(), map[string]any{"customer_type": "consumer"}))
	require.Equal(t, []string{"contact.created", "opportunity.created", "lead.qualified"}, types(evs))
	require.Nil(t, evs[0].Data["account_id"])
	require.Nil(t, evs[1].Data["account_id"])
	require.Equal(t, evs[0].Data["contact_id"], evs[1].Data["contact_id"])
	require.Equal(t, map[string]any{"id": nil, "outcome": "skipped"}, evs[2].Data["account"])
	require.Equal(t, "consumer", evs[2].Data["customer_type"])

	// No opportunity: notes go to the contact, the stage stays qualify.
	lead := acmeLead()
	lead["company"], lead["website"], lead["email"] = "Solo Ltd", "solo.example", "solo@solo.example"
	lead["business_phone"], lead["mobile_phone"] = "+44 20 0000 0001", ""
	evs = b.qualify(request("org-ch", "noopp", "noopp-1", lead, map[string]any{"opportunities": []any{}, "owner_id": "boss-1"}))
	require.Equal(t, []string{"account.created", "contact.created", "lead.qualified"}, types(evs))
	q := evs[2].Data
	require.Equal(t, "qualify", q["process_stage"])
	require.Equal(t, "boss-1", q["owner_id"])
	require.Equal(t, "boss-1", evs[0].Data["owner_id"])
	contactID := evs[1].Data["contact_id"].(string)
	accountID := evs[0].Data["account_id"].(string)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM notes WHERE lead_id = 'noopp-1' AND contact_id = $1`, contactID))
	require.Equal(t, 0, b.count(`SELECT count(*) FROM notes WHERE lead_id = 'noopp-1' AND kind = 'summary'`))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM leads WHERE id = 'noopp-1' AND process_stage = 'qualify' AND status = 'qualified'`))

	// Existing account and contact, overwrite false: only empty fields filled.
	_, err := b.pool.Exec(ctx, `UPDATE accounts SET phone = NULL, city = 'Old Town' WHERE id = $1`, accountID)
	require.NoError(t, err)
	link := map[string]any{"company": "Solo Ltd", "business_phone": "+44 20 1111 2222", "city": "New Town", "topic": "renewal"}
	evs = b.qualify(request("org-ch", "link", "link-1", link, map[string]any{
		"account": map[string]any{"action": "existing", "id": accountID},
		"contact": map[string]any{"action": "existing", "id": contactID},
		"opportunities": []any{map[string]any{"action": "create", "fields": map[string]any{
			"name": "Renewal 2027", "estimated_value": 1200.5, "currency": "EUR", "close_date": "2027-01-31", "custom": map[string]any{"q": "x"}}}},
	}))
	require.Equal(t, []string{"opportunity.created", "lead.qualified"}, types(evs))
	opp := evs[0].Data
	require.Equal(t, "Renewal 2027", opp["name"])
	require.Equal(t, 1200.5, opp["estimated_value"])
	require.Equal(t, "2027-01-31", opp["close_date"])
	require.Equal(t, accountID, opp["account_id"])
	require.Equal(t, contactID, opp["contact_id"])
	require.Equal(t, map[string]any{"id": accountID, "outcome": "existing"}, evs[1].Data["account"])
	var phone, city string
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT phone, city FROM accounts WHERE id = $1`, accountID).Scan(&phone, &city))
	require.Equal(t, "+44 20 1111 2222", phone)
	require.Equal(t, "Old Town", city)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM accounts WHERE id = $1 AND phone_norm = '+442011112222'`, accountID))

	// overwrite true replaces them; an existing opportunity is linked.
	evs = b.qualify(request("org-ch", "over", "over-1", link, map[string]any{
		"account": map[string]any{"action": "existing", "id": accountID}, "contact": map[string]any{"action": "skip"},
		"overwrite": true, "opportunities": []any{map[string]any{"action": "existing", "id": opp["opportunity_id"]}},
	}))
	require.Equal(t, []string{"lead.qualified"}, types(evs))
	require.Equal(t, []any{map[string]any{"id": opp["opportunity_id"], "outcome": "existing"}}, evs[0].Data["opportunities"])
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT city FROM accounts WHERE id = $1`, accountID).Scan(&city))
	require.Equal(t, "New Town", city)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM notes WHERE lead_id = 'over-1' AND kind = 'summary' AND opportunity_id = $1`, opp["opportunity_id"]))

	// Two new opportunities: the notes go to the first.
	lead2 := map[string]any{"company": "Multi", "last_name": "M", "topic": "many",
		"notes": []any{map[string]any{"id": "mn", "body": "x"}}}
	evs = b.qualify(request("org-ch", "multi", "multi-1", lead2, map[string]any{"opportunities": []any{
		map[string]any{"action": "create"}, map[string]any{"action": "create", "fields": map[string]any{"name": "second"}}}}))
	require.Equal(t, []string{"account.created", "contact.created", "opportunity.created", "opportunity.created", "lead.qualified"}, types(evs))
	require.Equal(t, "many", evs[2].Data["name"])
	require.Equal(t, "second", evs[3].Data["name"])
	require.Equal(t, 1, b.count(`SELECT count(*) FROM notes WHERE upstream_id = 'mn' AND opportunity_id = $1`, evs[2].Data["opportunity_id"]))
}

// TestSettingsApplyWithoutRestart: a settings change is used by the next
// request: custom-field map, duplicate rules and auto_create.
func TestSettingsApplyWithoutRestart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	lead := map[string]any{"company": "Mapped Inc", "last_name": "Map", "topic": "t", "mobile_phone": "+1 555 999 0000",
		"custom": map[string]any{"budget_code": "B-7", "tier": "gold"}}
	evs := b.qualify(request("org-set", "s1", "s1", lead, nil))
	require.Equal(t, map[string]any{}, evs[2].Data["custom"])

	b.putSettings("org-set", `{"field_map": [{"from": "custom.budget_code", "to": "opportunity.custom.budget_code"},
		{"from": "custom.tier", "to": "account.custom.tier"}, {"from": "topic", "to": "contact.job_title"}],
		"duplicate_rules": {"account": [{"name": "prefix", "field": "name", "match": "first_n", "n": 5}], "contact": [{"name": "mobile_tail", "field": "phone", "match": "last_n", "n": 7}]}}`)
	lead["company"], lead["mobile_phone"] = "MAPPED Something Else", "(555) 999-0000"
	b.publish("lead.qualify.requested", request("org-set", "s2", "s2", lead, nil))
	rej := b.rejection("s2", "duplicates_found")
	matches := rej["details"].(map[string]any)["matches"].([]any)
	require.Len(t, matches, 2)
	require.Equal(t, []any{map[string]any{"rule": "prefix", "field": "name", "lead_value": "mapped something else", "record_value": "mapped inc"}},
		matches[0].(map[string]any)["rules"])
	require.Equal(t, []any{map[string]any{"rule": "mobile_tail", "field": "phone", "lead_value": "5559990000", "record_value": "+15559990000"}},
		matches[1].(map[string]any)["rules"])

	evs = b.qualify(request("org-set", "s3", "s3", lead, map[string]any{"on_duplicate": "create_new"}))
	require.Equal(t, map[string]any{"tier": "gold"}, evs[0].Data["custom"])
	require.Equal(t, "t", evs[1].Data["job_title"])
	require.Equal(t, map[string]any{"budget_code": "B-7"}, evs[2].Data["custom"])
	require.Equal(t, 2, b.count(`SELECT count(*) FROM accounts WHERE org_id = 'org-set'`))
}
