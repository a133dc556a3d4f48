package service_test

import (
	"context"
	"testing"
	"time"

	"github.com/leadflow/leadflow/internal/config"
	"github.com/stretchr/testify/require"
)

// unqualifyRequest builds an unqualify request for a lead of org.
func unqualifyRequest(org, key, leadID string) map[string]any {
	return map[string]any{
		"idempotency_key": key, "org_id": org,
		"actor": map[string]any{"id": "user-1", "roles": []any{"sales_agent"}},
		"lead":  map[string]any{"id": leadID},
	}
}

// unqualify publishes an unqualify request and returns its events.
func (b *bundle) unqualify(org, key, leadID string) []event {
	b.t.Helper()
	b.publish("lead.unqualify.requested", unqualifyRequest(org, key, leadID))
	return b.outcome(key)
}

// leadRow is what the leads table says of a lead.
type leadRow struct {
	status, stage          string
	accountID, contactID   *string
	oppIDs                 []string
	conversion             []byte
	qualified, unqualified *time.Time
}

func (b *bundle) lead(org, id string) leadRow {
	b.t.Helper()
	var l leadRow
	require.NoError(b.t, b.pool.QueryRow(context.Background(), `SELECT status, process_stage, account_id::text, contact_id::text,
		opportunity_ids::text[], conversion, qualified_at, unqualified_at FROM leads WHERE org_id = $1 AND id = $2`, org, id).
		Scan(&l.status, &l.stage, &l.accountID, &l.contactID, &l.oppIDs, &l.conversion, &l.qualified, &l.unqualified))
	return l
}

// requireSameTime checks that two RFC 3339 timestamps name the same
// microsecond, PostgreSQL's precision.
func requireSameTime(t *testing.T, want, got any) {
	t.Helper()
	w, err := time.Parse(time.RFC3339Nano, want.(string))
	require.NoError(t, err)
	g, err := time.Parse(time.RFC3339Nano, got.(string))
	require.NoError(t, err)
	require.WithinDuration(t, w, g, time.Microsecond)
}

// TestUndoFreshConversion: undoing a conversion deletes what it created,
// unlinks what it linked, moves the lead's notes back, drops the summary and
// reopens the lead, with opportunity.deleted, contact.deleted,
// account.deleted and lead.unqualified, in that order.
func TestUndoFreshConversion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const org = "org-undo"

	t.Run("everything created", func(t *testing.T) {
		q := b.qualify(request(org, "u-q1", "lead-1", acmeLead(), nil))
		require.Equal(t, []string{"account.created", "contact.created", "opportunity.created", "lead.qualified"}, types(q))
		accID, conID, oppID := q[0].Data["account_id"], q[1].Data["contact_id"], q[2].Data["opportunity_id"]

		evs := b.unqualify(org, "u-u1", "lead-1")
		require.Equal(t, []string{"opportunity.deleted", "contact.deleted", "account.deleted", "lead.unqualified"}, types(evs))
		for _, e := range evs {
			validateEvent(t, e)
			require.Equal(t, "lead-1", e.Subject)
			require.Equal(t, "u-u1", e.CorrelationID)
		}
		require.Equal(t, oppID, evs[0].Data["opportunity_id"])
		require.Equal(t, conID, evs[1].Data["contact_id"])
		require.Equal(t, accID, evs[2].Data["account_id"])
		u := evs[3].Data
		require.Equal(t, map[string]any{"id": accID, "outcome": "deleted"}, u["account"])
		require.Equal(t, map[string]any{"id": conID, "outcome": "deleted"}, u["contact"])
		require.Equal(t, []any{map[string]any{"id": oppID, "outcome": "deleted"}}, u["opportunities"])
		require.Equal(t, "qualify", u["process_stage"])
		requireSameTime(t, q[3].Data["qualified_at"], u["qualified_at"])

		require.Zero(t, b.count(`SELECT count(*) FROM accounts WHERE org_id = $1`, org))
		require.Zero(t, b.count(`SELECT count(*) FROM contacts WHERE org_id = $1`, org))
		require.Zero(t, b.count(`SELECT count(*) FROM opportunities WHERE org_id = $1`, org))
		l := b.lead(org, "lead-1")
		require.Equal(t, "open", l.status)
		require.Equal(t, "qualify", l.stage)
		require.Nil(t, l.accountID)
		require.Nil(t, l.contactID)
		require.Empty(t, l.oppIDs)
		require.Nil(t, l.conversion)
		require.Nil(t, l.qualified)
		require.NotNil(t, l.unqualified)
		// The note and attachment are the lead's again; the summary is gone.
		require.Equal(t, 1, b.count(`SELECT count(*) FROM notes WHERE org_id = $1 AND lead_id = 'lead-1' AND upstream_id = 'n1'
			AND account_id IS NULL AND contact_id IS NULL AND opportunity_id IS NULL`, org))
		require.Equal(t, 1, b.count(`SELECT count(*) FROM attachments WHERE org_id = $1 AND lead_id = 'lead-1' AND upstream_id = 'a1'
			AND account_id IS NULL AND contact_id IS NULL AND opportunity_id IS NULL`, org))
		require.Zero(t, b.count(`SELECT count(*) FROM notes WHERE org_id = $1 AND kind = 'summary'`, org))

		// The lead is open: it can be qualified again, and the company is no
		// duplicate any more.
		again := b.qualify(request(org, "u-q1-again", "lead-1", acmeLead(), nil))
		require.Equal(t, "lead.qualified", again[len(again)-1].Type)
		require.Equal(t, 1, b.count(`SELECT count(*) FROM accounts WHERE org_id = $1`, org))
	})

	t.Run("existing records unlinked", func(t *testing.T) {
		globex := b.qualify(request(org, "u-q2", "lead-2", map[string]any{"company": "Globex", "last_name": "Scorpio"}, nil))
		globexID := globex[0].Data["account_id"].(string)
		q := b.qualify(request(org, "u-q3", "lead-3", map[string]any{"company": "Globex", "last_name": "Simpson", "topic": "reactor",
			"notes": []any{map[string]any{"id": "n3", "body": "met at the plant"}}},
			map[string]any{"account": map[string]any{"action": "existing", "id": globexID}}))
		require.Equal(t, []string{"contact.created", "opportunity.created", "lead.qualified"}, types(q))
		conID, oppID := q[0].Data["contact_id"], q[1].Data["opportunity_id"]

		evs := b.unqualify(org, "u-u3", "lead-3")
		require.Equal(t, []string{"opportunity.deleted", "contact.deleted", "lead.unqualified"}, types(evs))
		for _, e := range evs {
			validateEvent(t, e)
		}
		u := evs[2].Data
		require.Equal(t, map[string]any{"id": globexID, "outcome": "unlinked"}, u["account"])
		require.Equal(t, map[string]any{"id": conID, "outcome": "deleted"}, u["contact"])
		require.Equal(t, []any{map[string]any{"id": oppID, "outcome": "deleted"}}, u["opportunities"])
		// Globex stays, with lead-2's contact; lead-3's records are gone.
		require.Equal(t, 1, b.count(`SELECT count(*) FROM accounts WHERE org_id = $1 AND id = $2`, org, globexID))
		require.Equal(t, 1, b.count(`SELECT count(*) FROM contacts WHERE org_id = $1 AND account_id = $2`, org, globexID))
		require.Zero(t, b.count(`SELECT count(*) FROM contacts WHERE id = $1`, conID))
		require.Zero(t, b.count(`SELECT count(*) FROM opportunities WHERE id = $1`, oppID))
		require.Equal(t, 1, b.count(`SELECT count(*) FROM notes WHERE org_id = $1 AND lead_id = 'lead-3' AND upstream_id = 'n3'
			AND opportunity_id IS NULL`, org))
		require.Equal(t, "open", b.lead(org, "lead-3").status)
		require.Equal(t, "qualified", b.lead(org, "lead-2").status)
	})
}

// TestUndoBlocked: a created account that another lead's contact and the
// other lead itself use blocks the undo, and so do an account and a contact
// that a third lead linked and filled in; the rejection lists every blocker
// and nothing changes.
func TestUndoBlocked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const org = "org-undo-blocked"
	q := b.qualify(request(org, "ub-q1", "lead-1", acmeLead(), nil))
	accID, conID := q[0].Data["account_id"].(string), q[1].Data["contact_id"].(string)
	other := b.qualify(request(org, "ub-q2", "lead-2", map[string]any{"last_name": "Other", "company": "Acme Corp"},
		map[string]any{"account": map[string]any{"action": "existing", "id": accID}, "opportunities": []any{}}))
	require.Equal(t, []string{"contact.created", "lead.qualified"}, types(other))
	otherContact := other[0].Data["contact_id"].(string)
	third := b.qualify(request(org, "ub-q3", "lead-3", map[string]any{"last_name": "Lovelace", "street2": "Suite 9"},
		map[string]any{"account": map[string]any{"action": "existing", "id": accID},
			"contact": map[string]any{"action": "existing", "id": conID}, "opportunities": []any{}}))
	require.Equal(t, []string{"lead.qualified"}, types(third))

	b.publish("lead.unqualify.requested", unqualifyRequest(org, "ub-u1", "lead-1"))
	data := b.rejection("ub-u1", "undo_conflict")
	require.Equal(t, "lead.unqualify.rejected", b.outcome("ub-u1")[0].Type)
	blocker := func(typ, id, reason string, by ...string) map[string]any {
		m := map[string]any{"record_type": typ, "id": id, "reason": reason}
		if len(by) > 0 {
			m["referenced_by"] = map[string]any{"record_type": by[0], "id": by[1]}
		}
		return m
	}
	// lead-3 filled in the account's and the contact's street2: both changed.
	require.Equal(t, []any{
		blocker("account", accID, "changed"),
		blocker("account", accID, "referenced", "contact", otherContact),
		blocker("account", accID, "referenced", "lead", "lead-2"),
		blocker("account", accID, "referenced", "lead", "lead-3"),
		blocker("contact", conID, "changed"),
		blocker("contact", conID, "referenced", "lead", "lead-3"),
	}, data["details"].(map[string]any)["blockers"], "message: %s", data["message"])

	require.Equal(t, "qualified", b.lead(org, "lead-1").status)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM accounts WHERE id = $1`, accID))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM contacts WHERE id = $1`, conID))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM opportunities WHERE org_id = $1`, org))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM notes WHERE org_id = $1 AND kind = 'summary'`, org))
}

// TestUndoRejections: after the org's undo window the undo is refused; an
// open lead is not qualified; an unknown lead is not found; an actor
// without an unqualify role is forbidden.
func TestUndoRejections(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const org = "org-undo-rej"
	b.putSettings(org, `{"undo_window": "200ms", "permissions": {"unqualify": ["sales_manager"]}}`)
	q := b.qualify(request(org, "ur-q1", "lead-1", acmeLead(), nil))
	time.Sleep(300 * time.Millisecond)

	manager := func(key, lead string) map[string]any {
		r := unqualifyRequest(org, key, lead)
		r["actor"] = map[string]any{"id": "boss", "roles": []any{"sales_manager"}}
		return r
	}
	b.publish("lead.unqualify.requested", manager("ur-late", "lead-1"))
	data := b.rejection("ur-late", "undo_window_expired")
	details := data["details"].(map[string]any)
	requireSameTime(t, q[3].Data["qualified_at"], details["qualified_at"])
	require.Equal(t, "200ms", details["undo_window"])
	require.Equal(t, "qualified", b.lead(org, "lead-1").status)

	b.publish("lead.unqualify.requested", unqualifyRequest(org, "ur-agent", "lead-1"))
	require.Equal(t, "unqualify", b.rejection("ur-agent", "forbidden")["details"].(map[string]any)["action"])

	b.publish("lead.disqualify.requested", map[string]any{"idempotency_key": "ur-d", "org_id": org,
		"actor": map[string]any{"id": "u", "roles": []any{"sales_agent"}}, "lead": map[string]any{"id": "lead-2"}, "reason": "lost"})
	b.outcome("ur-d")
	b.publish("lead.unqualify.requested", manager("ur-open", "lead-2"))
	require.Equal(t, map[string]any{"status": "disqualified"}, b.rejection("ur-open", "lead_not_qualified")["details"])

	b.publish("lead.unqualify.requested", manager("ur-unknown", "lead-x"))
	b.rejection("ur-unknown", "not_found")
}

// TestUndoReplay: an undo repeated under its key deletes nothing twice and
// re-publishes its outcome with the same id; a second undo under a new key
// finds the lead open.
func TestUndoReplay(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) {
		c.DuplicateWindow = time.Second
		c.RelayMaxBackoff = 500 * time.Millisecond
	})
	const org = "org-undo-replay"
	b.qualify(request(org, "rp-q1", "lead-1", acmeLead(), nil))
	first := b.unqualify(org, "rp-u1", "lead-1")
	require.Len(t, first, 4)
	time.Sleep(1500 * time.Millisecond)

	b.publishAs("lead.unqualify.requested", unqualifyRequest(org, "rp-u1", "lead-1"), "resent")
	again := b.waitEvents("rp-u1", "lead.unqualified", 2)
	require.Equal(t, first[3].ID, again[1].ID, "the replay carries the same event id")
	require.JSONEq(t, string(first[3].raw), string(again[1].raw))
	require.Len(t, b.waitEvents("rp-u1", "account.deleted", 1), 1, "nothing deleted twice")

	b.publish("lead.unqualify.requested", unqualifyRequest(org, "rp-u2", "lead-1"))
	require.Equal(t, map[string]any{"status": "open"}, b.rejection("rp-u2", "lead_not_qualified")["details"])
}
