package conversion

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/leadflow/leadflow/schemas"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

var requestSubjects = []string{SubjectQualify, SubjectDisqualify, SubjectReactivate, SubjectUnqualify}

// docCase is a request body on a subject.
type docCase struct {
	name    string
	subject string
	body    string
}

// decideBody is baseRequest (decide_test.go) for subject, after edit changes
// its top level (req) and its lead.
func decideBody(t testing.TB, subject string, edit func(req, lead map[string]any)) string {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(baseRequest), &m))
	if subject == SubjectDisqualify {
		m["reason"] = "lost"
	}
	if edit != nil {
		edit(m, m["lead"].(map[string]any))
	}
	body, err := json.Marshal(m)
	require.NoError(t, err)
	return string(body)
}

// withLeadFields puts extra members into minimalQualify's lead.
func withLeadFields(extra string) string {
	return strings.Replace(minimalQualify, `"lead":{"id":"L-1"}`, `"lead":{"id":"L-1",`+extra+`}`, 1)
}

// withTopFields puts extra members into minimalQualify.
func withTopFields(extra string) string {
	return strings.TrimSuffix(minimalQualify, "}") + "," + extra + "}"
}

// validBodies are the valid requests the package's tests send, and more that
// reach every field, null, number form and time form the schemas allow.
func validBodies(t testing.TB) []docCase {
	t.Helper()
	cases := []docCase{
		{"parse qualify", SubjectQualify, parseQualifyBody},
		{"parse disqualify", SubjectDisqualify, parseDisqualifyBody},
		{"parse reactivate", SubjectReactivate, parseReactivateBody},
		{"minimal qualify", SubjectQualify, minimalQualify},
		{"no opportunities", SubjectQualify, strings.Replace(minimalQualify, `}}`, `},"opportunities":[]}`, 1)},
		{"bench qualify", SubjectQualify, benchQualifyBody},
		{"hash spaced", SubjectQualify, `{
			"org_id" : "acme",
			"lead" : { "company" : "Contoso", "id" : "L-1" },
			"actor" : { "roles" : [ "sales_agent" ], "id" : "u-1" },
			"idempotency_key" : "k-1"
		}`},
		{"hash escaped", SubjectQualify, `{"idempotency_key":"k-1","org_id":"acme","actor":{"id":"u-1","roles":["sales_agent"]},"lead":{"id":"L-1","company":"\u0043ontoso"}}`},
		{"readable longest", SubjectReactivate, `{"actor":{"id":"u-1","roles":[]},"lead":{"id":"L-1"},"org_id":"` +
			strings.Repeat("ö", 64) + `","idempotency_key":"` + strings.Repeat("ü", 128) + `"}`},

		{"custom nested numbers", SubjectQualify, withLeadFields(`"custom":{
			"a":{"b":[1,2.5,-0,0.1,1e300,-1E-300,12345678901234567890,{"c":[null,true,false,"x",[],{}]}]},
			"n":null,"e":[],"o":{},"big":1.7976931348623157e308,"tiny":5e-324,"neg":-12.5e3,"int":9007199254740993}`)},
		{"custom nulls", SubjectQualify, withLeadFields(`"custom":{"a":null,"b":[null,null],"c":{"d":null}}`)},
		{"empty custom", SubjectQualify, withLeadFields(`"custom":{}`)},
		{"empty lists", SubjectQualify, strings.Replace(withLeadFields(`"notes":[],"attachments":[]`), `["sales_agent"]`, `[]`, 1)},
		{"budget fraction", SubjectQualify, withLeadFields(`"budget_amount":0.1`)},
		{"budget zero", SubjectQualify, withLeadFields(`"budget_amount":0`)},
		{"budget minus zero", SubjectQualify, withLeadFields(`"budget_amount":-0`)},
		{"budget exponent", SubjectQualify, withLeadFields(`"budget_amount":1E15`)},
		{"budget long fraction", SubjectQualify, withLeadFields(`"budget_amount":123456789.123456789123456789`)},
		{"notes", SubjectQualify, withLeadFields(`"notes":[
			{"id":"n-1"},
			{"id":"n-2","title":"t","body":"line\nbreak \"quoted\" \u00e9 \ud83d\ude00","created_at":"2025-02-10T09:15:00Z"},
			{"id":"n-3","created_at":"2025-02-10T09:15:00+05:30"},
			{"id":"n-4","created_at":"2025-02-10T09:15:00.123456789-07:00"},
			{"id":"n-5","created_at":"2025-02-10T09:15:00.5+00:00"},
			{"id":"n-6","created_at":"2025-12-31T23:59:59.999999999+14:00"},
			{"id":"n-7","created_at":"2024-02-29T00:00:00.000001-12:00"},
			{"id":"n-8","created_at":"2025-02-10T09:15:00+05:45"}]`)},
		{"attachments", SubjectQualify, withLeadFields(`"attachments":[
			{"id":"a-1","file_name":"f.pdf"},
			{"id":"a-2","file_name":"g.png","mime_type":"image/png","size_bytes":0,"url":"https://files.example/g.png"},
			{"id":"a-3","file_name":"h","size_bytes":9223372036854775807}]`)},
		{"every lead field", SubjectReactivate, decideBody(t, SubjectReactivate, func(_, lead map[string]any) {
			lead["notes"] = []any{map[string]any{"id": "n-1", "title": "x", "body": "y", "created_at": "2025-01-01T00:00:00Z"}}
			lead["attachments"] = []any{map[string]any{"id": "a-1", "file_name": "f", "size_bytes": 10}}
		})},
		{"escaped strings", SubjectQualify, withLeadFields(`"company":"Jos\u00e9 \/ \\ \t","first_name":"\ud800","last_name":"\"","city":"\\\\"`)},
		{"escaped keys", SubjectQualify, withLeadFields(`"c\u006fmpany":"Contoso","custom":{"k\u0065y":1}`)},
		{"version one", SubjectUnqualify, strings.TrimSuffix(minimalQualify, "}") + `,"version":1}`},
		{"fields with custom", SubjectQualify, withTopFields(`"account":{"action":"create","fields":{"name":"A","custom":{"x":[1,{"y":2.5}],"z":null}}},` +
			`"contact":{"action":"skip","fields":{}},` +
			`"opportunities":[{"action":"create","fields":{"estimated_value":0.1,"budget_amount":1e3,"custom":{}}},{"action":"create"}]`)},
		{"overwrite false", SubjectQualify, withTopFields(`"overwrite":false,"customer_type":"consumer","on_duplicate":"create_new"`)},
	}
	for _, subject := range requestSubjects {
		minimal := minimalQualify
		if subject == SubjectDisqualify {
			minimal = strings.TrimSuffix(minimal, "}") + `,"reason":"canceled"}`
		}
		cases = append(cases,
			docCase{"base " + subject, subject, decideBody(t, subject, nil)},
			docCase{"minimal " + subject, subject, minimal},
		)
	}

	// The edits of decide_test.go and lookup_test.go.
	edits := map[string]func(req, lead map[string]any){
		"blank company":  func(_, lead map[string]any) { lead["company"] = "   " },
		"blank country":  func(_, lead map[string]any) { lead["country"] = "  " },
		"consumer":       func(req, _ map[string]any) { req["customer_type"] = "consumer" },
		"create new":     func(req, _ map[string]any) { req["on_duplicate"] = "create_new" },
		"use existing":   func(req, _ map[string]any) { req["on_duplicate"] = "use_existing" },
		"no opps":        func(req, _ map[string]any) { req["opportunities"] = []any{} },
		"skip account":   func(req, _ map[string]any) { req["account"] = map[string]any{"action": "skip"} },
		"admin":          func(req, _ map[string]any) { req["actor"].(map[string]any)["roles"] = []string{"admin"} },
		"request owner":  func(req, _ map[string]any) { req["owner_id"] = "u-request-owner" },
		"overwrite":      func(req, _ map[string]any) { req["overwrite"] = true },
		"normalized ids": func(_, lead map[string]any) { lead["email"] = "ADA@contoso.example"; lead["mobile_phone"] = " - " },
		"existing records": func(req, _ map[string]any) {
			req["account"] = map[string]any{"action": "existing", "id": accID}
			req["contact"] = map[string]any{"action": "existing", "id": conID}
			req["opportunities"] = []any{map[string]any{"action": "existing", "id": oppID}, map[string]any{"action": "create"}}
		},
		"custom segment": func(req, _ map[string]any) {
			req["contact"] = map[string]any{"action": "create", "fields": map[string]any{"custom": map[string]any{"segment": "smb"}}}
			req["opportunities"] = []any{map[string]any{"action": "create", "fields": map[string]any{"close_date": "2025-06-30", "estimated_value": 100}}}
		},
		"overrides": withOverrides,
		"lookup": func(req, _ map[string]any) {
			req["opportunities"] = []any{map[string]any{"action": "create"}, map[string]any{"action": "create", "fields": map[string]any{"close_date": "2025-06-30"}}}
		},
	}
	for name, edit := range edits {
		cases = append(cases, docCase{"decide " + name, SubjectQualify, decideBody(t, SubjectQualify, edit)})
	}
	return cases
}

// fromDoc decodes body as Parse does and reads the request out of the
// document.
func fromDoc(t testing.TB, subject, body string) (*Request, bool) {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
	require.NoError(t, err)
	return requestFromDoc(subject, []byte(body), doc)
}

// requireSameRequest fails unless got is what Decode gives: reflect.DeepEqual,
// and the same JSON too, which tells -0 from 0 and names times' offsets.
func requireSameRequest(t testing.TB, want, got *Request) {
	t.Helper()
	require.Equal(t, want, got)
	wantJSON, err := json.Marshal(want)
	require.NoError(t, err)
	gotJSON, err := json.Marshal(got)
	require.NoError(t, err)
	require.Equal(t, string(wantJSON), string(gotJSON))
}

func TestRequestFromDocMatchesDecode(t *testing.T) {
	t.Parallel()

	for _, tc := range validBodies(t) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc, err := jsonschema.UnmarshalJSON(strings.NewReader(tc.body))
			require.NoError(t, err)
			errs, err := schemas.Validate(schemas.RequestPath(tc.subject), doc)
			require.NoError(t, err)
			require.Empty(t, errs, "the test request is invalid")

			want, err := Decode(tc.subject, []byte(tc.body))
			require.NoError(t, err)
			got, ok := fromDoc(t, tc.subject, tc.body)
			require.True(t, ok, "the request is read out of the document")
			requireSameRequest(t, want, got)

			p := Parse(tc.subject, []byte(tc.body))
			require.Nil(t, p.Invalid)
			requireSameRequest(t, want, p.Request)
		})
	}
}

func TestRequestFromDocNumbers(t *testing.T) {
	t.Parallel()

	got, ok := fromDoc(t, SubjectQualify, withLeadFields(`"budget_amount":-0,"custom":{"a":[-0,0.1,1e300,12345678901234567890,{"b":2}]}`))
	require.True(t, ok)
	require.Equal(t, []any{-0.0, 0.1, 1e300, 12345678901234567890.0, map[string]any{"b": 2.0}}, got.Lead.Custom["a"])
	budget, err := json.Marshal(*got.Lead.BudgetAmount)
	require.NoError(t, err)
	require.Equal(t, "-0", string(budget), "the sign of zero is kept")
}

// TestRequestFromDocUnvalidated reads documents the schemas refuse: where it
// reads one, the request is Decode's.
func TestRequestFromDocUnvalidated(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name string
		body string
		read bool
	}{
		{"nulls everywhere", `{"version":null,"idempotency_key":null,"org_id":null,"actor":{"id":null,"roles":null},
			"lead":{"id":null,"topic":null,"budget_amount":null,"custom":null,"notes":null,"attachments":null},
			"customer_type":null,"account":null,"contact":null,"opportunities":null,"on_duplicate":null,
			"owner_id":null,"overwrite":null,"reason":null}`, true},
		{"null objects", `{"actor":null,"lead":null}`, true},
		{"null elements", `{"actor":{"roles":[null,"a"]},"lead":{"notes":[null,{"created_at":null}],"attachments":[null,{"size_bytes":null}]},"opportunities":[null,{"fields":null}]}`, true},
		{"null choice members", `{"account":{"action":null,"id":null,"fields":null}}`, true},
		{"empty object", `{}`, true},
		{"version fraction", `{"version":1.0}`, false},
		{"version exponent", `{"version":1e0}`, false},
		{"version too large", `{"version":9223372036854775808}`, false},
		{"size_bytes fraction", `{"lead":{"attachments":[{"size_bytes":1.5}]}}`, false},
		{"size_bytes negative", `{"lead":{"attachments":[{"size_bytes":-7}]}}`, true},
		{"budget out of range", `{"lead":{"budget_amount":1e400}}`, false},
		{"custom out of range", `{"lead":{"custom":{"a":[1,-1e400]}}}`, false},
		{"fields out of range", `{"account":{"fields":{"a":{"b":1e999}}}}`, false},
		{"case variant key", `{"Org_ID":"acme"}`, false},
		{"unicode fold key", `{"lead":{"\u017fource":"web"}}`, false},
		{"ignored key", `{"Subject":"x"}`, false},
		{"unknown lead key", `{"lead":{"fax":"1"}}`, false},
		{"duplicate top key", `{"org_id":"a","org_id":"b"}`, false},
		{"duplicate struct", `{"lead":{"id":"L-1","company":"A"},"lead":{"id":"L-2"}}`, false},
		{"duplicate custom", `{"lead":{"custom":{"a":1},"custom":{"b":2}}}`, false},
		{"duplicate nested custom key", `{"lead":{"custom":{"a":{"b":1,"b":2}}}}`, false},
		{"duplicate choice", `{"account":{"action":"create"},"account":{"id":"x"}}`, false},
		{"wrong type", `{"lead":"L-1"}`, false},
		{"string for a number", `{"lead":{"budget_amount":"1"}}`, false},
		{"number for a string", `{"org_id":7}`, false},
		{"bool for a string", `{"lead":{"id":true}}`, false},
		{"number for roles", `{"actor":{"roles":[1]}}`, false},
		{"object for notes", `{"lead":{"notes":{}}}`, false},
		{"number for a note", `{"lead":{"notes":[1]}}`, false},
		{"not an object", `[]`, false},
		{"created_at lower case", `{"lead":{"notes":[{"created_at":"2025-02-10t09:15:00z"}]}}`, false},
		{"created_at not a time", `{"lead":{"notes":[{"created_at":"yesterday"}]}}`, false},
		{"created_at a number", `{"lead":{"notes":[{"created_at":1}]}}`, false},
		{"created_at escaped", `{"lead":{"notes":[{"created_at":"2025-02-10T09:15:00\u005a"}]}}`, false},
		{"created_at escaped digit", `{"lead":{"notes":[{"created_at":"\u0032025-02-10T09:15:00Z"}]}}`, false},
		{"created_at written twice, once escaped", `{"lead":{"notes":[{"created_at":"2025-02-10T09:15:00Z"},{"created_at":"2025-02-10T09:15:00\u005A"}]}}`, false},
		{"created_at with a comma", `{"lead":{"notes":[{"created_at":"2025-02-10T09:15:00,5Z"}]}}`, true},
		{"created_at one-digit hour", `{"lead":{"notes":[{"created_at":"2025-02-10T9:15:00Z"}]}}`, true},
		{"escapes elsewhere", `{"lead":{"company":"a\"b:\\","notes":[{"created_at":"2025-02-10T09:15:00Z","body":"\n\u00e9"}]}}`, true},
		{"colons in strings", `{"lead":{"id":"a:b","custom":{"c:d":":"}}}`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := fromDoc(t, SubjectQualify, tc.body)
			require.Equal(t, tc.read, ok)
			want, err := Decode(SubjectQualify, []byte(tc.body))
			if !ok {
				require.Nil(t, got)
				return
			}
			require.NoError(t, err)
			requireSameRequest(t, want, got)
		})
	}
}

// TestParseFallsBackToDecode: a valid request that the document cannot stand
// for is decoded from its body, with Decode's result or error.
func TestParseFallsBackToDecode(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name string
		body string
		// decodes: Decode accepts the body.
		decodes bool
	}{
		{"repeated lead", strings.TrimSuffix(withLeadFields(`"company":"A"`), "}") + `,"lead":{"id":"L-2"}}`, true},
		{"repeated custom", withLeadFields(`"custom":{"a":1},"custom":{"b":[2]}`), true},
		{"version 1.0", withTopFields(`"version":1.0`), false},
		{"size_bytes 1.0", withLeadFields(`"attachments":[{"id":"a","file_name":"f","size_bytes":1.0}]`), false},
		{"size_bytes beyond int64", withLeadFields(`"attachments":[{"id":"a","file_name":"f","size_bytes":12345678901234567890}]`), false},
		{"custom beyond float64", withLeadFields(`"custom":{"a":1e400}`), false},
		{"escaped created_at", withLeadFields(`"notes":[{"id":"n","created_at":"2025-02-10T09:15:00\u005a"}]`), false},
		{"lower-case created_at", withLeadFields(`"notes":[{"id":"n","created_at":"2025-02-10t09:15:00z"}]`), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc, err := jsonschema.UnmarshalJSON(strings.NewReader(tc.body))
			require.NoError(t, err)
			errs, err := schemas.Validate(schemas.RequestPath(SubjectQualify), doc)
			require.NoError(t, err)
			require.Empty(t, errs, "the test request is valid")
			_, ok := fromDoc(t, SubjectQualify, tc.body)
			require.False(t, ok)

			p := Parse(SubjectQualify, []byte(tc.body))
			want, err := Decode(SubjectQualify, []byte(tc.body))
			if tc.decodes {
				require.NoError(t, err)
				require.Nil(t, p.Invalid)
				requireSameRequest(t, want, p.Request)
				return
			}
			require.Error(t, err)
			require.Nil(t, p.Request)
			require.Equal(t, []string{""}, errorPaths(t, p.Invalid))
			require.Contains(t, p.Invalid.Message, "cannot be decoded: "+err.Error())
		})
	}
}

func TestScanBody(t *testing.T) {
	t.Parallel()

	cases := []struct {
		body        string
		members     int
		escapedTime bool
	}{
		{`{}`, 0, false},
		{`{"a":1,"b":{"c":[{"d":null}]}}`, 4, false},
		{`{"a:b":"c:d","e":"\":"}`, 2, false},
		{`{"a\\":"\\\\","b":"\\\":"}`, 2, true},
		{`{"a":"x\\"}`, 1, false},
		{`{"t":"2025-01-01T00:00:00\u005a"}`, 1, true},
		{`{"t":"\t"}`, 1, true},
		{`{"t":"\n"}`, 1, false},
		{`{"t":"Jos\u00e9"}`, 1, false},
		{`{"a":"unterminated`, -1, false},
		{`{"a":"x\`, -1, false},
	}
	for _, tc := range cases {
		t.Run(tc.body, func(t *testing.T) {
			t.Parallel()
			members, escapedTime := scanBody([]byte(tc.body))
			require.Equal(t, tc.members, members)
			require.Equal(t, tc.escapedTime, escapedTime)
		})
	}
}

// FuzzDecodeDoc checks that reading a request out of its decoded document
// gives what Decode gives: for any JSON body it reads, and for any body that
// Parse accepts.
func FuzzDecodeDoc(f *testing.F) {
	for _, tc := range validBodies(f) {
		f.Add(uint8(subjectIndex(tc.subject)), []byte(tc.body))
	}
	f.Add(uint8(0), []byte(withLeadFields(`"custom":{"a":1},"custom":{"b":2}`)))
	f.Add(uint8(0), []byte(withLeadFields(`"notes":[{"id":"n","created_at":"2025-02-10T09:15:00\u005a"}]`)))
	f.Add(uint8(0), []byte(`{"lead":{"notes":[null,{"created_at":null}]},"actor":null}`))
	f.Fuzz(func(t *testing.T, n uint8, body []byte) {
		subject := requestSubjects[int(n)%len(requestSubjects)]
		if len(body) > MaxRequestBytes || !utf8.Valid(body) {
			return
		}
		if doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body)); err == nil {
			if got, ok := requestFromDoc(subject, body, doc); ok {
				want, err := Decode(subject, body)
				require.NoError(t, err, "read out of the document, but Decode refuses it")
				requireSameRequest(t, want, got)
			}
		}
		p := Parse(subject, body)
		if p.Request == nil {
			return
		}
		want, err := Decode(subject, body)
		require.NoError(t, err)
		requireSameRequest(t, want, p.Request)
	})
}

func subjectIndex(subject string) int {
	for i, s := range requestSubjects {
		if s == subject {
			return i
		}
	}
	return 0
}

// BenchmarkRequestFromDoc reads the benchmark request out of its document, as
// Parse does instead of decoding the body again.
func BenchmarkRequestFromDoc(b *testing.B) {
	body := []byte(benchQualifyBody)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, ok := requestFromDoc(SubjectQualify, body, doc); !ok {
			b.Fatal("not read")
		}
	}
}
