package query

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/leadflow/leadflow/internal/conversion"
	"github.com/leadflow/leadflow/internal/store"
)

const (
	leadGetRequest        = "service/lead.get.request.schema.json"
	duplicatesFindRequest = "service/duplicates.find.request.schema.json"
)

// LeadGetRequest is a request on leadflow.lead.get.
type LeadGetRequest struct {
	OrgID  string           `json:"org_id"`
	Actor  conversion.Actor `json:"actor"`
	LeadID string           `json:"lead_id"`
}

// LeadReply is the reply on leadflow.lead.get
// (schemas/service/lead.get.reply.schema.json).
type LeadReply struct {
	Lead LeadView `json:"lead"`
}

// LeadView is a lead as leadflow.lead.get shows it.
type LeadView struct {
	OrgID        string                 `json:"org_id"`
	ID           string                 `json:"id"`
	Status       string                 `json:"status"`
	ProcessStage string                 `json:"process_stage"`
	CustomerType *string                `json:"customer_type"`
	Conversion   *conversion.Conversion `json:"conversion"`
	// Created are the ids of the records created from the lead.
	Created          Created        `json:"created"`
	Fields           map[string]any `json:"fields"`
	Custom           map[string]any `json:"custom"`
	DisqualifyReason *string        `json:"disqualify_reason"`
	QualifiedAt      *time.Time     `json:"qualified_at"`
	DisqualifiedAt   *time.Time     `json:"disqualified_at"`
	ReactivatedAt    *time.Time     `json:"reactivated_at"`
	UnqualifiedAt    *time.Time     `json:"unqualified_at"`
	CreatedAt        time.Time      `json:"created_at"`
	UpdatedAt        time.Time      `json:"updated_at"`
}

// Created are the ids of the records a lead's qualification created.
type Created struct {
	AccountID      *string  `json:"account_id"`
	ContactID      *string  `json:"contact_id"`
	OpportunityIDs []string `json:"opportunity_ids"`
}

func (s *Server) leadGet(ctx context.Context, body []byte) (any, *Error) {
	var req LeadGetRequest
	if err := decode(leadGetRequest, body, &req); err != nil {
		return nil, err
	}
	if _, err := s.mayRead(ctx, SubjectLeadGet, req.OrgID, req.Actor); err != nil {
		return nil, err
	}
	l, err := s.store.Lead(ctx, req.OrgID, req.LeadID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &Error{Code: CodeNotFound, Message: fmt.Sprintf("lead %s does not exist in org %q", req.LeadID, req.OrgID),
			Details: map[string]any{"records": []map[string]any{{"record_type": "lead", "id": req.LeadID}}}}
	}
	if err != nil {
		return nil, s.unavailable(SubjectLeadGet, err)
	}
	v := LeadView{OrgID: l.OrgID, ID: l.ID, Status: l.Status, ProcessStage: l.ProcessStage, CustomerType: l.CustomerType,
		Conversion: l.Conversion, Created: Created{OpportunityIDs: []string{}}, Fields: l.Fields, Custom: l.Custom,
		DisqualifyReason: l.DisqualifyReason, QualifiedAt: l.QualifiedAt, DisqualifiedAt: l.DisqualifiedAt,
		ReactivatedAt: l.ReactivatedAt, UnqualifiedAt: l.UnqualifiedAt, CreatedAt: l.CreatedAt, UpdatedAt: l.UpdatedAt}
	if v.Custom == nil {
		v.Custom = map[string]any{}
	}
	if c := l.Conversion; c != nil {
		if c.Account.Outcome == conversion.OutcomeCreated {
			v.Created.AccountID = c.Account.ID
		}
		if c.Contact.Outcome == conversion.OutcomeCreated {
			v.Created.ContactID = c.Contact.ID
		}
		for _, o := range c.Opportunities {
			if o.Outcome == conversion.OutcomeCreated && o.ID != nil {
				v.Created.OpportunityIDs = append(v.Created.OpportunityIDs, *o.ID)
			}
		}
	}
	return &LeadReply{Lead: v}, nil
}

// DuplicatesFindRequest is a request on leadflow.duplicates.find.
type DuplicatesFindRequest struct {
	OrgID      string           `json:"org_id"`
	Actor      conversion.Actor `json:"actor"`
	RecordType string           `json:"record_type"`
	Fields     map[string]any   `json:"fields"`
}

// DuplicatesReply is the reply on leadflow.duplicates.find
// (schemas/service/duplicates.find.reply.schema.json): each matching record
// with the rules it matched by and its fields.
type DuplicatesReply struct {
	Duplicates []map[string]any `json:"duplicates"`
}

func (s *Server) duplicatesFind(ctx context.Context, body []byte) (any, *Error) {
	var req DuplicatesFindRequest
	if err := decode(duplicatesFindRequest, body, &req); err != nil {
		return nil, err
	}
	settings, qerr := s.mayRead(ctx, SubjectDuplicatesFind, req.OrgID, req.Actor)
	if qerr != nil {
		return nil, qerr
	}
	found, err := s.store.FindDuplicates(ctx, req.OrgID, conversion.DuplicateProbes(req.OrgID, req.RecordType, req.Fields, settings))
	if err != nil {
		return nil, s.unavailable(SubjectDuplicatesFind, err)
	}
	records := map[string]conversion.Existing{}
	for _, m := range found {
		records[m.Record.ID] = m.Record
	}
	reply := &DuplicatesReply{Duplicates: []map[string]any{}}
	for _, d := range conversion.MatchDetails(found) {
		rec := records[d["id"].(string)]
		custom := rec.Values.Custom
		if custom == nil {
			custom = map[string]any{}
		}
		d["fields"], d["custom"] = rec.Values.Fields, custom
		reply.Duplicates = append(reply.Duplicates, d)
	}
	return reply, nil
}
