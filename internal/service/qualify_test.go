package service_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestQualifyBusinessDefault(t *testing.T) {
	t.Parallel()
	b := setup(t)
	evs := b.qualify(request("org-a", "k1", "lead-1", acmeLead(), nil))
	require.Equal(t, []string{"account.created", "contact.created", "opportunity.created", "lead.qualified"}, types(evs))
	for _, e := range evs {
		validateEvent(t, e)
		require.Equal(t, "leadflow", e.Source)
		require.Equal(t, "1.0", e.SpecVersion)
		require.Equal(t, "lead-1", e.Subject)
		require.Equal(t, "org-a", e.OrgID)
		require.Equal(t, "k1", e.CorrelationID)
	}
	acc, con, opp, q := evs[0].Data, evs[1].Data, evs[2].Data, evs[3].Data
	require.Equal(t, "Acme Corp", acc["name"])
	require.Equal(t, "https://www.acme.example/about", acc["website"])
	require.Equal(t, "+1 (555) 010-0001", acc["phone"])
	require.Equal(t, "Springfield", acc["city"])
	require.Equal(t, "owner-7", acc["owner_id"])
	require.Equal(t, "Ada", con["first_name"])
	require.Equal(t, "Ada@Acme.example", con["email"])
	require.Equal(t, acc["account_id"], con["account_id"])
	require.Equal(t, "50 laptops", opp["name"])
	require.Equal(t, acc["account_id"], opp["account_id"])
	require.Equal(t, con["contact_id"], opp["contact_id"])
	require.Equal(t, "this_quarter", opp["purchase_timeframe"])
	require.EqualValues(t, 50000, opp["budget_amount"])
	require.Equal(t, "develop", q["process_stage"])
	require.Equal(t, "business", q["customer_type"])
	require.Equal(t, map[string]any{"id": acc["account_id"], "outcome": "created"}, q["account"])
	require.Equal(t, map[string]any{"id": con["contact_id"], "outcome": "created"}, q["contact"])
	require.Equal(t, []any{map[string]any{"id": opp["opportunity_id"], "outcome": "created"}}, q["opportunities"])

	ctx := context.Background()
	var status, stage string
	var accountID, contactID string
	var oppIDs []string
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT status, process_stage, account_id::text, contact_id::text, opportunity_ids::text[]
		FROM leads WHERE org_id = 'org-a' AND id = 'lead-1'`).Scan(&status, &stage, &accountID, &contactID, &oppIDs))
	require.Equal(t, "qualified", status)
	require.Equal(t, "develop", stage)
	require.Equal(t, acc["account_id"], accountID)
	require.Equal(t, con["contact_id"], contactID)
	require.Equal(t, []string{opp["opportunity_id"].(string)}, oppIDs)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM accounts WHERE org_id = 'org-a' AND name_norm = 'acme corp' AND website_norm = 'acme.example'`))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM contacts WHERE org_id = 'org-a' AND email_norm = 'ada@acme.example' AND business_phone_norm = '+15550100001'`))
	// The lead's note and attachment went to the opportunity, with a summary note.
	require.Equal(t, 1, b.count(`SELECT count(*) FROM notes WHERE org_id = 'org-a' AND upstream_id = 'n1' AND opportunity_id = $1`, opp["opportunity_id"]))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM attachments WHERE org_id = 'org-a' AND upstream_id = 'a1' AND opportunity_id = $1`, opp["opportunity_id"]))
	var summary string
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT body FROM notes WHERE kind = 'summary' AND opportunity_id = $1`, opp["opportunity_id"]).Scan(&summary))
	require.Contains(t, summary, "Ada Lovelace")
	require.Contains(t, summary, "Acme Corp")
	require.Contains(t, summary, "50000")
	require.Contains(t, summary, "this quarter")
	require.Contains(t, summary, "web")
	// The relay deletes a row after JetStream acknowledged its events, which
	// may be just after they reached the test.
	require.Eventually(t, func() bool { return b.count(`SELECT count(*) FROM outbox`) == 0 }, 5*time.Second, 10*time.Millisecond)
}
