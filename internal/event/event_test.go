package event

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// reference renders an event as encoding/json renders its Envelope: the
// bytes Marshal must give.
func reference(m Meta, typ, id string, data any) ([]byte, error) {
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

// requireSame requires Marshal to give the reference's bytes, or an error of
// the same type and message.
func requireSame(t testing.TB, m Meta, typ, id string, data any) {
	t.Helper()
	want, wantErr := reference(m, typ, id, data)
	got, err := Marshal(m, typ, id, data)
	if wantErr != nil {
		require.Error(t, err)
		require.Equal(t, reflect.TypeOf(wantErr), reflect.TypeOf(err))
		require.Equal(t, wantErr.Error(), err.Error())
		return
	}
	require.NoError(t, err)
	require.Equal(t, string(want), string(got))
}

func testMeta() Meta {
	return Meta{
		LeadID:        "LEAD-2025-000417",
		OrgID:         "acme-industries",
		CorrelationID: "crm-7f3c2a10-qualify-0001",
		Time:          time.Date(2025, 3, 14, 9, 26, 53, 589793238, time.UTC),
		Traceparent:   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Tracestate:    "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
	}
}

// link is shaped like the conversion links that lead.qualified events hold:
// a struct, which Marshal leaves to encoding/json.
type link struct {
	ID      *string `json:"id"`
	Outcome string  `json:"outcome"`
}

// marshaler writes loose JSON with HTML characters, which encoding/json
// compacts and escapes.
type marshaler struct{}

func (marshaler) MarshalJSON() ([]byte, error) {
	return []byte(` { "a" : "<b>&</b>" , "n" : [ 1 , 2 ] } `), nil
}

type failing struct{}

func (failing) MarshalJSON() ([]byte, error) { return nil, errors.New("cannot render") }

type textKey int

// allASCII is every ASCII character, control characters included.
func allASCII() string {
	var sb strings.Builder
	for c := range 0x80 {
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

func TestMarshalData(t *testing.T) {
	t.Parallel()

	id := "4f8c1c2e-5a1b-4c55-9d0e-0f1e2d3c4b5a"
	empty := ""
	word := "Zoë <admin> & co"
	cycle := map[string]any{}
	cycle["self"] = cycle

	tests := map[string]any{
		"nil":              nil,
		"string":           "acme",
		"empty string":     "",
		"string pointer":   &word,
		"empty pointer":    &empty,
		"nil pointer":      (*string)(nil),
		"true":             true,
		"false":            false,
		"int":              42,
		"negative int":     -7,
		"max int64":        int64(math.MaxInt64),
		"min int64":        int64(math.MinInt64),
		"max int":          math.MaxInt,
		"zero float":       0.0,
		"negative zero":    math.Copysign(0, -1),
		"float 1e21":       1e21,
		"float -1e21":      -1e21,
		"float 1e20":       1e20,
		"float 1e-6":       1e-6,
		"float 1e-7":       1e-7,
		"float -1e-7":      -1e-7,
		"float 1e-10":      1e-10,
		"float 1e100":      1e100,
		"float fraction":   123456789.123,
		"float 2^53+1":     float64(1<<53 + 1),
		"float max":        math.MaxFloat64,
		"float smallest":   math.SmallestNonzeroFloat64,
		"float32":          float32(0.1),
		"float32 1e21":     float32(1e21),
		"float32 1e20":     float32(1e20),
		"float32 1e-6":     float32(1e-6),
		"float32 1e-7":     float32(1e-7),
		"float32 max":      float32(math.MaxFloat32),
		"number":           json.Number("1.50e+10"),
		"number zero":      json.Number(""),
		"number negative":  json.Number("-0.001"),
		"nil map":          map[string]any(nil),
		"empty map":        map[string]any{},
		"nil slice":        []any(nil),
		"empty slice":      []any{},
		"nil strings":      []string(nil),
		"empty strings":    []string{},
		"strings":          []string{"a", "<b>", ""},
		"nil string map":   map[string]string(nil),
		"empty string map": map[string]string{},
		"string map":       map[string]string{"traceparent": "00-ab", "b": "<&>", "A": ""},
		"html":             `<script>alert("x") & 'y'</script>`,
		"ascii":            allASCII(),
		"invalid utf-8":    "a\xffb\xc3(\xed\xa0\x80\xf0\x9f\x98",
		"separators":       "line\u2028paragraph\u2029end\u2027\u202a",
		"non-ascii":        "Zoë Ångström 日本語 😀 \ufffd",
		"link":             link{ID: &word, Outcome: "created"},
		"skipped link":     link{Outcome: "skipped"},
		"links":            []link{{ID: &empty, Outcome: "linked"}, {Outcome: "skipped"}},
		"empty links":      []link{},
		"marshaler":        marshaler{},
		"time value":       time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC),
		"byte slice":       []byte("<bytes>"),
		"int map":          map[textKey]string{2: "b", 10: "a"},
		"deep": func() any {
			var v any = "leaf"
			for i := range 200 {
				if i%2 == 0 {
					v = map[string]any{"k": v}
				} else {
					v = []any{v}
				}
			}
			return v
		}(),
		"nested": map[string]any{
			"org_id":  "acme",
			"Zeta":    1,
			"alpha":   []any{nil, "x", 2.5, map[string]any{}, []any{}, map[string]any{"b": true, "a": false}},
			"é":       "after ASCII",
			"":        "empty key",
			"<k&>":    "html key",
			"a\xffb":  "invalid key",
			"a\u2028": "separator key",
			"custom": map[string]any{
				"score":  87.5,
				"tags":   []string{"enterprise", "emea"},
				"nested": map[string]any{"deeper": map[string]any{"n": json.Number("12")}},
				"none":   nil,
				"link":   link{Outcome: "skipped"},
				"ptr":    (*string)(nil),
				"hdr":    map[string]string{"z": "1", "y": "2"},
				"f32":    float32(3.25),
				"i64":    int64(-9007199254740993),
			},
		},

		"NaN":             math.NaN(),
		"+Inf":            math.Inf(1),
		"-Inf":            math.Inf(-1),
		"float32 NaN":     float32(math.NaN()),
		"nested NaN":      map[string]any{"a": 1, "b": []any{math.NaN()}},
		"invalid number":  json.Number("01"),
		"number word":     json.Number("twelve"),
		"failing":         failing{},
		"nested failing":  map[string]any{"f": failing{}},
		"channel":         make(chan int),
		"cycle":           cycle,
		"nested function": map[string]any{"f": func() {}},
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			requireSame(t, testMeta(), "lead.qualified", id, data)
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	t.Parallel()

	_, err := Marshal(testMeta(), "lead.qualified", "1", map[string]any{"score": math.NaN()})
	var unsupported *json.UnsupportedValueError
	require.ErrorAs(t, err, &unsupported)

	_, err = Marshal(testMeta(), "lead.qualified", "1", []any{failing{}})
	var failed *json.MarshalerError
	require.ErrorAs(t, err, &failed)

	// A failed event leaves nothing behind for the next one.
	requireSame(t, testMeta(), "lead.qualified", "2", map[string]any{"ok": true})
}

func TestMarshalMeta(t *testing.T) {
	t.Parallel()

	full := testMeta()
	tests := map[string]func(m *Meta){
		"full":               func(*Meta) {},
		"no lead":            func(m *Meta) { m.LeadID = "" },
		"no org":             func(m *Meta) { m.OrgID = "" },
		"no correlation":     func(m *Meta) { m.CorrelationID = "" },
		"no trace":           func(m *Meta) { m.Traceparent, m.Tracestate = "", "" },
		"no tracestate":      func(m *Meta) { m.Tracestate = "" },
		"empty":              func(m *Meta) { *m = Meta{} },
		"whole seconds":      func(m *Meta) { m.Time = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC) },
		"milliseconds":       func(m *Meta) { m.Time = time.Date(2025, 3, 14, 9, 26, 53, 120000000, time.UTC) },
		"one nanosecond":     func(m *Meta) { m.Time = time.Date(2025, 3, 14, 9, 26, 53, 1, time.UTC) },
		"east of UTC":        func(m *Meta) { m.Time = time.Date(2025, 3, 14, 23, 59, 59, 5, time.FixedZone("IST", 5*3600+1800)) },
		"west of UTC":        func(m *Meta) { m.Time = time.Date(2025, 12, 31, 22, 0, 0, 0, time.FixedZone("EST", -5*3600)) },
		"local":              func(m *Meta) { m.Time = time.Unix(1741944413, 589793238) },
		"far future":         func(m *Meta) { m.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"before year zero":   func(m *Meta) { m.Time = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) },
		"escaped attributes": func(m *Meta) { m.LeadID, m.OrgID, m.CorrelationID = "<lead>&\"", "org\n\xff", "key\u2028\\" },
		"html tracestate":    func(m *Meta) { m.Tracestate = "a=<b>&c" },
	}
	data := map[string]any{"org_id": "acme", "lead_id": "LEAD-1"}
	for name, change := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m := full
			change(&m)
			requireSame(t, m, "lead.qualified", "4f8c1c2e", data)
		})
	}
	t.Run("type and id", func(t *testing.T) {
		t.Parallel()
		requireSame(t, full, "", "", data)
		requireSame(t, full, "lead.<qualified>", "id\t\"&\x00", data)
	})
}

func TestMarshalOwnsResult(t *testing.T) {
	t.Parallel()

	first, err := Marshal(testMeta(), "account.created", "1", map[string]any{"name": "first"})
	require.NoError(t, err)
	want := string(first)
	for range 10 {
		_, err := Marshal(testMeta(), "account.created", "2", map[string]any{"name": strings.Repeat("x", 4096)})
		require.NoError(t, err)
	}
	require.Equal(t, want, string(first))
}

func FuzzMarshal(f *testing.F) {
	f.Add("name", "Acme <Corp> & \"Co\"", 87.5, int64(42), "LEAD-1")
	f.Add("", "\x00\x1f\u2028\xff", 1e21, int64(-1), "")
	f.Add("é", "日本語", 1e-7, int64(math.MaxInt64), "<lead>")
	f.Add("a", "b", math.Copysign(0, -1), int64(0), "\n")
	f.Add("1e5", "-0.25", 123456789.123, int64(math.MinInt64), "x")
	f.Fuzz(func(t *testing.T, key, s string, x float64, n int64, lead string) {
		data := map[string]any{
			"s":   s,
			key:   x,
			"f32": float32(x),
			"n":   n,
			"nested": map[string]any{
				s:      key,
				"list": []any{s, x, nil, n, true},
				"ptr":  &s,
			},
			"strings": []string{key, s},
			"headers": map[string]string{s: key, key: s},
			"link":    link{ID: &key, Outcome: s},
		}
		m := testMeta()
		m.LeadID, m.Tracestate = lead, key
		m.Time = time.Unix(n%(1<<40), n%1e9)
		requireSame(t, m, s, key, data)
		// Most fuzzed strings are not numbers, and one error drops the
		// whole event: numbers get their own.
		requireSame(t, m, s, key, []any{json.Number(s), json.Number(key)})
	})
}

// accountCreated is the data of a typical account.created event.
func accountCreated() map[string]any {
	return map[string]any{
		"org_id":            "acme-industries",
		"lead_id":           "LEAD-2025-000417",
		"account_id":        "0b6f1c1e-3c57-4a7e-9d45-2f3e8a9b7c61",
		"name":              "Globex Corporation",
		"website":           "https://www.globex.example.com",
		"phone":             "+1 (555) 010-4477",
		"street1":           "1200 Industrial Parkway",
		"street2":           "Building C, Suite 400",
		"street3":           nil,
		"city":              "Springfield",
		"state_province":    "Oregon",
		"postal_code":       "97477",
		"country":           "United States",
		"owner_id":          "u-1042",
		"customer_type":     "account",
		"process_stage":     "qualify",
		"qualified_at":      "2025-03-14T09:26:53.589793238Z",
		"parent_account_id": (*string)(nil),
		"custom": map[string]any{
			"industry_code":  "NAICS-332710",
			"annual_revenue": 12500000.0,
			"employees":      json.Number("240"),
			"partner_tier":   nil,
			"tags":           []any{"manufacturing", "emea", "priority"},
			"preferences": map[string]any{
				"newsletter": true,
				"language":   "en-US",
			},
		},
	}
}

// leadQualified is the data of a typical lead.qualified event, whose links
// are structs.
func leadQualified() map[string]any {
	account, contact := "0b6f1c1e-3c57-4a7e-9d45-2f3e8a9b7c61", "7d2e9a40-1b8c-4f3d-a6e5-c9b8a7f6e5d4"
	data := accountCreated()
	data["idempotency_key"] = "crm-7f3c2a10-qualify-0001"
	data["account"] = link{ID: &account, Outcome: "created"}
	data["contact"] = link{ID: &contact, Outcome: "linked"}
	data["opportunities"] = []link{{Outcome: "skipped"}}
	return data
}

func TestMarshalBenchmarkData(t *testing.T) {
	t.Parallel()
	requireSame(t, testMeta(), "account.created", "1", accountCreated())
	requireSame(t, testMeta(), "lead.qualified", "2", leadQualified())
}

func BenchmarkMarshal(b *testing.B) {
	events := []struct {
		typ  string
		data map[string]any
	}{
		{"account.created", accountCreated()},
		{"lead.qualified", leadQualified()},
	}
	renderers := []struct {
		name   string
		render func(Meta, string, string, any) ([]byte, error)
	}{
		{"encoding-json", reference},
		{"marshal", Marshal},
	}
	m := testMeta()
	for _, ev := range events {
		for _, r := range renderers {
			b.Run(ev.typ+"/"+r.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := r.render(m, ev.typ, "4f8c1c2e-5a1b-4c55-9d0e-0f1e2d3c4b5a", ev.data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
