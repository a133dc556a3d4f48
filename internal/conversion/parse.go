package conversion

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/leadflow/leadflow/schemas"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// MaxRequestBytes is the largest request leadflow reads: 256 KiB.
const MaxRequestBytes = 256 << 10

// Parsed is an incoming message after decoding and validation. Exactly one of
// Request and Invalid is set.
type Parsed struct {
	Subject string
	// Request is the decoded request when it is valid.
	Request *Request
	// Invalid is the invalid_request rejection when it is not.
	Invalid *Rejection
	// OrgID, LeadID and Key are what could be read of the request's org_id,
	// lead.id and idempotency_key even when it is invalid; nil when unreadable.
	OrgID, LeadID, Key *string
	// Hash identifies the request's content: equal for the same subject and
	// the same JSON value, however it is spaced or its keys ordered.
	Hash []byte
	// Traceparent and Tracestate are the W3C trace context the request
	// arrived with (its traceparent and tracestate headers), carried onto
	// every event it produces.
	Traceparent, Tracestate string
}

// Readable reports whether the request names its org and idempotency key, so
// that its outcome can be recorded against them.
func (p *Parsed) Readable() bool { return p.OrgID != nil && p.Key != nil }

// Parse decodes and validates a message body against the schema of its
// subject. It never fails: what is wrong becomes an invalid_request rejection.
func Parse(subject string, body []byte) *Parsed {
	p := &Parsed{Subject: subject}
	invalid := func(errs ...FieldError) *Parsed {
		p.Invalid = InvalidRequest(errs)
		return p
	}
	rawHash := sha256.Sum256(append([]byte(subject+"\x00"), body...))
	p.Hash = rawHash[:]
	if len(body) > MaxRequestBytes {
		p.readIDs(body)
		return invalid(FieldError{Path: "", Message: fmt.Sprintf("is %d bytes; a request may be at most %d bytes (256 KiB)", len(body), MaxRequestBytes)})
	}
	if !utf8.Valid(body) {
		return invalid(FieldError{Path: "", Message: "is not valid UTF-8"})
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return invalid(FieldError{Path: "", Message: "is not valid JSON: " + strings.TrimPrefix(err.Error(), "json: ")})
	}
	p.readIDsFrom(doc)
	p.Hash = contentHash(subject, doc)
	if path, ok := findNUL(doc, ""); ok {
		return invalid(FieldError{Path: path, Message: "contains a NUL character (\\u0000), which leadflow cannot store"})
	}
	errs, err := schemas.Validate(schemas.RequestPath(subject), doc)
	if err != nil {
		return invalid(FieldError{Path: "", Message: fmt.Sprintf("arrived on %q, which takes no requests", subject)})
	}
	if len(errs) > 0 {
		fe := make([]FieldError, len(errs))
		for i, e := range errs {
			fe[i] = FieldError(e)
		}
		return invalid(fe...)
	}
	// Reading the request out of doc spares decoding body a second time;
	// requestFromDoc declines whenever its result could differ from Decode's.
	req, ok := requestFromDoc(subject, body, doc)
	if !ok {
		if req, err = Decode(subject, body); err != nil {
			return invalid(FieldError{Path: "", Message: "cannot be decoded: " + err.Error()})
		}
	}
	p.Request = req
	return p
}

// readIDs reads org_id, lead.id and idempotency_key from a body too large to
// validate, so that its rejection can still be correlated.
func (p *Parsed) readIDs(body []byte) {
	var ids struct {
		OrgID          any `json:"org_id"`
		IdempotencyKey any `json:"idempotency_key"`
		Lead           struct {
			ID any `json:"id"`
		} `json:"lead"`
	}
	if json.Unmarshal(body, &ids) != nil {
		return
	}
	p.OrgID = readable(ids.OrgID, 64)
	p.Key = readable(ids.IdempotencyKey, 128)
	p.LeadID = readable(ids.Lead.ID, 128)
}

func (p *Parsed) readIDsFrom(doc any) {
	m, ok := doc.(map[string]any)
	if !ok {
		return
	}
	p.OrgID = readable(m["org_id"], 64)
	p.Key = readable(m["idempotency_key"], 128)
	if l, ok := m["lead"].(map[string]any); ok {
		p.LeadID = readable(l["id"], 128)
	}
}

func readable(v any, max int) *string {
	s, ok := v.(string)
	if !ok || s == "" || utf8.RuneCountInString(s) > max || strings.ContainsRune(s, 0) {
		return nil
	}
	return &s
}

// findNUL finds a string (or object key) holding U+0000, which PostgreSQL's
// text cannot store.
func findNUL(v any, at string) (string, bool) {
	switch x := v.(type) {
	case string:
		return at, strings.ContainsRune(x, 0)
	case map[string]any:
		for k, e := range x {
			p := at + "/" + strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
			if strings.ContainsRune(k, 0) {
				return p, true
			}
			if p, ok := findNUL(e, p); ok {
				return p, true
			}
		}
	case []any:
		for i, e := range x {
			if p, ok := findNUL(e, fmt.Sprintf("%s/%d", at, i)); ok {
				return p, true
			}
		}
	}
	return "", false
}

// contentHash hashes a decoded JSON value with its object keys in order, so
// that the same value hashes the same however it was spaced or ordered.
func contentHash(subject string, doc any) []byte {
	c := hasher{h: sha256.New()}
	c.h.Write([]byte(subject))
	c.h.Write([]byte{0})
	c.value(doc)
	return c.h.Sum(nil)
}

// hasher writes a JSON value to h in a form of its own: a type tag and a
// length before each value, object members in the order of their names.
type hasher struct {
	h   hash.Hash
	buf []byte
}

func (c *hasher) value(v any) {
	c.buf = c.buf[:0]
	switch x := v.(type) {
	case nil:
		c.buf = append(c.buf, 'n')
	case bool:
		c.buf = append(c.buf, 'b')
		c.buf = strconv.AppendBool(c.buf, x)
	case json.Number:
		c.buf = append(c.buf, 'd')
		c.buf = append(c.buf, x...)
		c.buf = append(c.buf, 0)
	case string:
		c.string(x)
		return
	case []any:
		c.header('[', len(x))
		c.h.Write(c.buf)
		for _, e := range x {
			c.value(e)
		}
		return
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		c.header('{', len(x))
		c.h.Write(c.buf)
		for _, k := range keys {
			c.string(k)
			c.value(x[k])
		}
		return
	}
	c.h.Write(c.buf)
}

func (c *hasher) string(s string) {
	c.header('s', len(s))
	c.buf = append(c.buf, s...)
	c.h.Write(c.buf)
}

// header starts buf afresh with a value's tag and length.
func (c *hasher) header(tag byte, n int) {
	c.buf = append(c.buf[:0], tag)
	c.buf = strconv.AppendInt(c.buf, int64(n), 10)
	c.buf = append(c.buf, ':')
}
