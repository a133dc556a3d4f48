package conversion

import (
	"maps"
	"reflect"
	"slices"
	"strings"
)

// Record types.
const (
	RecordAccount     = "account"
	RecordContact     = "contact"
	RecordOpportunity = "opportunity"
)

var addressFields = []string{"street1", "street2", "street3", "city", "state_province", "postal_code", "country"}

// recordFields are the standard fields of each record type, in event order.
var recordFields = map[string][]string{
	RecordAccount: append([]string{"name", "website", "phone"}, addressFields...),
	RecordContact: append([]string{"first_name", "last_name", "job_title", "email", "business_phone", "mobile_phone"}, addressFields...),
	RecordOpportunity: {"name", "estimated_value", "currency", "close_date", "budget_amount",
		"purchase_timeframe", "stage", "description"},
}

// RecordFields returns the standard fields of a record type.
func RecordFields(typ string) []string { return recordFields[typ] }

var leadFields = []string{"topic", "first_name", "last_name", "company", "job_title", "email",
	"business_phone", "mobile_phone", "website", "street1", "street2", "street3", "city",
	"state_province", "postal_code", "country", "description", "source", "budget_amount",
	"purchase_timeframe", "owner_id"}

// defaultMap is the default lead → record field map: Dynamics 365's.
var defaultMap = map[string][][2]string{ // record type → [lead field, record field]
	RecordAccount: {
		{"company", "name"}, {"website", "website"}, {"business_phone", "phone"},
		{"street1", "street1"}, {"street2", "street2"}, {"street3", "street3"}, {"city", "city"},
		{"state_province", "state_province"}, {"postal_code", "postal_code"}, {"country", "country"},
	},
	RecordContact: {
		{"first_name", "first_name"}, {"last_name", "last_name"}, {"job_title", "job_title"},
		{"business_phone", "business_phone"}, {"mobile_phone", "mobile_phone"}, {"email", "email"},
		{"street1", "street1"}, {"street2", "street2"}, {"street3", "street3"}, {"city", "city"},
		{"state_province", "state_province"}, {"postal_code", "postal_code"}, {"country", "country"},
	},
	RecordOpportunity: {
		{"topic", "name"}, {"budget_amount", "budget_amount"}, {"purchase_timeframe", "purchase_timeframe"},
	},
}

// DefaultStage is the stage of an opportunity created by a qualification.
const DefaultStage = "develop"

func customName(name string) (string, bool) {
	return strings.CutPrefix(name, "custom.")
}

func isRecordField(typ, field string) bool {
	if c, ok := customName(field); ok {
		return c != ""
	}
	return slices.Contains(recordFields[typ], field)
}

// Values is a record's field values: standard fields by name, custom fields in Custom.
type Values struct {
	Fields map[string]any
	Custom map[string]any
}

// Get returns a field ("website" or "custom.x"), nil when it has no value.
func (v Values) Get(field string) any {
	if c, ok := customName(field); ok {
		return blankToNil(v.Custom[c])
	}
	return blankToNil(v.Fields[field])
}

func (v Values) set(field string, val any) {
	if c, ok := customName(field); ok {
		v.Custom[c] = val
		return
	}
	v.Fields[field] = val
}

// String returns a standard text field, "" when it has none.
func (v Values) String(field string) string {
	s, _ := v.Fields[field].(string)
	return s
}

func blankToNil(v any) any {
	if s, ok := v.(string); ok && strings.TrimSpace(s) == "" {
		return nil
	}
	return v
}

// mapValues builds a new record's values from the lead: the default map, then
// the org's field map, then the request's overrides (the caller's explicit
// choice wins).
func mapValues(typ string, lead *Lead, fieldMap []FieldMapping, overrides map[string]any) Values {
	v := Values{Fields: make(map[string]any, len(recordFields[typ])), Custom: map[string]any{}}
	for _, m := range defaultMap[typ] {
		if x := lead.Field(m[0]); x != nil {
			v.Fields[m[1]] = x
		}
	}
	if typ == RecordOpportunity {
		v.Fields["stage"] = DefaultStage
	}
	for _, m := range fieldMap {
		t, field, _ := strings.Cut(m.To, ".")
		if t != typ {
			continue
		}
		if x := lead.Field(m.From); x != nil {
			v.set(field, x)
		}
	}
	for k, x := range overrides {
		if k == "custom" {
			if c, ok := x.(map[string]any); ok {
				maps.Copy(v.Custom, c)
			}
			continue
		}
		v.Fields[k] = x
	}
	return v
}

// merge applies a lead's mapped values to an existing record: only into empty
// fields, or over every field when overwrite is set. It reports whether
// anything changed.
func merge(existing, incoming Values, overwrite bool) (Values, bool) {
	out := Values{Fields: maps.Clone(existing.Fields), Custom: maps.Clone(existing.Custom)}
	if out.Fields == nil {
		out.Fields = map[string]any{}
	}
	if out.Custom == nil {
		out.Custom = map[string]any{}
	}
	changed := false
	for k, x := range incoming.Fields {
		if x == nil || k == "stage" {
			continue
		}
		if overwrite || out.Get(k) == nil {
			if !reflect.DeepEqual(out.Fields[k], x) {
				out.Fields[k] = x
				changed = true
			}
		}
	}
	for k, x := range incoming.Custom {
		if (overwrite || blankToNil(out.Custom[k]) == nil) && !reflect.DeepEqual(out.Custom[k], x) {
			out.Custom[k] = x
			changed = true
		}
	}
	return out, changed
}
