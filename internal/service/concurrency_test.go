package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/leadflow/leadflow/internal/config"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

func (b *bundle) publishAs(subject string, body map[string]any, msgID string) {
	b.t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(b.t, err)
	msg := &nats.Msg{Subject: subject, Data: raw, Header: nats.Header{jetstream.MsgIDHeader: []string{msgID}}}
	_, err = b.js.PublishMsg(context.Background(), msg)
	require.NoError(b.t, err)
}

// waitEvents waits until key has n events of type typ and returns them.
func (b *bundle) waitEvents(key, typ string, n int) []event {
	b.t.Helper()
	var got []event
	b.waitFor(fmt.Sprintf("%d %s of %s", n, typ, key), func(evs []event) bool {
		got = got[:0]
		for _, e := range eventsFor(evs, key) {
			if e.Type == typ {
				got = append(got, e)
			}
		}
		return len(got) >= n
	})
	return got
}

// TestIdempotency: a repeat of a request converts nothing twice and
// re-publishes the same outcome event, with the same id; the same key with
// another body is refused.
func TestIdempotency(t *testing.T) {
	t.Parallel()
	// A short duplicate window, so that the re-published outcome is not
	// dropped by JetStream and the test can see it.
	b := setup(t, func(c *config.Config) {
		c.DuplicateWindow = time.Second
		c.RelayMaxBackoff = 500 * time.Millisecond
	})
	req := request("org-i", "idem-1", "li", acmeLead(), nil)
	first := b.qualify(req)
	require.Len(t, first, 4)
	time.Sleep(1500 * time.Millisecond)

	// The same request again (keys reordered, as another client would send
	// it), under another Nats-Msg-Id so that the requests stream keeps it.
	b.publishAs("lead.qualify.requested", req, "resent")
	again := b.waitEvents("idem-1", "lead.qualified", 2)
	require.Equal(t, first[3].ID, again[1].ID, "the replay carries the same event id")
	require.JSONEq(t, string(first[3].raw), string(again[1].raw))
	require.Len(t, b.waitEvents("idem-1", "account.created", 1), 1, "no second conversion")
	require.Equal(t, 1, b.count(`SELECT count(*) FROM accounts WHERE org_id = 'org-i'`))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM opportunities WHERE org_id = 'org-i'`))

	// The same key with another body.
	changed := request("org-i", "idem-1", "li", map[string]any{"company": "Other"}, nil)
	b.publishAs("lead.qualify.requested", changed, "changed")
	rej := b.waitEvents("idem-1", "lead.qualify.rejected", 1)
	require.Equal(t, "idempotency_key_reused", rej[0].Data["code"])
	validateEvent(t, rej[0])
	require.Equal(t, 1, b.count(`SELECT count(*) FROM accounts WHERE org_id = 'org-i'`))

	// A replayed rejection also keeps its id.
	bad := request("org-i", "idem-2", "li2", map[string]any{"email": "nope"}, nil)
	b.publishAs("lead.qualify.requested", bad, "bad-1")
	r1 := b.waitEvents("idem-2", "lead.qualify.rejected", 1)
	time.Sleep(1500 * time.Millisecond)
	b.publishAs("lead.qualify.requested", bad, "bad-2")
	r2 := b.waitEvents("idem-2", "lead.qualify.rejected", 2)
	require.Equal(t, r1[0].ID, r2[1].ID)
}

// TestConcurrentRequestsForOneLead: ten requests under different keys for one
// lead, handled at once, convert it once; the others are told it is qualified.
func TestConcurrentRequestsForOneLead(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) { c.Workers = 10 })
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.publish("lead.qualify.requested", request("org-c", fmt.Sprintf("c-%d", i), "hot-lead", acmeLead(), nil))
		}()
	}
	wg.Wait()
	qualified, already := 0, 0
	for i := range 10 {
		evs := b.outcome(fmt.Sprintf("c-%d", i))
		last := evs[len(evs)-1]
		switch {
		case last.Type == "lead.qualified":
			qualified++
		case last.Data["code"] == "lead_already_qualified":
			already++
			require.NotNil(t, last.Data["details"].(map[string]any)["account"])
		default:
			t.Fatalf("unexpected outcome %s %v", last.Type, last.Data["code"])
		}
	}
	require.Equal(t, 1, qualified)
	require.Equal(t, 9, already)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM accounts WHERE org_id = 'org-c'`))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM contacts WHERE org_id = 'org-c'`))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM opportunities WHERE org_id = 'org-c'`))
}

// TestRaceOnNewCompany: ten leads of one new company, converted at once with
// use_existing, create one account and link it nine times.
func TestRaceOnNewCompany(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) { c.Workers = 10 })
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lead := map[string]any{"company": "Brand New Co", "website": "brandnew.example", "last_name": fmt.Sprintf("Person %d", i),
				"email": fmt.Sprintf("p%d@brandnew.example", i)}
			b.publish("lead.qualify.requested", request("org-race", fmt.Sprintf("race-%d", i), fmt.Sprintf("race-lead-%d", i), lead,
				map[string]any{"on_duplicate": "use_existing"}))
		}()
	}
	wg.Wait()
	accounts := map[string]int{}
	outcomes := map[string]int{}
	for i := range 10 {
		evs := b.outcome(fmt.Sprintf("race-%d", i))
		q := evs[len(evs)-1]
		require.Equal(t, "lead.qualified", q.Type, "%v", q.Data)
		acc := q.Data["account"].(map[string]any)
		accounts[acc["id"].(string)]++
		outcomes[acc["outcome"].(string)]++
	}
	require.Len(t, accounts, 1, "one account for the company")
	require.Equal(t, map[string]int{"created": 1, "existing": 9}, outcomes)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM accounts WHERE org_id = 'org-race'`))
	require.Equal(t, 10, b.count(`SELECT count(*) FROM contacts WHERE org_id = 'org-race'`))
	require.Equal(t, 10, b.count(`SELECT count(*) FROM contacts c JOIN accounts a ON a.org_id = c.org_id AND a.id = c.account_id WHERE c.org_id = 'org-race'`))
}
