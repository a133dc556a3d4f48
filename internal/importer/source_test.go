package importer

import (
	"encoding/json"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func readAll(t *testing.T, rows rowReader) []record {
	t.Helper()
	var out []record
	for {
		rec, err := rows.next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		out = append(out, rec)
	}
}

func TestBuildCSV(t *testing.T) {
	t.Parallel()
	file := "\ufeffID, Topic ,company,email,budget_amount,custom.Budget_Code,Key,org_id\n" +
		"L-1,Laptops, Contoso ,ada@contoso.example, 1200.50 ,BC-1,,\n" +
		"L-2,,,,,,crm-7,globex\n"
	rows, err := newCSVRows(strings.NewReader(file))
	require.NoError(t, err)
	opts := &Options{OrgID: "acme", ActorID: "u-1", Roles: []string{"sales_agent", "sales_manager"}, OnDuplicate: "use_existing"}
	b := &builder{format: FormatCSV, cols: rows.cols, opts: opts, keyPrefix: "import-0123456789abcdef-"}
	recs := readAll(t, rows)
	require.Len(t, recs, 2)
	require.Equal(t, []int{2, 3}, []int{recs[0].line, recs[1].line})

	r := b.build(recs[0])
	require.Empty(t, r.problems)
	require.Equal(t, "acme", r.org)
	require.Equal(t, "import-0123456789abcdef-2", r.key)
	require.JSONEq(t, `{"idempotency_key":"import-0123456789abcdef-2","org_id":"acme",
		"actor":{"id":"u-1","roles":["sales_agent","sales_manager"]},
		"lead":{"id":"L-1","topic":"Laptops","company":"Contoso","email":"ada@contoso.example","budget_amount":1200.5,
			"custom":{"Budget_Code":"BC-1"}},
		"on_duplicate":"use_existing"}`, string(r.body))
	require.Empty(t, validate(r))
	again := b.build(recs[0])
	require.Equal(t, r.body, again.body, "a row always makes the same body, so that a re-run is a replay")

	r = b.build(recs[1])
	require.Equal(t, "globex", r.org, "an org_id cell overrides --org")
	require.Equal(t, "crm-7", r.key, "a key cell is the idempotency key")
	var doc map[string]any
	require.NoError(t, json.Unmarshal(r.body, &doc))
	require.Equal(t, map[string]any{"id": "L-2"}, doc["lead"], "empty cells are left out")
}

func TestBuildCSVProblems(t *testing.T) {
	t.Parallel()
	rows, err := newCSVRows(strings.NewReader("id,budget_amount,email\nL-1,12k,nope\nL-2,NaN,\n"))
	require.NoError(t, err)
	b := &builder{format: FormatCSV, cols: rows.cols, opts: &Options{OrgID: "acme", ActorID: "u-1"}, keyPrefix: "k-"}
	recs := readAll(t, rows)

	errs := validate(b.build(recs[0]))
	require.Len(t, errs, 2)
	require.Equal(t, "/lead/budget_amount", errs[0].Path)
	require.Equal(t, `"12k" is not a number`, errs[0].Message)
	require.Equal(t, "/lead/email", errs[1].Path)
	require.Equal(t, "email", b.columnOf(errs[1].Path))

	errs = validate(b.build(recs[1]))
	require.Len(t, errs, 1)
	require.Equal(t, "/lead/budget_amount", errs[0].Path)
}

func TestParseHeader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ header, err string }{
		{"id,company,fax", `unknown column "fax"`},
		{"id,Company,company", "columns 2 and 3 both name company"},
		{"id,key,idempotency_key", "columns 2 and 3 both name idempotency_key"},
		{"company,email", "no id column"},
	} {
		_, err := newCSVRows(strings.NewReader(tc.header + "\n"))
		require.ErrorContains(t, err, tc.err, tc.header)
	}
	_, err := newCSVRows(strings.NewReader(""))
	require.ErrorContains(t, err, "the file is empty")
}

func TestCSVRowsLines(t *testing.T) {
	t.Parallel()
	file := "id,description\n" +
		"L-1,\"two\nlines\"\n" + // lines 2-3
		"L-2,\"bare \"quote\"\n" + // line 4: broken
		"L-3,x,extra\n" + // line 5: one cell too many
		"\n" +
		"L-4,ok\n" // line 7
	rows, err := newCSVRows(strings.NewReader(file))
	require.NoError(t, err)
	recs := readAll(t, rows)
	require.Len(t, recs, 4)
	require.Equal(t, 2, recs[0].line)
	require.Equal(t, []string{"L-1", "two\nlines"}, recs[0].cells)
	require.Equal(t, 4, recs[1].line)
	require.Contains(t, recs[1].problem.Message, "is not valid CSV")
	require.Equal(t, 5, recs[2].line)
	require.Equal(t, "has 3 cells; the header row has 2", recs[2].problem.Message)
	require.Equal(t, 7, recs[3].line)
	require.Equal(t, []string{"L-4", "ok"}, recs[3].cells)
}

func TestJSONLRows(t *testing.T) {
	t.Parallel()
	long := `{"pad":"` + strings.Repeat("x", 300<<10) + `"}`
	file := "{\"a\":1}\r\n\n   \n" + long + "\n{\"b\":2}"
	recs := readAll(t, newJSONLRows(strings.NewReader(file)))
	require.Len(t, recs, 3)
	require.Equal(t, 1, recs[0].line)
	require.Equal(t, `{"a":1}`, string(recs[0].raw))
	require.Equal(t, 4, recs[1].line)
	require.Contains(t, recs[1].problem.Message, "a request may be at most 262144 bytes")
	require.Nil(t, recs[1].raw)
	require.Equal(t, 5, recs[2].line)
	require.Equal(t, `{"b":2}`, string(recs[2].raw))
}

func TestBuildJSONL(t *testing.T) {
	t.Parallel()
	b := &builder{format: FormatJSONL, opts: &Options{OrgID: "acme", ActorID: "u-1", Roles: []string{"sales_agent"},
		CustomerType: "consumer"}, keyPrefix: "import-0123456789abcdef-"}

	full := `{"idempotency_key":"k-1","org_id":"globex","actor":{"id":"u-9","roles":[]},"lead":{"id":"L-1","budget_amount":12345678901234567890}}`
	r := b.build(record{line: 1, raw: []byte(full)})
	require.JSONEq(t, `{"idempotency_key":"k-1","org_id":"globex","actor":{"id":"u-9","roles":[]},
		"lead":{"id":"L-1","budget_amount":12345678901234567890},"customer_type":"consumer"}`, string(r.body),
		"only what the request leaves out is filled in")
	require.Equal(t, "globex", r.org)
	require.Equal(t, "k-1", r.key)
	require.Contains(t, string(r.body), "12345678901234567890", "numbers go through untouched")

	r = b.build(record{line: 9, raw: []byte(`{"lead":{"id":"L-2"}}`)})
	require.JSONEq(t, `{"idempotency_key":"import-0123456789abcdef-9","org_id":"acme","actor":{"id":"u-1","roles":["sales_agent"]},
		"lead":{"id":"L-2"},"customer_type":"consumer"}`, string(r.body))
	require.Equal(t, "acme", r.org)
	require.Equal(t, "import-0123456789abcdef-9", r.key)
	require.Empty(t, validate(r))

	r = b.build(record{line: 3, raw: []byte(`not json`)})
	errs := validate(r)
	require.Len(t, errs, 1)
	require.Equal(t, "", errs[0].Path)
	require.Contains(t, errs[0].Message, "is not valid JSON")
}

// A row waiting for its outcome costs a map entry, whatever its key's length.
func TestTrackerMemory(t *testing.T) {
	const rows = 1_000_000
	tr := newTracker(&Summary{Outcomes: map[string]int{}, Codes: map[string]int{}})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range rows {
		tr.add("acme", "import-0123456789abcdef-"+strconv.Itoa(i+2), i+2)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perRow := float64(after.HeapAlloc-before.HeapAlloc) / rows
	t.Logf("%.1f bytes per waiting row", perRow)
	require.Less(t, perRow, 48.0)
	n, _ := tr.waiting()
	require.Equal(t, rows, n)
	require.NoError(t, tr.resolve(outcome{org: "acme", key: "import-0123456789abcdef-2", kind: OutcomeQualified}, false))
	n, _ = tr.waiting()
	require.Equal(t, rows-1, n)
}
