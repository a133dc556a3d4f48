package conversion

import (
	"encoding/json"
	"strconv"
	"time"
)

// requestFromDoc builds the request that Decode(subject, body) returns out of
// doc, body as jsonschema.UnmarshalJSON decodes it (numbers as json.Number),
// so that a valid request is decoded once. ok is false, and the request nil,
// whenever the result could differ from Decode's, Decode's errors included:
// a key that is not exactly a field's name (Decode would also match it in
// another case), a key given twice (Decode would merge the two values), a
// value of a shape no field takes, a number its field cannot hold, a
// created_at that does not parse, or one written with escapes (Decode hands
// time.Time the string as written, escapes and all). The caller then decodes
// body.
//
// requestFromDoc takes doc over: the request keeps doc's custom and fields
// maps, and their numbers are converted in place, even when ok is false.
func requestFromDoc(subject string, body []byte, doc any) (*Request, bool) {
	if _, ok := doc.(map[string]any); !ok {
		return nil, false
	}
	d := &docReader{}
	r := &Request{Subject: subject}
	if !d.each(doc, func(k string, v any) (ok bool) {
		switch k {
		case "version":
			r.Version, ok = intField(v)
		case "idempotency_key":
			r.IdempotencyKey, ok = stringField(v)
		case "org_id":
			r.OrgID, ok = stringField(v)
		case "actor":
			ok = d.actor(v, &r.Actor)
		case "lead":
			ok = d.lead(v, &r.Lead)
		case "customer_type":
			r.CustomerType, ok = stringField(v)
		case "account":
			r.Account, ok = d.choice(v)
		case "contact":
			r.Contact, ok = d.choice(v)
		case "opportunities":
			r.Opportunities, ok = d.opportunities(v)
		case "on_duplicate":
			r.OnDuplicate, ok = stringField(v)
		case "owner_id":
			r.OwnerID, ok = stringField(v)
		case "overwrite":
			r.Overwrite, ok = boolField(v)
		case "reason":
			r.Reason, ok = stringField(v)
		}
		return ok
	}) {
		return nil, false
	}
	members, escapedTime := scanBody(body)
	// Fewer keys in doc than members in body means that an object repeated
	// a key: doc kept its last value, Decode merges them into the field.
	if members != d.seen || d.times && escapedTime {
		return nil, false
	}
	r.setDefaults()
	return r, true
}

// docReader walks a decoded document into the typed request.
type docReader struct {
	// seen is how many object members the walk has seen.
	seen int
	// times is whether a created_at was read.
	times bool
}

// object returns the members of an object, counted; nil for JSON null.
func (d *docReader) object(v any) (map[string]any, bool) {
	if v == nil {
		return nil, true
	}
	m, ok := v.(map[string]any)
	if ok {
		d.seen += len(m)
	}
	return m, ok
}

// each reads the members of an object through field, which reports false
// for a member it cannot take (a key that is not exactly a field's name
// among them); JSON null has none.
func (d *docReader) each(v any, field func(key string, v any) bool) bool {
	m, ok := d.object(v)
	if !ok {
		return false
	}
	for k, e := range m {
		if !field(k, e) {
			return false
		}
	}
	return true
}

// array returns the elements of an array; nil for JSON null.
func array(v any) ([]any, bool) {
	if v == nil {
		return nil, true
	}
	a, ok := v.([]any)
	return a, ok
}

func (d *docReader) actor(v any, a *Actor) bool {
	return d.each(v, func(k string, v any) (ok bool) {
		switch k {
		case "id":
			a.ID, ok = stringField(v)
		case "roles":
			a.Roles, ok = stringsField(v)
		}
		return ok
	})
}

func (d *docReader) lead(v any, l *Lead) bool {
	return d.each(v, func(k string, v any) (ok bool) {
		switch k {
		case "id":
			l.ID, ok = stringField(v)
		case "topic":
			l.Topic, ok = stringField(v)
		case "first_name":
			l.FirstName, ok = stringField(v)
		case "last_name":
			l.LastName, ok = stringField(v)
		case "company":
			l.Company, ok = stringField(v)
		case "job_title":
			l.JobTitle, ok = stringField(v)
		case "email":
			l.Email, ok = stringField(v)
		case "business_phone":
			l.BusinessPhone, ok = stringField(v)
		case "mobile_phone":
			l.MobilePhone, ok = stringField(v)
		case "website":
			l.Website, ok = stringField(v)
		case "street1":
			l.Street1, ok = stringField(v)
		case "street2":
			l.Street2, ok = stringField(v)
		case "street3":
			l.Street3, ok = stringField(v)
		case "city":
			l.City, ok = stringField(v)
		case "state_province":
			l.StateProvince, ok = stringField(v)
		case "postal_code":
			l.PostalCode, ok = stringField(v)
		case "country":
			l.Country, ok = stringField(v)
		case "description":
			l.Description, ok = stringField(v)
		case "source":
			l.Source, ok = stringField(v)
		case "budget_amount":
			l.BudgetAmount, ok = floatField(v)
		case "purchase_timeframe":
			l.PurchaseTimeframe, ok = stringField(v)
		case "owner_id":
			l.OwnerID, ok = stringField(v)
		case "custom":
			l.Custom, ok = d.values(v)
		case "notes":
			l.Notes, ok = d.notes(v)
		case "attachments":
			l.Attachments, ok = d.attachments(v)
		}
		return ok
	})
}

func (d *docReader) notes(v any) ([]Note, bool) {
	return objects(d, v, func(n *Note, k string, v any) (ok bool) {
		switch k {
		case "id":
			n.ID, ok = stringField(v)
		case "title":
			n.Title, ok = stringField(v)
		case "body":
			n.Body, ok = stringField(v)
		case "created_at":
			n.CreatedAt, ok = timeField(v)
			d.times = true
		}
		return ok
	})
}

func (d *docReader) attachments(v any) ([]Attachment, bool) {
	return objects(d, v, func(a *Attachment, k string, v any) (ok bool) {
		switch k {
		case "id":
			a.ID, ok = stringField(v)
		case "file_name":
			a.FileName, ok = stringField(v)
		case "mime_type":
			a.MimeType, ok = stringField(v)
		case "size_bytes":
			a.SizeBytes, ok = int64Field(v)
		case "url":
			a.URL, ok = stringField(v)
		}
		return ok
	})
}

// objects reads an array of objects into a []T, each member through field,
// which reports false for a member it cannot take; nil for JSON null, and a
// JSON null element is T's zero value.
func objects[T any](d *docReader, v any, field func(t *T, key string, v any) bool) ([]T, bool) {
	a, ok := array(v)
	if !ok || a == nil {
		return nil, ok
	}
	out := make([]T, len(a))
	for i, e := range a {
		if !d.each(e, func(k string, v any) bool { return field(&out[i], k, v) }) {
			return nil, false
		}
	}
	return out, true
}

func (d *docReader) choice(v any) (*Choice, bool) {
	if v == nil {
		return nil, true
	}
	c := &Choice{}
	if !d.each(v, func(k string, v any) bool { return d.chosen(&c.Action, &c.ID, &c.Fields, k, v) }) {
		return nil, false
	}
	return c, true
}

func (d *docReader) opportunities(v any) (*[]OpportunityChoice, bool) {
	out, ok := objects(d, v, func(o *OpportunityChoice, k string, v any) bool {
		return d.chosen(&o.Action, &o.ID, &o.Fields, k, v)
	})
	if out == nil {
		return nil, ok
	}
	return &out, true
}

// chosen reads a member of a choice (the account's, the contact's or an
// opportunity's) into its action, id or fields.
func (d *docReader) chosen(action, id *string, fields *map[string]any, k string, v any) (ok bool) {
	switch k {
	case "action":
		*action, ok = stringField(v)
	case "id":
		*id, ok = stringField(v)
	case "fields":
		*fields, ok = d.values(v)
	}
	return ok
}

// values returns an object as encoding/json decodes it into map[string]any:
// its numbers, however deep, become float64.
func (d *docReader) values(v any) (map[string]any, bool) {
	m, ok := d.object(v)
	if !ok || m == nil {
		return nil, ok
	}
	for k, e := range m {
		if m[k], ok = d.value(e); !ok {
			return nil, false
		}
	}
	return m, true
}

// value is v as encoding/json decodes it into any, numbers converted in
// place in the objects and arrays it holds.
func (d *docReader) value(v any) (any, bool) {
	switch x := v.(type) {
	case json.Number:
		return anyNumber(x)
	case map[string]any:
		return d.values(x)
	case []any:
		for i, e := range x {
			var ok bool
			if x[i], ok = d.value(e); !ok {
				return nil, false
			}
		}
		return x, true
	}
	return v, plain(v)
}

// plain reports whether v is a value encoding/json stores into any as is.
// A float64 is one: it is what a number becomes there.
func plain(v any) bool {
	switch v.(type) {
	case nil, string, bool, float64:
		return true
	}
	return false
}

// anyNumber is a number as encoding/json stores it into any.
func anyNumber(n json.Number) (float64, bool) {
	f, err := strconv.ParseFloat(string(n), 64)
	return f, err == nil
}

// The fields below follow encoding/json: JSON null leaves a string or a bool
// at its zero value and a pointer or a slice nil.

func stringField(v any) (string, bool) {
	if v == nil {
		return "", true
	}
	s, ok := v.(string)
	return s, ok
}

func boolField(v any) (bool, bool) {
	if v == nil {
		return false, true
	}
	b, ok := v.(bool)
	return b, ok
}

func stringsField(v any) ([]string, bool) {
	a, ok := array(v)
	if !ok || a == nil {
		return nil, ok
	}
	out := make([]string, len(a))
	for i, e := range a {
		if out[i], ok = stringField(e); !ok {
			return nil, false
		}
	}
	return out, true
}

func intField(v any) (*int, bool) {
	i, ok := int64Field(v)
	if !ok || i == nil {
		return nil, ok
	}
	if int64(int(*i)) != *i {
		return nil, false
	}
	out := int(*i)
	return &out, true
}

func int64Field(v any) (*int64, bool) {
	if v == nil {
		return nil, true
	}
	n, ok := v.(json.Number)
	if !ok {
		return nil, false
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		return nil, false
	}
	return &i, true
}

func floatField(v any) (*float64, bool) {
	if v == nil {
		return nil, true
	}
	n, ok := v.(json.Number)
	if !ok {
		return nil, false
	}
	f, ok := anyNumber(n)
	if !ok {
		return nil, false
	}
	return &f, true
}

// timeField parses a time as time.Time.UnmarshalJSON does an unescaped
// string: the same parser, so the same instant and location.
func timeField(v any) (*time.Time, bool) {
	if v == nil {
		return nil, true
	}
	s, ok := v.(string)
	if !ok {
		return nil, false
	}
	var t time.Time
	if t.UnmarshalText([]byte(s)) != nil {
		return nil, false
	}
	return &t, true
}

// scanBody reads body, a JSON text. members is how many object members it
// holds, repeated keys included (-1 when a string in it is not closed);
// escapedTime is whether one of its strings is written with a backslash escape
// and with nothing but characters that an RFC 3339 time, or a \u escape of
// one, could be written with.
func scanBody(body []byte) (members int, escapedTime bool) {
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case ':':
			// Outside strings, a colon only ever ends a key.
			members++
		case '"':
			start, escaped := i+1, false
			for i = start; i < len(body) && body[i] != '"'; i++ {
				if body[i] == '\\' {
					escaped = true
					i++
				}
			}
			if i >= len(body) {
				return -1, escapedTime
			}
			if escaped && !escapedTime {
				escapedTime = timeChars(body[start:i])
			}
		}
	}
	return members, escapedTime
}

// timeChars reports whether s holds only the characters of an RFC 3339 time
// (as time.Parse reads one) and of \u escapes.
func timeChars(s []byte) bool {
	for _, c := range s {
		if !timeChar[c] {
			return false
		}
	}
	return true
}

var timeChar = func() (t [256]bool) {
	for _, c := range []byte("0123456789abcdefABCDEF\\uTtZz:.,+- ") {
		t[c] = true
	}
	return t
}()
