package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ref is an {id, outcome} pair of a lead.qualified event.
type ref struct {
	ID      *string `json:"id"`
	Outcome string  `json:"outcome"`
}

// Event is what the suite keeps of one event on LEAD_EVENTS.
type Event struct {
	Seq                                 uint64
	ID, Type, Lead, Org, Corr           string
	Code                                string
	AccountID, ContactID, OpportunityID string
	Account, Contact                    ref
	Opportunities                       []ref
	At                                  time.Time
}

func isTerminal(typ string) bool {
	return strings.HasSuffix(typ, ".rejected") || typ == "lead.qualified" || typ == "lead.disqualified" ||
		typ == "lead.reactivated"
}

// DeadLetter is one message on LEAD_DEAD_LETTERS.
type DeadLetter struct {
	Key, MsgID, Error, Deliveries, Subject string
}

// Observer follows LEAD_EVENTS and LEAD_DEAD_LETTERS from the start with
// ordered consumers and keeps what the invariants need.
type Observer struct {
	mu sync.Mutex
	// events holds the first copy of each event id; copies counts every copy.
	events map[string]*Event
	copies map[string]int
	// order is the event ids in stream order (first copies).
	order []string
	// terminal maps a correlation id to the distinct ids of its terminal events.
	terminal map[string][]string
	// outcomeAt is when each correlation id got its first terminal event;
	// outcomeTimes lists those instants in arrival order.
	outcomeAt    map[string]time.Time
	outcomeTimes []time.Time
	// uncorrelated are terminal events without a correlation id (requests too
	// broken to read).
	uncorrelated []*Event
	dead         []DeadLetter
	deadByKey    map[string]int
	lastSeq      uint64
	gaps         int
	messages     int
	decodeErrs   int
	changed      chan struct{}
	stops        []func()
}

func newObserver() *Observer {
	return &Observer{events: map[string]*Event{}, copies: map[string]int{}, terminal: map[string][]string{},
		outcomeAt: map[string]time.Time{}, deadByKey: map[string]int{}, changed: make(chan struct{}, 1)}
}

func (o *Observer) poke() {
	select {
	case o.changed <- struct{}{}:
	default:
	}
}

// follow starts the ordered consumers.
func (o *Observer) follow(ctx context.Context, js jetstream.JetStream) error {
	ev, err := js.OrderedConsumer(ctx, "LEAD_EVENTS", jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("follow LEAD_EVENTS: %w", err)
	}
	cc, err := ev.Consume(o.onEvent)
	if err != nil {
		return fmt.Errorf("follow LEAD_EVENTS: %w", err)
	}
	o.stops = append(o.stops, cc.Stop)
	dl, err := js.OrderedConsumer(ctx, "LEAD_DEAD_LETTERS", jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("follow LEAD_DEAD_LETTERS: %w", err)
	}
	dc, err := dl.Consume(o.onDead)
	if err != nil {
		return fmt.Errorf("follow LEAD_DEAD_LETTERS: %w", err)
	}
	o.stops = append(o.stops, dc.Stop)
	return nil
}

func (o *Observer) stop() {
	for _, s := range o.stops {
		s()
	}
}

type wireEvent struct {
	ID            string `json:"id"`
	Type          string `json:"type"`
	Subject       string `json:"subject"`
	OrgID         string `json:"orgid"`
	CorrelationID string `json:"correlationid"`
	Data          struct {
		Code          string `json:"code"`
		AccountID     string `json:"account_id"`
		ContactID     string `json:"contact_id"`
		OpportunityID string `json:"opportunity_id"`
		Account       ref    `json:"account"`
		Contact       ref    `json:"contact"`
		Opportunities []ref  `json:"opportunities"`
	} `json:"data"`
}

func (o *Observer) onEvent(m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		return
	}
	var w wireEvent
	decodeErr := json.Unmarshal(m.Data(), &w)
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	seq := md.Sequence.Stream
	if seq <= o.lastSeq {
		return
	}
	if seq > o.lastSeq+1 {
		o.gaps++
	}
	o.lastSeq = seq
	o.messages++
	if decodeErr != nil {
		o.decodeErrs++
		return
	}
	o.copies[w.ID]++
	if o.copies[w.ID] > 1 {
		o.poke()
		return
	}
	e := &Event{Seq: seq, ID: w.ID, Type: w.Type, Lead: w.Subject, Org: w.OrgID, Corr: w.CorrelationID,
		Code: w.Data.Code, At: now}
	switch w.Type {
	case "account.created":
		e.AccountID = w.Data.AccountID
	case "contact.created":
		e.ContactID = w.Data.ContactID
	case "opportunity.created":
		e.OpportunityID = w.Data.OpportunityID
	case "lead.qualified":
		e.Account, e.Contact, e.Opportunities = w.Data.Account, w.Data.Contact, w.Data.Opportunities
	}
	o.events[w.ID] = e
	o.order = append(o.order, w.ID)
	if isTerminal(w.Type) {
		if w.CorrelationID == "" {
			o.uncorrelated = append(o.uncorrelated, e)
		} else {
			o.terminal[w.CorrelationID] = append(o.terminal[w.CorrelationID], w.ID)
			if _, ok := o.outcomeAt[w.CorrelationID]; !ok {
				o.outcomeAt[w.CorrelationID] = now
				o.outcomeTimes = append(o.outcomeTimes, now)
			}
		}
	}
	o.poke()
}

func (o *Observer) onDead(m jetstream.Msg) {
	var body struct {
		Key any `json:"idempotency_key"`
	}
	_ = json.Unmarshal(m.Data(), &body)
	h := m.Headers()
	d := DeadLetter{MsgID: h.Get(jetstream.MsgIDHeader), Error: h.Get("Leadflow-Error"),
		Deliveries: h.Get("Leadflow-Deliveries"), Subject: m.Subject()}
	if k, ok := body.Key.(string); ok {
		d.Key = k
	} else {
		d.Key = d.MsgID
	}
	o.mu.Lock()
	o.dead = append(o.dead, d)
	o.deadByKey[d.Key]++
	o.mu.Unlock()
	o.poke()
}

// settled reports, for the keys given, how many have a terminal event or a
// dead letter.
func (o *Observer) settled(keys []string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, k := range keys {
		if len(o.terminal[k]) > 0 || o.deadByKey[k] > 0 {
			n++
		}
	}
	return n
}

func (o *Observer) terminalOf(key string) []*Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*Event
	for _, id := range o.terminal[key] {
		out = append(out, o.events[id])
	}
	return out
}

func (o *Observer) uncorrelatedCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.uncorrelated)
}

func (o *Observer) lastUncorrelated() *Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.uncorrelated) == 0 {
		return nil
	}
	return o.uncorrelated[len(o.uncorrelated)-1]
}

func (o *Observer) seq() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lastSeq
}
