// Package importer streams a file of leads into leadflow as qualify requests
// and waits for each one's outcome: `leadflow import FILE`.
//
// A file is read three times at most, never held in memory: once to hash it
// and validate every row with the workers' own validation, once to publish the
// valid rows, and once more only to name the rows left without an outcome.
// Each row gets a deterministic idempotency key (its key column, else
// import-<first 16 hex digits of the file's SHA-256>-<row>), so importing the
// same file again converts nothing twice: leadflow replays each row's recorded
// outcome, and what JetStream drops as a duplicate is looked up in the events
// stream's history.
//
// Memory does not grow with the file, except for two things. The rows still
// waiting for their outcome cost a map entry each (a 64-bit hash of org and
// key, and the row number: 20 to 40 bytes with the map's slack), removed as
// outcomes arrive; publishing usually runs ahead of leadflow, so a
// million-row file can have most of its rows waiting at once, some 40 MB. And
// the lines of invalid rows are one bit per line of the file (125 KB for a
// million lines). Results are written as the outcomes arrive.
package importer

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/leadflow/leadflow/internal/config"
	"github.com/nats-io/nats.go"
)

// Options are the settings of one import. Zero values take the defaults
// named on each field.
type Options struct {
	// Format is FormatCSV or FormatJSONL; empty: from the file's extension
	// (.csv; .jsonl or .ndjson).
	Format string
	// OrgID is the org of CSV rows without an org_id cell, and of JSONL
	// requests without org_id.
	OrgID string
	// ActorID and Roles are the actor of every CSV row (and of JSONL
	// requests without one). Roles nil means []string{"sales_agent"}.
	ActorID string
	Roles   []string
	// OnDuplicate and CustomerType, when set, go into every CSV row's request
	// (and JSONL requests without them); empty leaves leadflow's defaults.
	OnDuplicate  string
	CustomerType string

	// SkipInvalid publishes the valid rows when some are invalid; without it
	// an invalid row stops the import before anything is published.
	SkipInvalid bool
	// DryRun validates the file and publishes nothing.
	DryRun bool
	// InFlight bounds the publishes awaiting JetStream's acknowledgement;
	// default 256.
	InFlight int
	// Rate caps the rows published per second; 0 means no cap.
	Rate float64
	// Wait is how long to wait for outcomes once everything is published and
	// no outcome has arrived; default 2m.
	Wait time.Duration
	// Settle is how long outcomes must stop arriving before the rows still
	// waiting are looked up in the events stream's history; default 3s.
	Settle time.Duration
	// Results, when set, is a CSV file that receives one line per row: row,
	// key, outcome, code, account_id, contact_id, opportunity_ids, message.
	Results string

	// Progress receives the progress display and the reports of invalid rows;
	// nil discards them.
	Progress io.Writer
	// Terminal redraws a progress bar in place (Progress is a terminal);
	// otherwise a line is printed every ProgressEvery (default 5s).
	Terminal      bool
	ProgressEvery time.Duration
}

func (o *Options) setDefaults() {
	if o.Roles == nil {
		o.Roles = []string{"sales_agent"}
	}
	if o.InFlight <= 0 {
		o.InFlight = 256
	}
	if o.Wait <= 0 {
		o.Wait = 2 * time.Minute
	}
	if o.Settle <= 0 {
		o.Settle = 3 * time.Second
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 5 * time.Second
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// validate reports options that cannot work, naming the flag.
func (o *Options) validate() error {
	var errs []error
	switch o.Format {
	case FormatCSV, FormatJSONL:
	default:
		errs = append(errs, fmt.Errorf("--format must be csv or jsonl, not %q", o.Format))
	}
	if o.Format == FormatCSV && o.ActorID == "" {
		errs = append(errs, errors.New("--actor is required for a CSV file: the user id the requests are made on behalf of"))
	}
	switch o.OnDuplicate {
	case "", "reject", "use_existing", "create_new":
	default:
		errs = append(errs, fmt.Errorf("--on-duplicate must be reject, use_existing or create_new, not %q", o.OnDuplicate))
	}
	switch o.CustomerType {
	case "", "business", "consumer":
	default:
		errs = append(errs, fmt.Errorf("--customer-type must be business or consumer, not %q", o.CustomerType))
	}
	if o.Rate < 0 {
		errs = append(errs, fmt.Errorf("--rate must not be negative, not %g", o.Rate))
	}
	return errors.Join(errs...)
}

// DetectFormat names the format of a file by its extension.
func DetectFormat(path string) (string, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return FormatCSV, nil
	case ".jsonl", ".ndjson":
		return FormatJSONL, nil
	}
	return "", fmt.Errorf("cannot tell the format of %s from its extension (.csv, .jsonl or .ndjson): use --format csv|jsonl", path)
}

// Summary is what an import did.
type Summary struct {
	// File is the imported file; Rows its data rows.
	File string
	Rows int
	// Invalid rows failed validation and were not published.
	Invalid int
	// Published rows were accepted by JetStream; Duplicates of them were
	// already in the requests stream (a re-run within its duplicate window).
	Published  int
	Duplicates int
	// Outcomes counts the rows by outcome ("qualified", "rejected");
	// Codes counts the rejected ones by rejection code.
	Outcomes map[string]int
	Codes    map[string]int
	// FromHistory counts the outcomes found in the events stream's history
	// rather than as they were published.
	FromHistory int
	// Missing rows were published but had no outcome when the wait ended;
	// MissingDropped of them were dropped by JetStream as duplicates.
	Missing, MissingDropped int
	DryRun                  bool
	// Publishing is how long publishing took, from the first row to the
	// last acknowledgement; Elapsed is the whole import's time.
	Publishing time.Duration
	Elapsed    time.Duration
}

// Run imports the file at path: it validates every row, and unless
// opts.DryRun publishes the valid ones to lead.qualify.requested (with
// cfg.SubjectPrefix) and waits for their outcomes on cfg.EventsStream. nc may
// be nil for a dry run. The summary is returned even with an error, which
// says why the import is incomplete: invalid rows without SkipInvalid, rows
// without an outcome, or a failure.
func Run(ctx context.Context, nc *nats.Conn, cfg config.Config, path string, opts Options) (*Summary, error) {
	start := time.Now()
	opts.setDefaults()
	if opts.Format == "" {
		f, err := DetectFormat(path)
		if err != nil {
			return nil, err
		}
		opts.Format = f
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	im := &importer{cfg: cfg, opts: &opts, path: path, sum: &Summary{File: path, DryRun: opts.DryRun,
		Outcomes: map[string]int{}, Codes: map[string]int{}}}
	im.tracker = newTracker(im.sum)
	im.progress = newProgress(&opts)
	im.progress.outcomes = im.tracker.counts
	pctx, stopProgress := context.WithCancel(ctx)
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		im.progress.run(pctx)
	}()
	defer func() {
		stopProgress()
		<-progressDone
		im.sum.Elapsed = time.Since(start)
	}()

	scan, err := im.validateFile(ctx)
	if err != nil {
		return im.sum, err
	}
	im.scan = scan
	if scan.invalid > 0 && !opts.SkipInvalid {
		return im.sum, fmt.Errorf("%d of %d rows are invalid; nothing was published (--skip-invalid publishes the valid ones)", scan.invalid, scan.rows)
	}
	if opts.DryRun {
		return im.sum, nil
	}
	if nc == nil {
		return im.sum, errors.New("no NATS connection")
	}
	return im.sum, im.publishAndWait(ctx, nc)
}

// importer is one run of Run.
type importer struct {
	cfg  config.Config
	opts *Options
	path string
	sum  *Summary
	scan *scanResult

	tracker  *tracker
	progress *progress
	// historyFrom is where a look at the events stream's history starts.
	historyFrom time.Time
	// dropped holds the lines of the rows whose request JetStream dropped as
	// a duplicate, one bit per line.
	dropped bitset
	// fail stops the import with an error found where it cannot be returned.
	fail func(error)
}

// open opens the file and returns its rows and a builder for them. hash is
// the file's SHA-256 when known (nil in the validation pass).
func (im *importer) open(hash []byte, tee io.Writer) (rowReader, *builder, io.Closer, error) {
	f, err := os.Open(im.path)
	if err != nil {
		return nil, nil, nil, err
	}
	var r io.Reader = f
	if tee != nil {
		r = io.TeeReader(f, tee)
	}
	prefix := strings.Repeat("0", 16)
	if hash != nil {
		prefix = hex.EncodeToString(hash)[:16]
	}
	b := &builder{format: im.opts.Format, opts: im.opts, keyPrefix: "import-" + prefix + "-"}
	if im.opts.Format == FormatJSONL {
		return newJSONLRows(r), b, f, nil
	}
	rows, err := newCSVRows(r)
	if err != nil {
		f.Close()
		return nil, nil, nil, fmt.Errorf("%s: %w", im.path, err)
	}
	b.cols = rows.cols
	return rows, b, f, nil
}
