package conversion

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	parseQualifyBody = `{
		"version": 1,
		"idempotency_key": "k-1",
		"org_id": "acme",
		"actor": {"id": "u-1", "roles": ["sales_agent"]},
		"lead": {"id": "L-1", "company": "Contoso", "email": "ada@contoso.example", "budget_amount": 1200.5},
		"customer_type": "business",
		"account": {"action": "create", "fields": {"name": "Contoso Holdings"}},
		"contact": {"action": "existing", "id": "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f7"},
		"opportunities": [{"action": "create", "fields": {"name": "Widgets", "estimated_value": 10, "currency": "EUR"}}],
		"on_duplicate": "use_existing",
		"owner_id": "u-9",
		"overwrite": true
	}`
	parseDisqualifyBody = `{"idempotency_key": "k-2", "org_id": "acme", "actor": {"id": "u-1", "roles": []},
		"lead": {"id": "L-2"}, "reason": "cannot_contact"}`
	parseReactivateBody = `{"idempotency_key": "k-3", "org_id": "acme", "actor": {"id": "u-1", "roles": ["sales_manager"]},
		"lead": {"id": "L-3"}}`
)

// minimalQualify is the smallest valid qualify request; edits build invalid ones from it.
const minimalQualify = `{"idempotency_key":"k-1","org_id":"acme","actor":{"id":"u-1","roles":["sales_agent"]},"lead":{"id":"L-1"}}`

func errorPaths(t *testing.T, rej *Rejection) []string {
	t.Helper()
	require.NotNil(t, rej)
	require.Equal(t, CodeInvalidRequest, rej.Code)
	errs, ok := rej.Details["errors"].([]FieldError)
	require.True(t, ok, "details.errors is %T", rej.Details["errors"])
	require.NotEmpty(t, errs)
	paths := make([]string, len(errs))
	for i, e := range errs {
		require.NotEmpty(t, e.Message, "error at %q has no message", e.Path)
		paths[i] = e.Path
	}
	return paths
}

func strp(s string) *string { return &s }

func TestParseValid(t *testing.T) {
	t.Parallel()

	t.Run("qualify", func(t *testing.T) {
		t.Parallel()
		p := Parse(SubjectQualify, []byte(parseQualifyBody))
		require.Nil(t, p.Invalid)
		require.NotNil(t, p.Request)
		require.Equal(t, SubjectQualify, p.Subject)
		require.Equal(t, strp("acme"), p.OrgID)
		require.Equal(t, strp("k-1"), p.Key)
		require.Equal(t, strp("L-1"), p.LeadID)
		require.True(t, p.Readable())
		require.Len(t, p.Hash, 32)

		r := p.Request
		require.Equal(t, SubjectQualify, r.Subject)
		require.Equal(t, 1, *r.Version)
		require.Equal(t, "k-1", r.IdempotencyKey)
		require.Equal(t, "acme", r.OrgID)
		require.Equal(t, Actor{ID: "u-1", Roles: []string{"sales_agent"}}, r.Actor)
		require.Equal(t, "L-1", r.Lead.ID)
		require.Equal(t, "Contoso", r.Lead.Company)
		require.Equal(t, 1200.5, *r.Lead.BudgetAmount)
		require.Equal(t, CustomerBusiness, r.CustomerType)
		require.Equal(t, &Choice{Action: ActionCreate, Fields: map[string]any{"name": "Contoso Holdings"}}, r.Account)
		require.Equal(t, &Choice{Action: ActionExisting, ID: "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f7"}, r.Contact)
		require.Equal(t, &[]OpportunityChoice{{Action: ActionCreate,
			Fields: map[string]any{"name": "Widgets", "estimated_value": 10.0, "currency": "EUR"}}}, r.Opportunities)
		require.Equal(t, OnDuplicateUseExisting, r.OnDuplicate)
		require.Equal(t, "u-9", r.OwnerID)
		require.True(t, r.Overwrite)
	})

	t.Run("qualify defaults", func(t *testing.T) {
		t.Parallel()
		p := Parse(SubjectQualify, []byte(minimalQualify))
		require.Nil(t, p.Invalid)
		r := p.Request
		require.Nil(t, r.Version)
		require.Equal(t, CustomerBusiness, r.CustomerType)
		require.Equal(t, OnDuplicateReject, r.OnDuplicate)
		require.Nil(t, r.Account)
		require.Nil(t, r.Contact)
		require.Nil(t, r.Opportunities, "an absent opportunities list must stay distinguishable from []")
		require.False(t, r.Overwrite)
	})

	t.Run("qualify with no opportunities", func(t *testing.T) {
		t.Parallel()
		p := Parse(SubjectQualify, []byte(strings.Replace(minimalQualify, `}}`, `},"opportunities":[]}`, 1)))
		require.Nil(t, p.Invalid)
		require.NotNil(t, p.Request.Opportunities)
		require.Empty(t, *p.Request.Opportunities)
	})

	t.Run("disqualify", func(t *testing.T) {
		t.Parallel()
		p := Parse(SubjectDisqualify, []byte(parseDisqualifyBody))
		require.Nil(t, p.Invalid)
		require.NotNil(t, p.Request)
		require.Equal(t, SubjectDisqualify, p.Request.Subject)
		require.Equal(t, "cannot_contact", p.Request.Reason)
		require.Equal(t, "L-2", p.Request.Lead.ID)
		require.Equal(t, strp("acme"), p.OrgID)
		require.Equal(t, strp("k-2"), p.Key)
		require.Equal(t, strp("L-2"), p.LeadID)
	})

	t.Run("reactivate", func(t *testing.T) {
		t.Parallel()
		p := Parse(SubjectReactivate, []byte(parseReactivateBody))
		require.Nil(t, p.Invalid)
		require.NotNil(t, p.Request)
		require.Equal(t, SubjectReactivate, p.Request.Subject)
		require.Equal(t, "L-3", p.Request.Lead.ID)
		require.Equal(t, strp("acme"), p.OrgID)
		require.Equal(t, strp("k-3"), p.Key)
		require.Equal(t, strp("L-3"), p.LeadID)
	})
}

func TestParseInvalid(t *testing.T) {
	t.Parallel()

	withLead := func(extra string) string {
		return strings.Replace(minimalQualify, `"lead":{"id":"L-1"}`, `"lead":{"id":"L-1",`+extra+`}`, 1)
	}
	withTop := func(extra string) string {
		return strings.TrimSuffix(minimalQualify, "}") + "," + extra + "}"
	}
	const uuid = "0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f6"

	cases := []struct {
		name    string
		subject string
		body    string
		paths   []string
		// readable: org_id and idempotency_key are still read.
		readable bool
	}{
		{"empty body", SubjectQualify, ``, []string{""}, false},
		{"malformed JSON", SubjectQualify, `{"org_id": "acme",`, []string{""}, false},
		{"trailing garbage", SubjectQualify, minimalQualify + ` {}`, []string{""}, false},
		{"not an object", SubjectQualify, `["acme"]`, []string{""}, false},
		{"null", SubjectQualify, `null`, []string{""}, false},
		{"budget_amount as a string", SubjectQualify, withLead(`"budget_amount":"1200"`), []string{"/lead/budget_amount"}, true},
		{"negative budget_amount", SubjectQualify, withLead(`"budget_amount":-1`), []string{"/lead/budget_amount"}, true},
		{"roles not a list", SubjectQualify, strings.Replace(minimalQualify, `["sales_agent"]`, `"sales_agent"`, 1), []string{"/actor/roles"}, true},
		{"missing idempotency_key", SubjectQualify, strings.Replace(minimalQualify, `"idempotency_key":"k-1",`, ``, 1), []string{"/idempotency_key"}, false},
		{"missing org_id", SubjectQualify, strings.Replace(minimalQualify, `"org_id":"acme",`, ``, 1), []string{"/org_id"}, false},
		{"missing lead.id", SubjectQualify, strings.Replace(minimalQualify, `{"id":"L-1"}`, `{"company":"Contoso"}`, 1), []string{"/lead/id"}, true},
		{"missing actor", SubjectQualify, strings.Replace(minimalQualify, `"actor":{"id":"u-1","roles":["sales_agent"]},`, ``, 1), []string{"/actor"}, true},
		{"unknown customer_type", SubjectQualify, withTop(`"customer_type":"alien"`), []string{"/customer_type"}, true},
		{"unknown on_duplicate", SubjectQualify, withTop(`"on_duplicate":"merge"`), []string{"/on_duplicate"}, true},
		{"unknown purchase_timeframe", SubjectQualify, withLead(`"purchase_timeframe":"someday"`), []string{"/lead/purchase_timeframe"}, true},
		{"unknown top-level field", SubjectQualify, withTop(`"priority":"high"`), []string{"/priority"}, true},
		{"unknown lead field", SubjectQualify, withLead(`"fax":"555"`), []string{"/lead/fax"}, true},
		{"unknown account override", SubjectQualify, withTop(`"account":{"action":"create","fields":{"email":"a@b.example"}}`), []string{"/account/fields/email"}, true},
		{"version 2", SubjectQualify, withTop(`"version":2`), []string{"/version"}, true},
		{"version as a string", SubjectQualify, withTop(`"version":"1"`), []string{"/version"}, true},
		{"invalid email", SubjectQualify, withLead(`"email":"not-an-email"`), []string{"/lead/email"}, true},
		{"existing account without id", SubjectQualify, withTop(`"account":{"action":"existing"}`), []string{"/account/id"}, true},
		{"existing contact without id", SubjectQualify, withTop(`"contact":{"action":"existing"}`), []string{"/contact/id"}, true},
		{"existing opportunity without id", SubjectQualify, withTop(`"opportunities":[{"action":"existing"}]`), []string{"/opportunities/0/id"}, true},
		{"create account with an id", SubjectQualify, withTop(`"account":{"action":"create","id":"` + uuid + `"}`), []string{"/account/id"}, true},
		{"skip contact with an id", SubjectQualify, withTop(`"contact":{"action":"skip","id":"` + uuid + `"}`), []string{"/contact/id"}, true},
		{"existing account with a non-uuid id", SubjectQualify, withTop(`"account":{"action":"existing","id":"acc-1"}`), []string{"/account/id"}, true},
		{"unknown action", SubjectQualify, withTop(`"account":{"action":"merge"}`), []string{"/account/action"}, true},
		{"skip opportunity", SubjectQualify, withTop(`"opportunities":[{"action":"skip"}]`), []string{"/opportunities/0/action"}, true},
		{"org_id too long", SubjectQualify, strings.Replace(minimalQualify, `"acme"`, `"`+strings.Repeat("o", 65)+`"`, 1), []string{"/org_id"}, false},
		{"idempotency_key too long", SubjectQualify, strings.Replace(minimalQualify, `"k-1"`, `"`+strings.Repeat("k", 129)+`"`, 1), []string{"/idempotency_key"}, false},
		{"empty idempotency_key", SubjectQualify, strings.Replace(minimalQualify, `"k-1"`, `""`, 1), []string{"/idempotency_key"}, false},
		{"NUL in a lead field", SubjectQualify, withLead(`"first_name":"Ada\u0000"`), []string{"/lead/first_name"}, true},
		{"NUL in a custom field key", SubjectQualify, withLead(`"custom":{"a\u0000b":"x"}`), []string{"/lead/custom/a\x00b"}, true},
		{"NUL in a note", SubjectQualify, withLead(`"notes":[{"id":"n-1","body":"x\u0000y"}]`), []string{"/lead/notes/0/body"}, true},
		{"two errors", SubjectQualify, withLead(`"email":"nope","budget_amount":"x"`), []string{"/lead/budget_amount", "/lead/email"}, true},
		{"disqualify without reason", SubjectDisqualify, minimalQualify, []string{"/reason"}, true},
		{"disqualify with unknown reason", SubjectDisqualify, withTop(`"reason":"too_expensive"`), []string{"/reason"}, true},
		{"reactivate with qualify fields", SubjectReactivate, withTop(`"customer_type":"business"`), []string{"/customer_type"}, true},
		{"unknown subject", "lead.convert.requested", minimalQualify, []string{""}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := Parse(tc.subject, []byte(tc.body))
			require.Nil(t, p.Request)
			require.Equal(t, tc.subject, p.Subject)
			require.Equal(t, tc.paths, errorPaths(t, p.Invalid))
			require.NotEmpty(t, p.Invalid.Message)
			require.Len(t, p.Hash, 32)
			require.Equal(t, tc.readable, p.Readable())
			if tc.readable {
				require.Equal(t, strp("acme"), p.OrgID)
				require.Equal(t, strp("k-1"), p.Key)
			}
		})
	}
}

func TestParseInvalidMessageNamesTheField(t *testing.T) {
	t.Parallel()

	body := strings.Replace(minimalQualify, `"lead":{"id":"L-1"}`, `"lead":{"id":"L-1","email":"nope","budget_amount":"x"}`, 1)
	p := Parse(SubjectQualify, []byte(body))
	require.NotNil(t, p.Invalid)
	require.True(t, strings.HasPrefix(p.Invalid.Message, "/lead/budget_amount "), p.Invalid.Message)
	require.Contains(t, p.Invalid.Message, "1 more")
}

func TestParseTooLarge(t *testing.T) {
	t.Parallel()

	huge := strings.Repeat("x", 300<<10)
	cases := []struct {
		name   string
		body   string
		orgID  *string
		key    *string
		leadID *string
	}{
		{
			name:   "ids readable",
			body:   `{"idempotency_key":"k-big","org_id":"acme","actor":{"id":"u-1","roles":[]},"lead":{"id":"L-big","description":"` + huge + `"}}`,
			orgID:  strp("acme"),
			key:    strp("k-big"),
			leadID: strp("L-big"),
		},
		{
			name: "ids missing",
			body: `{"actor":{"id":"u-1","roles":[]},"lead":{"description":"` + huge + `"}}`,
		},
		{
			name:   "ids of the wrong type or too long",
			body:   `{"idempotency_key":7,"org_id":"` + strings.Repeat("o", 65) + `","lead":{"id":"L-1","description":"` + huge + `"}}`,
			leadID: strp("L-1"),
		},
		{
			name: "not JSON",
			body: `{"org_id":"acme","idempotency_key":"k","lead":"` + huge,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Greater(t, len(tc.body), MaxRequestBytes)
			p := Parse(SubjectQualify, []byte(tc.body))
			require.Nil(t, p.Request)
			require.Equal(t, []string{""}, errorPaths(t, p.Invalid))
			require.Contains(t, p.Invalid.Message, "256 KiB")
			require.Equal(t, tc.orgID, p.OrgID)
			require.Equal(t, tc.key, p.Key)
			require.Equal(t, tc.leadID, p.LeadID)
			require.Equal(t, tc.orgID != nil && tc.key != nil, p.Readable())
		})
	}
}

func TestParseSizeLimitIsInclusive(t *testing.T) {
	t.Parallel()

	// A body of exactly MaxRequestBytes is read and validated; the limit
	// itself is not what refuses it.
	prefix := `{"idempotency_key":"k-1","org_id":"acme","actor":{"id":"u-1","roles":[]},"lead":{"id":"L-1","description":"`
	suffix := `"}}`
	body := prefix + strings.Repeat("x", MaxRequestBytes-len(prefix)-len(suffix)) + suffix
	require.Len(t, body, MaxRequestBytes)
	p := Parse(SubjectQualify, []byte(body))
	require.Equal(t, []string{"/lead/description"}, errorPaths(t, p.Invalid), "the description is over its own 64 KiB limit")
	require.NotContains(t, p.Invalid.Message, "256 KiB")
}

func TestParseInvalidUTF8(t *testing.T) {
	t.Parallel()

	body := []byte(`{"idempotency_key":"k-1","org_id":"acme","actor":{"id":"u-1","roles":[]},"lead":{"id":"L-1","company":"Cont` + "\xff\xfe" + `oso"}}`)
	p := Parse(SubjectQualify, body)
	require.Nil(t, p.Request)
	require.Equal(t, []string{""}, errorPaths(t, p.Invalid))
	require.Contains(t, p.Invalid.Message, "UTF-8")
	require.Len(t, p.Hash, 32)
}

func TestParseHash(t *testing.T) {
	t.Parallel()

	const spaced = `{
		"org_id" : "acme",
		"lead" : { "company" : "Contoso", "id" : "L-1" },
		"actor" : { "roles" : [ "sales_agent" ], "id" : "u-1" },
		"idempotency_key" : "k-1"
	}`
	const compact = `{"idempotency_key":"k-1","org_id":"acme","actor":{"id":"u-1","roles":["sales_agent"]},"lead":{"id":"L-1","company":"Contoso"}}`
	const escaped = `{"idempotency_key":"k-1","org_id":"acme","actor":{"id":"u-1","roles":["sales_agent"]},"lead":{"id":"L-1","company":"\u0043ontoso"}}`
	const otherCompany = `{"idempotency_key":"k-1","org_id":"acme","actor":{"id":"u-1","roles":["sales_agent"]},"lead":{"id":"L-1","company":"Fabrikam"}}`
	const rolesReordered = `{"idempotency_key":"k-1","org_id":"acme","actor":{"id":"u-1","roles":["sales_manager","sales_agent"]},"lead":{"id":"L-1","company":"Contoso"}}`
	const rolesInOrder = `{"idempotency_key":"k-1","org_id":"acme","actor":{"id":"u-1","roles":["sales_agent","sales_manager"]},"lead":{"id":"L-1","company":"Contoso"}}`

	hash := func(subject, body string) []byte {
		p := Parse(subject, []byte(body))
		require.Len(t, p.Hash, 32)
		return p.Hash
	}

	cases := []struct {
		name     string
		subjectA string
		a        string
		subjectB string
		b        string
		same     bool
	}{
		{"spacing and key order do not matter", SubjectQualify, spaced, SubjectQualify, compact, true},
		{"escapes do not matter", SubjectQualify, escaped, SubjectQualify, compact, true},
		{"identical bodies", SubjectQualify, compact, SubjectQualify, compact, true},
		{"a different value", SubjectQualify, compact, SubjectQualify, otherCompany, false},
		{"array order matters", SubjectQualify, rolesReordered, SubjectQualify, rolesInOrder, false},
		{"the same body on another subject", SubjectQualify, compact, SubjectReactivate, compact, false},
		{"invalid bodies still differ", SubjectQualify, `{"a":`, SubjectQualify, `{"b":`, false},
		{"invalid body on another subject", SubjectQualify, `{"a":`, SubjectDisqualify, `{"a":`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b := hash(tc.subjectA, tc.a), hash(tc.subjectB, tc.b)
			if tc.same {
				require.Equal(t, a, b)
			} else {
				require.NotEqual(t, a, b)
			}
		})
	}
}

func TestParseReadable(t *testing.T) {
	t.Parallel()

	body := func(orgID, key any) string {
		m := map[string]any{"actor": map[string]any{"id": "u-1", "roles": []string{}}, "lead": map[string]any{"id": "L-1"}}
		if orgID != nil {
			m["org_id"] = orgID
		}
		if key != nil {
			m["idempotency_key"] = key
		}
		b, err := json.Marshal(m)
		require.NoError(t, err)
		return string(b)
	}
	cases := []struct {
		name     string
		orgID    any
		key      any
		readable bool
	}{
		{"both present", "acme", "k-1", true},
		{"both at their longest", strings.Repeat("o", 64), strings.Repeat("k", 128), true},
		{"longest counted in characters", strings.Repeat("ö", 64), strings.Repeat("ü", 128), true},
		{"org_id missing", nil, "k-1", false},
		{"idempotency_key missing", "acme", nil, false},
		{"org_id too long", strings.Repeat("o", 65), "k-1", false},
		{"idempotency_key too long", "acme", strings.Repeat("k", 129), false},
		{"org_id empty", "", "k-1", false},
		{"idempotency_key empty", "acme", "", false},
		{"org_id not a string", 42, "k-1", false},
		{"idempotency_key not a string", "acme", []string{"k"}, false},
		{"org_id holds NUL", "ac\x00me", "k-1", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := Parse(SubjectReactivate, []byte(body(tc.orgID, tc.key)))
			require.Equal(t, tc.readable, p.Readable())
			if s, ok := tc.orgID.(string); ok && p.OrgID != nil {
				require.Equal(t, s, *p.OrgID)
			}
			if s, ok := tc.key.(string); ok && p.Key != nil {
				require.Equal(t, s, *p.Key)
			}
		})
	}
}

// TestParseHashIsStable: a request's hash is stored with its outcome, and a
// redelivery or a re-publish after an upgrade is told apart from a reused
// key by it: the hash of a given request must never change.
func TestParseHashIsStable(t *testing.T) {
	t.Parallel()

	const body = `{"idempotency_key":"k-1","org_id":"acme","version":1,"overwrite":true,"owner_id":null,
"actor":{"id":"u-1","roles":["sales_agent","sales_manager"]},
"lead":{"id":"L-1","company":"Contoso Ltd.","first_name":"Zoë","budget_amount":12.50,"custom":{"b":[1,2,{"x":false}],"a":"é/~"},
"notes":[{"id":"n-1","body":"line\nbreak"}]}}`
	p := Parse(SubjectQualify, []byte(body))
	require.Equal(t, "a76b59fdb6e595bcbf8982ba7fc239a228a63feae802b71c37608e295cd2ec30", hex.EncodeToString(p.Hash))
}
