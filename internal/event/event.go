// Package event writes leadflow's events as CloudEvents 1.0 JSON documents.
package event

import (
	"encoding/json"
	"time"
)

// Source is the CloudEvents source of every leadflow event.
const Source = "leadflow"

// Envelope is a CloudEvents 1.0 JSON document with leadflow's extension
// attributes orgid and correlationid.
type Envelope struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Subject         string `json:"subject,omitempty"`
	Time            string `json:"time"`
	DataContentType string `json:"datacontenttype"`
	// OrgID is the org of the request; empty when unreadable.
	OrgID string `json:"orgid,omitempty"`
	// CorrelationID is the request's idempotency key; empty when unreadable.
	CorrelationID string `json:"correlationid,omitempty"`
	Traceparent   string `json:"traceparent,omitempty"`
	Tracestate    string `json:"tracestate,omitempty"`
	Data          any    `json:"data"`
}

// Meta is what every event of one request shares.
type Meta struct {
	LeadID        string
	OrgID         string
	CorrelationID string
	Time          time.Time
	// Traceparent and Tracestate are the W3C trace context of the request,
	// carried onto its events; empty when it had none.
	Traceparent, Tracestate string
}

// Marshal renders one event of type typ with id and data.
func Marshal(m Meta, typ, id string, data any) ([]byte, error) {
	return json.Marshal(Envelope{
		SpecVersion:     "1.0",
		ID:              id,
		Source:          Source,
		Type:            typ,
		Subject:         m.LeadID,
		Time:            m.Time.UTC().Format(time.RFC3339Nano),
		DataContentType: "application/json",
		OrgID:           m.OrgID,
		CorrelationID:   m.CorrelationID,
		Traceparent:     m.Traceparent,
		Tracestate:      m.Tracestate,
		Data:            data,
	})
}
