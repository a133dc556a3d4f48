// Command leadflow-bench measures leadflow end to end: it generates qualify
// requests, publishes them to a leadflow it starts (or one already running),
// waits for every terminal event, and prints throughput, latency from publish
// to outcome, the worker's peak RSS and CPU, PostgreSQL's CPU and database
// bytes per lead. With --ceiling it also runs the same conversions straight
// against the store (no broker, 8 connections), so that the result carries
// its own ratio. With --rate R --warmup D it offers R requests/s for D
// before the N it measures, which follow without a pause: their latency is
// that of a running leadflow, not of one that has just started (the warm-up's
// own is printed apart).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/leadflow/leadflow/internal/conversion"
	"github.com/leadflow/leadflow/internal/store"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type options struct {
	n, orgs, opps, notes, workers int
	dup, invalid                  float64
	rate                          float64
	warmup                        time.Duration
	bin, adminURL, natsURL, db    string
	external, ceiling, keep       bool
	seed                          int
	preload                       int
	profile, timeline             string
	httpAddr                      string
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 20000, "qualify requests to publish")
	flag.IntVar(&o.orgs, "orgs", 1, "orgs the requests spread over")
	flag.Float64Var(&o.dup, "dup", 0.2, "share of requests whose company already exists (on_duplicate use_existing)")
	flag.IntVar(&o.opps, "opps", 1, "opportunities per lead")
	flag.IntVar(&o.notes, "notes", 1, "notes per lead")
	flag.Float64Var(&o.invalid, "invalid", 0, "share of invalid requests")
	flag.Float64Var(&o.rate, "rate", 0, "requests/s offered (0: as fast as possible)")
	flag.DurationVar(&o.warmup, "warmup", 0, "with --rate: offer the rate this long before the measured requests, which follow without a pause; the warm-up's own latency is printed apart")
	flag.IntVar(&o.workers, "workers", 8, "LEADFLOW_WORKERS of the started leadflow")
	flag.StringVar(&o.bin, "bin", "", "leadflow binary (default: build ./cmd/leadflow)")
	flag.StringVar(&o.adminURL, "admin-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server to create the bench database on")
	flag.StringVar(&o.db, "db", "leadflow_bench", "bench database (dropped and created afresh)")
	flag.StringVar(&o.natsURL, "nats-url", "", "NATS of a running leadflow (with --external); default: start nats-server")
	flag.BoolVar(&o.external, "external", false, "measure a leadflow already running against --nats-url and the bench database")
	flag.BoolVar(&o.ceiling, "ceiling", false, "also run the same conversions straight against the store")
	flag.BoolVar(&o.keep, "keep", false, "keep the bench database")
	flag.IntVar(&o.seed, "seed", 1, "random seed")
	flag.IntVar(&o.preload, "preload", 0, "accounts and contacts to insert into the org tables before measuring")
	flag.StringVar(&o.profile, "profile", "", "write a CPU profile of the started leadflow, taken during the run, to this file, and its allocations since start-up to this file.allocs")
	flag.StringVar(&o.timeline, "timeline", "", "write each request's publish time and latencies (ms, CSV) to this file")
	flag.Parse()
	if o.warmup < 0 || o.warmup > 0 && o.rate <= 0 {
		fmt.Fprintln(os.Stderr, "leadflow-bench: --warmup needs --rate, and must not be negative")
		os.Exit(2)
	}
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "leadflow-bench:", err)
		os.Exit(1)
	}
}

type result struct {
	name             string
	n                int
	took             time.Duration
	p50, p95, p99    time.Duration
	rssKB            int64
	workerCPU, pgCPU float64
	// natsCPU and benchCPU are the CPU seconds of the started nats-server
	// and of the bench itself; busy is the share of the machine's CPU time
	// that anything used during the run.
	natsCPU, benchCPU, busy float64
	// switches counts the context switches during the run of leadflow,
	// PostgreSQL, nats-server and the bench, in that order.
	switches     [4]int64
	bytesPerLead float64
	// walPerLead is the WAL the server wrote during the run, per request
	// (all of the server's: the bench runs on an otherwise idle one).
	walPerLead float64
	outcomes   map[string]int
	// handling is the quantiles (p50, p95, p99) of leadflow's own
	// leadflow_request_duration_seconds, receipt to settlement, as the upper
	// bounds of their histogram buckets.
	handling []float64
	// split divides the latency of the outcomes at the event's time, when
	// the transaction that decided it began: before, waiting in the stream
	// and for a worker; after, the transaction, the relay and the delivery.
	split *[2][3]time.Duration
	// warm is the number of warm-up requests, and warmLat the p50, p95
	// and p99 of their latency.
	warm    int
	warmLat [3]time.Duration
}

func run(ctx context.Context, o options) error {
	dbURL, err := freshDatabase(ctx, o.adminURL, o.db)
	if err != nil {
		return err
	}
	if !o.keep {
		defer dropDatabase(o.adminURL, o.db)
	}
	if o.preload > 0 {
		if err := preload(ctx, dbURL, o.preload); err != nil {
			return err
		}
	}
	reqs := generate(o, o.warmupRequests())
	var results []result

	natsURL := o.natsURL
	var worker, ns *exec.Cmd
	if !o.external {
		dir, err := os.MkdirTemp("", "leadflow-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		port := freePort()
		natsURL = fmt.Sprintf("nats://127.0.0.1:%d", port)
		ns = exec.Command("nats-server", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", filepath.Join(dir, "nats"))
		if err := ns.Start(); err != nil {
			return fmt.Errorf("start nats-server: %w", err)
		}
		defer func() { _ = ns.Process.Kill(); _ = ns.Wait() }()
		bin := o.bin
		if bin == "" {
			bin = filepath.Join(dir, "leadflow")
			build := exec.Command("go", "build", "-o", bin, "./cmd/leadflow")
			build.Stderr = os.Stderr
			if err := build.Run(); err != nil {
				return fmt.Errorf("build leadflow: %w", err)
			}
		}
		waitTCP(fmt.Sprintf("127.0.0.1:%d", port))
		worker = exec.Command(bin, "serve")
		o.httpAddr = fmt.Sprintf("127.0.0.1:%d", freePort())
		worker.Env = append(os.Environ(), "LEADFLOW_DATABASE_URL="+dbURL, "LEADFLOW_NATS_URL="+natsURL,
			"LEADFLOW_HTTP_ADDR="+o.httpAddr, fmt.Sprintf("LEADFLOW_PPROF=%t", o.profile != ""), fmt.Sprintf("LEADFLOW_WORKERS=%d", o.workers),
			"LEADFLOW_LOG_LEVEL=warn", "LEADFLOW_MAX_ACK_PENDING=10000")
		logf, err := os.Create(filepath.Join(dir, "leadflow.log"))
		if err != nil {
			return err
		}
		worker.Stderr = logf
		if err := worker.Start(); err != nil {
			return fmt.Errorf("start leadflow: %w", err)
		}
		defer func() { _ = worker.Process.Signal(os.Interrupt); _ = worker.Wait() }()
	}

	r, err := endToEnd(ctx, o, natsURL, dbURL, reqs, worker, ns)
	if err != nil {
		if worker != nil {
			if f, ok := worker.Stderr.(*os.File); ok {
				raw, _ := os.ReadFile(f.Name())
				fmt.Fprintf(os.Stderr, "leadflow log (last 2 KB):\n%s\n", raw[max(0, len(raw)-2048):])
			}
		}
		return err
	}
	results = append(results, r)
	if o.ceiling {
		cdb := o.db + "_ceiling"
		curl, err := freshDatabase(ctx, o.adminURL, cdb)
		if err != nil {
			return err
		}
		defer dropDatabase(o.adminURL, cdb)
		c, err := ceiling(ctx, o, curl, reqs[len(reqs)-o.n:])
		if err != nil {
			return err
		}
		results = append(results, c)
	}
	print(o, results)
	return nil
}

type request struct {
	key  string
	body []byte
}

// warmupRequests is how many requests the warm-up offers.
func (o options) warmupRequests() int { return int(o.rate * o.warmup.Seconds()) }

// generate makes warm requests for the warm-up and o.n more: a share of them
// name a company that an earlier request created, and a share are invalid.
func generate(o options, warm int) []request {
	rng := rand.New(rand.NewPCG(uint64(o.seed), 7))
	out := make([]request, warm+o.n)
	created := 0
	for i := range out {
		org := fmt.Sprintf("bench-org-%d", i%o.orgs)
		company := fmt.Sprintf("Company %d", i)
		if created > 0 && rng.Float64() < o.dup {
			company = fmt.Sprintf("Company %d", rng.IntN(created))
		} else {
			created = i + 1
		}
		lead := map[string]any{
			"id": fmt.Sprintf("lead-%d", i), "topic": "Deal " + strconv.Itoa(i), "first_name": "First" + strconv.Itoa(i),
			"last_name": "Last", "company": company, "email": fmt.Sprintf("person%d@example.com", i),
			"business_phone": fmt.Sprintf("+1 555 %07d", i), "website": fmt.Sprintf("https://www.company%d.example/", i),
			"city": "Springfield", "country": "US", "budget_amount": 1000 + i%9000, "purchase_timeframe": "this_quarter",
			"source": "bench", "owner_id": "owner-1",
		}
		if strings.HasPrefix(company, "Company ") && company != fmt.Sprintf("Company %d", i) {
			// The website follows the company, so the duplicate is one account.
			lead["website"] = fmt.Sprintf("https://www.company%s.example/", strings.TrimPrefix(company, "Company "))
		}
		var notes []any
		for k := range o.notes {
			notes = append(notes, map[string]any{"id": fmt.Sprintf("n%d", k), "title": "call", "body": "Discussed the deal; follow up next week."})
		}
		if notes != nil {
			lead["notes"] = notes
		}
		var opps []any
		for k := range o.opps {
			opps = append(opps, map[string]any{"action": "create", "fields": map[string]any{"name": fmt.Sprintf("Deal %d/%d", i, k), "estimated_value": 5000}})
		}
		req := map[string]any{"idempotency_key": fmt.Sprintf("bench-%d", i), "org_id": org,
			"actor": map[string]any{"id": "bench", "roles": []string{"sales_agent"}}, "lead": lead,
			"opportunities": opps, "on_duplicate": "use_existing"}
		if opps == nil {
			req["opportunities"] = []any{}
		}
		if rng.Float64() < o.invalid {
			lead["email"] = "not an email"
		}
		body, _ := json.Marshal(req)
		out[i] = request{key: fmt.Sprintf("bench-%d", i), body: body}
	}
	return out
}

func endToEnd(ctx context.Context, o options, natsURL, dbURL string, reqs []request, worker, ns *exec.Cmd) (result, error) {
	nc, err := nats.Connect(natsURL, nats.MaxReconnects(-1))
	if err != nil {
		return result{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	if err != nil {
		return result{}, err
	}
	// Wait for leadflow to declare its streams.
	for i := 0; ; i++ {
		if _, err := js.Stream(ctx, "LEAD_EVENTS"); err == nil {
			break
		} else if i > 300 {
			return result{}, fmt.Errorf("no LEAD_EVENTS stream: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	index := make(map[string]int, len(reqs))
	for i, r := range reqs {
		index[r.key] = i
	}
	sent := make([]time.Time, len(reqs))
	lat := make([]time.Duration, len(reqs))
	before := make([]time.Duration, len(reqs))
	outcomes := map[string]int{}
	var mu sync.Mutex
	var done atomic.Int64
	all := make(chan struct{})
	var last time.Time
	handler := func(m *nats.Msg) {
		var e struct {
			Type          string    `json:"type"`
			Time          time.Time `json:"time"`
			CorrelationID string    `json:"correlationid"`
			Data          struct {
				Code string `json:"code"`
			} `json:"data"`
		}
		if json.Unmarshal(m.Data, &e) != nil {
			return
		}
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		i, ok := index[e.CorrelationID]
		if !ok || lat[i] != 0 {
			return
		}
		lat[i] = now.Sub(sent[i])
		before[i] = min(max(e.Time.Sub(sent[i]), 0), lat[i])
		if i >= len(reqs)-o.n {
			outcomes[strings.TrimSpace(e.Type+" "+e.Data.Code)]++
		}
		last = now
		if done.Add(1) == int64(len(reqs)) {
			close(all)
		}
	}
	for _, s := range []string{"lead.qualified", "lead.qualify.rejected"} {
		sub, err := nc.Subscribe(s, handler)
		if err != nil {
			return result{}, err
		}
		_ = sub.SetPendingLimits(-1, -1)
		defer sub.Unsubscribe() //nolint:errcheck
	}
	// What the run is measured by is read as its first measured request is
	// published: the warm-up requests before it are paced as the rest.
	warm := len(reqs) - o.n
	var (
		stateBefore             dbState
		cpuBefore, pgBefore     float64
		natsBefore, benchBefore float64
		machineBefore           cpuTimes
		switchesBefore          [4]int64
		handlingBefore          map[float64]float64
		start                   time.Time
	)
	begin := time.Now()
	var interval time.Duration
	if o.rate > 0 {
		interval = time.Duration(float64(time.Second) / o.rate)
	}
	for i, r := range reqs {
		if interval > 0 {
			if d := time.Until(begin.Add(time.Duration(i) * interval)); d > 0 {
				time.Sleep(d)
			}
		}
		if i == warm {
			if warm > 0 && o.httpAddr != "" {
				handlingBefore = scrapeBuckets("http://"+o.httpAddr+"/metrics", "leadflow_request_duration_seconds")
			}
			stateBefore = readDBState(ctx, dbURL)
			cpuBefore, pgBefore = procCPU(worker), postgresCPU()
			natsBefore, benchBefore, machineBefore = procCPU(ns), statCPU("/proc/self/stat"), machineCPU()
			switchesBefore = contextSwitches(worker, ns)
			start = time.Now()
			if o.profile != "" && o.httpAddr != "" {
				go takeProfile(o.httpAddr, o.profile)
			}
		}
		msg := &nats.Msg{Subject: "lead.qualify.requested", Data: r.body, Header: nats.Header{jetstream.MsgIDHeader: []string{r.key}}}
		mu.Lock()
		sent[i] = time.Now()
		mu.Unlock()
		if _, err := js.PublishMsgAsync(msg); err != nil {
			return result{}, fmt.Errorf("publish: %w", err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return result{}, fmt.Errorf("publishes not acknowledged")
	}
	select {
	case <-all:
	case <-time.After(2 * time.Minute):
		return result{}, fmt.Errorf("only %d of %d outcomes arrived", done.Load(), len(reqs))
	}
	mu.Lock()
	took := last.Sub(start)
	mu.Unlock()
	r := result{name: "end to end (leadflow serve)", n: o.n, took: took, outcomes: outcomes, warm: warm}
	if warm > 0 {
		r.warmLat[0], r.warmLat[1], r.warmLat[2] = percentiles(lat[:warm])
	}
	sent, before, lat = sent[warm:], before[warm:], lat[warm:]
	r.p50, r.p95, r.p99 = percentiles(lat)
	after := make([]time.Duration, len(lat))
	for i := range lat {
		after[i] = lat[i] - before[i]
	}
	var split [2][3]time.Duration
	split[0][0], split[0][1], split[0][2] = percentiles(before)
	split[1][0], split[1][1], split[1][2] = percentiles(after)
	r.split = &split
	if o.timeline != "" {
		if err := writeTimeline(o.timeline, start, sent, before, lat); err != nil {
			return result{}, err
		}
	}
	if o.httpAddr != "" {
		r.handling = scrapeQuantiles("http://"+o.httpAddr+"/metrics", "leadflow_request_duration_seconds", handlingBefore, 0.5, 0.95, 0.99)
	}
	r.workerCPU = procCPU(worker) - cpuBefore
	r.pgCPU = postgresCPU() - pgBefore
	r.natsCPU, r.benchCPU = procCPU(ns)-natsBefore, statCPU("/proc/self/stat")-benchBefore
	r.busy = machineCPU().busySince(machineBefore)
	for i, n := range contextSwitches(worker, ns) {
		r.switches[i] = n - switchesBefore[i]
	}
	r.rssKB = peakRSS(worker)
	stateAfter := readDBState(ctx, dbURL)
	r.bytesPerLead = float64(stateAfter.size-stateBefore.size) / float64(o.n)
	r.walPerLead = float64(stateAfter.walSince(stateBefore)) / float64(o.n)
	return r, nil
}

// writeTimeline writes one line per request: when it was published after
// the first, and its latency before and after its transaction began.
func writeTimeline(path string, start time.Time, sent []time.Time, before, lat []time.Duration) error {
	var b strings.Builder
	b.WriteString("published_ms,before_ms,after_ms\n")
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for i := range sent {
		fmt.Fprintf(&b, "%.3f,%.3f,%.3f\n", ms(sent[i].Sub(start)), ms(before[i]), ms(lat[i]-before[i]))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// ceiling applies the same requests straight through the store: one
// transaction per conversion, 8 connections, no broker.
func ceiling(ctx context.Context, o options, dbURL string, reqs []request) (result, error) {
	st, err := store.Open(ctx, dbURL, 8)
	if err != nil {
		return result{}, err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return result{}, err
	}
	parsed := make([]*conversion.Parsed, len(reqs))
	for i, r := range reqs {
		parsed[i] = conversion.Parse(conversion.SubjectQualify, r.body)
	}
	lat := make([]time.Duration, len(reqs))
	var next atomic.Int64
	var wg sync.WaitGroup
	pgBefore, stateBefore := postgresCPU(), readDBState(ctx, dbURL)
	start := time.Now()
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(parsed) {
					return
				}
				t := time.Now()
				if _, err := st.Process(ctx, parsed[i]); err != nil {
					errs <- err
					return
				}
				lat[i] = time.Since(t)
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return result{}, err
	default:
	}
	r := result{name: "ceiling (store only, 8 conns)", n: len(reqs), took: time.Since(start), pgCPU: postgresCPU() - pgBefore}
	r.walPerLead = float64(readDBState(ctx, dbURL).walSince(stateBefore)) / float64(len(reqs))
	r.p50, r.p95, r.p99 = percentiles(lat)
	return r, nil
}

func print(o options, rs []result) {
	fmt.Printf("leadflow-bench: n=%d orgs=%d dup=%.2f opps=%d notes=%d invalid=%.2f rate=%v workers=%d preload=%d\n",
		o.n, o.orgs, o.dup, o.opps, o.notes, o.invalid, o.rate, o.workers, o.preload)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "run\tconversions/s\tp50\tp95\tp99\tworker peak RSS\tworker CPU s/1k\tpostgres CPU s/1k\tDB bytes/lead\tWAL bytes/lead")
	for _, r := range rs {
		per1k := func(s float64) string {
			if s == 0 {
				return "-"
			}
			return fmt.Sprintf("%.3f", s/float64(r.n)*1000)
		}
		rss, bpl, wpl := "-", "-", "-"
		if r.rssKB > 0 {
			rss = fmt.Sprintf("%.1f MB", float64(r.rssKB)/1024)
		}
		if r.bytesPerLead > 0 {
			bpl = fmt.Sprintf("%.0f", r.bytesPerLead)
		}
		if r.walPerLead > 0 {
			wpl = fmt.Sprintf("%.0f", r.walPerLead)
		}
		fmt.Fprintf(w, "%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.name, float64(r.n)/r.took.Seconds(),
			r.p50.Round(100*time.Microsecond), r.p95.Round(100*time.Microsecond), r.p99.Round(100*time.Microsecond),
			rss, per1k(r.workerCPU), per1k(r.pgCPU), bpl, wpl)
	}
	_ = w.Flush()
	for _, r := range rs {
		if r.split == nil {
			continue
		}
		if r.warm > 0 {
			fmt.Printf("  warm-up before the measured requests (not counted above): %d requests, p50 %s, p95 %s, p99 %s\n", r.warm,
				r.warmLat[0].Round(100*time.Microsecond), r.warmLat[1].Round(100*time.Microsecond), r.warmLat[2].Round(100*time.Microsecond))
		}
		if len(r.handling) == 3 {
			fmt.Printf("  leadflow's handling, receipt to settlement (/metrics buckets): p50 ≤ %gs, p95 ≤ %gs, p99 ≤ %gs\n",
				r.handling[0], r.handling[1], r.handling[2])
		}
		if r.busy > 0 {
			fmt.Printf("  the rest of the machine: nats-server %.3f, the bench %.3f CPU s/1k; the cores %.0f%% busy\n",
				r.natsCPU/float64(r.n)*1000, r.benchCPU/float64(r.n)*1000, 100*r.busy)
			per := func(i int) float64 { return float64(r.switches[i]) / float64(r.n) }
			fmt.Printf("  context switches per request: leadflow %.1f, PostgreSQL %.1f, nats-server %.1f, the bench %.1f\n",
				per(0), per(1), per(2), per(3))
		}
		for i, part := range []string{"publish → transaction begins (stream, fetch, linger)", "transaction begins → outcome received (transaction, relay, delivery)"} {
			fmt.Printf("  %s: p50 %s, p95 %s, p99 %s\n", part, r.split[i][0].Round(100*time.Microsecond),
				r.split[i][1].Round(100*time.Microsecond), r.split[i][2].Round(100*time.Microsecond))
		}
	}
	if len(rs) > 1 {
		fmt.Printf("end to end / ceiling: %.2f\n", rs[1].took.Seconds()/rs[0].took.Seconds())
	}
	for k, v := range rs[0].outcomes {
		fmt.Printf("outcome %s: %d\n", k, v)
	}
}

func percentiles(d []time.Duration) (p50, p95, p99 time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.95), at(0.99)
}

func freshDatabase(ctx context.Context, adminURL, name string) (string, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", adminURL, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	cfg, _ := pgx.ParseConfig(adminURL)
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name), nil
}

func dropDatabase(adminURL, name string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}

// preload fills the org tables with n accounts and n contacts of another org
// and of the bench org, so that duplicate checks run against full indexes.
func preload(ctx context.Context, dbURL string, n int) error {
	st, err := store.Open(ctx, dbURL, 2)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	for _, sql := range []string{`
		INSERT INTO accounts (org_id, id, name, website, name_norm, website_norm, phone_norm)
		SELECT 'bench-org-0', gen_random_uuid(), 'Preloaded ' || g, 'preloaded' || g || '.example', 'preloaded ' || g, 'preloaded' || g || '.example', '+1999' || g
		FROM generate_series(1, $1::int) g`, `
		INSERT INTO contacts (org_id, id, last_name, email, email_norm, last_name_norm, business_phone_norm)
		SELECT 'bench-org-0', gen_random_uuid(), 'P' || g, 'p' || g || '@preloaded.example', 'p' || g || '@preloaded.example', 'p' || g, '+1888' || g
		FROM generate_series(1, $1::int) g`,
	} {
		if _, err := st.Pool().Exec(ctx, sql, n); err != nil {
			return fmt.Errorf("preload: %w", err)
		}
	}
	_, err = st.Pool().Exec(ctx, `ANALYZE accounts; ANALYZE contacts`)
	return err
}

// dbState is the bench database's size and the server's WAL position, or
// zeros when they cannot be read.
type dbState struct {
	size int64
	lsn  uint64
}

func readDBState(ctx context.Context, dbURL string) dbState {
	var st dbState
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return st
	}
	defer conn.Close(ctx)
	var lsn string
	if conn.QueryRow(ctx, "SELECT pg_database_size(current_database()), pg_current_wal_lsn()::text").Scan(&st.size, &lsn) != nil {
		return dbState{}
	}
	var hi, lo uint64
	if _, err := fmt.Sscanf(lsn, "%X/%X", &hi, &lo); err == nil {
		st.lsn = hi<<32 | lo
	}
	return st
}

// walSince is how many bytes of WAL the server wrote between before and
// st; 0 when either position is unknown.
func (st dbState) walSince(before dbState) int64 {
	if st.lsn == 0 || before.lsn == 0 {
		return 0
	}
	return int64(st.lsn - before.lsn)
}

// procCPU is a process's user + system CPU seconds.
func procCPU(cmd *exec.Cmd) float64 {
	if cmd == nil || cmd.Process == nil {
		return 0
	}
	return statCPU(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
}

func statCPU(path string) float64 {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

// contextSwitches counts the context switches, voluntary or not, of every
// thread of the worker, of PostgreSQL's processes, of nats-server and of the
// bench.
func contextSwitches(worker, ns *exec.Cmd) [4]int64 {
	pid := func(cmd *exec.Cmd) string {
		if cmd == nil || cmd.Process == nil {
			return ""
		}
		return strconv.Itoa(cmd.Process.Pid)
	}
	var out [4]int64
	out[0] = processSwitches(pid(worker))
	out[2] = processSwitches(pid(ns))
	out[3] = processSwitches(strconv.Itoa(os.Getpid()))
	for _, p := range postgresPIDs() {
		out[1] += processSwitches(p)
	}
	return out
}

// processSwitches sums the context switches of the threads of process pid.
func processSwitches(pid string) int64 {
	if pid == "" {
		return 0
	}
	tasks, _ := os.ReadDir("/proc/" + pid + "/task")
	var n int64
	for _, t := range tasks {
		raw, err := os.ReadFile("/proc/" + pid + "/task/" + t.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				c, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += c
			}
		}
	}
	return n
}

// cpuTimes is the machine's CPU time, in clock ticks: all of it, and idle.
type cpuTimes struct{ total, idle float64 }

// machineCPU reads the first line of /proc/stat.
func machineCPU() cpuTimes {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	var t cpuTimes
	// user nice system idle iowait irq softirq steal (guest time is in user)
	fields := strings.Fields(line)[1:]
	for i, f := range fields[:min(8, len(fields))] {
		v, _ := strconv.ParseFloat(f, 64)
		t.total += v
		if i == 3 || i == 4 { // idle, iowait
			t.idle += v
		}
	}
	return t
}

// busySince is the share of the CPU time since before that was not idle.
func (t cpuTimes) busySince(before cpuTimes) float64 {
	total := t.total - before.total
	if total <= 0 {
		return 0
	}
	return 1 - (t.idle-before.idle)/total
}

// postgresCPU sums the CPU seconds of every postgres process on the machine.
func postgresCPU() float64 {
	total := 0.0
	for _, p := range postgresPIDs() {
		total += statCPU("/proc/" + p + "/stat")
	}
	return total
}

// postgresPIDs lists the postgres processes on the machine.
func postgresPIDs() []string {
	dirs, _ := os.ReadDir("/proc")
	var pids []string
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		if comm, err := os.ReadFile("/proc/" + d.Name() + "/comm"); err == nil && strings.HasPrefix(string(comm), "postgres") {
			pids = append(pids, d.Name())
		}
	}
	return pids
}

func peakRSS(cmd *exec.Cmd) int64 {
	if cmd == nil || cmd.Process == nil {
		return 0
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb
		}
	}
	return 0
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitTCP(addr string) {
	for range 100 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// takeProfile saves a 10 s CPU profile of the leadflow at addr.
func takeProfile(addr, path string) {
	// The CPU profile over ten seconds, then the allocations since start-up.
	save(path, "http://"+addr+"/debug/pprof/profile?seconds=10")
	save(path+".allocs", "http://"+addr+"/debug/pprof/allocs")
}

// save writes what url serves to path.
func save(path, url string) {
	resp, err := http.Get(url) //nolint:gosec,noctx // the bench's own leadflow
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}

// scrapeQuantiles reads the histogram name from a Prometheus text page,
// summed over its label sets, and returns the upper bound of the bucket
// that holds each quantile q, counting only what was observed after the
// bucket counts since (nil: all); nil when it cannot.
func scrapeQuantiles(url, name string, since map[float64]float64, qs ...float64) []float64 {
	counts := scrapeBuckets(url, name)
	if counts == nil {
		return nil
	}
	for b, n := range since {
		counts[b] -= n
	}
	bounds := slices.Sorted(maps.Keys(counts))
	if len(bounds) == 0 || counts[bounds[len(bounds)-1]] <= 0 {
		return nil
	}
	total := counts[bounds[len(bounds)-1]]
	out := make([]float64, len(qs))
	for i, q := range qs {
		for _, b := range bounds {
			if counts[b] >= q*total {
				out[i] = b
				break
			}
		}
	}
	return out
}

// scrapeBuckets reads the cumulative bucket counts of the histogram name at
// url, by upper bound; none when it cannot.
func scrapeBuckets(url, name string) map[float64]float64 {
	resp, err := http.Get(url) //nolint:gosec,noctx // the bench's own leadflow
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	counts := map[float64]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"_bucket{") {
			continue
		}
		_, rest, _ := strings.Cut(line, `le="`)
		le, rest, _ := strings.Cut(rest, `"`)
		bound, err := strconv.ParseFloat(le, 64)
		if err != nil {
			continue
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(rest[strings.LastIndex(rest, " "):]), 64)
		if err != nil {
			continue
		}
		counts[bound] += n
	}
	return counts
}
