package importer

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/leadflow/leadflow/internal/conversion"
	"github.com/nats-io/nats.go/jetstream"
)

// Outcomes of a row, as the results file and the summary name them.
const (
	// OutcomeQualified: leadflow converted the lead (lead.qualified).
	OutcomeQualified = "qualified"
	// OutcomeRejected: leadflow refused the request (lead.qualify.rejected);
	// the code says why.
	OutcomeRejected = "rejected"
	// OutcomeInvalid: the row failed validation and was not published.
	OutcomeInvalid = "invalid"
	// OutcomeMissing: the row was published and no outcome arrived in time.
	OutcomeMissing = "no_outcome"
)

// terminalTypes are the events that end a qualify request.
var terminalTypes = []string{"lead.qualified", conversion.RejectedSubject(conversion.SubjectQualify)}

// outcome is the terminal event of one request, as much as the results need.
type outcome struct {
	org, key       string
	kind           string
	code, message  string
	account        string
	contact        string
	opportunityIDs []string
}

type link struct {
	ID *string `json:"id"`
}

func (l *link) id() string {
	if l == nil || l.ID == nil {
		return ""
	}
	return *l.ID
}

type links struct {
	Account       *link  `json:"account"`
	Contact       *link  `json:"contact"`
	Opportunities []link `json:"opportunities"`
}

// decodeOutcome reads a terminal event, when wanted says it is one the
// import waits for.
func decodeOutcome(raw []byte, wanted func(org, key string) bool) (outcome, bool) {
	var e struct {
		Type          string          `json:"type"`
		OrgID         string          `json:"orgid"`
		CorrelationID string          `json:"correlationid"`
		Data          json.RawMessage `json:"data"`
	}
	if json.Unmarshal(raw, &e) != nil || e.OrgID == "" || e.CorrelationID == "" || !wanted(e.OrgID, e.CorrelationID) {
		return outcome{}, false
	}
	var d struct {
		links
		Code    string `json:"code"`
		Message string `json:"message"`
		// A lead_already_qualified rejection carries the earlier links.
		Details links `json:"details"`
	}
	if json.Unmarshal(e.Data, &d) != nil {
		return outcome{}, false
	}
	o := outcome{org: e.OrgID, key: e.CorrelationID, code: d.Code, message: d.Message}
	l := d.links
	switch e.Type {
	case terminalTypes[0]:
		o.kind = OutcomeQualified
	case terminalTypes[1]:
		o.kind = OutcomeRejected
		l = d.Details
	default:
		return outcome{}, false
	}
	o.account, o.contact = l.Account.id(), l.Contact.id()
	for _, op := range l.Opportunities {
		o.opportunityIDs = append(o.opportunityIDs, op.id())
	}
	return o, true
}

// tracker holds the rows waiting for their outcome, and counts and records
// the outcomes as they arrive. A waiting row costs a map entry keyed by a
// 64-bit hash of its org and key; two of the rows' keys colliding is as likely
// as 2^-64 per pair.
type tracker struct {
	seed    maphash.Seed
	mu      sync.Mutex
	pending map[uint64]int
	// more holds further rows sharing a pending row's org and key: one
	// request, one outcome for all of them.
	more map[uint64][]int
	// rows counts the rows waiting, in pending and in more.
	rows    int
	sum     *Summary
	results *resultsFile
	last    time.Time
	changed chan struct{}
	// stopped is set once the import is over: late outcomes are ignored.
	stopped bool
}

func newTracker(sum *Summary) *tracker {
	return &tracker{seed: maphash.MakeSeed(), pending: map[uint64]int{}, more: map[uint64][]int{},
		sum: sum, last: time.Now(), changed: make(chan struct{}, 1)}
}

func (t *tracker) setResults(r *resultsFile) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.results = r
}

// stop ignores whatever arrives from now on.
func (t *tracker) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
}

func (t *tracker) hash(org, key string) uint64 {
	var h maphash.Hash
	h.SetSeed(t.seed)
	h.WriteString(org)
	h.WriteByte(0)
	h.WriteString(key)
	return h.Sum64()
}

// add waits for the outcome of the request with org and key, from row.
func (t *tracker) add(org, key string, row int) {
	k := t.hash(org, key)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rows++
	if _, dup := t.pending[k]; dup {
		t.more[k] = append(t.more[k], row)
		return
	}
	t.pending[k] = row
}

func (t *tracker) isPending(org, key string) bool {
	k := t.hash(org, key)
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.pending[k]
	return ok
}

// resolve records an outcome for the rows waiting for it, if any.
func (t *tracker) resolve(o outcome, fromHistory bool) error {
	k := t.hash(o.org, o.key)
	t.mu.Lock()
	defer t.mu.Unlock()
	row, ok := t.pending[k]
	if !ok || t.stopped {
		return nil
	}
	delete(t.pending, k)
	rows := append([]int{row}, t.more[k]...)
	delete(t.more, k)
	t.rows -= len(rows)
	t.last = time.Now()
	select {
	case t.changed <- struct{}{}:
	default:
	}
	var err error
	for _, row := range rows {
		t.sum.Outcomes[o.kind]++
		if o.code != "" {
			t.sum.Codes[o.code]++
		}
		if fromHistory {
			t.sum.FromHistory++
		}
		err = errors.Join(err, t.results.write(row, o.key, o.kind, o.code, o.account, o.contact,
			strings.Join(o.opportunityIDs, " "), o.message))
	}
	return err
}

// invalid records a row that was not published.
func (t *tracker) invalid(row int, key string, errs []conversion.FieldError) error {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		at := e.Path
		if at == "" {
			at = "row"
		}
		msgs[i] = at + ": " + e.Message
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.results.write(row, key, OutcomeInvalid, conversion.CodeInvalidRequest, "", "", "", strings.Join(msgs, "; "))
}

// waiting is the number of rows without an outcome yet, and when the last
// outcome arrived.
func (t *tracker) waiting() (int, time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rows, t.last
}

func (t *tracker) counts() (qualified, rejected int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sum.Outcomes[OutcomeQualified], t.sum.Outcomes[OutcomeRejected]
}

// missing records row as one without an outcome if its org and key are
// still waiting, and reports whether they are.
func (t *tracker) missing(org, key string, row int, message string) (bool, error) {
	k := t.hash(org, key)
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.pending[k]; !ok {
		return false, nil
	}
	return true, t.results.write(row, key, OutcomeMissing, "", "", "", "", message)
}

// follow delivers every terminal event stored after sequence after to the
// tracker, until stopped.
func (im *importer) follow(ctx context.Context, js jetstream.JetStream, after uint64) (jetstream.ConsumeContext, error) {
	cons, err := js.OrderedConsumer(ctx, im.cfg.EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: im.terminalSubjects(),
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    after + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", im.cfg.EventsStream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if o, ok := decodeOutcome(m.Data(), im.tracker.isPending); ok {
			if err := im.tracker.resolve(o, false); err != nil {
				im.fail(err)
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", im.cfg.EventsStream, err)
	}
	return cc, nil
}

// lookUp scans the events stream's history for the outcomes of the rows
// still waiting. Their outcome is there when their request, or leadflow's
// replay of its recorded outcome, was dropped by JetStream as a duplicate: a
// re-run of the same file within the duplicate window. So the scan starts a
// duplicate window before the import did, and stops at the stream's end as of
// now: what comes later arrives through follow.
// When a key has several outcomes in the history, the latest counts.
func (im *importer) lookUp(ctx context.Context, js jetstream.JetStream) error {
	s, err := js.Stream(ctx, im.cfg.EventsStream)
	if err != nil {
		return fmt.Errorf("look up outcomes in %s: %w", im.cfg.EventsStream, err)
	}
	end := s.CachedInfo().State.LastSeq
	if end == 0 {
		return nil
	}
	cons, err := js.OrderedConsumer(ctx, im.cfg.EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: im.terminalSubjects(),
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &im.historyFrom,
	})
	if err != nil {
		return fmt.Errorf("look up outcomes in %s: %w", im.cfg.EventsStream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return fmt.Errorf("look up outcomes in %s: %w", im.cfg.EventsStream, err)
	}
	defer it.Stop()
	found := map[string]outcome{}
	for {
		// Nothing for a while: no terminal event at all up to end.
		nctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		m, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) {
				break
			}
			return fmt.Errorf("look up outcomes in %s: %w", im.cfg.EventsStream, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("look up outcomes in %s: %w", im.cfg.EventsStream, err)
		}
		if meta.Sequence.Stream > end {
			break
		}
		if o, ok := decodeOutcome(m.Data(), im.tracker.isPending); ok {
			found[o.org+"\x00"+o.key] = o
		}
		if meta.Sequence.Stream == end || meta.NumPending == 0 {
			break
		}
	}
	var errs error
	for _, o := range found {
		errs = errors.Join(errs, im.tracker.resolve(o, true))
	}
	return errs
}

func (im *importer) terminalSubjects() []string {
	out := make([]string, len(terminalTypes))
	for i, s := range terminalTypes {
		out[i] = im.cfg.SubjectPrefix + s
	}
	return out
}

// resultsFile is the CSV file of one line per row, written as outcomes
// arrive; a nil one writes nothing.
type resultsFile struct {
	f *os.File
	b *bufio.Writer
	w *csv.Writer
}

// ResultsHeader is the first line of a results file.
var ResultsHeader = []string{"row", "key", "outcome", "code", "account_id", "contact_id", "opportunity_ids", "message"}

func createResults(path string) (*resultsFile, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	b := bufio.NewWriterSize(f, 64<<10)
	r := &resultsFile{f: f, b: b, w: csv.NewWriter(b)}
	return r, r.w.Write(ResultsHeader)
}

func (r *resultsFile) write(row int, cells ...string) error {
	if r == nil {
		return nil
	}
	if err := r.w.Write(append([]string{strconv.Itoa(row)}, cells...)); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}

func (r *resultsFile) close() error {
	if r == nil {
		return nil
	}
	r.w.Flush()
	err := errors.Join(r.w.Error(), r.b.Flush(), r.f.Close())
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}
