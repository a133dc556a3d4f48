package importer_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/leadflow/leadflow/internal/config"
	"github.com/leadflow/leadflow/internal/importer"
	"github.com/stretchr/testify/require"
)

// Bad rows are reported by file, line, JSON Pointer and column, in file
// order, and nothing is published.
func TestInvalidRowsReported(t *testing.T) {
	t.Parallel()
	path := writeFile(t, t.TempDir(), "trade-show.csv", "id,topic,email,budget_amount,purchase_timeframe,custom.bad-name\n"+
		"L-1,Laptops,ada@contoso.example,100,this_quarter,\n"+ // 2: valid
		"L-2,\"Desks,\nchairs\",bob(at)fabrikam.example,,,\n"+ // 3-4: bad email
		",Monitors,,12k,someday,\n"+ // 5: no id, budget and timeframe
		"L-4,Phones,,,,x\n"+ // 6: bad custom field name
		"L-5,Tablets\n"+ // 7: too few cells
		"L-6,Mice,carol@example.com,1,unknown,\n") // 8: valid
	var progress bytes.Buffer
	var stdout bytes.Buffer
	err := importer.Command(context.Background(), config.Config{}, []string{path, "--dry-run", "--org", "acme", "--actor", "u-1"}, &stdout, &progress)
	require.ErrorContains(t, err, "4 of 6 rows are invalid; nothing was published")
	require.Equal(t, path+": 6 rows, 2 valid, 4 invalid (dry run: nothing published)\n", stdout.String())

	want := []string{
		path + ":3: /lead/email (column email): 'bob(at)fabrikam.example' is not valid email",
		path + ":5: /lead/budget_amount (column budget_amount): \"12k\" is not a number",
		path + ":5: /lead/id (column id): is required",
		path + ":5: /lead/purchase_timeframe (column purchase_timeframe): ",
		// leadflow reports a bad custom field name without its path for now.
		path + ":6: ",
		path + ":7: row: has 2 cells; the header row has 6",
	}
	lines := strings.Split(strings.TrimSpace(progress.String()), "\n")
	require.Len(t, lines, len(want), progress.String())
	for i, w := range want {
		require.True(t, strings.HasPrefix(lines[i], w), "line %d is %q, want it to begin with %q", i, lines[i], w)
	}
}

func TestCommandArguments(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	csvPath := writeFile(t, dir, "leads.csv", "id,company\nL-1,Contoso\n")
	txtPath := writeFile(t, dir, "leads.txt", "id,company\nL-1,Contoso\n")
	run := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := importer.Command(context.Background(), config.Config{}, args, &stdout, &stderr)
		return stdout.String(), err
	}

	out, err := run("--dry-run", "--org", "acme", csvPath, "--actor", "u-1")
	require.NoError(t, err, "flags go before or after the file")
	require.Contains(t, out, "1 rows, 1 valid, 0 invalid")

	_, err = run("--dry-run", "--org", "acme", "--actor", "u-1", txtPath)
	require.ErrorContains(t, err, "use --format csv|jsonl")
	_, err = run("--dry-run", "--format", "csv", "--org", "acme", "--actor", "u-1", txtPath)
	require.NoError(t, err)

	_, err = run("--dry-run", "--org", "acme", csvPath)
	require.ErrorContains(t, err, "--actor is required")
	_, err = run("--dry-run", "--actor", "u-1", "--on-duplicate", "merge", csvPath)
	require.ErrorContains(t, err, "--on-duplicate must be reject, use_existing or create_new")
	_, err = run("--dry-run", "--actor", "u-1")
	require.ErrorContains(t, err, "import takes one file, not 0")
	_, err = run("--dry-run", "--actor", "u-1", csvPath, csvPath)
	require.ErrorContains(t, err, "import takes one file, not 2")
	_, err = run("-h")
	require.NoError(t, err)

	// Without --org the org_id column is the only source of a row's org.
	_, err = run("--dry-run", "--actor", "u-1", csvPath)
	require.ErrorContains(t, err, "1 of 1 rows are invalid")
}

// On a terminal the progress is a bar redrawn in place; elsewhere a line
// every few seconds.
func TestProgress(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := writeLeads(t, b.dir, 60)
	for _, terminal := range []bool{true, false} {
		var progress syncBuffer
		sum, err := b.importFile(f.path, importer.Options{OrgID: "acme", ActorID: "u-1", SkipInvalid: true,
			OnDuplicate: "use_existing", Progress: &progress, Terminal: terminal, ProgressEvery: 20 * time.Millisecond, Rate: 100})
		require.NoError(t, err)
		require.Equal(t, f.rows-len(f.invalid), sum.Outcomes[importer.OutcomeQualified]+sum.Outcomes[importer.OutcomeRejected])
		out := progress.String()
		if terminal {
			require.Contains(t, out, "\r[")
			require.Regexp(t, `\] \d+/57 rows done \(\d+%\), \d+ published, \d+ rows/s, qualified \d+, rejected \d+, ETA `, out)
			require.True(t, strings.HasSuffix(out, "\x1b[K\n"), "the last bar stays, and the summary follows on a line of its own")
		} else {
			require.NotContains(t, out, "\r")
			require.Regexp(t, `(?m)^import: \d+/57 rows done \(\d+%\), \d+ published, \d+ rows/s, qualified \d+, rejected \d+, ETA `, out)
		}
	}
}
