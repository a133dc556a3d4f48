// Package event writes leadflow's events as CloudEvents 1.0 JSON documents.
package event

import "time"

// Source is the CloudEvents source of every leadflow event.
const Source = "leadflow"

// Envelope is a CloudEvents 1.0 JSON document with leadflow's extension
// attributes orgid and correlationid. Marshal writes the bytes that
// encoding/json gives for it.
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

// Marshal renders one event of type typ with id and data. The bytes are
// exactly those json.Marshal gives for the Envelope of m, typ, id and data
// (Subject from m.LeadID, Time in UTC as RFC 3339 with nanoseconds), and so
// are its errors, such as *json.UnsupportedValueError for a NaN in data.
// The caller owns the returned slice.
func Marshal(m Meta, typ, id string, data any) ([]byte, error) {
	e := encoders.Get().(*encoder)
	defer e.release()

	b := append(e.buf[:0], `{"specversion":"1.0","id":`...)
	b = appendString(b, id)
	b = append(b, `,"source":`...)
	b = appendString(b, Source)
	b = append(b, `,"type":`...)
	b = appendString(b, typ)
	b = appendMember(b, `,"subject":`, m.LeadID)
	// An RFC 3339 time has no character that a JSON string escapes.
	b = append(b, `,"time":"`...)
	b = append(m.Time.UTC().AppendFormat(b, time.RFC3339Nano), '"')
	b = append(b, `,"datacontenttype":"application/json"`...)
	b = appendMember(b, `,"orgid":`, m.OrgID)
	b = appendMember(b, `,"correlationid":`, m.CorrelationID)
	b = appendMember(b, `,"traceparent":`, m.Traceparent)
	b = appendMember(b, `,"tracestate":`, m.Tracestate)
	b = append(b, `,"data":`...)
	b, err := e.appendValue(b, data, 0)
	e.buf = b
	if err != nil {
		return nil, err
	}
	b = append(b, '}')
	e.buf = b
	// The buffer goes back to the pool; the event is kept and published later.
	out := make([]byte, len(b))
	copy(out, b)
	return out, nil
}

// appendMember appends an omitempty string member: name (with its leading
// comma, quotes and colon) and s, or nothing when s is empty.
func appendMember(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(append(b, name...), s)
}
