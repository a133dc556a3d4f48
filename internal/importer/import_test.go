package importer_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leadflow/leadflow/internal/config"
	"github.com/leadflow/leadflow/internal/importer"
	"github.com/stretchr/testify/require"
)

// leadsFile is a generated CSV import and what importing it must do.
type leadsFile struct {
	path string
	// keyPrefix is the rows' default idempotency key without the row number.
	keyPrefix string
	rows      int
	// invalid rows, by line, with the request path each is invalid at.
	invalid map[int]string
	// pairs maps the line of a row whose company repeats the row before's
	// to that row's line: of each pair one is converted and the other
	// refused as a duplicate.
	pairs map[int]int
}

// writeLeads writes n leads: every 20th row (from the 8th) is invalid in one
// of four ways, and every 10th (from the 4th) names the company of the row
// before it.
func writeLeads(t testing.TB, dir string, n int) *leadsFile {
	f := &leadsFile{path: filepath.Join(dir, "leads.csv"), rows: n, invalid: map[int]string{}, pairs: map[int]int{}}
	var b strings.Builder
	b.WriteString("id,topic,first_name,last_name,company,email,budget_amount,purchase_timeframe,owner_id,custom.segment\n")
	for i := range n {
		line := i + 2
		id, email, budget, timeframe := fmt.Sprintf("L-%06d", i), fmt.Sprintf("buyer%d@company%d.example", i, i), strconv.Itoa(1000+i), "this_quarter"
		company := fmt.Sprintf("Company %d", i)
		if i%10 == 3 {
			company = fmt.Sprintf("Company %d", i-1)
			f.pairs[line] = line - 1
		}
		if i%20 == 7 {
			switch (i / 20) % 4 {
			case 0:
				email, f.invalid[line] = fmt.Sprintf("buyer%d(at)company.example", i), "/lead/email"
			case 1:
				timeframe, f.invalid[line] = "someday", "/lead/purchase_timeframe"
			case 2:
				budget, f.invalid[line] = "lots", "/lead/budget_amount"
			case 3:
				id, f.invalid[line] = "", "/lead/id"
			}
		}
		fmt.Fprintf(&b, "%s,%q,Buyer,No %d,%s,%s,%s,%s,owner-%d,%s\n", id, "Order "+strconv.Itoa(i), i, company, email, budget, timeframe, i%7, []string{"smb", "enterprise"}[i%2])
	}
	require.NoError(t, os.WriteFile(f.path, []byte(b.String()), 0o600))
	sum := sha256.Sum256([]byte(b.String()))
	f.keyPrefix = "import-" + hex.EncodeToString(sum[:])[:16] + "-"
	return f
}

func (f *leadsFile) converted() int { return f.rows - len(f.invalid) - len(f.pairs) }

// importRows is the size of TestImportCSV's file: 10,000 rows, 3,000 under
// the race detector, 1,000 with -short; LEADFLOW_IMPORT_TEST_ROWS overrides.
func importRows(t *testing.T) int {
	if s := os.Getenv("LEADFLOW_IMPORT_TEST_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err, "LEADFLOW_IMPORT_TEST_ROWS")
		return n
	}
	switch {
	case testing.Short():
		return 1000
	case raceDetector:
		return 3000
	}
	return 10000
}

// A 10,000-row file with 5% invalid rows and 10% of rows naming the company of
// the row before, imported with --skip-invalid and --on-duplicate reject, then
// imported again.
func TestImportCSV(t *testing.T) {
	t.Parallel()
	n := importRows(t)
	b := setup(t)
	f := writeLeads(t, b.dir, n)
	opts := importer.Options{OrgID: "acme", ActorID: "u-import", OnDuplicate: "reject", SkipInvalid: true}

	// first checks one import's summary and results against the file.
	check := func(sum *importer.Summary, results string) map[string]map[string]string {
		t.Helper()
		require.Equal(t, n, sum.Rows)
		require.Equal(t, len(f.invalid), sum.Invalid)
		require.Equal(t, n-len(f.invalid), sum.Published)
		require.Equal(t, map[string]int{importer.OutcomeQualified: f.converted(), importer.OutcomeRejected: len(f.pairs)}, sum.Outcomes)
		require.Equal(t, map[string]int{"duplicates_found": len(f.pairs)}, sum.Codes)
		require.Zero(t, sum.Missing)

		res := readResults(t, results)
		require.Len(t, res, n)
		for line := 2; line < n+2; line++ {
			r := res[strconv.Itoa(line)]
			require.NotNil(t, r, "row %d has no result", line)
			require.Equal(t, f.keyPrefix+strconv.Itoa(line), r["key"])
			if path, bad := f.invalid[line]; bad {
				require.Equal(t, importer.OutcomeInvalid, r["outcome"], "row %d", line)
				require.Equal(t, "invalid_request", r["code"])
				require.Contains(t, r["message"], path+": ")
				continue
			}
			if other, ok := f.pairs[line]; ok {
				outcomes := []string{r["outcome"], res[strconv.Itoa(other)]["outcome"]}
				require.ElementsMatch(t, []string{importer.OutcomeQualified, importer.OutcomeRejected}, outcomes, "rows %d and %d share a company", other, line)
			}
			switch r["outcome"] {
			case importer.OutcomeQualified:
				require.Empty(t, r["code"])
				require.Regexp(t, uuidRE, r["account_id"])
				require.Regexp(t, uuidRE, r["contact_id"])
				require.Regexp(t, uuidRE, r["opportunity_ids"])
			case importer.OutcomeRejected:
				require.Equal(t, "duplicates_found", r["code"], "row %d", line)
				require.NotEmpty(t, r["message"])
			default:
				t.Fatalf("row %d: outcome %q", line, r["outcome"])
			}
		}
		return res
	}

	first := filepath.Join(b.dir, "first.csv")
	o := opts
	o.Results = first
	sum, err := b.importFile(f.path, o)
	require.NoError(t, err)
	firstRes := check(sum, first)
	require.Zero(t, sum.Duplicates)
	require.Equal(t, f.converted(), b.count(`SELECT count(*) FROM accounts WHERE org_id = 'acme'`))
	require.Equal(t, f.converted(), b.count(`SELECT count(*) FROM opportunities WHERE org_id = 'acme'`))

	// The same file again, within the duplicate window: JetStream drops every
	// request as a duplicate, and each outcome comes from the history.
	second := filepath.Join(b.dir, "second.csv")
	o.Results = second
	sum, err = b.importFile(f.path, o)
	require.NoError(t, err)
	secondRes := check(sum, second)
	require.Equal(t, n-len(f.invalid), sum.Duplicates)
	require.Equal(t, n-len(f.invalid), sum.FromHistory)
	require.Equal(t, firstRes, secondRes, "a re-run reports the same outcome, with the same records, for every row")
	require.Equal(t, f.converted(), b.count(`SELECT count(*) FROM accounts WHERE org_id = 'acme'`))
	require.Equal(t, uint64(n-len(f.invalid)), b.requests(), "nothing was queued twice")
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// After the duplicate window, a re-run's requests reach leadflow again, which
// replays each recorded outcome; the outcomes arrive as they are published.
func TestImportReplaysAfterDuplicateWindow(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) {
		c.DuplicateWindow, c.RelayMaxBackoff = time.Second, 500*time.Millisecond
	})
	f := writeLeads(t, b.dir, 200)
	opts := importer.Options{OrgID: "acme", ActorID: "u-import", OnDuplicate: "use_existing", SkipInvalid: true}
	sum, err := b.importFile(f.path, opts)
	require.NoError(t, err)
	valid := f.rows - len(f.invalid)
	require.Equal(t, map[string]int{importer.OutcomeQualified: valid}, sum.Outcomes)
	accounts := b.count(`SELECT count(*) FROM accounts`)
	require.Equal(t, f.converted(), accounts, "rows sharing a company share its account")

	time.Sleep(1500 * time.Millisecond)
	// Without a look at the history, whatever a slow moment suggests.
	opts.Settle = time.Hour
	sum, err = b.importFile(f.path, opts)
	require.NoError(t, err)
	require.Equal(t, map[string]int{importer.OutcomeQualified: valid}, sum.Outcomes)
	require.Zero(t, sum.Duplicates)
	require.Zero(t, sum.FromHistory)
	require.Equal(t, accounts, b.count(`SELECT count(*) FROM accounts`))
	require.Equal(t, uint64(2*valid), b.requests())
}

func TestDryRunPublishesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := writeLeads(t, b.dir, 100)

	sum, err := b.importFile(f.path, importer.Options{OrgID: "acme", ActorID: "u-import", DryRun: true})
	require.ErrorContains(t, err, fmt.Sprintf("%d of 100 rows are invalid", len(f.invalid)))
	require.Equal(t, 100, sum.Rows)
	require.Equal(t, len(f.invalid), sum.Invalid)

	sum, err = b.importFile(f.path, importer.Options{OrgID: "acme", ActorID: "u-import", DryRun: true, SkipInvalid: true})
	require.NoError(t, err)
	require.Zero(t, sum.Published)

	// Without --skip-invalid an invalid row stops a real import before it
	// publishes anything.
	sum, err = b.importFile(f.path, importer.Options{OrgID: "acme", ActorID: "u-import"})
	require.ErrorContains(t, err, "nothing was published")
	require.Zero(t, sum.Published)

	require.Zero(t, b.requests())
	require.Zero(t, b.count(`SELECT count(*) FROM leads`))
}

// Rows published while leadflow is down get no outcome within the wait and are
// reported so; importing the file again once it is back resumes.
func TestImportResumes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.stop()
	f := writeLeads(t, b.dir, 100)
	valid := f.rows - len(f.invalid)
	results := filepath.Join(b.dir, "results.csv")
	opts := importer.Options{OrgID: "acme", ActorID: "u-import", SkipInvalid: true, OnDuplicate: "use_existing",
		Wait: time.Second, Results: results}

	sum, err := b.importFile(f.path, opts)
	require.ErrorContains(t, err, fmt.Sprintf("%d rows have no outcome", valid))
	require.Equal(t, valid, sum.Missing)
	require.Equal(t, valid, sum.Published)
	res := readResults(t, results)
	require.Len(t, res, f.rows)
	missing := 0
	for _, r := range res {
		if r["outcome"] == importer.OutcomeMissing {
			missing++
			require.True(t, strings.HasPrefix(r["key"], f.keyPrefix), r["key"])
		}
	}
	require.Equal(t, valid, missing)

	b.start()
	opts.Wait = 30 * time.Second
	sum, err = b.importFile(f.path, opts)
	require.NoError(t, err)
	require.Equal(t, map[string]int{importer.OutcomeQualified: valid}, sum.Outcomes)
	require.Equal(t, valid, sum.Duplicates, "the first run's requests were still queued")
	require.Equal(t, f.converted(), b.count(`SELECT count(*) FROM accounts`))
}

// JSONL requests go in as they are, with what they leave out filled in from
// the flags, on subjects with the configured prefix.
func TestImportJSONL(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) { c.SubjectPrefix = "crm." })
	path := writeFile(t, b.dir, "requests.ndjson", `{"idempotency_key":"k-1","org_id":"globex","actor":{"id":"u-1","roles":["sales_agent"]},"lead":{"id":"G-1","company":"Globex","first_name":"Hank","budget_amount":12.5}}

{"lead":{"id":"A-1","company":"Initech","email":"peter@initech.example"},"opportunities":[]}
{"lead":{"id":"A-2","first_name":"Milton","email":"milton@initech.example"},"customer_type":"consumer"}
{"idempotency_key":"k-4","org_id":"acme","actor":{"id":"u-1","roles":["intern"]},"lead":{"id":"A-3","company":"Umbrella"}}
{"lead":{"id":"A-4","email":"not-an-email"}}
not json
`)
	results := filepath.Join(b.dir, "results.csv")
	var progress syncBuffer
	sum, err := b.importFile(path, importer.Options{OrgID: "acme", ActorID: "u-import", SkipInvalid: true, Results: results,
		Progress: &progress, Rate: 20})
	require.NoError(t, err)
	require.Equal(t, 6, sum.Rows)
	require.Equal(t, 2, sum.Invalid)
	require.Equal(t, map[string]int{importer.OutcomeQualified: 3, importer.OutcomeRejected: 1}, sum.Outcomes)
	require.Equal(t, map[string]int{"forbidden": 1}, sum.Codes)
	require.Contains(t, progress.String(), "requests.ndjson:6: /lead/email: 'not-an-email' is not valid email")
	require.Contains(t, progress.String(), "requests.ndjson:7: row: is not valid JSON")

	res := readResults(t, results)
	require.Equal(t, importer.OutcomeQualified, res["1"]["outcome"])
	require.Equal(t, "k-1", res["1"]["key"])
	require.Regexp(t, `^import-[0-9a-f]{16}-3$`, res["3"]["key"])
	require.Equal(t, importer.OutcomeQualified, res["3"]["outcome"])
	require.Empty(t, res["3"]["opportunity_ids"])
	require.Equal(t, importer.OutcomeQualified, res["4"]["outcome"])
	require.Empty(t, res["4"]["account_id"], "a consumer has no account")
	require.Regexp(t, uuidRE, res["4"]["contact_id"])
	require.Equal(t, "forbidden", res["5"]["code"])
	require.Equal(t, importer.OutcomeInvalid, res["6"]["outcome"])
	require.Equal(t, 1, b.count(`SELECT count(*) FROM accounts WHERE org_id = 'globex'`))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM accounts WHERE org_id = 'acme'`))
}

// The same file imported into another org moments later has the same keys,
// and so the same Nats-Msg-Ids: JetStream drops its requests as duplicates.
// The rows are reported without an outcome, and why.
func TestSameFileIntoAnotherOrgWithinTheWindow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := writeLeads(t, b.dir, 40)
	valid := f.rows - len(f.invalid)
	sum, err := b.importFile(f.path, importer.Options{OrgID: "acme", ActorID: "u-1", SkipInvalid: true})
	require.NoError(t, err)
	require.Equal(t, valid, sum.Outcomes[importer.OutcomeQualified]+sum.Outcomes[importer.OutcomeRejected])

	results := filepath.Join(b.dir, "globex.csv")
	sum, err = b.importFile(f.path, importer.Options{OrgID: "globex", ActorID: "u-1", SkipInvalid: true,
		Wait: 500 * time.Millisecond, Results: results})
	require.ErrorContains(t, err, fmt.Sprintf("%d rows have no outcome", valid))
	require.ErrorContains(t, err, "dropped by JetStream as duplicates")
	require.Equal(t, valid, sum.MissingDropped)
	for _, r := range readResults(t, results) {
		if r["outcome"] == importer.OutcomeMissing {
			require.Contains(t, r["message"], "JetStream dropped the request as a duplicate")
		}
	}
	require.Zero(t, b.count(`SELECT count(*) FROM leads WHERE org_id = 'globex'`))
}
