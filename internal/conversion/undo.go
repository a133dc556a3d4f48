package conversion

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Outcomes of a record in an undone qualification (lead.unqualified).
const (
	// OutcomeDeleted: the qualification created the record; the undo deleted it.
	OutcomeDeleted = "deleted"
	// OutcomeUnlinked: the qualification linked an existing record; the undo
	// removed the link and left the record.
	OutcomeUnlinked = "unlinked"
	// OutcomeMissing: the qualification created the record, which was gone
	// before the undo.
	OutcomeMissing = "missing"
)

// Reasons a record created by a qualification blocks its undo.
const (
	// BlockerChanged: the record was updated after it was created.
	BlockerChanged = "changed"
	// BlockerReferenced: a row that the undo would not delete points at it.
	BlockerReferenced = "referenced"
)

// Ref names one row: a lead, account, contact, opportunity, note or attachment.
type Ref struct {
	Type string
	ID   string
}

// Reference is a row (From) that points at a record a qualification created
// (To) and that the qualification's undo would not delete: another lead,
// a contact or opportunity created otherwise, another lead's note or
// attachment.
type Reference struct {
	To, From Ref
}

// CreatedRecord is the state of a record a qualification created, as the
// undo finds it.
type CreatedRecord struct {
	Ref
	// Changed is set when the record was updated after its creation.
	Changed bool
}

// UndoState is what an unqualify decision needs beside the lead's status
// and conversion.
type UndoState struct {
	// QualifiedAt is when the lead was qualified.
	QualifiedAt time.Time
	// Records are the records the qualification created that still exist,
	// by id.
	Records map[string]CreatedRecord
	// References are every row outside the qualification that points at one
	// of its records.
	References []Reference
}

// Undo is what an accepted unqualify request does beside reopening the lead
// and unlinking what its qualification linked.
type Undo struct {
	// Delete are the records to delete, dependents first: the
	// opportunities, then the contact, then the account.
	Delete []Ref
}

func unqualify(in Input) (*Plan, *Rejection) {
	r, s := in.Request, &in.Settings
	if !s.allowed("unqualify", r.Actor.Roles) {
		return nil, forbidden("unqualify", r.Actor)
	}
	if in.Lead == nil {
		return nil, reject(CodeNotFound, map[string]any{"records": []map[string]any{{"record_type": "lead", "id": r.Lead.ID}}},
			"lead %s does not exist in org %q", r.Lead.ID, r.OrgID)
	}
	if in.Lead.Status != StatusQualified {
		return nil, reject(CodeLeadNotQualified, map[string]any{"status": in.Lead.Status},
			"only a qualified lead can be unqualified; this one is %s", in.Lead.Status)
	}
	u := in.Undo
	if u == nil {
		u = &UndoState{}
	}
	window, err := s.undoWindow()
	if err != nil {
		window = DefaultUndoWindow
	}
	if expires := u.QualifiedAt.Add(window); in.Now.After(expires) {
		return nil, reject(CodeUndoWindowExpired,
			map[string]any{"qualified_at": timestamp(u.QualifiedAt), "undo_window": window.String(), "expired_at": timestamp(expires)},
			"the qualification can no longer be undone: it happened at %s and this org allows undoing it for %s",
			timestamp(u.QualifiedAt), window)
	}

	c := in.Lead.Conversion
	if c == nil {
		c = &Conversion{Account: Link{Outcome: OutcomeSkipped}, Contact: Link{Outcome: OutcomeSkipped}}
	}
	// In the order of the qualification's events; deleted in reverse.
	links := append([]*Link{&c.Account, &c.Contact}, pointers(c.Opportunities)...)
	types := append([]string{RecordAccount, RecordContact}, repeat(RecordOpportunity, len(c.Opportunities))...)

	var blockers []map[string]any
	for i, l := range links {
		if l.Outcome != OutcomeCreated || l.ID == nil {
			continue
		}
		id := *l.ID
		if rec, ok := u.Records[id]; ok && rec.Changed {
			blockers = append(blockers, map[string]any{"record_type": types[i], "id": id, "reason": BlockerChanged})
		}
		for _, ref := range u.References {
			if ref.To.ID == id {
				blockers = append(blockers, map[string]any{"record_type": types[i], "id": id, "reason": BlockerReferenced,
					"referenced_by": map[string]any{"record_type": ref.From.Type, "id": ref.From.ID}})
			}
		}
	}
	if len(blockers) > 0 {
		return nil, reject(CodeUndoConflict, map[string]any{"blockers": blockers},
			"the qualification cannot be undone: %s", describeBlockers(blockers))
	}

	p := &Plan{Status: StatusOpen, ProcessStage: StageQualify, Undo: &Undo{}}
	outcome := func(l *Link) Link {
		switch {
		case l.Outcome == OutcomeSkipped || l.ID == nil:
			return Link{Outcome: OutcomeSkipped}
		case l.Outcome == OutcomeExisting:
			return Link{ID: l.ID, Outcome: OutcomeUnlinked}
		}
		if _, ok := u.Records[*l.ID]; !ok {
			return Link{ID: l.ID, Outcome: OutcomeMissing}
		}
		return Link{ID: l.ID, Outcome: OutcomeDeleted}
	}
	undone := make([]Link, len(links))
	for i, l := range links {
		undone[i] = outcome(l)
	}
	base := func(idKey, id string) map[string]any {
		return map[string]any{"org_id": r.OrgID, "lead_id": r.Lead.ID, idKey: id}
	}
	// Dependents first, so that no deletion leaves a dangling reference, and
	// the events in the order of the deletions.
	for i := len(links) - 1; i >= 0; i-- {
		if undone[i].Outcome != OutcomeDeleted {
			continue
		}
		id := *undone[i].ID
		p.Undo.Delete = append(p.Undo.Delete, Ref{Type: types[i], ID: id})
		p.Events = append(p.Events, Event{Type: types[i] + ".deleted", ID: in.NewID(), Data: base(types[i]+"_id", id)})
	}
	data := base("idempotency_key", r.IdempotencyKey)
	data["account"] = undone[0]
	data["contact"] = undone[1]
	data["opportunities"] = undone[2:]
	data["process_stage"] = StageQualify
	data["qualified_at"] = timestamp(u.QualifiedAt)
	data["unqualified_at"] = timestamp(in.Now)
	p.Events = append(p.Events, Event{Type: "lead.unqualified", ID: in.NewID(), Data: data})
	return p, nil
}

func pointers(links []Link) []*Link {
	out := make([]*Link, len(links))
	for i := range links {
		out[i] = &links[i]
	}
	return out
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// describeBlockers says, for a person, what stands in the way of an undo.
func describeBlockers(blockers []map[string]any) string {
	var parts []string
	for _, b := range blockers {
		what := fmt.Sprintf("%s %s", b["record_type"], b["id"])
		switch b["reason"] {
		case BlockerChanged:
			parts = append(parts, what+" was changed since")
		case BlockerReferenced:
			by := b["referenced_by"].(map[string]any)
			parts = append(parts, fmt.Sprintf("%s is used by %s %s", what, by["record_type"], by["id"]))
		}
	}
	parts = slices.Compact(parts)
	if len(parts) > 3 {
		parts = append(parts[:3], fmt.Sprintf("and %d more", len(parts)-3))
	}
	return strings.Join(parts, "; ")
}
