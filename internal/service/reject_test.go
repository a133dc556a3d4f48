package service_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// rejection waits for the request's outcome and checks it is one rejection
// event with code, valid against the schemas.
func (b *bundle) rejection(key, code string) map[string]any {
	b.t.Helper()
	evs := b.outcome(key)
	require.Len(b.t, evs, 1, "a rejection is one event: %v", types(evs))
	validateEvent(b.t, evs[0])
	require.Equal(b.t, code, evs[0].Data["code"], "message: %v", evs[0].Data["message"])
	require.NotEmpty(b.t, evs[0].Data["message"])
	return evs[0].Data
}

func errorPaths(data map[string]any) []string {
	var out []string
	for _, e := range data["details"].(map[string]any)["errors"].([]any) {
		out = append(out, e.(map[string]any)["path"].(string))
	}
	return out
}

// TestInvalidRequests: malformed, wrongly typed, incomplete, unknown-valued
// and oversized requests are rejected with the failing paths, write nothing
// but their idempotency record, and the worker goes on.
func TestInvalidRequests(t *testing.T) {
	t.Parallel()
	b := setup(t)
	big := strings.Repeat("x", 300<<10)
	cases := []struct {
		name  string
		body  func(key string) any
		paths []string
	}{
		{"malformed JSON", func(key string) any { return []byte(`{"idempotency_key": "` + key + `", "org_id": `) }, []string{""}},
		{"wrong type", func(key string) any {
			return request("org-inv", key, "l1", map[string]any{"budget_amount": "lots"}, nil)
		}, []string{"/lead/budget_amount"}},
		{"missing required", func(key string) any {
			r := request("org-inv", key, "l1", nil, nil)
			delete(r, "actor")
			delete(r["lead"].(map[string]any), "id")
			return r
		}, []string{"/actor", "/lead/id"}},
		{"unknown enum", func(key string) any {
			return request("org-inv", key, "l1", map[string]any{"purchase_timeframe": "someday"}, map[string]any{"on_duplicate": "merge"})
		}, []string{"/lead/purchase_timeframe", "/on_duplicate"}},
		{"bad email", func(key string) any {
			return request("org-inv", key, "l1", map[string]any{"email": "not-an-email"}, nil)
		}, []string{"/lead/email"}},
		{"unknown version", func(key string) any {
			return request("org-inv", key, "l1", nil, map[string]any{"version": 2})
		}, []string{"/version"}},
		{"300 KiB", func(key string) any {
			return request("org-inv", key, "l1", map[string]any{"description": big}, nil)
		}, []string{""}},
		{"existing without id", func(key string) any {
			return request("org-inv", key, "l1", nil, map[string]any{"account": map[string]any{"action": "existing"}})
		}, []string{"/account/id"}},
	}
	for i, c := range cases {
		key := fmt.Sprintf("inv-%d", i)
		b.publish("lead.qualify.requested", c.body(key))
	}
	for i, c := range cases {
		key := fmt.Sprintf("inv-%d", i)
		t.Run(c.name, func(t *testing.T) {
			var data map[string]any
			if c.name == "malformed JSON" {
				// Unreadable: its event carries no org, lead or key.
				evs := b.waitFor("unreadable rejection", func(evs []event) bool {
					for _, e := range evs {
						if e.Type == "lead.qualify.rejected" && e.CorrelationID == "" {
							return true
						}
					}
					return false
				})
				for _, e := range evs {
					if e.Type == "lead.qualify.rejected" && e.CorrelationID == "" {
						validateEvent(t, e)
						data = e.Data
					}
				}
				require.Nil(t, data["org_id"])
				require.Nil(t, data["idempotency_key"])
				require.Nil(t, data["lead_id"])
			} else {
				data = b.rejection(key, "invalid_request")
				require.Equal(t, key, data["idempotency_key"])
			}
			require.Equal(t, "invalid_request", data["code"])
			require.Equal(t, c.paths, errorPaths(data))
		})
	}
	require.Equal(t, 0, b.count(`SELECT count(*) FROM leads`))
	require.Equal(t, len(cases)-1, b.count(`SELECT count(*) FROM idempotency_keys WHERE outcome = 'invalid_request'`))

	// The worker goes on with the next message.
	evs := b.qualify(request("org-inv", "good", "l2", acmeLead(), nil))
	require.Equal(t, "lead.qualified", evs[len(evs)-1].Type)
}

func TestRejections(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	// org-x owns an account and a contact; org-r must not see them.
	evs := b.qualify(request("org-x", "x1", "lx", acmeLead(), nil))
	foreignAccount := evs[0].Data["account_id"].(string)
	foreignContact := evs[1].Data["contact_id"].(string)

	org := "org-r"
	b.putSettings("org-strict", `{"auto_create": {"account": false, "opportunity": false}}`)
	b.putSettings("org-req", `{"required_fields": {"account": ["phone", "custom.tier"], "opportunity": ["close_date"]}}`)
	b.putSettings("org-perm", `{"permissions": {"create_opportunity": ["sales_manager"]}}`)
	b.putSettings("org-max", `{"max_opportunities": 1}`)

	// Two accounts in org-r: "Globex" twice (for ambiguity) and one contact.
	b.qualify(request(org, "seed1", "seed1", map[string]any{"company": "Globex", "email": "hank@globex.example"}, map[string]any{"opportunities": []any{}}))
	b.qualify(request(org, "seed2", "seed2", map[string]any{"company": "GLOBEX "}, map[string]any{"on_duplicate": "create_new", "contact": map[string]any{"action": "skip"}, "opportunities": []any{}}))
	seedAcc := b.outcome("seed1")
	accA := seedAcc[0].Data["account_id"].(string)
	conA := seedAcc[1].Data["contact_id"].(string)
	// An account with a contact elsewhere, for the mismatch case.
	other := b.qualify(request(org, "seed3", "seed3", map[string]any{"company": "Initech", "email": "peter@initech.example"}, map[string]any{"opportunities": []any{}}))
	accB := other[0].Data["account_id"].(string)

	manager := map[string]any{"id": "boss", "roles": []any{"sales_manager"}}
	cases := []struct {
		code  string
		req   map[string]any
		subj  string
		check func(t *testing.T, data map[string]any)
	}{
		{code: "forbidden", req: func() map[string]any {
			r := request(org, "forbidden", "lf", acmeLead(), nil)
			r["actor"] = map[string]any{"id": "intern", "roles": []any{"viewer"}}
			return r
		}()},
		{code: "forbidden", req: request("org-perm", "forbidden-create", "lf2", acmeLead(), nil), check: func(t *testing.T, d map[string]any) {
			require.Equal(t, "create_opportunity", d["details"].(map[string]any)["action"])
		}},
		{code: "not_found", req: request(org, "nf-account", "lnf", acmeLead(), map[string]any{"account": map[string]any{"action": "existing", "id": foreignAccount}})},
		{code: "not_found", req: request(org, "nf-contact", "lnf2", acmeLead(), map[string]any{"contact": map[string]any{"action": "existing", "id": foreignContact}, "on_duplicate": "create_new"})},
		{code: "selection_required", req: request("org-strict", "sel", "ls", acmeLead(), nil), check: func(t *testing.T, d map[string]any) {
			require.Equal(t, []any{"account", "opportunity"}, d["details"].(map[string]any)["records"])
		}},
		{code: "company_required", req: request(org, "company", "lc", map[string]any{"last_name": "Nobody"}, map[string]any{"account": map[string]any{"action": "create"}})},
		{code: "customer_required", req: request(org, "customer", "lcu", acmeLead(), map[string]any{"account": map[string]any{"action": "skip"}, "contact": map[string]any{"action": "skip"}})},
		{code: "missing_required_fields", req: request("org-req", "missing", "lm", map[string]any{"company": "NoPhone Inc"}, nil), check: func(t *testing.T, d map[string]any) {
			require.Equal(t, []any{"account.phone", "account.custom.tier", "opportunity.close_date"}, d["details"].(map[string]any)["missing"])
		}},
		{code: "too_many_opportunities", req: request("org-max", "toomany", "lt", acmeLead(), map[string]any{"opportunities": []any{
			map[string]any{"action": "create"}, map[string]any{"action": "create"}}})},
		{code: "too_many_opportunities", req: request(org, "toomany-default", "lt2", acmeLead(), map[string]any{"opportunities": []any{
			map[string]any{"action": "create"}, map[string]any{"action": "create"}, map[string]any{"action": "create"},
			map[string]any{"action": "create"}, map[string]any{"action": "create"}, map[string]any{"action": "create"}}})},
		{code: "contact_account_mismatch", req: request(org, "mismatch", "lmm", acmeLead(), map[string]any{
			"account": map[string]any{"action": "existing", "id": accB}, "contact": map[string]any{"action": "existing", "id": conA}})},
		{code: "duplicates_found", req: request(org, "dup", "ld", map[string]any{"company": " globex", "email": "HANK@Globex.example"}, nil), check: func(t *testing.T, d map[string]any) {
			matches := d["details"].(map[string]any)["matches"].([]any)
			require.Len(t, matches, 3) // two Globex accounts, one contact
			var contactMatch map[string]any
			for _, m := range matches {
				if m.(map[string]any)["record_type"] == "contact" {
					contactMatch = m.(map[string]any)
				}
			}
			require.Equal(t, conA, contactMatch["id"])
			require.Equal(t, []any{map[string]any{"rule": "contact_email", "field": "email", "lead_value": "hank@globex.example", "record_value": "hank@globex.example"}}, contactMatch["rules"])
		}},
		{code: "ambiguous_duplicates", req: request(org, "ambiguous", "la", map[string]any{"company": "Globex"}, map[string]any{"on_duplicate": "use_existing"}), check: func(t *testing.T, d map[string]any) {
			require.Len(t, d["details"].(map[string]any)["matches"], 2)
		}},
		{code: "lead_already_qualified", req: request(org, "again", "seed1", map[string]any{"company": "Globex"}, nil), check: func(t *testing.T, d map[string]any) {
			det := d["details"].(map[string]any)
			require.Equal(t, map[string]any{"id": accA, "outcome": "created"}, det["account"])
			require.Equal(t, []any{}, det["opportunities"])
		}},
		{code: "lead_already_qualified", subj: "lead.disqualify.requested", req: func() map[string]any {
			r := request(org, "disq-qualified", "seed1", nil, map[string]any{"reason": "lost"})
			r["actor"] = manager
			return r
		}()},
		{code: "lead_not_disqualified", subj: "lead.reactivate.requested", req: request(org, "react-open", "never-seen", nil, nil)},
	}
	for _, c := range cases {
		subj := c.subj
		if subj == "" {
			subj = "lead.qualify.requested"
		}
		b.publish(subj, c.req)
	}
	for _, c := range cases {
		key := c.req["idempotency_key"].(string)
		t.Run(key, func(t *testing.T) {
			data := b.rejection(key, c.code)
			require.Equal(t, c.req["org_id"], data["org_id"])
			require.Equal(t, c.req["lead"].(map[string]any)["id"], data["lead_id"])
			if c.check != nil {
				c.check(t, data)
			}
		})
	}
	// Rejected requests wrote no lead, account, contact or opportunity.
	require.Equal(t, 0, b.count(`SELECT count(*) FROM leads WHERE id IN ('lf','lf2','lnf','lnf2','ls','lc','lcu','lm','lt','lt2','lmm','ld','la','never-seen')`))
	require.Equal(t, 3, b.count(`SELECT count(*) FROM accounts WHERE org_id = $1`, org))
	require.Equal(t, 0, b.count(`SELECT count(*) FROM opportunities WHERE org_id = $1`, org))
	var status string
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT status FROM leads WHERE org_id = $1 AND id = 'seed1'`, org).Scan(&status))
	require.Equal(t, "qualified", status)
}

func TestLeadLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	org := "org-life"
	disq := func(key, lead string) map[string]any {
		return request(org, key, lead, map[string]any{"company": "Umbrella"}, map[string]any{"reason": "no_longer_interested"})
	}
	// Disqualify an unseen lead: it is upserted and disqualified, its notes
	// and attachments kept on it.
	first := disq("d1", "life-1")
	first["lead"].(map[string]any)["notes"] = []any{map[string]any{"id": "early", "body": "met at the fair"}}
	first["lead"].(map[string]any)["attachments"] = []any{map[string]any{"id": "early-a", "file_name": "card.png"}}
	b.publish("lead.disqualify.requested", first)
	evs := b.outcome("d1")
	require.Equal(t, []string{"lead.disqualified"}, types(evs))
	validateEvent(t, evs[0])
	require.Equal(t, "no_longer_interested", evs[0].Data["reason"])
	require.Equal(t, 1, b.count(`SELECT count(*) FROM leads WHERE org_id = $1 AND id = 'life-1' AND status = 'disqualified' AND company = 'Umbrella'`, org))

	// Disqualified again: lead_disqualified; qualified: lead_disqualified.
	b.publish("lead.disqualify.requested", disq("d2", "life-1"))
	b.rejection("d2", "lead_disqualified")
	b.publish("lead.qualify.requested", request(org, "q1", "life-1", acmeLead(), nil))
	b.rejection("q1", "lead_disqualified")

	// Reactivate, then qualify, then disqualify: lead_has_opportunity.
	b.publish("lead.reactivate.requested", request(org, "r1", "life-1", map[string]any{"company": "Umbrella"}, nil))
	evs = b.outcome("r1")
	require.Equal(t, []string{"lead.reactivated"}, types(evs))
	validateEvent(t, evs[0])
	require.Equal(t, 1, b.count(`SELECT count(*) FROM leads WHERE org_id = $1 AND id = 'life-1' AND status = 'open'`, org))
	b.publish("lead.reactivate.requested", request(org, "r2", "life-1", nil, nil))
	b.rejection("r2", "lead_not_disqualified")
	evs = b.qualify(request(org, "q2", "life-1", acmeLead(), nil))
	require.Equal(t, "lead.qualified", evs[len(evs)-1].Type)
	// The notes and attachments of the earlier requests went with it.
	opp := evs[len(evs)-2].Data["opportunity_id"]
	require.Equal(t, 1, b.count(`SELECT count(*) FROM notes WHERE org_id = $1 AND lead_id = 'life-1' AND upstream_id = 'early' AND opportunity_id = $2`, org, opp))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM attachments WHERE org_id = $1 AND lead_id = 'life-1' AND upstream_id = 'early-a' AND opportunity_id = $2`, org, opp))
	b.publish("lead.disqualify.requested", disq("d3", "life-1"))
	b.rejection("d3", "lead_has_opportunity")
}
