package importer

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/leadflow/leadflow/internal/config"
	"github.com/nats-io/nats.go"
	"golang.org/x/term"
)

// Usage is the command's line in leadflow's usage.
const Usage = "import [flags] FILE                   stream a CSV or JSONL file of leads in as qualify requests"

// Command runs "leadflow import" with args: it reads flags and the file name,
// connects to NATS (not for --dry-run), imports and prints the summary on
// stdout; progress and invalid rows go to stderr.
func Command(ctx context.Context, cfg config.Config, args []string, stdout, stderr io.Writer) error {
	var o Options
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: leadflow import [flags] FILE

Publishes each row of FILE to lead.qualify.requested and waits for its outcome.
A CSV file has a header row naming lead fields (id, topic, first_name, last_name,
company, email, budget_amount, purchase_timeframe, owner_id, ...), custom.<name>
columns and optionally idempotency_key (or key) and org_id; a JSONL file holds one
qualify request per line. Each row's idempotency key is its key column, else
import-<first 16 hex digits of the file's SHA-256>-<row>: importing the same file
again converts nothing twice and reports every row's outcome.

flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.Format, "format", "", "csv or jsonl (default: from the file's extension: .csv, .jsonl, .ndjson)")
	fs.StringVar(&o.OrgID, "org", "", "org of the rows without an org_id")
	fs.StringVar(&o.ActorID, "actor", "", "user id the requests are made on behalf of (required for CSV)")
	roles := fs.String("roles", "sales_agent", "the actor's roles, comma-separated")
	fs.StringVar(&o.OnDuplicate, "on-duplicate", "", "reject, use_existing or create_new (default: leadflow's, reject)")
	fs.StringVar(&o.CustomerType, "customer-type", "", "business or consumer (default: leadflow's, business)")
	fs.BoolVar(&o.SkipInvalid, "skip-invalid", false, "publish the valid rows even when some are invalid")
	fs.BoolVar(&o.DryRun, "dry-run", false, "validate every row and publish nothing")
	fs.IntVar(&o.InFlight, "in-flight", 256, "publishes awaiting JetStream's acknowledgement at most")
	fs.Float64Var(&o.Rate, "rate", 0, "rows published per second at most (0: no limit)")
	fs.DurationVar(&o.Wait, "wait", 2*time.Minute, "give up on the outcomes still missing after this long without one")
	fs.StringVar(&o.Results, "results", "", "write one CSV line per row here: row, key, outcome, code, account_id, contact_id, opportunity_ids, message")

	// Flags may come before or after the file name.
	var files []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(files) != 1 {
		fs.Usage()
		return fmt.Errorf("import takes one file, not %d", len(files))
	}
	o.Roles = []string{}
	for _, r := range strings.Split(*roles, ",") {
		if r = strings.TrimSpace(r); r != "" {
			o.Roles = append(o.Roles, r)
		}
	}
	o.Progress = stderr
	if f, ok := stderr.(*os.File); ok {
		o.Terminal = term.IsTerminal(int(f.Fd()))
	}

	var nc *nats.Conn
	if !o.DryRun {
		var err error
		nc, err = nats.Connect(cfg.NATSURL, nats.Name("leadflow import"), nats.MaxReconnects(-1))
		if err != nil {
			return fmt.Errorf("connect to NATS at %s (LEADFLOW_NATS_URL): %w", cfg.NATSURL, err)
		}
		defer nc.Close()
	}
	sum, err := Run(ctx, nc, cfg, files[0], o)
	if sum != nil {
		sum.Write(stdout)
	}
	return err
}

// Write prints the summary: rows by outcome and rejections by code.
func (s *Summary) Write(w io.Writer) {
	if s.DryRun {
		fmt.Fprintf(w, "%s: %d rows, %d valid, %d invalid (dry run: nothing published)\n", s.File, s.Rows, s.Rows-s.Invalid, s.Invalid)
		return
	}
	fmt.Fprintf(w, "%s: %d rows in %s (%d published in %s)\n", s.File, s.Rows, s.Elapsed.Round(time.Millisecond),
		s.Published, s.Publishing.Round(time.Millisecond))
	line := func(indent int, name string, n int, note string) {
		fmt.Fprintf(w, "%*s%-*s %7d%s\n", indent, "", 24-indent, name, n, note)
	}
	line(2, OutcomeQualified, s.Outcomes[OutcomeQualified], "")
	line(2, OutcomeRejected, s.Outcomes[OutcomeRejected], "")
	codes := make([]string, 0, len(s.Codes))
	for c := range s.Codes {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		line(4, c, s.Codes[c], "")
	}
	line(2, OutcomeInvalid, s.Invalid, "  not published")
	if s.Missing > 0 {
		line(2, "no outcome", s.Missing, "  published, no outcome yet")
	}
	if s.MissingDropped > 0 {
		line(4, "dropped as duplicates", s.MissingDropped, "  same key published moments before")
	}
	if s.Duplicates > 0 || s.FromHistory > 0 {
		fmt.Fprintf(w, "  (%d requests had been published before and were not queued again; %d outcomes came from the events stream's history)\n",
			s.Duplicates, s.FromHistory)
	}
}
