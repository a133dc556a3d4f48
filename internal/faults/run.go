package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// run is one scenario under way: the servers and processes it started and
// what it observed.
type run struct {
	ctx      context.Context
	s        *Suite
	sc       *Scenario
	dir      string
	n        int
	rng      *rand.Rand
	row      *Row
	deadline time.Duration

	dbURL  string
	dropDB func()
	pg     *PrivatePG
	nats   []*NATSNode
	procs  []*Leadflow
	nc     *nats.Conn
	js     jetstream.JetStream
	obs    *Observer
	pool   *pgxpool.Pool
	pub    *publisher

	mu        sync.Mutex
	faults    []faultAt
	published time.Time
}

type faultAt struct {
	at   time.Time
	what string
}

func (r *run) logf(format string, args ...any) {
	r.s.logf("  [%d] "+format, append([]any{r.sc.ID}, args...)...)
}

func (r *run) note(format string, args ...any) {
	r.row.Notes = append(r.row.Notes, fmt.Sprintf(format, args...))
}

// fault records a fault being injected now.
func (r *run) fault(format string, args ...any) {
	what := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.faults = append(r.faults, faultAt{at: time.Now(), what: what})
	r.mu.Unlock()
	r.logf("fault: %s", what)
}

// sharedDB makes a fresh database on the shared PostgreSQL.
func (r *run) sharedDB(ctx context.Context) error {
	url, drop, err := createDatabase(ctx, r.s.adminURL, fmt.Sprintf("leadflow_faults_%02d", r.sc.ID))
	if err != nil {
		return err
	}
	r.dbURL, r.dropDB = url, drop
	if r.s.opts.Keep {
		r.dropDB = func() {}
		r.logf("database %s kept", url)
	}
	return nil
}

// privatePG starts a PostgreSQL cluster of the scenario's own.
func (r *run) privatePG(ctx context.Context, opts ...string) error {
	pg, err := startPrivatePG(filepath.Join(r.dir, "pg"), opts...)
	if err != nil {
		return err
	}
	r.pg = pg
	url, _, err := createDatabase(ctx, pg.AdminURL(), "leadflow")
	if err != nil {
		return err
	}
	r.dbURL = url
	return nil
}

func (r *run) startNATS() error {
	n, err := startNATS(r.s.natsBin, r.dir, "nats", 0, 0, nil)
	if err != nil {
		return err
	}
	r.nats = []*NATSNode{n}
	return nil
}

// startCluster starts a 3-node NATS cluster.
func (r *run) startCluster() error {
	var clientPorts, clusterPorts []int
	for range 3 {
		p, err := freePort()
		if err != nil {
			return err
		}
		c, err := freePort()
		if err != nil {
			return err
		}
		clientPorts, clusterPorts = append(clientPorts, p), append(clusterPorts, c)
	}
	errs := make([]error, 3)
	nodes := make([]*NATSNode, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = startNATS(r.s.natsBin, r.dir, "nats-"+string(rune('a'+i)), clientPorts[i], clusterPorts[i], clusterPorts)
		}()
	}
	wg.Wait()
	for _, n := range nodes {
		if n != nil {
			r.nats = append(r.nats, n)
		}
	}
	return errors.Join(errs...)
}

func (r *run) natsURL() string {
	var urls []string
	for _, n := range r.nats {
		urls = append(urls, n.URL())
	}
	return strings.Join(urls, ",")
}

// baseEnv is leadflow's configuration in the suite, before a scenario's changes.
func (r *run) baseEnv() map[string]string {
	return map[string]string{
		"LEADFLOW_DATABASE_URL": r.dbURL,
		"LEADFLOW_NATS_URL":     r.natsURL(),
		"LEADFLOW_WORKERS":      "8",
		"LEADFLOW_ACK_WAIT":     "5s",
		"LEADFLOW_MAX_DELIVER":  "10",
		"LEADFLOW_BACKOFF_MIN":  "100ms",
		"LEADFLOW_BACKOFF_MAX":  "2s",
		"LEADFLOW_LOG_LEVEL":    "info",
		"LEADFLOW_RELAY_POLL":   "250ms",
	}
}

// startLeadflow starts n processes lf1..lfn with the base environment and changes.
func (r *run) startLeadflow(n int, changes map[string]string) error {
	env := r.baseEnv()
	for k, v := range changes {
		env[k] = v
	}
	for range n {
		l, err := newLeadflow(r.s.leadflow, r.dir, fmt.Sprintf("lf%d", len(r.procs)+1), env)
		if err != nil {
			return err
		}
		r.procs = append(r.procs, l)
		if err := l.Start(); err != nil {
			return err
		}
	}
	var parts []string
	for _, k := range []string{"LEADFLOW_WORKERS", "LEADFLOW_ACK_WAIT", "LEADFLOW_MAX_DELIVER", "LEADFLOW_DUPLICATE_WINDOW", "LEADFLOW_STREAM_REPLICAS"} {
		if v, ok := env[k]; ok {
			parts = append(parts, strings.TrimPrefix(k, "LEADFLOW_")+"="+v)
		}
	}
	r.note("%d× leadflow (%s)", n, strings.Join(parts, " "))
	return nil
}

// connect opens the suite's own NATS and database connections and starts
// observing the events and dead letters.
func (r *run) connect(ctx context.Context) error {
	var err error
	r.nc, err = nats.Connect(r.natsURL(), nats.Name("leadflow-faults"), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.ReconnectBufSize(64<<20))
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	if r.js, err = jetstream.New(r.nc); err != nil {
		return err
	}
	r.pub = &publisher{js: r.js, parallel: 16}
	r.obs = newObserver()
	if err := r.obs.follow(ctx, r.js); err != nil {
		return err
	}
	if r.pool, err = pgxpool.New(ctx, r.dbURL); err != nil {
		return err
	}
	return nil
}

// setup is the common start of a scenario: a fresh database on the shared
// server (unless one is set), one NATS server (unless started), procs
// leadflow processes, and the suite's connections.
func (r *run) setup(ctx context.Context, procs int, env map[string]string) error {
	if r.dbURL == "" {
		if err := r.sharedDB(ctx); err != nil {
			return err
		}
	}
	if len(r.nats) == 0 {
		if err := r.startNATS(); err != nil {
			return err
		}
	}
	if err := r.startLeadflow(procs, env); err != nil {
		return err
	}
	return r.connect(ctx)
}

func keysOf(reqs []*Request) []string {
	out := make([]string, 0, len(reqs))
	seen := map[string]bool{}
	for _, q := range reqs {
		if !seen[q.Key] {
			seen[q.Key] = true
			out = append(out, q.Key)
		}
	}
	return out
}

// publishAsync publishes items in the background.
func (r *run) publishAsync(ctx context.Context, items []pubItem) <-chan error {
	done := make(chan error, 1)
	r.mu.Lock()
	if r.published.IsZero() {
		r.published = time.Now()
	}
	r.mu.Unlock()
	go func() { done <- r.pub.publishAll(ctx, items) }()
	return done
}

// await waits until every key has an outcome or a dead letter, calling tick
// with the count so far (for fault injection) about every 100 ms.
func (r *run) await(ctx context.Context, keys []string, tick func(done int) error) error {
	deadline := time.Now().Add(r.deadline)
	lastLog := time.Now()
	for {
		done := r.obs.settled(keys)
		if tick != nil {
			if err := tick(done); err != nil {
				return err
			}
		}
		if done == len(keys) {
			return nil
		}
		if time.Since(lastLog) > 15*time.Second {
			r.logf("%d/%d settled", done, len(keys))
			lastLog = time.Now()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w (%d of %d after %s)", errDeadline, done, len(keys), r.deadline)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.obs.changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// settle waits until nothing is left to do: the outbox empty, the consumer
// without pending or unacknowledged requests, the observer at the end of
// the events stream.
func (r *run) settle(ctx context.Context) error {
	deadline := time.Now().Add(3 * time.Minute)
	quiet := 0
	var why string
	for time.Now().Before(deadline) {
		ok := func() bool {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			var outbox int
			if err := r.pool.QueryRow(cctx, `SELECT count(*) FROM outbox`).Scan(&outbox); err != nil {
				why = "outbox: " + err.Error()
				return false
			}
			if outbox > 0 {
				why = fmt.Sprintf("%d outbox rows", outbox)
				return false
			}
			c, err := r.js.Consumer(cctx, "LEAD_REQUESTS", "leadflow")
			if err != nil {
				why = "consumer: " + err.Error()
				return false
			}
			ci, err := c.Info(cctx)
			if err != nil {
				why = "consumer: " + err.Error()
				return false
			}
			if ci.NumPending > 0 || ci.NumAckPending > 0 {
				why = fmt.Sprintf("consumer: %d pending, %d unacknowledged", ci.NumPending, ci.NumAckPending)
				return false
			}
			st, err := r.js.Stream(cctx, "LEAD_EVENTS")
			if err != nil {
				why = "events stream: " + err.Error()
				return false
			}
			if last := st.CachedInfo().State.LastSeq; r.obs.seq() < last {
				why = fmt.Sprintf("observer at %d of %d events", r.obs.seq(), last)
				return false
			}
			return true
		}()
		if ok {
			quiet++
			if quiet == 3 {
				return nil
			}
		} else {
			quiet = 0
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("did not settle within 3 minutes: %s", why)
}

// finish settles, checks the invariants of reqs and fills the row.
func (r *run) finish(ctx context.Context, reqs []*Request, opt checkOptions) (*Verdict, *LogStats, error) {
	if err := r.settle(ctx); err != nil {
		r.note("%v", err)
		r.row.Result = "FAIL"
	}
	for _, p := range r.procs {
		p.Proc.SampleRSS()
	}
	vctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	v, err := verify(vctx, r.pool, r.obs, reqs, opt)
	if err != nil {
		return v, nil, fmt.Errorf("check invariants: %w", err)
	}
	ls, err := readLogs(r.leadflowLogs())
	if err != nil {
		return v, nil, err
	}
	r.row.Requests = len(keysOf(reqs))
	if r.n > 0 {
		if rate, d := r.throughput(keysOf(reqs)); rate > 0 {
			r.note("throughput %.0f requests/s (%d in %.1f s)", rate, r.row.Requests, d.Seconds())
		}
	}
	r.row.Lost, r.row.Duplicated, r.row.Dead, r.row.Redeliveries = v.Lost, v.Duplicated, v.Dead, ls.Redeliveries
	for _, p := range v.Problems {
		r.note("%s", p)
	}
	if !v.Pass() {
		r.row.Result = "FAIL"
	}
	if ls.Crashes > 0 {
		r.row.Result = "FAIL"
		r.note("%d crashes (panic/fatal) in leadflow's output: %s", ls.Crashes, ls.CrashExample)
	}
	for _, p := range r.procs {
		if !p.Proc.Running() {
			r.row.Result = "FAIL"
			r.note("%s was not running at the end: %v", p.Name, p.Proc.ExitErr())
		}
	}
	if ls.Replayed > 0 {
		r.note("%d replays of recorded outcomes", ls.Replayed)
	}
	if v.Copies > 0 && opt.allowCopies {
		r.note("%d outcome events stored again under their own id (re-sent after the duplicate window)", v.Copies)
	}
	if r.pub != nil && r.pub.retries.Load() > 0 {
		r.note("%d publish retries", r.pub.retries.Load())
	}
	r.s.canaries += countCanaries(reqs)
	r.row.Recover = r.recovery()
	return v, ls, nil
}

func countCanaries(reqs []*Request) int {
	n := 0
	for _, q := range reqs {
		if q.canary {
			n++
		}
	}
	return n
}

// throughput is the requests per second from the first publish to the
// last of the keys' first outcomes.
func (r *run) throughput(keys []string) (float64, time.Duration) {
	r.obs.mu.Lock()
	defer r.obs.mu.Unlock()
	var last time.Time
	n := 0
	for _, k := range keys {
		if t, ok := r.obs.outcomeAt[k]; ok {
			n++
			if t.After(last) {
				last = t
			}
		}
	}
	d := last.Sub(r.published)
	if n == 0 || d <= 0 {
		return 0, 0
	}
	return float64(n) / d.Seconds(), d
}

// recovery is the longest stall in outcomes after any fault: from the fault
// (or the previous outcome) to the next outcome, until the next fault.
func (r *run) recovery() string {
	r.mu.Lock()
	faults := append([]faultAt(nil), r.faults...)
	r.mu.Unlock()
	if len(faults) == 0 {
		return "—"
	}
	r.obs.mu.Lock()
	times := append([]time.Time(nil), r.obs.outcomeTimes...)
	r.obs.mu.Unlock()
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	var worst time.Duration
	for i, f := range faults {
		end := time.Time{}
		if i+1 < len(faults) {
			end = faults[i+1].at
		}
		prev := f.at
		for _, t := range times {
			if t.Before(f.at) {
				continue
			}
			if !end.IsZero() && t.After(end) {
				break
			}
			worst = max(worst, t.Sub(prev))
			prev = t
		}
	}
	return fmt.Sprintf("%.1f s", worst.Seconds())
}

func (r *run) leadflowLogs() []string {
	var out []string
	for _, p := range r.procs {
		out = append(out, p.Proc.LogPath)
	}
	return out
}

func (r *run) logFiles() []string {
	files, _ := filepath.Glob(filepath.Join(r.dir, "*.log"))
	return files
}

// close stops everything the scenario started.
func (r *run) close() {
	if r.obs != nil {
		r.obs.stop()
	}
	var wg sync.WaitGroup
	for _, p := range r.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Proc.Stop(15 * time.Second)
		}()
	}
	wg.Wait()
	if r.nc != nil {
		r.nc.Close()
	}
	if r.pool != nil {
		r.pool.Close()
	}
	for _, n := range r.nats {
		n.Stop()
	}
	if r.pg != nil {
		_ = r.pg.Stop("fast")
	}
	if r.dropDB != nil {
		r.dropDB()
	}
	if !r.s.opts.Keep {
		// Logs stay for the PII scan; the stores go.
		stores, _ := filepath.Glob(filepath.Join(r.dir, "*-store"))
		for _, d := range append(stores, filepath.Join(r.dir, "pg")) {
			_ = os.RemoveAll(d)
		}
	}
}

// schedule fires k faults when the settled count passes random points of
// the run, between lo and hi of n.
type schedule struct {
	at   []int
	next int
}

func newSchedule(rng *rand.Rand, n, k int, lo, hi float64) *schedule {
	s := &schedule{}
	for range k {
		s.at = append(s.at, int(float64(n)*(lo+rng.Float64()*(hi-lo))))
	}
	sort.Ints(s.at)
	return s
}

// due returns the index of the next fault due at done, or -1.
func (s *schedule) due(done int) int {
	if s.next < len(s.at) && done >= s.at[s.next] {
		s.next++
		return s.next - 1
	}
	return -1
}

// drive publishes reqs, injects k faults at random points through inject,
// and waits for every outcome.
func (r *run) drive(ctx context.Context, reqs []*Request, k int, inject func(i int) error) error {
	return r.driveItems(ctx, reqs, itemsOf(reqs), k, inject)
}

// driveItems is drive with the messages to publish given.
func (r *run) driveItems(ctx context.Context, reqs []*Request, items []pubItem, k int, inject func(i int) error) error {
	sched := newSchedule(r.rng, len(keysOf(reqs)), k, 0.05, 0.9)
	pubErr := r.publishAsync(ctx, items)
	err := r.await(ctx, keysOf(reqs), func(done int) error {
		for {
			i := sched.due(done)
			if i < 0 {
				return nil
			}
			// A random instant, not the poll tick.
			time.Sleep(time.Duration(r.rng.IntN(300)) * time.Millisecond)
			if err := inject(i); err != nil {
				return fmt.Errorf("inject fault %d: %w", i+1, err)
			}
		}
	})
	if perr := <-pubErr; perr != nil {
		return fmt.Errorf("publish: %w", perr)
	}
	if sched.next < len(sched.at) {
		r.note("only %d of %d faults were injected before the run ended", sched.next, len(sched.at))
	}
	if errors.Is(err, errDeadline) {
		r.note("%v", err)
		r.row.Result = "FAIL"
		return nil
	}
	return err
}
