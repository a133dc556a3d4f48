package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Options configure a run of the suite.
type Options struct {
	// Scenarios names what to run: "all", or a comma-separated list of
	// scenario numbers or names.
	Scenarios string
	// Size is the number of requests of every scenario that scales; 0 means
	// each scenario's full size (or a fifth of it with Short).
	Size int
	// Short runs a fifth of each scenario's full size.
	Short bool
	// Bin is the leadflow binary; empty builds ./cmd/leadflow from ModuleDir.
	Bin string
	// Rev, when set, builds leadflow from that git revision of ModuleDir
	// instead of the working tree.
	Rev string
	// NATSServer is the nats-server binary; empty uses /usr/sbin/nats-server
	// when it is recent enough (2.10+), else builds the nats-server of go.mod.
	NATSServer string
	// AdminURL is the PostgreSQL server of scenarios that do not crash it;
	// each scenario gets a fresh database there.
	AdminURL string
	// Work is the folder for logs and stores; empty makes a temporary one.
	Work string
	// Keep leaves the work folder and the databases in place.
	Keep bool
	// Deadline bounds the wait for outcomes per scenario; 0 derives it from the size.
	Deadline time.Duration
	// Seed seeds the random fault points; 0 picks one.
	Seed uint64
	// ModuleDir is the repository root.
	ModuleDir string
	// Log receives progress lines.
	Log io.Writer
}

// systemNATS is the nats-server of the Debian package.
const systemNATS = "/usr/sbin/nats-server"

// DefaultAdminURL is the PostgreSQL server used unless Options.AdminURL says otherwise.
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Row is one line of the results table.
type Row struct {
	ID       int
	Name     string
	Requests int
	Faults   string
	// Lost, Duplicated, Redeliveries and Dead are -1 when not measured.
	Lost, Duplicated, Redeliveries, Dead int
	Recover                              string
	Result                               string
	Notes                                []string
	Pending                              bool
}

// Passed reports whether the scenario ran and every invariant held.
func (r Row) Passed() bool { return r.Result == "pass" }

// Scenario is one fault scenario.
type Scenario struct {
	ID    int
	Name  string
	Title string
	// Full is the number of requests at full size; 0 for a fixed size.
	Full int
	// Pending says why the scenario does not run yet.
	Pending string
	run     func(r *run) error
}

// Scenarios lists every scenario in order.
func Scenarios() []*Scenario { return scenarios }

// Suite runs scenarios and collects their rows.
type Suite struct {
	opts      Options
	work      string
	leadflow  string
	natsBin   string
	adminURL  string
	seed      uint64
	notes     []string
	rows      []Row
	baseline  float64 // baseline throughput, requests/s; 0 when not run
	canaries  int     // requests carrying the PII canaries
	logFiles  []string
	ranPII    bool
	startedAt time.Time
}

// New prepares a suite: the work folder, the leadflow and nats-server binaries.
func New(ctx context.Context, opts Options) (*Suite, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	s := &Suite{opts: opts, adminURL: opts.AdminURL, seed: opts.Seed, startedAt: time.Now()}
	if s.adminURL == "" {
		s.adminURL = DefaultAdminURL
	}
	if s.seed == 0 {
		s.seed = rand.Uint64() % 1_000_000
	}
	var err error
	if opts.Work != "" {
		s.work = opts.Work
		err = os.MkdirAll(s.work, 0o755)
	} else {
		s.work, err = os.MkdirTemp("", "leadflow-faults-")
	}
	if err != nil {
		return nil, err
	}
	// A private PostgreSQL runs as the postgres OS user, which must reach
	// its folder under this one.
	if err := os.Chmod(s.work, 0o755); err != nil {
		return nil, err
	}
	if s.leadflow = opts.Bin; s.leadflow == "" {
		s.leadflow = filepath.Join(s.work, "bin", "leadflow")
		src := opts.ModuleDir
		if opts.Rev != "" {
			src = filepath.Join(s.work, "src")
			if err := gitExport(ctx, opts.ModuleDir, opts.Rev, src); err != nil {
				return nil, err
			}
		}
		s.logf("building leadflow (%s) into %s", describeSource(ctx, opts.ModuleDir, opts.Rev), s.leadflow)
		if err := goBuild(ctx, src, s.leadflow, "./cmd/leadflow"); err != nil {
			return nil, err
		}
		s.notes = append(s.notes, "leadflow "+describeSource(ctx, opts.ModuleDir, opts.Rev))
	} else {
		s.notes = append(s.notes, "leadflow "+s.leadflow)
	}
	s.natsBin = opts.NATSServer
	if s.natsBin == "" {
		if _, err := os.Stat(systemNATS); err == nil {
			s.natsBin = systemNATS
		} else {
			s.natsBin = filepath.Join(s.work, "bin", "nats-server")
			s.logf("%s is missing; building the nats-server of go.mod", systemNATS)
			if err := goBuild(ctx, opts.ModuleDir, s.natsBin, "github.com/nats-io/nats-server/v2"); err != nil {
				return nil, err
			}
		}
	}
	v, _ := natsServerVersion(s.natsBin)
	s.notes = append(s.notes, "nats-server "+v)
	return s, nil
}

// gitExport writes the tree of rev into dir.
func gitExport(ctx context.Context, repo, rev, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	archive := exec.CommandContext(ctx, "git", "-C", repo, "archive", "--format=tar", rev)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", dir)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return err
	}
	untar.Stdin = pipe
	var stderr strings.Builder
	archive.Stderr = &stderr
	if err := untar.Start(); err != nil {
		return err
	}
	if err := archive.Run(); err != nil {
		return fmt.Errorf("git archive %s: %w: %s", rev, err, stderr.String())
	}
	return untar.Wait()
}

// describeSource names the leadflow source built: a revision, or the
// working tree at its HEAD, marked when it has uncommitted changes.
func describeSource(ctx context.Context, repo, rev string) string {
	git := func(args ...string) string {
		out, err := exec.CommandContext(ctx, "git", append([]string{"-C", repo}, args...)...).Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	if rev != "" {
		return "at " + git("rev-parse", "--short", rev)
	}
	desc := "working tree at " + git("rev-parse", "--short", "HEAD")
	if git("status", "--porcelain", "--untracked-files=no") != "" {
		desc += " with uncommitted changes"
	}
	return desc
}

// goBuild builds pkg with the faults tag, which gives leadflow its fault
// points (internal/worker/faultpoint.go) and changes nothing else.
func goBuild(ctx context.Context, dir, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "faults", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// Work is the folder holding every log of the run.
func (s *Suite) Work() string { return s.work }

// Seed is the seed of the random fault points.
func (s *Suite) Seed() uint64 { return s.seed }

// Rows is the results so far.
func (s *Suite) Rows() []Row { return s.rows }

// Notes are facts about the environment worth printing beside the table.
func (s *Suite) Notes() []string { return s.notes }

// Close removes the work folder unless asked to keep it.
func (s *Suite) Close() {
	if !s.opts.Keep && s.opts.Work == "" {
		_ = os.RemoveAll(s.work)
	}
}

func (s *Suite) logf(format string, args ...any) {
	fmt.Fprintf(s.opts.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// Select resolves a scenario list ("all", numbers, names).
func Select(spec string) ([]*Scenario, error) {
	if spec == "" || spec == "all" {
		return scenarios, nil
	}
	var out []*Scenario
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		found := false
		for _, sc := range scenarios {
			if part == sc.Name || part == strconv.Itoa(sc.ID) {
				out = append(out, sc)
				found = true
			}
		}
		if !found {
			var names []string
			for _, sc := range scenarios {
				names = append(names, fmt.Sprintf("%d %s", sc.ID, sc.Name))
			}
			return nil, fmt.Errorf("unknown scenario %q; scenarios: %s", part, strings.Join(names, ", "))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// size is the number of requests a scenario runs.
func (s *Suite) size(sc *Scenario) int {
	if sc.Full == 0 {
		return 0
	}
	if s.opts.Size > 0 {
		return s.opts.Size
	}
	if s.opts.Short {
		return max(sc.Full/5, 1)
	}
	return sc.Full
}

// Run runs the scenarios in order and returns their rows.
func (s *Suite) Run(ctx context.Context, list []*Scenario) []Row {
	for _, sc := range list {
		if ctx.Err() != nil {
			break
		}
		s.rows = append(s.rows, s.runOne(ctx, sc))
	}
	return s.rows
}

func (s *Suite) runOne(ctx context.Context, sc *Scenario) Row {
	row := Row{ID: sc.ID, Name: sc.Title, Lost: -1, Duplicated: -1, Redeliveries: -1, Dead: -1}
	if sc.Pending != "" {
		row.Result, row.Pending = "pending", true
		row.Notes = append(row.Notes, sc.Pending)
		return row
	}
	dir := filepath.Join(s.work, fmt.Sprintf("%02d-%s", sc.ID, sc.Name))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		row.Result = "FAIL"
		row.Notes = append(row.Notes, err.Error())
		return row
	}
	r := &run{ctx: ctx, s: s, sc: sc, dir: dir, n: s.size(sc), row: &row,
		rng: rand.New(rand.NewPCG(s.seed, uint64(sc.ID)))}
	r.deadline = s.opts.Deadline
	if r.deadline == 0 {
		r.deadline = 5*time.Minute + time.Duration(r.n)*30*time.Millisecond
	}
	if r.n > 0 {
		s.logf("scenario %d %s: %d requests", sc.ID, sc.Name, r.n)
	} else {
		s.logf("scenario %d %s", sc.ID, sc.Name)
	}
	start := time.Now()
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("suite panic: %v", p)
			}
		}()
		return sc.run(r)
	}()
	r.close()
	s.logFiles = append(s.logFiles, r.logFiles()...)
	if err != nil {
		row.Result = "FAIL"
		row.Notes = append(row.Notes, "error: "+err.Error())
	} else if row.Result == "" {
		row.Result = "pass"
	}
	s.logf("scenario %d %s: %s in %s %s", sc.ID, sc.Name, row.Result, time.Since(start).Round(time.Second), strings.Join(row.Notes, "; "))
	return row
}

var errDeadline = errors.New("deadline passed before every request had an outcome")
