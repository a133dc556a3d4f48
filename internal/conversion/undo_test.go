package conversion

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// undoBundle is an unqualify input for a lead qualified an hour before
// testNow, that created account accID and opportunity oppID and linked
// contact conID.
func undoBundle(t *testing.T, settings string) *testBundle {
	t.Helper()
	b := setup(t, SubjectUnqualify, nil, settings)
	b.in.Lead = qualifiedLead()
	b.in.Undo = &UndoState{
		QualifiedAt: testNow.Add(-time.Hour),
		Records: map[string]CreatedRecord{
			accID: {Ref: Ref{Type: RecordAccount, ID: accID}},
			oppID: {Ref: Ref{Type: RecordOpportunity, ID: oppID}},
		},
	}
	return b
}

func decideUndo(t *testing.T, in Input) (*Plan, *Rejection) {
	t.Helper()
	d, p, rej := Decide(in)
	require.Nil(t, d)
	if rej != nil {
		requireValidRejection(t, in, rej)
	}
	return p, rej
}

func TestUnqualifyPlan(t *testing.T) {
	t.Parallel()
	b := undoBundle(t, "")
	p, rej := decideUndo(t, b.in)
	require.Nil(t, rej)
	require.Equal(t, StatusOpen, p.Status)
	require.Equal(t, StageQualify, p.ProcessStage)
	require.Equal(t, []Ref{{RecordOpportunity, oppID}, {RecordAccount, accID}}, p.Undo.Delete, "dependents first")
	require.Equal(t, []string{"opportunity.deleted", "account.deleted", "lead.unqualified"}, eventTypes(p))
	for _, e := range p.Events {
		requireValidEvent(t, e)
	}
	require.Equal(t, oppID, p.Events[0].Data["opportunity_id"])
	require.Equal(t, accID, p.Events[1].Data["account_id"])
	u := p.Events[2].Data
	require.Equal(t, link(accID, OutcomeDeleted), u["account"])
	require.Equal(t, link(conID, OutcomeUnlinked), u["contact"])
	require.Equal(t, []Link{link(oppID, OutcomeDeleted)}, u["opportunities"])
	require.Equal(t, "2025-03-01T11:00:00Z", u["qualified_at"])
	require.Equal(t, "2025-03-01T12:00:00Z", u["unqualified_at"])
	require.Equal(t, "k-1", u["idempotency_key"])
}

func TestUnqualifyMissingRecord(t *testing.T) {
	t.Parallel()
	b := undoBundle(t, "")
	delete(b.in.Undo.Records, oppID)
	p, rej := decideUndo(t, b.in)
	require.Nil(t, rej)
	require.Equal(t, []Ref{{RecordAccount, accID}}, p.Undo.Delete)
	require.Equal(t, []string{"account.deleted", "lead.unqualified"}, eventTypes(p))
	require.Equal(t, []Link{link(oppID, OutcomeMissing)}, eventOf(t, p, "lead.unqualified").Data["opportunities"])
	requireValidEvent(t, eventOf(t, p, "lead.unqualified"))
}

func TestUnqualifySkippedRecords(t *testing.T) {
	t.Parallel()
	b := undoBundle(t, "")
	b.in.Lead.Conversion = &Conversion{Account: link("", OutcomeSkipped), Contact: link(conID, OutcomeCreated), Opportunities: []Link{}}
	b.in.Undo.Records = map[string]CreatedRecord{conID: {Ref: Ref{Type: RecordContact, ID: conID}}}
	p, rej := decideUndo(t, b.in)
	require.Nil(t, rej)
	require.Equal(t, []string{"contact.deleted", "lead.unqualified"}, eventTypes(p))
	u := eventOf(t, p, "lead.unqualified")
	require.Equal(t, link("", OutcomeSkipped), u.Data["account"])
	require.Equal(t, []Link{}, u.Data["opportunities"])
	requireValidEvent(t, u)
}

func TestUnqualifyRejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		settings string
		edit     func(in *Input)
		code     string
		details  map[string]any
	}{
		{"actor without an unqualify role", `{"permissions": {"unqualify": ["sales_manager"]}}`, nil, CodeForbidden,
			map[string]any{"action": "unqualify", "actor_id": "u-actor", "roles": []string{"sales_agent"}}},
		{"unknown lead", "", func(in *Input) { in.Lead = nil }, CodeNotFound,
			map[string]any{"records": []map[string]any{{"record_type": "lead", "id": "L-1"}}}},
		{"open lead", "", func(in *Input) { in.Lead = &LeadState{Status: StatusOpen} }, CodeLeadNotQualified,
			map[string]any{"status": StatusOpen}},
		{"disqualified lead", "", func(in *Input) { in.Lead = &LeadState{Status: StatusDisqualified} }, CodeLeadNotQualified,
			map[string]any{"status": StatusDisqualified}},
		{"after the default window", "", func(in *Input) { in.Undo.QualifiedAt = testNow.Add(-25 * time.Hour) }, CodeUndoWindowExpired,
			map[string]any{"qualified_at": "2025-02-28T11:00:00Z", "undo_window": "24h0m0s", "expired_at": "2025-03-01T11:00:00Z"}},
		{"after the org's window", `{"undo_window": "30m"}`, nil, CodeUndoWindowExpired,
			map[string]any{"qualified_at": "2025-03-01T11:00:00Z", "undo_window": "30m0s", "expired_at": "2025-03-01T11:30:00Z"}},
		{"undo turned off", `{"undo_window": "0s"}`, nil, CodeUndoWindowExpired,
			map[string]any{"qualified_at": "2025-03-01T11:00:00Z", "undo_window": "0s", "expired_at": "2025-03-01T11:00:00Z"}},
		{"blocked", "", func(in *Input) {
			in.Undo.Records[accID] = CreatedRecord{Ref: Ref{Type: RecordAccount, ID: accID}, Changed: true}
			in.Undo.References = []Reference{
				{To: Ref{RecordAccount, accID}, From: Ref{"contact", con2ID}},
				{To: Ref{RecordAccount, accID}, From: Ref{"lead", "L-2"}},
				{To: Ref{RecordOpportunity, oppID}, From: Ref{"note", "0190a5c4-7a2b-7c3d-8e4f-00000000f001"}},
			}
		}, CodeUndoConflict, map[string]any{"blockers": []map[string]any{
			{"record_type": RecordAccount, "id": accID, "reason": BlockerChanged},
			{"record_type": RecordAccount, "id": accID, "reason": BlockerReferenced, "referenced_by": map[string]any{"record_type": "contact", "id": con2ID}},
			{"record_type": RecordAccount, "id": accID, "reason": BlockerReferenced, "referenced_by": map[string]any{"record_type": "lead", "id": "L-2"}},
			{"record_type": RecordOpportunity, "id": oppID, "reason": BlockerReferenced,
				"referenced_by": map[string]any{"record_type": "note", "id": "0190a5c4-7a2b-7c3d-8e4f-00000000f001"}},
		}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := undoBundle(t, c.settings)
			if c.edit != nil {
				c.edit(&b.in)
			}
			p, rej := decideUndo(t, b.in)
			require.Nil(t, p)
			require.NotNil(t, rej)
			require.Equal(t, c.code, rej.Code, rej.Message)
			require.Equal(t, c.details, rej.Details)
			require.NotEmpty(t, rej.Message)
		})
	}
}

func TestUnqualifyWithinTheWindow(t *testing.T) {
	t.Parallel()
	b := undoBundle(t, `{"undo_window": "1h"}`)
	_, rej := decideUndo(t, b.in)
	require.Nil(t, rej, "exactly at the end of the window is still within it")
}

func TestUndoWindowSetting(t *testing.T) {
	t.Parallel()
	_, err := ParseSettings([]byte(`{"undo_window": "a day"}`))
	require.Error(t, err)
	s := mustSettings(t, `{"undo_window": "90m"}`)
	require.Empty(t, s.Check())
	s.UndoWindow = "-1h"
	require.Equal(t, []string{`/undo_window: undo_window "-1h" is not a duration such as "24h" or "90m"`}, s.Check())
}

func TestMayRead(t *testing.T) {
	t.Parallel()
	s := mustSettings(t, `{"permissions": {"qualify": ["agent"], "disqualify": [], "reactivate": ["manager"]}}`)
	require.True(t, s.MayRead([]string{"agent"}))
	require.True(t, s.MayRead([]string{"viewer", "manager"}))
	require.False(t, s.MayRead([]string{"viewer"}))
	require.True(t, mustSettings(t, `{}`).MayRead([]string{"sales_agent"}))
	require.False(t, mustSettings(t, `{}`).Allowed("qualify", []string{"viewer"}))
}
