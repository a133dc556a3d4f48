package conversion

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func mustSettings(t testing.TB, raw string) Settings {
	t.Helper()
	s, err := ParseSettings([]byte(raw))
	require.NoError(t, err)
	return s
}

func TestParseSettingsDefaults(t *testing.T) {
	t.Parallel()

	for _, raw := range []string{"", "{}"} {
		t.Run("input "+strings.TrimSpace(raw+" "), func(t *testing.T) {
			t.Parallel()
			s := mustSettings(t, raw)
			require.Equal(t, DefaultAccountRules, s.Rules(RecordAccount))
			require.Equal(t, DefaultContactRules, s.Rules(RecordContact))
			require.Equal(t, DefaultMaxOpportunities, s.maxOpportunities())
			require.Equal(t, 5, s.maxOpportunities())
			for _, typ := range []string{RecordAccount, RecordContact, RecordOpportunity} {
				require.True(t, s.autoCreate(typ), typ)
				require.Empty(t, s.required(typ), typ)
			}
			require.Empty(t, s.FieldMap)
			require.Empty(t, s.Check())
		})
	}
}

func TestDefaultRulesAreTheDocumentedOnes(t *testing.T) {
	t.Parallel()

	require.Equal(t, []Rule{
		{Name: "account_name", Field: "name", Match: MatchExact},
		{Name: "account_website", Field: "website", Match: MatchExact},
	}, DefaultAccountRules)
	require.Equal(t, []Rule{
		{Name: "contact_email", Field: "email", Match: MatchExact},
		{Name: "contact_phone", Field: "phone", Match: MatchExact},
	}, DefaultContactRules)
}

func TestSettingsRules(t *testing.T) {
	t.Parallel()

	custom := []Rule{{Name: "tail", Field: "phone", Match: MatchLastN, N: 7, MatchBlanks: true}}
	cases := []struct {
		name        string
		raw         string
		wantAccount []Rule
		wantContact []Rule
	}{
		{"no duplicate_rules", `{}`, DefaultAccountRules, DefaultContactRules},
		{"empty duplicate_rules object", `{"duplicate_rules": {}}`, DefaultAccountRules, DefaultContactRules},
		{"null list means default", `{"duplicate_rules": {"account": null}}`, DefaultAccountRules, DefaultContactRules},
		{"explicit empty contact list disables contact checks", `{"duplicate_rules": {"contact": []}}`, DefaultAccountRules, []Rule{}},
		{"explicit empty account list disables account checks", `{"duplicate_rules": {"account": []}}`, []Rule{}, DefaultContactRules},
		{"both disabled", `{"duplicate_rules": {"account": [], "contact": []}}`, []Rule{}, []Rule{}},
		{
			"custom account list replaces the default",
			`{"duplicate_rules": {"account": [{"name": "tail", "field": "phone", "match": "last_n", "n": 7, "match_blanks": true}]}}`,
			custom, DefaultContactRules,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustSettings(t, tc.raw)
			require.Equal(t, tc.wantAccount, s.Rules(RecordAccount))
			require.Equal(t, tc.wantContact, s.Rules(RecordContact))
		})
	}
}

func TestSettingsScalars(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name     string
		raw      string
		max      int
		auto     map[string]bool
		required map[string][]string
	}{
		{
			name: "max_opportunities set",
			raw:  `{"max_opportunities": 3}`,
			max:  3,
			auto: map[string]bool{RecordAccount: true, RecordContact: true, RecordOpportunity: true},
		},
		{
			name: "max_opportunities zero is kept",
			raw:  `{"max_opportunities": 0}`,
			max:  0,
			auto: map[string]bool{RecordAccount: true, RecordContact: true, RecordOpportunity: true},
		},
		{
			name: "auto_create partly set",
			raw:  `{"auto_create": {"opportunity": false}}`,
			max:  5,
			auto: map[string]bool{RecordAccount: true, RecordContact: true, RecordOpportunity: false},
		},
		{
			name: "auto_create all off",
			raw:  `{"auto_create": {"account": false, "contact": false, "opportunity": false}}`,
			max:  5,
			auto: map[string]bool{RecordAccount: false, RecordContact: false, RecordOpportunity: false},
		},
		{
			name: "auto_create explicitly on",
			raw:  `{"auto_create": {"account": true}}`,
			max:  5,
			auto: map[string]bool{RecordAccount: true, RecordContact: true, RecordOpportunity: true},
		},
		{
			name:     "required fields",
			raw:      `{"required_fields": {"account": ["website"], "opportunity": ["close_date", "custom.po"]}}`,
			max:      5,
			auto:     map[string]bool{RecordAccount: true, RecordContact: true, RecordOpportunity: true},
			required: map[string][]string{RecordAccount: {"website"}, RecordOpportunity: {"close_date", "custom.po"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustSettings(t, tc.raw)
			require.Equal(t, tc.max, s.maxOpportunities())
			for typ, want := range tc.auto {
				require.Equal(t, want, s.autoCreate(typ), typ)
			}
			for _, typ := range []string{RecordAccount, RecordContact, RecordOpportunity} {
				require.Equal(t, tc.required[typ], s.required(typ), typ)
			}
		})
	}
}

func TestParseSettingsMalformed(t *testing.T) {
	t.Parallel()

	for _, raw := range []string{`{`, `[]`, `{"max_opportunities": "five"}`, `{"auto_create": {"account": "yes"}}`} {
		t.Run(raw, func(t *testing.T) {
			t.Parallel()
			_, err := ParseSettings([]byte(raw))
			require.Error(t, err)
			require.Contains(t, err.Error(), "parse org settings")
		})
	}
}

func TestSettingsAllowed(t *testing.T) {
	t.Parallel()

	actions := []string{"qualify", "disqualify", "reactivate", "create_account", "create_contact", "create_opportunity"}
	cases := []struct {
		name  string
		raw   string
		roles []string
		want  map[string]bool // by action; absent means the value of def
		def   bool
	}{
		{"sales_agent by default", `{}`, []string{"sales_agent"}, nil, true},
		{"sales_manager by default", `{}`, []string{"viewer", "sales_manager"}, nil, true},
		{"other role by default", `{}`, []string{"viewer"}, nil, false},
		{"no role", `{}`, nil, nil, false},
		{
			"an explicit list replaces the default for its action only",
			`{"permissions": {"qualify": ["admin"]}}`, []string{"sales_agent"},
			map[string]bool{"qualify": false}, true,
		},
		{
			"an explicit list admits its roles",
			`{"permissions": {"qualify": ["admin"]}}`, []string{"admin"},
			map[string]bool{"qualify": true}, false,
		},
		{
			"an empty list admits nobody",
			`{"permissions": {"reactivate": []}}`, []string{"sales_manager"},
			map[string]bool{"reactivate": false}, true,
		},
		{
			"create_account for managers only",
			`{"permissions": {"create_account": ["sales_manager"]}}`, []string{"sales_agent"},
			map[string]bool{"create_account": false}, true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustSettings(t, tc.raw)
			for _, a := range actions {
				want, ok := tc.want[a]
				if !ok {
					want = tc.def
				}
				require.Equal(t, want, s.allowed(a, tc.roles), a)
			}
		})
	}
}

func TestSettingsCheck(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name string
		raw  string
		// paths are the JSON Pointers the problems name, in order.
		paths []string
	}{
		{
			name: "valid full settings",
			raw: `{
				"auto_create": {"account": true, "contact": true, "opportunity": false},
				"max_opportunities": 3,
				"duplicate_rules": {
					"account": [{"name": "n", "field": "name", "match": "exact"}, {"name": "p", "field": "phone", "match": "last_n", "n": 7}],
					"contact": [{"name": "m", "field": "mobile_phone", "match": "first_n", "n": 5}, {"name": "l", "field": "last_name", "match": "exact"}]
				},
				"required_fields": {"account": ["website"], "contact": ["email", "custom.segment"], "opportunity": ["close_date", "estimated_value"]},
				"field_map": [{"from": "custom.budget_code", "to": "opportunity.custom.budget_code"},
				              {"from": "source", "to": "contact.custom.lead_source"},
				              {"from": "description", "to": "opportunity.description"}]
			}`,
		},
		{
			name:  "account rule on a contact field",
			raw:   `{"duplicate_rules": {"account": [{"name": "r", "field": "email", "match": "exact"}]}}`,
			paths: []string{"/duplicate_rules/account/0/field"},
		},
		{
			name:  "contact rule on an unknown field",
			raw:   `{"duplicate_rules": {"contact": [{"name": "ok", "field": "email", "match": "exact"}, {"name": "r", "field": "fax", "match": "exact"}]}}`,
			paths: []string{"/duplicate_rules/contact/1/field"},
		},
		{
			name:  "first_n without n",
			raw:   `{"duplicate_rules": {"contact": [{"name": "r", "field": "email", "match": "first_n"}]}}`,
			paths: []string{"/duplicate_rules/contact/0/n"},
		},
		{
			name:  "last_n with n 0",
			raw:   `{"duplicate_rules": {"account": [{"name": "r", "field": "name", "match": "last_n", "n": 0}]}}`,
			paths: []string{"/duplicate_rules/account/0/n"},
		},
		{
			name:  "rule with both problems",
			raw:   `{"duplicate_rules": {"account": [{"name": "r", "field": "email", "match": "first_n"}]}}`,
			paths: []string{"/duplicate_rules/account/0/field", "/duplicate_rules/account/0/n"},
		},
		{
			name:  "unknown required field",
			raw:   `{"required_fields": {"account": ["website", "Website"]}}`,
			paths: []string{"/required_fields/account/1"},
		},
		{
			name:  "required field of another record type",
			raw:   `{"required_fields": {"contact": ["close_date"], "opportunity": ["email"]}}`,
			paths: []string{"/required_fields/contact/0", "/required_fields/opportunity/0"},
		},
		{
			name:  "required custom field without a name",
			raw:   `{"required_fields": {"contact": ["custom."]}}`,
			paths: []string{"/required_fields/contact/0"},
		},
		{
			name:  "field_map from an unknown lead field",
			raw:   `{"field_map": [{"from": "fax", "to": "account.custom.fax"}]}`,
			paths: []string{"/field_map/0/from"},
		},
		{
			name:  "field_map to an unknown record field",
			raw:   `{"field_map": [{"from": "source", "to": "opportunity.source"}]}`,
			paths: []string{"/field_map/0/to"},
		},
		{
			name:  "field_map to a field of another record type",
			raw:   `{"field_map": [{"from": "source", "to": "account.email"}]}`,
			paths: []string{"/field_map/0/to"},
		},
		{
			name:  "field_map to without a record type",
			raw:   `{"field_map": [{"from": "custom.x", "to": "x"}]}`,
			paths: []string{"/field_map/0/to"},
		},
		{
			name:  "field_map with both ends wrong",
			raw:   `{"field_map": [{"from": "custom.ok", "to": "contact.custom.ok"}, {"from": "nope", "to": "nope.nope"}]}`,
			paths: []string{"/field_map/1/from", "/field_map/1/to"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustSettings(t, tc.raw)
			problems := s.Check()
			var paths []string
			for _, p := range problems {
				path, msg, ok := strings.Cut(p, ": ")
				require.True(t, ok, "problem %q does not start with a path", p)
				require.NotEmpty(t, msg)
				paths = append(paths, path)
			}
			require.Equal(t, tc.paths, paths, "problems: %q", problems)
		})
	}
}
