package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// 10: 50 concurrent requests (distinct keys) for one lead, and 50 for
// distinct leads of one new company under use_existing.
func hotLead(r *run) error {
	ctx := r.ctx
	if err := r.setup(ctx, 2, nil); err != nil {
		return err
	}
	const org = "faults-hot"
	var reqs []*Request
	lead := leadFields("hot", 0, "Hot Lead Company")
	lead["id"] = "hot-lead"
	for i := range 50 {
		key := fmt.Sprintf("k-hot-lead-%d", i)
		reqs = append(reqs, &Request{Key: key, Org: org, Lead: "hot-lead", Subject: subjectQualify,
			Body: qualifyBody(org, key, lead, nil), canary: true})
	}
	for i := range 50 {
		key := fmt.Sprintf("k-hot-co-%d", i)
		id := fmt.Sprintf("hot-co-%d", i)
		l := leadFields("hotco", i+1, "Hot New Company")
		l["id"] = id
		reqs = append(reqs, &Request{Key: key, Org: org, Lead: id, Subject: subjectQualify,
			Body: qualifyBody(org, key, l, nil), Expect: expectQualified, canary: true})
	}
	items := itemsOf(reqs)
	r.rng.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	r.pub.parallel = 50
	if err := r.driveItems(ctx, reqs, items, 0, nil); err != nil {
		return err
	}
	r.row.Faults = "100 requests published at once by 50 publishers, 2×8 workers"
	if _, _, err := r.finish(ctx, reqs, checkOptions{}); err != nil {
		return err
	}
	qualified, already, other := 0, 0, 0
	created, existing := 0, 0
	accounts := map[string]bool{}
	for _, q := range reqs {
		evs := r.obs.terminalOf(q.Key)
		if len(evs) == 0 {
			continue
		}
		e := evs[0]
		if q.Lead == "hot-lead" {
			switch {
			case e.Type == "lead.qualified":
				qualified++
			case e.Code == "lead_already_qualified":
				already++
			default:
				other++
			}
			continue
		}
		if e.Type == "lead.qualified" {
			switch e.Account.Outcome {
			case "created":
				created++
			case "existing":
				existing++
			}
			if e.Account.ID != nil {
				accounts[*e.Account.ID] = true
			}
		}
	}
	var rows int
	if err := r.pool.QueryRow(ctx, `SELECT count(*) FROM accounts WHERE org_id = $1 AND name_norm = 'hot new company'`, org).Scan(&rows); err != nil {
		return err
	}
	r.note("one lead: %d qualified, %d lead_already_qualified, %d other", qualified, already, other)
	r.note("one company: account created %d, existing %d, %d distinct account ids, %d account rows", created, existing, len(accounts), rows)
	if qualified != 1 || already != 49 || other != 0 || created != 1 || existing != 49 || len(accounts) != 1 || rows != 1 {
		r.row.Result = "FAIL"
	}
	return nil
}

// 11: 1% of the requests fail in the database every time (a trigger raises
// an exception): exactly those are dead-lettered after MAX_DELIVER
// deliveries, the rest convert.
func poison(r *run) error {
	ctx := r.ctx
	const maxDeliver = 3
	if err := r.setup(ctx, 2, map[string]string{"LEADFLOW_MAX_DELIVER": fmt.Sprint(maxDeliver),
		"LEADFLOW_BACKOFF_MIN": "100ms", "LEADFLOW_BACKOFF_MAX": "500ms"}); err != nil {
		return err
	}
	_, err := r.pool.Exec(ctx, `
		CREATE FUNCTION faults_poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.id LIKE 'poison-%' THEN RAISE EXCEPTION 'faults: poisoned lead'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER faults_poison BEFORE INSERT ON leads FOR EACH ROW EXECUTE FUNCTION faults_poison();`)
	if err != nil {
		return err
	}
	poisoned := 0
	reqs := standardRequests("faults-poison", "poison", r.n, func(i int) string {
		if i%100 == 50 {
			poisoned++
			return fmt.Sprintf("poison-%d", i)
		}
		return fmt.Sprintf("healthy-%d", i)
	})
	var rest []string
	for _, q := range reqs {
		if strings.HasPrefix(q.Lead, "poison-") {
			q.Expect = expectDead
		} else {
			rest = append(rest, q.Key)
		}
	}
	if err := r.drive(ctx, reqs, 0, nil); err != nil {
		return err
	}
	rate, _ := r.throughput(rest)
	r.row.Faults = fmt.Sprintf("%d poisoned requests (MAX_DELIVER=%d)", poisoned, maxDeliver)
	if _, _, err := r.finish(ctx, reqs, checkOptions{}); err != nil {
		return err
	}
	r.obs.mu.Lock()
	wrongSubject, wrongDeliveries := 0, 0
	for _, d := range r.obs.dead {
		if d.Subject != "leadflow.dead.lead.qualify.requested" {
			wrongSubject++
		}
		if d.Deliveries != fmt.Sprint(maxDeliver) {
			wrongDeliveries++
		}
	}
	dead := len(r.obs.dead)
	r.obs.mu.Unlock()
	r.note("%d dead letters on leadflow.dead.lead.qualify.requested for %d poisoned requests", dead-wrongSubject, poisoned)
	if wrongSubject > 0 || wrongDeliveries > 0 || dead != poisoned {
		r.row.Result = "FAIL"
		r.note("%d dead letters on another subject, %d with Leadflow-Deliveries other than %d", wrongSubject, wrongDeliveries, maxDeliver)
	}
	if r.s.baseline > 0 {
		r.note("throughput of the rest %.0f requests/s, %.0f%% of the baseline's %.0f", rate, 100*rate/r.s.baseline, r.s.baseline)
	} else {
		r.note("throughput of the rest %.0f requests/s (baseline not run in this invocation)", rate)
	}
	return nil
}

// 14: requests in one org citing another org's account, contact and
// opportunity ids must all be not_found and write nothing.
func crossTenant(r *run) error {
	ctx := r.ctx
	if err := r.setup(ctx, 2, nil); err != nil {
		return err
	}
	const orgA, orgB = "faults-tenant-a", "faults-tenant-b"
	owners := standardRequests(orgA, "xa", 10, nil)
	if err := r.drive(ctx, owners, 0, nil); err != nil {
		return err
	}
	var accounts, contacts, opps []string
	r.obs.mu.Lock()
	for _, e := range r.obs.events {
		if e.Org != orgA {
			continue
		}
		switch e.Type {
		case "account.created":
			accounts = append(accounts, e.AccountID)
		case "contact.created":
			contacts = append(contacts, e.ContactID)
		case "opportunity.created":
			opps = append(opps, e.OpportunityID)
		}
	}
	r.obs.mu.Unlock()
	if len(accounts) == 0 || len(contacts) == 0 || len(opps) == 0 {
		return fmt.Errorf("org A has %d accounts, %d contacts, %d opportunities; need one of each", len(accounts), len(contacts), len(opps))
	}
	before, err := r.orgDigest(ctx, orgA)
	if err != nil {
		return err
	}
	var reqs []*Request
	for i := range r.n {
		key := fmt.Sprintf("k-xb-%d", i)
		id := fmt.Sprintf("xb-%d", i)
		lead := leadFields("xb", i, company("xb", i))
		lead["id"] = id
		acc, con, opp := accounts[i%len(accounts)], contacts[i%len(contacts)], opps[i%len(opps)]
		var extra map[string]any
		switch i % 4 {
		case 0:
			extra = map[string]any{"account": map[string]any{"action": "existing", "id": acc}}
		case 1:
			extra = map[string]any{"account": map[string]any{"action": "skip"}, "contact": map[string]any{"action": "existing", "id": con}}
		case 2:
			extra = map[string]any{"opportunities": []any{map[string]any{"action": "existing", "id": opp}}}
		case 3:
			extra = map[string]any{"account": map[string]any{"action": "existing", "id": acc},
				"contact":       map[string]any{"action": "existing", "id": con},
				"opportunities": []any{map[string]any{"action": "existing", "id": opp}}}
		}
		reqs = append(reqs, &Request{Key: key, Org: orgB, Lead: id, Subject: subjectQualify,
			Body: qualifyBody(orgB, key, lead, extra), Expect: expectRejected("not_found"), canary: true})
	}
	if err := r.drive(ctx, reqs, 0, nil); err != nil {
		return err
	}
	r.row.Faults = fmt.Sprintf("%d requests in %s citing %s's ids (account, contact, opportunity, all three)", len(reqs), orgB, orgA)
	if _, _, err := r.finish(ctx, append(owners, reqs...), checkOptions{}); err != nil {
		return err
	}
	r.row.Requests = len(reqs)
	var written int
	err = r.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM leads WHERE org_id = $1) + (SELECT count(*) FROM accounts WHERE org_id = $1)
		+ (SELECT count(*) FROM contacts WHERE org_id = $1) + (SELECT count(*) FROM opportunities WHERE org_id = $1)
		+ (SELECT count(*) FROM notes WHERE org_id = $1) + (SELECT count(*) FROM attachments WHERE org_id = $1)`, orgB).Scan(&written)
	if err != nil {
		return err
	}
	after, err := r.orgDigest(ctx, orgA)
	if err != nil {
		return err
	}
	r.note("%d rows written in %s; %s's records %s", written, orgB, orgA, map[bool]string{true: "unchanged", false: "CHANGED"}[before == after])
	if written != 0 || before != after {
		r.row.Result = "FAIL"
	}
	return nil
}

// orgDigest is a hash of every row of an org's records and leads.
func (r *run) orgDigest(ctx context.Context, org string) (string, error) {
	var d string
	err := r.pool.QueryRow(ctx, `SELECT md5(
		coalesce((SELECT string_agg(t::text, '|' ORDER BY t.id) FROM accounts t WHERE org_id = $1), '') ||
		coalesce((SELECT string_agg(t::text, '|' ORDER BY t.id) FROM contacts t WHERE org_id = $1), '') ||
		coalesce((SELECT string_agg(t::text, '|' ORDER BY t.id) FROM opportunities t WHERE org_id = $1), '') ||
		coalesce((SELECT string_agg(t::text, '|' ORDER BY t.id) FROM leads t WHERE org_id = $1), ''))`, org).Scan(&d)
	return d, err
}

// hostileCase is one hostile message.
type hostileCase struct {
	name string
	body []byte
	// key is the idempotency key it carries ("" for none).
	key string
	// verbatim, when set, is the lead whose stored row must equal what was sent.
	verbatim map[string]any
}

const hostileOrg = "faults-hostile"

func hostileRequest(key string, lead map[string]any) map[string]any {
	return map[string]any{"idempotency_key": key, "org_id": hostileOrg,
		"actor": map[string]any{"id": "faults-user", "roles": []any{"sales_agent"}}, "lead": lead, "on_duplicate": "use_existing"}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// withRaw puts raw JSON at lead.custom.x of an otherwise ordinary request.
func withRaw(key string, n int, raw []byte) []byte {
	lead := leadFields("hostile", n, company("hostile", n))
	lead["id"] = "lead-" + key
	lead["custom"] = map[string]any{"x": "RAW"}
	b := mustJSON(hostileRequest(key, lead))
	return bytes.Replace(b, []byte(`"RAW"`), raw, 1)
}

func nested(depth int) []byte {
	return append(bytes.Repeat([]byte("["), depth), bytes.Repeat([]byte("]"), depth)...)
}

func bigArray(n int) []byte {
	var b bytes.Buffer
	b.Grow(2*n + 2)
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('0')
	}
	b.WriteByte(']')
	return b.Bytes()
}

func hostileCases() []hostileCase {
	var cs []hostileCase
	sized := func(name, key string, size int) hostileCase {
		lead := leadFields("hostile", len(cs), company("hostile", len(cs)))
		lead["id"] = "lead-" + key
		lead["description"] = "PAD"
		b := mustJSON(hostileRequest(key, lead))
		pad := strings.Repeat("x", size-len(b)+3)
		return hostileCase{name: name, key: key, body: bytes.Replace(b, []byte("PAD"), []byte(pad), 1)}
	}
	cs = append(cs, sized("2 MiB payload", "h-2mib", 2<<20))
	cs = append(cs, sized("300 KiB payload (over the 256 KiB limit)", "h-300kib", 300<<10))
	cs = append(cs, sized("256 KiB payload exactly", "h-256kib", 256<<10))
	cs = append(cs, hostileCase{name: "nesting depth 100,000 (arrays, 200 KB)", key: "h-deep-100k", body: withRaw("h-deep-100k", 3, nested(100000))})
	cs = append(cs, hostileCase{name: "nesting depth 9,000 (under Go's decoder limit)", key: "h-deep-9k", body: withRaw("h-deep-9k", 4, nested(9000))})
	cs = append(cs, hostileCase{name: "1,000,000-element array (2 MB)", key: "h-array-1m", body: withRaw("h-array-1m", 5, bigArray(1000000))})
	cs = append(cs, hostileCase{name: "400,000-element array (800 KB)", key: "h-array-400k", body: withRaw("h-array-400k", 6, bigArray(400000))})
	cs = append(cs, hostileCase{name: "100,000-element array (200 KB)", key: "h-array-100k", body: withRaw("h-array-100k", 7, bigArray(100000))})
	{
		lead := leadFields("hostile", 8, company("hostile", 8))
		lead["id"] = "lead-h-utf8"
		lead["first_name"] = "INVALID"
		b := mustJSON(hostileRequest("h-utf8", lead))
		cs = append(cs, hostileCase{name: "invalid UTF-8 in a string", key: "h-utf8",
			body: bytes.Replace(b, []byte("INVALID"), []byte("Ad\xff\xfea \xc3\x28"), 1)})
	}
	{
		lead := leadFields("hostile", 9, company("hostile", 9))
		lead["id"] = "lead-h-nul"
		lead["last_name"] = "Love\x00lace"
		cs = append(cs, hostileCase{name: "NUL (\\u0000) in a string", key: "h-nul", body: mustJSON(hostileRequest("h-nul", lead))})
	}
	{
		lead := leadFields("hostile", 10, company("hostile", 10))
		lead["id"] = "lead-h-surrogate"
		b := mustJSON(hostileRequest("h-surrogate", lead))
		b = bytes.Replace(b, []byte(`"Order 10"`), []byte(`"Order \ud800 \udfff"`), 1)
		cs = append(cs, hostileCase{name: "lone UTF-16 surrogate escapes", key: "h-surrogate", body: b})
	}
	{
		lead := leadFields("hostile", 11, company("hostile", 11))
		lead["id"] = "lead-h-bignum"
		b := mustJSON(hostileRequest("h-bignum", lead))
		b = bytes.Replace(b, []byte(`"budget_amount":1011`), []byte(`"budget_amount":1e400`), 1)
		cs = append(cs, hostileCase{name: "number 1e400", key: "h-bignum", body: b})
	}
	cs = append(cs, hostileCase{name: "duplicate JSON keys (org_id twice)", key: "h-dupkeys",
		body: []byte(`{"idempotency_key":"h-dupkeys","org_id":"faults-hostile","org_id":"faults-other","actor":{"id":"u","roles":["sales_agent"]},"lead":{"id":"lead-h-dupkeys","company":"Dup Keys Co","last_name":"K"}}`)})
	cs = append(cs, hostileCase{name: "not an object (JSON array)", body: []byte(`[1,2,3]`)})
	cs = append(cs, hostileCase{name: "empty body", body: []byte{}})
	cs = append(cs, hostileCase{name: "truncated JSON", body: []byte(`{"idempotency_key":"h-trunc","org_id":"faults-hostile","lead":{"id":"x"`)})
	{
		const meta = `'; DROP TABLE leads; -- " \ $1 %s %_ * > . lead.qualified.> {{.}} <b>` + "\t\n"
		key := `h-meta'; DELETE FROM outbox; -- *.> "\ $1`
		lead := map[string]any{
			"id":             `lead.*.> '; DROP TABLE accounts; -- "\`,
			"topic":          meta + "topic",
			"first_name":     canaryWord + meta + "first",
			"last_name":      meta + "last",
			"company":        meta + "Company",
			"job_title":      meta + "title",
			"email":          `o'hara+*$1%_{x}|~` + canaryWord + `@example.com`,
			"business_phone": canaryPhone + ` '; -- *> 1`,
			"mobile_phone":   canaryPhone + ` ". \ 2`,
			"website":        `https://www.meta.example/'; DROP TABLE accounts;--?q=*>&x=$1`,
			"street1":        meta + "street",
			"city":           meta + "city",
			"country":        meta + "country",
			"description":    meta + "description",
			"source":         meta + "source",
			"owner_id":       `owner'; --*>`,
			"custom":         map[string]any{"sql": meta, "subject": "lead.qualified.>"},
			"notes":          []any{map[string]any{"id": `n'; --*>`, "title": meta, "body": meta}},
		}
		req := hostileRequest(key, lead)
		req["org_id"] = hostileOrg
		cs = append(cs, hostileCase{name: "SQL and subject metacharacters in every string", key: key, body: mustJSON(req), verbatim: lead})
	}
	return cs
}

// 15: hostile messages, one at a time: each must be refused at publish,
// rejected, or stored verbatim, without crashing the worker.
func hostileInput(r *run) error {
	ctx := r.ctx
	if err := r.setup(ctx, 1, nil); err != nil {
		return err
	}
	cases := hostileCases()
	var reqs []*Request
	bad := 0
	for _, c := range cases {
		before := r.obs.uncorrelatedCount()
		msgID := c.key
		if msgID == "" {
			msgID = "h-anon-" + randomHex(4)
		}
		err := r.pub.publishOne(ctx, pubItem{subject: subjectQualify, data: c.body, msgID: msgID})
		if errors.Is(err, nats.ErrMaxPayload) {
			r.note("%s (%d B): refused at publish (%v)", c.name, len(c.body), err)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: publish: %w", c.name, err)
		}
		r.s.canaries++
		outcome := ""
		deadline := time.Now().Add(60 * time.Second)
		for outcome == "" && time.Now().Before(deadline) {
			if c.key != "" {
				if evs := r.obs.terminalOf(c.key); len(evs) > 0 {
					outcome = label(evs[0])
					reqs = append(reqs, &Request{Key: c.key, Expect: Expect{}})
					break
				}
			}
			if r.obs.uncorrelatedCount() > before {
				outcome = label(r.obs.lastUncorrelated()) + " (no correlationid: unreadable)"
				break
			}
			r.obs.mu.Lock()
			dead := r.obs.deadByKey[c.key] + r.obs.deadByKey[msgID]
			r.obs.mu.Unlock()
			if dead > 0 {
				outcome = "DEAD-LETTERED"
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if outcome == "" {
			outcome = "NO OUTCOME within 60 s"
		}
		if strings.HasPrefix(outcome, "DEAD") || strings.HasPrefix(outcome, "NO OUTCOME") {
			bad++
		}
		if c.verbatim != nil && strings.HasPrefix(outcome, "lead.qualified") {
			if diff := r.verbatimDiff(ctx, c.verbatim); diff != "" {
				bad++
				outcome += "; NOT stored verbatim: " + diff
			} else {
				outcome += ", stored verbatim"
			}
		}
		r.note("%s (%d B): %s", c.name, len(c.body), outcome)
	}
	r.row.Faults = fmt.Sprintf("%d hostile messages, one at a time, 1 process", len(cases))
	_, ls, err := r.finish(ctx, reqs, checkOptions{})
	if err != nil {
		return err
	}
	r.row.Requests = len(cases)
	var peak int64
	for _, p := range r.procs {
		peak = max(peak, p.Proc.PeakRSS())
	}
	r.note("peak RSS of the worker (VmHWM) %.1f MiB; slowest handling %.1f ms (%s)", float64(peak)/1024, ls.SlowestMS, ls.SlowestKey)
	if bad > 0 {
		r.row.Result = "FAIL"
	}
	return nil
}

func label(e *Event) string {
	if e == nil {
		return "?"
	}
	if e.Code != "" {
		return e.Type + "/" + e.Code
	}
	return e.Type
}

// verbatimDiff compares a stored lead with the lead sent.
func (r *run) verbatimDiff(ctx context.Context, lead map[string]any) string {
	cols := []string{"topic", "first_name", "last_name", "company", "job_title", "email", "business_phone", "mobile_phone",
		"website", "street1", "city", "country", "description", "source", "owner_id"}
	vals := make([]*string, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	err := r.pool.QueryRow(ctx, `SELECT `+strings.Join(cols, ", ")+` FROM leads WHERE org_id = $1 AND id = $2`,
		hostileOrg, lead["id"]).Scan(ptrs...)
	if err != nil {
		return "lead row: " + err.Error()
	}
	var diffs []string
	for i, c := range cols {
		want, _ := lead[c].(string)
		if vals[i] == nil || *vals[i] != want {
			diffs = append(diffs, c)
		}
	}
	var name string
	if err := r.pool.QueryRow(ctx, `SELECT name FROM accounts WHERE org_id = $1 AND lead_id = $2`, hostileOrg, lead["id"]).Scan(&name); err != nil || name != lead["company"] {
		diffs = append(diffs, "account.name")
	}
	return strings.Join(diffs, ", ")
}

// 16: the PII canaries every generated lead carries must appear in no log
// file of the run: leadflow's, nats-server's, PostgreSQL's. This scenario
// adds requests whose processing shows lead values in rejections (invalid
// email, duplicates found), and a probe: a database error that quotes a
// lead value.
func piiCanaries(r *run) error {
	ctx := r.ctx
	if err := r.setup(ctx, 1, map[string]string{"LEADFLOW_MAX_DELIVER": "2", "LEADFLOW_BACKOFF_MIN": "100ms", "LEADFLOW_BACKOFF_MAX": "200ms"}); err != nil {
		return err
	}
	const org = "faults-pii"
	reqs := standardRequests(org, "pii", 100, nil)
	if err := r.drive(ctx, reqs, 0, nil); err != nil {
		return err
	}
	var more []*Request
	for i := range 20 {
		key := fmt.Sprintf("k-pii-bad-%d", i)
		lead := leadFields("piibad", i, company("piibad", i))
		lead["id"] = fmt.Sprintf("pii-bad-%d", i)
		lead["email"] = fmt.Sprintf("%s-not-an-email-%d@@example", canaryWord, i)
		more = append(more, &Request{Key: key, Org: org, Lead: lead["id"].(string), Subject: subjectQualify,
			Body: qualifyBody(org, key, lead, nil), Expect: expectRejected("invalid_request"), canary: true})
	}
	for i := range 20 {
		key := fmt.Sprintf("k-pii-dup-%d", i)
		lead := leadFields("pii", i+1, fmt.Sprintf("pii Company %d", i+1))
		lead["id"] = fmt.Sprintf("pii-dup-%d", i)
		more = append(more, &Request{Key: key, Org: org, Lead: lead["id"].(string), Subject: subjectQualify,
			Body: qualifyBody(org, key, lead, map[string]any{"on_duplicate": "reject"}), Expect: expectRejected("duplicates_found"), canary: true})
	}
	if err := r.drive(ctx, more, 0, nil); err != nil {
		return err
	}
	all := append(reqs, more...)
	// The probe: an error raised by the database that quotes the lead's
	// email, as a check constraint, a cast or a customer's trigger would.
	_, err := r.pool.Exec(ctx, `
		CREATE FUNCTION faults_quote() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.id LIKE 'pii-probe-%' THEN RAISE EXCEPTION 'faults: refusing lead with email %', NEW.email; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER faults_quote BEFORE INSERT ON leads FOR EACH ROW EXECUTE FUNCTION faults_quote();`)
	if err != nil {
		return err
	}
	var probe []*Request
	for i := range 2 {
		key := fmt.Sprintf("k-pii-probe-%d", i)
		lead := leadFields("piiprobe", i, company("piiprobe", i))
		lead["id"] = fmt.Sprintf("pii-probe-%d", i)
		lead["email"] = fmt.Sprintf("%s%d@example.com", canaryProbe, i)
		probe = append(probe, &Request{Key: key, Org: org, Lead: lead["id"].(string), Subject: subjectQualify,
			Body: qualifyBody(org, key, lead, nil), Expect: expectDead})
	}
	if err := r.drive(ctx, probe, 0, nil); err != nil {
		return err
	}
	if _, _, err := r.finish(ctx, append(all, probe...), checkOptions{}); err != nil {
		return err
	}
	// Stop everything, so that every log is complete, then grep the whole run.
	r.close()
	r.procs, r.nats, r.obs, r.nc, r.pool, r.dropDB = nil, nil, nil, nil, nil, nil
	files, hits, err := grepCanaries(r.s.work)
	if err != nil {
		return err
	}
	organic, probed := 0, 0
	var where []string
	for _, h := range hits {
		probed += h.Probe
		organic += h.Count - h.Probe
		where = append(where, fmt.Sprintf("%s ×%d: …%s…", strings.TrimPrefix(h.File, r.s.work+"/"), h.Count,
			strings.ReplaceAll(strings.TrimSpace(h.Example), "\n", " ")))
	}
	r.row.Requests = r.s.canaries
	r.row.Faults = fmt.Sprintf("grep of %d log files for %s", files, strings.Join(canaryPatterns, ", "))
	r.note("%d canary occurrences from ordinary processing (accepted, invalid_request, duplicates_found)", organic)
	r.note("probe, a database error quoting the lead's email: %d occurrences", probed)
	if len(where) > 0 {
		r.note("found in: %s", strings.Join(where, " | "))
	}
	if organic > 0 || probed > 0 {
		r.row.Result = "FAIL"
	}
	r.s.ranPII = true
	return nil
}
