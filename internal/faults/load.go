package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PII canaries: every generated lead carries them in its names, email and
// phone numbers, and no log file may contain them.
const (
	canaryWord  = "zqxcanary"
	canaryPhone = "+999 31415 9265" // digits 99931415 9265…
)

// canaryProbe marks the email of the PII scenario's probe, a request that a
// database error quotes.
const canaryProbe = canaryWord + "-dberror-"

// canaryPatterns are searched in every log file (case-insensitively).
var canaryPatterns = []string{canaryWord, "31415 9265", "314159265"}

const subjectQualify = "lead.qualify.requested"

// Expect is the outcome a request must get.
type Expect struct {
	// Type is the terminal event type; "" with Dead for a dead letter, "" alone for any outcome.
	Type string
	// Code is the rejection code, when Type is a rejection.
	Code string
	// Dead: the request must be dead-lettered and publish nothing.
	Dead bool
}

var (
	expectQualified = Expect{Type: "lead.qualified"}
	expectDead      = Expect{Dead: true}
)

func expectRejected(code string) Expect { return Expect{Type: "lead.qualify.rejected", Code: code} }

// Request is one published request.
type Request struct {
	Key, Org, Lead string
	Subject        string
	Body           []byte
	// MsgIDs are the Nats-Msg-Ids it is published with, once each; default Key.
	MsgIDs []string
	Expect Expect
	// canary reports whether it carries the PII canaries.
	canary bool
}

func (r *Request) msgIDs() []string {
	if len(r.MsgIDs) == 0 {
		return []string{r.Key}
	}
	return r.MsgIDs
}

// company returns the company of the n-th lead: one lead in ten names one of
// twenty shared companies, so that use_existing links them and the
// one-account-per-company invariant has something to check.
func company(tag string, n int) string {
	if n%10 == 0 {
		return fmt.Sprintf("Shared %s Holding %d", tag, (n/10)%20)
	}
	return fmt.Sprintf("%s Company %d", tag, n)
}

func slug(s string) string {
	return strings.ToLower(strings.NewReplacer(" ", "-", "'", "", ".", "-").Replace(s))
}

// leadFields is the lead of the n-th request of a scenario: PII canaries in
// its names, email and phones, a company (and its website), and an order.
func leadFields(tag string, n int, companyName string) map[string]any {
	return map[string]any{
		"topic":              fmt.Sprintf("Order %d", n),
		"first_name":         fmt.Sprintf("Ada %s%d", canaryWord, n),
		"last_name":          fmt.Sprintf("Lovelace-%s-%s", canaryWord, tag),
		"company":            companyName,
		"website":            "https://www." + slug(companyName) + ".example/about",
		"job_title":          "Buyer",
		"email":              fmt.Sprintf("%s.%s.%d@example.com", canaryWord, strings.ToLower(tag), n),
		"business_phone":     fmt.Sprintf("%s 1%07d", canaryPhone, n),
		"mobile_phone":       fmt.Sprintf("%s 2%07d", canaryPhone, n),
		"city":               "Springfield",
		"country":            "US",
		"source":             "faults",
		"budget_amount":      1000 + n,
		"purchase_timeframe": "this_quarter",
	}
}

// qualifyBody builds a qualify request.
func qualifyBody(org, key string, lead map[string]any, extra map[string]any) []byte {
	req := map[string]any{
		"idempotency_key": key,
		"org_id":          org,
		"actor":           map[string]any{"id": "faults-user", "roles": []any{"sales_agent"}},
		"lead":            lead,
		"on_duplicate":    "use_existing",
	}
	for k, v := range extra {
		req[k] = v
	}
	raw, err := json.Marshal(req)
	if err != nil {
		panic(err)
	}
	return raw
}

// standardRequests builds n qualify requests in org, keys and lead ids
// prefixed with tag; leadID may rename some leads (slow-, poison-).
func standardRequests(org, tag string, n int, leadID func(i int) string) []*Request {
	out := make([]*Request, n)
	for i := range n {
		id := fmt.Sprintf("%s-%d", tag, i)
		if leadID != nil {
			id = leadID(i)
		}
		key := fmt.Sprintf("k-%s-%d", tag, i)
		lead := leadFields(tag, i, company(tag, i))
		lead["id"] = id
		out[i] = &Request{Key: key, Org: org, Lead: id, Subject: subjectQualify, Body: qualifyBody(org, key, lead, nil),
			Expect: expectQualified, canary: true}
	}
	return out
}

// publisher publishes requests and retries each until JetStream stores it
// (a retry with the same Nats-Msg-Id is dropped as a duplicate if the first
// attempt was stored after all).
type publisher struct {
	js       jetstream.JetStream
	retries  atomic.Int64
	lastErr  atomic.Value
	parallel int
}

type pubItem struct {
	subject string
	data    []byte
	msgID   string
}

func (p *publisher) publishAll(ctx context.Context, items []pubItem) error {
	ch := make(chan pubItem)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range max(p.parallel, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				if err := p.publishOne(ctx, it); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	for _, it := range items {
		select {
		case ch <- it:
		case <-ctx.Done():
		}
	}
	close(ch)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d requests could not be published: %v", n, p.lastErr.Load())
	}
	return ctx.Err()
}

func (p *publisher) publishOne(ctx context.Context, it pubItem) error {
	msg := &nats.Msg{Subject: it.subject, Data: it.data, Header: nats.Header{}}
	if it.msgID != "" {
		msg.Header.Set(jetstream.MsgIDHeader, it.msgID)
	}
	delay := 50 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := p.js.PublishMsg(pctx, msg)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, nats.ErrMaxPayload) || ctx.Err() != nil {
			p.lastErr.Store(err.Error())
			return err
		}
		p.retries.Add(1)
		p.lastErr.Store(err.Error())
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
		delay = min(2*delay, time.Second)
	}
}

func itemsOf(reqs []*Request) []pubItem {
	var out []pubItem
	for _, r := range reqs {
		for _, id := range r.msgIDs() {
			out = append(out, pubItem{subject: r.Subject, data: r.Body, msgID: id})
		}
	}
	return out
}
