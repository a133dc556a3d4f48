package conversion

import (
	"strings"
	"unicode"

	"golang.org/x/text/cases"
)

var folder = cases.Fold()

// NormalizeName case-folds a name, trims it and collapses inner white space.
func NormalizeName(s string) string {
	return strings.Join(strings.Fields(folder.String(s)), " ")
}

// NormalizeEmail trims an email address and lower-cases it whole.
func NormalizeEmail(s string) string {
	return strings.ToLower(strings.TrimSpace(s))
}

// NormalizePhone keeps a phone number's digits and a leading "+".
func NormalizePhone(s string) string {
	s = strings.TrimSpace(s)
	var b strings.Builder
	b.Grow(len(s))
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && i == 0:
			b.WriteRune(r)
		}
	}
	if b.Len() == 1 && s[0] == '+' {
		return ""
	}
	return b.String()
}

// NormalizeDomain reduces a website to its domain: no scheme, no "www.", no
// port, path, query or fragment, lower-cased.
func NormalizeDomain(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if i := strings.Index(s, "://"); i >= 0 && !strings.ContainsAny(s[:i], "/?#") {
		s = s[i+3:]
	}
	s = strings.TrimPrefix(s, "//")
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "www."), ".")
	return strings.TrimFunc(s, unicode.IsSpace)
}

// Normalized holds the normalized values of a record's duplicate-checked
// fields, by field name ("name", "website", "email", ...).
type Normalized map[string]string

// normalizer of each duplicate-checked field.
var normalizers = map[string]func(string) string{
	"name":           NormalizeName,
	"website":        NormalizeDomain,
	"phone":          NormalizePhone,
	"email":          NormalizeEmail,
	"business_phone": NormalizePhone,
	"mobile_phone":   NormalizePhone,
	"first_name":     NormalizeName,
	"last_name":      NormalizeName,
}

// NormalizeRecord computes the normalized values stored beside a record for
// duplicate checks.
func NormalizeRecord(typ string, fields map[string]any) Normalized {
	n := Normalized{}
	for _, f := range normColumns[typ] {
		s, _ := fields[f].(string)
		n[f] = normalizers[f](s)
	}
	return n
}

// normColumns are the fields whose normalized values are stored per record type.
var normColumns = map[string][]string{
	RecordAccount: {"name", "website", "phone"},
	RecordContact: {"email", "business_phone", "mobile_phone", "first_name", "last_name"},
}

// NormColumns returns the normalized fields stored for a record type.
func NormColumns(typ string) []string { return normColumns[typ] }

// ruleFields are the fields a duplicate rule may compare. A contact's "phone"
// compares both of its phone numbers.
var ruleFields = map[string][]string{
	RecordAccount: {"name", "website", "phone"},
	RecordContact: {"email", "phone", "business_phone", "mobile_phone", "first_name", "last_name"},
}

// RuleColumns maps a rule field to the normalized columns it compares: the
// field's own, or both phone columns for a contact's phone.
func RuleColumns(typ, field string) []string {
	if typ == RecordContact && field == "phone" {
		return []string{"business_phone", "mobile_phone"}
	}
	return []string{field}
}

// matchKey is the part of a normalized value a rule compares.
func matchKey(r Rule, v string) string {
	switch r.Match {
	case MatchFirstN:
		rs := []rune(v)
		if len(rs) > r.N {
			return string(rs[:r.N])
		}
	case MatchLastN:
		rs := []rune(v)
		if len(rs) > r.N {
			return string(rs[len(rs)-r.N:])
		}
	}
	return v
}
