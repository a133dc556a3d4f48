package query

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/leadflow/leadflow/internal/conversion"
)

// PreviewReply is the reply on leadflow.qualify.preview
// (schemas/service/qualify.preview.reply.schema.json).
type PreviewReply struct {
	// Rejection is the rejection the request would get; nil when accepted.
	Rejection *Error `json:"rejection"`
	// Records are the account, contact and opportunities, in event order
	// (empty when rejected).
	Records []Record `json:"records"`
	// Duplicates are the records the duplicate rules matched, as
	// duplicates_found lists them.
	Duplicates []map[string]any `json:"duplicates"`
	// MissingRequiredFields are the required fields the created records
	// would lack, as "record_type.field".
	MissingRequiredFields []string `json:"missing_required_fields"`
	// Events are the types of the events the request would publish, in order.
	Events []string `json:"events"`
	// OwnerID is who would own the created records.
	OwnerID string `json:"owner_id"`
	// ProcessStage is the lead's stage afterwards; nil when rejected.
	ProcessStage *string `json:"process_stage"`
	// Replay is the recorded outcome event when the request repeats one
	// already processed.
	Replay json.RawMessage `json:"replay"`
}

// Record is what a qualification would do about one record.
type Record struct {
	RecordType string `json:"record_type"`
	// Action is create, existing or skip.
	Action string `json:"action"`
	// ID is the linked record's id; nil for create and skip.
	ID     *string        `json:"id"`
	Fields map[string]any `json:"fields"`
	Custom map[string]any `json:"custom"`
	// Update is set when linking changes the existing record.
	Update bool `json:"update"`
}

var actions = map[string]string{
	conversion.OutcomeCreated:  conversion.ActionCreate,
	conversion.OutcomeExisting: conversion.ActionExisting,
	conversion.OutcomeSkipped:  conversion.ActionSkip,
}

// preview decides a qualify request as the qualification would
// (store.Preview), without writing anything. An actor without a qualify role
// gets an error, not a preview.
func (s *Server) preview(ctx context.Context, body []byte) (any, *Error) {
	p := conversion.Parse(conversion.SubjectQualify, body)
	if p.Invalid != nil {
		return nil, fromRejection(p.Invalid)
	}
	r := p.Request
	settings, err := s.settings(ctx, r.OrgID)
	if err != nil {
		return nil, s.unavailable(SubjectPreview, err)
	}
	if !settings.Allowed("qualify", r.Actor.Roles) {
		return nil, forbidden("qualify", r.Actor)
	}
	pv, err := s.store.Preview(ctx, p)
	if err != nil {
		return nil, s.unavailable(SubjectPreview, err)
	}
	reply := &PreviewReply{Records: []Record{}, Duplicates: conversion.MatchDetails(pv.Matches),
		OwnerID: conversion.Owner(r), Events: []string{}, MissingRequiredFields: conversion.MissingRequiredFields(r, settings)}
	if reply.Duplicates == nil {
		reply.Duplicates = []map[string]any{}
	}
	switch {
	case pv.Replay != nil:
		if err := replay(reply, pv.Replay); err != nil {
			return nil, s.unavailable(SubjectPreview, err)
		}
	case pv.Rejection != nil:
		reply.Rejection = fromRejection(pv.Rejection)
		reply.Events = append(reply.Events, conversion.RejectedSubject(conversion.SubjectQualify))
		if m, ok := pv.Rejection.Details["missing"].([]string); ok && pv.Rejection.Code == conversion.CodeMissingRequiredFields {
			reply.MissingRequiredFields = m
		}
	default:
		plan := pv.Plan
		stage := plan.ProcessStage
		reply.ProcessStage = &stage
		for _, e := range plan.Events {
			reply.Events = append(reply.Events, e.Type)
		}
		for _, t := range plan.Records {
			reply.Records = append(reply.Records, record(t))
		}
	}
	return reply, nil
}

func record(t *conversion.Target) Record {
	rec := Record{RecordType: t.Type, Action: actions[t.Outcome], Fields: map[string]any{}, Custom: map[string]any{}, Update: t.Update}
	if t.Outcome == conversion.OutcomeExisting {
		id := t.ID
		rec.ID = &id
	}
	for k, v := range t.Values.Fields {
		if v != nil {
			rec.Fields[k] = v
		}
	}
	for k, v := range t.Values.Custom {
		rec.Custom[k] = v
	}
	return rec
}

// replay fills a reply from the outcome event an earlier request with the
// same key and body recorded: a resend publishes it again and does nothing
// else.
func replay(reply *PreviewReply, raw []byte) error {
	var ev struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		return fmt.Errorf("read the recorded outcome: %w", err)
	}
	reply.Replay = raw
	reply.Events = []string{ev.Type}
	if strings.HasSuffix(ev.Type, ".rejected") {
		details, _ := ev.Data["details"].(map[string]any)
		if details == nil {
			details = map[string]any{}
		}
		code, _ := ev.Data["code"].(string)
		message, _ := ev.Data["message"].(string)
		reply.Rejection = &Error{Code: code, Message: message, Details: details}
	}
	if stage, ok := ev.Data["process_stage"].(string); ok {
		reply.ProcessStage = &stage
	}
	return nil
}
