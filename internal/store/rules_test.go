package store_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/leadflow/leadflow/internal/conversion"
	"github.com/stretchr/testify/require"
)

// TestDuplicateRuleKinds: prefix (first_n), suffix (last_n) and blank
// (match_blanks) rules find their matches through the lookup statements and
// indexes, alone and batched, and an exact rule does not match a prefix.
func TestDuplicateRuleKinds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	require.NoError(t, st.PutSettings(ctx, "org-r", []byte(`{"duplicate_rules": {
		"account": [{"name": "name_prefix", "field": "name", "match": "first_n", "n": 6},
		            {"name": "phone_suffix", "field": "phone", "match": "last_n", "n": 7}],
		"contact": [{"name": "mobile_blank", "field": "mobile_phone", "match": "exact", "match_blanks": true},
		            {"name": "email", "field": "email", "match": "exact"}]}}`)))
	req := func(key, lead string, fields map[string]any) *conversion.Parsed {
		fields["id"] = lead
		body, err := json.Marshal(map[string]any{"idempotency_key": key, "org_id": "org-r",
			"actor": map[string]any{"id": "u", "roles": []string{"sales_agent"}}, "on_duplicate": "reject", "lead": fields})
		require.NoError(t, err)
		p := conversion.Parse(conversion.SubjectQualify, body)
		require.Nil(t, p.Invalid)
		return p
	}
	o, err := st.Process(ctx, req("k0", "l0", map[string]any{"company": "Umbrella Corporation", "last_name": "Wesker",
		"business_phone": "+1 555 123 4567", "email": "albert@umbrella.example"}))
	require.NoError(t, err)
	require.Equal(t, "lead.qualified", o.Event)

	rules := func(p *conversion.Parsed) []string {
		pv, err := st.Preview(ctx, p)
		require.NoError(t, err)
		var names []string
		for _, m := range pv.Matches {
			names = append(names, m.Probe.Rule.Name)
		}
		return names
	}
	// Same first six letters of the name ("umbrel"), another phone.
	require.Contains(t, rules(req("k1", "l1", map[string]any{"company": "Umbrella Pharma", "last_name": "Birkin",
		"business_phone": "+44 20 7946 0000", "email": "w@x.example", "mobile_phone": "+1 555 000 0001"})), "name_prefix")
	// Same last seven digits of the phone, another name.
	require.Contains(t, rules(req("k2", "l2", map[string]any{"company": "Tricell", "last_name": "Excella",
		"business_phone": "+49 30 123 4567", "email": "e@x.example", "mobile_phone": "+1 555 000 0002"})), "phone_suffix")
	// No mobile phone, as the first contact: blanks match blanks.
	require.Contains(t, rules(req("k3", "l3", map[string]any{"company": "Blue Umbrella", "last_name": "Redfield",
		"email": "chris@bsaa.example"})), "mobile_blank")
	// Nothing in common.
	require.Empty(t, rules(req("k4", "l4", map[string]any{"company": "Raccoon Police", "last_name": "Kennedy",
		"business_phone": "+1 555 999 0000", "email": "leon@rpd.example", "mobile_phone": "+1 555 000 0004"})))

	// Batched, the same lookups reject the first three and convert the fourth.
	outs, err := st.ProcessBatch(ctx, []*conversion.Parsed{
		req("b1", "m1", map[string]any{"company": "Umbrella Pharma", "last_name": "Birkin", "business_phone": "+44 20 7946 0000", "email": "w@x.example", "mobile_phone": "+1 555 000 0001"}),
		req("b2", "m2", map[string]any{"company": "Tricell", "last_name": "Excella", "business_phone": "+49 30 123 4567", "email": "e@x.example", "mobile_phone": "+1 555 000 0002"}),
		req("b3", "m3", map[string]any{"company": "Blue Umbrella", "last_name": "Redfield", "email": "chris@bsaa.example"}),
		req("b4", "m4", map[string]any{"company": "Raccoon Police", "last_name": "Kennedy", "business_phone": "+1 555 999 0000", "email": "leon@rpd.example", "mobile_phone": "+1 555 000 0004"}),
	})
	require.NoError(t, err)
	for i, code := range []string{"duplicates_found", "duplicates_found", "duplicates_found", ""} {
		require.False(t, outs[i].Deferred)
		require.Equal(t, code, outs[i].Code, "request %d", i+1)
	}
}

// TestProbeKeysKeepOrgsApart: a probe's key holds its org and the value;
// org "ab" with company "c" and org "a" with company "bc" share the letters
// but not the key, for exact and prefix rules alike.
func TestProbeKeysKeepOrgsApart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	for _, org := range []string{"a", "ab"} {
		require.NoError(t, st.PutSettings(ctx, org, []byte(`{"duplicate_rules": {"account": [
			{"name": "name", "field": "name", "match": "exact"},
			{"name": "name_prefix", "field": "name", "match": "first_n", "n": 1}], "contact": []}}`)))
	}
	req := func(org, key, company string) *conversion.Parsed {
		return qualify(t, org, key, "", map[string]any{"id": key, "company": company, "last_name": "L"})
	}
	o, err := st.Process(ctx, req("ab", "k1", "c"))
	require.NoError(t, err)
	require.Equal(t, "lead.qualified", o.Event)
	matches := func(p *conversion.Parsed) int {
		pv, err := st.Preview(ctx, p)
		require.NoError(t, err)
		return len(pv.Matches)
	}
	require.Equal(t, 0, matches(req("a", "k2", "bc")))
	require.Equal(t, 2, matches(req("ab", "k3", "c")), "the same company in its own org matches both rules")
	o, err = st.Process(ctx, req("a", "k4", "bc"))
	require.NoError(t, err)
	require.Equal(t, "lead.qualified", o.Event)
}

// TestLongValuesConvertAndMatch: a company name of 1,024 four-byte
// characters (as long as the contract allows) is more than a btree entry
// holds; the lead converts, and exact, prefix and suffix rules still find
// it, and only where the whole value agrees. Prefixes and suffixes longer
// than the indexed part (settings written to the table directly may ask
// for them) match too.
func TestLongValuesConvertAndMatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	require.NoError(t, st.PutSettings(ctx, "org-long", []byte(`{"duplicate_rules": {"account": [
		{"name": "name", "field": "name", "match": "exact"},
		{"name": "name_prefix", "field": "name", "match": "first_n", "n": 600},
		{"name": "name_suffix", "field": "name", "match": "last_n", "n": 600}], "contact": []}}`)))
	long := func(first, last rune) string {
		r := make([]rune, 1024)
		for i := range r {
			r[i] = rune(0x1F600 + i*7919%1000) // hardly compressible
		}
		r[0], r[len(r)-1] = first, last
		return string(r)
	}
	req := func(key, company string) *conversion.Parsed {
		body, err := json.Marshal(map[string]any{"idempotency_key": key, "org_id": "org-long",
			"actor": map[string]any{"id": "u", "roles": []string{"sales_agent"}},
			"lead":  map[string]any{"id": key, "company": company, "last_name": "L"}})
		require.NoError(t, err)
		p := conversion.Parse(conversion.SubjectQualify, body)
		require.Nil(t, p.Invalid)
		return p
	}
	o, err := st.Process(ctx, req("k1", long('🐙', '🐳')))
	require.NoError(t, err)
	require.Equal(t, "lead.qualified", o.Event)
	rules := func(company string) []string {
		pv, err := st.Preview(ctx, req("k2", company))
		require.NoError(t, err)
		var names []string
		for _, m := range pv.Matches {
			names = append(names, m.Probe.Rule.Name)
		}
		return names
	}
	require.ElementsMatch(t, []string{"name", "name_prefix", "name_suffix"}, rules(long('🐙', '🐳')))
	require.ElementsMatch(t, []string{"name_prefix"}, rules(long('🐙', '🦀')), "another last character")
	require.ElementsMatch(t, []string{"name_suffix"}, rules(long('🦀', '🐳')), "another first character")
}
