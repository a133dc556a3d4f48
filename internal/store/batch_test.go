package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/leadflow/leadflow/internal/conversion"
	"github.com/leadflow/leadflow/internal/store"
	"github.com/leadflow/leadflow/internal/testenv"
	"github.com/stretchr/testify/require"
)

// openStore opens a store on a fresh database of its own.
func openStore(t testing.TB) *store.Store { return openStoreConns(t, 4) }

// openStoreConns is openStore with at most conns connections.
func openStoreConns(t testing.TB, conns int32) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), testenv.Database(t), conns)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return st
}

// countOf is the count that sql, a SELECT count(*), returns.
func countOf(t testing.TB, st *store.Store, sql string) int {
	t.Helper()
	var n int
	require.NoError(t, st.Pool().QueryRow(context.Background(), sql).Scan(&n))
	return n
}

// poisonLeads has a trigger refuse every lead whose id starts with
// "poison", as a request's data fault.
func poisonLeads(t testing.TB, st *store.Store) {
	t.Helper()
	_, err := st.Pool().Exec(context.Background(), `
		CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.id LIKE 'poison%' THEN RAISE EXCEPTION 'poisoned lead'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER poison BEFORE INSERT ON leads FOR EACH ROW EXECUTE FUNCTION poison();`)
	require.NoError(t, err)
}

// qualify parses a valid qualify request of org by a sales agent; an empty
// onDuplicate leaves the field out.
func qualify(t testing.TB, org, key, onDuplicate string, lead map[string]any) *conversion.Parsed {
	t.Helper()
	req := map[string]any{"idempotency_key": key, "org_id": org,
		"actor": map[string]any{"id": "u", "roles": []string{"sales_agent"}}, "lead": lead}
	if onDuplicate != "" {
		req["on_duplicate"] = onDuplicate
	}
	body, err := json.Marshal(req)
	require.NoError(t, err)
	p := conversion.Parse(conversion.SubjectQualify, body)
	require.Nil(t, p.Invalid)
	return p
}

func parsed(t testing.TB, key, lead, company string) *conversion.Parsed {
	t.Helper()
	return qualify(t, "org-b", key, conversion.OnDuplicateUseExisting, map[string]any{"id": lead, "company": company, "last_name": "L" + key})
}

// TestProcessBatch: one transaction decides each request as Process would;
// requests that would race another of the batch are deferred untouched.
func TestProcessBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)

	batch := []*conversion.Parsed{
		parsed(t, "k1", "lead-1", "Acme"),
		parsed(t, "k2", "lead-1", "Acme"),    // same lead as k1
		parsed(t, "k1", "lead-9", "Other"),   // same key as k1
		parsed(t, "k3", "lead-3", "ACME "),   // same new company as k1
		parsed(t, "k4", "lead-4", "Initech"), // independent
		conversion.Parse(conversion.SubjectQualify, []byte(`{"idempotency_key": "k5", "org_id": "org-b"}`)),
		conversion.Parse(conversion.SubjectQualify, []byte(`not json`)),
	}
	outs, err := st.ProcessBatch(ctx, batch)
	require.NoError(t, err)
	deferred := []bool{false, true, true, true, false, false, false}
	for i, o := range outs {
		require.Equal(t, deferred[i], o.Deferred, "request %d", i)
	}
	require.Equal(t, "lead.qualified", outs[0].Event)
	require.Equal(t, "lead.qualified", outs[4].Event)
	require.Equal(t, "invalid_request", outs[5].Code)
	require.Equal(t, "invalid_request", outs[6].Code)

	// The deferred ones, each in turn, see what the batch committed.
	o, err := st.Process(ctx, batch[1])
	require.NoError(t, err)
	require.Equal(t, "lead_already_qualified", o.Code)
	o, err = st.Process(ctx, batch[2])
	require.NoError(t, err)
	require.Equal(t, "idempotency_key_reused", o.Code)
	o, err = st.Process(ctx, batch[3])
	require.NoError(t, err)
	require.Equal(t, "lead.qualified", o.Event)

	var accounts int
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM accounts WHERE org_id = 'org-b'`).Scan(&accounts))
	require.Equal(t, 2, accounts, "Acme once, Initech once")
	// A replay of the batch's first request changes nothing.
	o, err = st.Process(ctx, batch[0])
	require.NoError(t, err)
	require.True(t, o.Replayed)
}

// TestOneKeyAtATime: two transactions under one idempotency key at once, for
// different leads, so that only the key's lock orders them: one converts and
// records its outcome once; the other, which waited for it, is told the key
// was used for another request. Neither fails.
func TestOneKeyAtATime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	const rounds = 20
	for i := range rounds {
		key := fmt.Sprintf("same-%d", i)
		a, b := parsed(t, key, key+"-a", "Alpha "+key), parsed(t, key, key+"-b", "Beta "+key)
		outs := make([]store.Outcome, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for j, p := range []*conversion.Parsed{a, b} {
			wg.Go(func() { outs[j], errs[j] = st.Process(ctx, p) })
		}
		wg.Wait()
		require.NoError(t, errs[0], "round %d", i)
		require.NoError(t, errs[1], "round %d", i)
		events := []string{outs[0].Event, outs[1].Event}
		require.ElementsMatch(t, []string{"lead.qualified", "lead.qualify.rejected"}, events, "round %d", i)
		require.Contains(t, []string{outs[0].Code, outs[1].Code}, "idempotency_key_reused")
	}
	require.Equal(t, rounds, countOf(t, st, `SELECT count(*) FROM leads`))
	require.Equal(t, rounds, countOf(t, st, `SELECT count(*) FROM idempotency_keys WHERE outcome = 'lead.qualified' AND event IS NOT NULL`))
}

// TestRecordWrittenMeanwhile: a transaction that holds no lock on the key
// (a replica of an earlier version, which inserts the record first) writes
// it while a request under that key is being decided: the request fails,
// writing nothing, and its next run replays the record's outcome.
func TestRecordWrittenMeanwhile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	p := parsed(t, "meanwhile", "lead-m", "Meanwhile")
	other, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	defer other.Rollback(ctx) //nolint:errcheck
	_, err = other.Exec(ctx, `INSERT INTO idempotency_keys (org_id, key, subject, request_hash, outcome, event_subject, event, event_id)
		VALUES ('org-b', 'meanwhile', $1, $2, 'lead.qualified', 'lead.qualified', '{"type":"lead.qualified"}', gen_random_uuid())`, p.Subject, p.Hash)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { _, err := st.Process(ctx, p); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("the request did not wait for the record's transaction: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	require.NoError(t, other.Commit(ctx))
	require.ErrorContains(t, <-done, "idempotency_keys_pkey")
	require.Zero(t, countOf(t, st, `SELECT count(*) FROM leads`))
	o, err := st.Process(ctx, p)
	require.NoError(t, err)
	require.True(t, o.Replayed)
	require.Equal(t, "lead.qualified", o.Event)
}

// TestProcessBatchIsolatesAFault: a request whose write fails (a trigger
// here) comes back with Err and leaves nothing behind, its idempotency
// record included; the rest of its batch commits, and the bad request, once
// fixed, converts on its own.
func TestProcessBatchIsolatesAFault(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	poisonLeads(t, st)
	bad := parsed(t, "b", "poison", "Bad")
	outs, err := st.ProcessBatch(ctx, []*conversion.Parsed{parsed(t, "a", "fine", "Fine"), bad, parsed(t, "c", "fine-too", "Fine Too")})
	require.NoError(t, err)
	require.Equal(t, "lead.qualified", outs[0].Event)
	require.NoError(t, outs[0].Err)
	require.ErrorContains(t, outs[1].Err, "poisoned lead")
	require.Empty(t, outs[1].Event)
	require.Equal(t, "lead.qualified", outs[2].Event)
	count := func(sql string) int { return countOf(t, st, sql) }
	require.Equal(t, 2, count(`SELECT count(*) FROM leads`))
	require.Equal(t, 2, count(`SELECT count(*) FROM accounts`))
	require.Zero(t, count(`SELECT count(*) FROM idempotency_keys WHERE key = 'b'`), "nothing is recorded under the bad request's key")
	require.Zero(t, count(`SELECT count(*) FROM leads WHERE id = 'poison'`))

	_, err = st.Pool().Exec(ctx, `DROP TRIGGER poison ON leads`)
	require.NoError(t, err)
	o, err := st.Process(ctx, bad)
	require.NoError(t, err)
	require.Equal(t, "lead.qualified", o.Event)
	require.False(t, o.Replayed)
}

// TestProcessBatchSinglesOutFaults: halving singles out two requests of a
// batch that fail alone, and tells apart two that fail only together (a
// unique index that only their pair breaks): the first commits, the second
// fails; every other request of the batch commits.
func TestProcessBatchSinglesOutFaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	poisonLeads(t, st)
	_, err := st.Pool().Exec(ctx, `CREATE UNIQUE INDEX one_twin ON contacts (last_name) WHERE last_name = 'Twin'`)
	require.NoError(t, err)
	twin := func(key, lead, company string) *conversion.Parsed {
		return qualify(t, "org-b", key, conversion.OnDuplicateUseExisting, map[string]any{"id": lead, "company": company, "last_name": "Twin"})
	}
	ps := []*conversion.Parsed{
		parsed(t, "a", "fine-a", "Fine A"), parsed(t, "b", "poison-b", "Bad B"), parsed(t, "c", "fine-c", "Fine C"),
		parsed(t, "d", "poison-d", "Bad D"), parsed(t, "e", "fine-e", "Fine E"),
	}
	outs, err := st.ProcessBatch(ctx, ps)
	require.NoError(t, err)
	for i, bad := range []bool{false, true, false, true, false} {
		if bad {
			require.ErrorContains(t, outs[i].Err, "poisoned lead", "request %d", i)
			continue
		}
		require.NoError(t, outs[i].Err, "request %d", i)
		require.Equal(t, "lead.qualified", outs[i].Event, "request %d", i)
	}
	count := func(sql string) int { return countOf(t, st, sql) }
	require.Equal(t, 3, count(`SELECT count(*) FROM leads`))
	require.Equal(t, 3, count(`SELECT count(*) FROM outbox_events WHERE subject = 'lead.qualified'`))
	require.Zero(t, count(`SELECT count(*) FROM idempotency_keys WHERE key IN ('b', 'd')`), "nothing is recorded under the bad requests' keys")

	outs, err = st.ProcessBatch(ctx, []*conversion.Parsed{
		parsed(t, "f", "fine-f", "Fine F"), twin("g", "twin-g", "Twin G"), parsed(t, "h", "fine-h", "Fine H"), twin("i", "twin-i", "Twin I"),
	})
	require.NoError(t, err)
	require.NoError(t, outs[0].Err)
	require.NoError(t, outs[1].Err)
	require.NoError(t, outs[2].Err)
	require.ErrorContains(t, outs[3].Err, "one_twin")
	require.Equal(t, 1, count(`SELECT count(*) FROM contacts WHERE last_name = 'Twin'`))
	require.Equal(t, 6, count(`SELECT count(*) FROM leads`))
	require.Zero(t, count(`SELECT count(*) FROM idempotency_keys WHERE key = 'i'`))
}

// TestProcessBatchLastAtFault: the last two requests of a batch at fault,
// the first fault on the connection: the batch's last try fails, and what
// follows runs after its rollback.
func TestProcessBatchLastAtFault(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStoreConns(t, 1)
	poisonLeads(t, st)
	outs, err := st.ProcessBatch(ctx, []*conversion.Parsed{parsed(t, "x", "fine-x", "Fine X"),
		parsed(t, "y", "poison-y", "Bad Y"), parsed(t, "z", "poison-z", "Bad Z")})
	require.NoError(t, err)
	require.Equal(t, "lead.qualified", outs[0].Event)
	require.ErrorContains(t, outs[1].Err, "poisoned lead")
	require.ErrorContains(t, outs[2].Err, "poisoned lead")
	var leads, keys int
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM leads), (SELECT count(*) FROM idempotency_keys)`).Scan(&leads, &keys))
	require.Equal(t, 1, leads)
	require.Equal(t, 1, keys, "nothing is recorded under the bad requests' keys")
}

// TestProcessBatchFaultAfterItsLead: a request whose account a trigger
// refuses has already written its lead when the fault shows: the batch
// writes again without it, and one whose lead is refused in the same batch
// is singled out too. Nothing of either stays; the others commit.
func TestProcessBatchFaultAfterItsLead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	poisonLeads(t, st)
	_, err := st.Pool().Exec(ctx, `
		CREATE FUNCTION bad_account() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.name = 'Bad Account' THEN RAISE EXCEPTION 'refused account'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER bad_account BEFORE INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION bad_account();`)
	require.NoError(t, err)
	outs, err := st.ProcessBatch(ctx, []*conversion.Parsed{
		parsed(t, "a", "fine-a", "Fine A"), parsed(t, "b", "lead-b", "Bad Account"), parsed(t, "c", "fine-c", "Fine C"),
		parsed(t, "d", "poison-d", "Bad D"), parsed(t, "e", "fine-e", "Fine E"),
	})
	require.NoError(t, err)
	require.ErrorContains(t, outs[1].Err, "refused account")
	require.ErrorContains(t, outs[3].Err, "poisoned lead")
	for _, i := range []int{0, 2, 4} {
		require.NoError(t, outs[i].Err, "request %d", i)
		require.Equal(t, "lead.qualified", outs[i].Event, "request %d", i)
	}
	count := func(sql string) int { return countOf(t, st, sql) }
	require.Equal(t, 3, count(`SELECT count(*) FROM leads`))
	require.Zero(t, count(`SELECT count(*) FROM leads WHERE id IN ('lead-b', 'poison-d')`))
	require.Equal(t, 3, count(`SELECT count(*) FROM accounts`))
	require.Equal(t, 3, count(`SELECT count(*) FROM outbox_events WHERE subject = 'lead.qualified'`))
	require.Equal(t, 3, count(`SELECT count(*) FROM idempotency_keys`), "nothing is recorded under the bad requests' keys")
}

// TestFaultKeepsStatementsPrepared: a request's fault does not make the
// write statements prepared (and planned) again: on the store's one
// connection, a second batch with a fault finds every statement of the
// first as it was prepared.
func TestFaultKeepsStatementsPrepared(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStoreConns(t, 1)
	poisonLeads(t, st)
	prepared := func() map[string]time.Time {
		rows, err := st.Pool().Query(ctx, `SELECT name, prepare_time FROM pg_prepared_statements`)
		require.NoError(t, err)
		out := map[string]time.Time{}
		var name string
		var at time.Time
		_, err = pgx.ForEachRow(rows, []any{&name, &at}, func() error {
			out[name] = at
			return nil
		})
		require.NoError(t, err)
		return out
	}
	batch := func(n int) []*conversion.Parsed {
		var ps []*conversion.Parsed
		for i := range 4 {
			lead := fmt.Sprintf("lead-%d-%d", n, i)
			if i == 2 {
				lead = "poison-" + lead
			}
			ps = append(ps, parsed(t, lead, lead, "Company "+lead))
		}
		return ps
	}
	for n := range 2 {
		outs, err := st.ProcessBatch(ctx, batch(n))
		require.NoError(t, err)
		require.Error(t, outs[2].Err)
	}
	before := prepared()
	require.NotEmpty(t, before)
	outs, err := st.ProcessBatch(ctx, batch(2))
	require.NoError(t, err)
	require.Error(t, outs[2].Err)
	after := prepared()
	for name, at := range before {
		require.Contains(t, after, name)
		require.True(t, at.Equal(after[name]), "statement %s prepared again", name)
	}
}

// TestPreview: a preview decides like Process and writes nothing.
func TestPreview(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	count := func() int {
		var n int
		require.NoError(t, st.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM leads) + (SELECT count(*) FROM accounts) + (SELECT count(*) FROM idempotency_keys) + (SELECT count(*) FROM outbox)`).Scan(&n))
		return n
	}
	pv, err := st.Preview(ctx, parsed(t, "p1", "lead-p", "Acme"))
	require.NoError(t, err)
	require.Nil(t, pv.Rejection)
	require.Equal(t, "lead.qualified", pv.Plan.Events[len(pv.Plan.Events)-1].Type)
	require.Zero(t, count())

	_, err = st.Process(ctx, parsed(t, "p1", "lead-p", "Acme"))
	require.NoError(t, err)
	before := count()
	pv, err = st.Preview(ctx, parsed(t, "p2", "lead-q", "ACME"))
	require.NoError(t, err)
	require.Nil(t, pv.Rejection, "use_existing links the match")
	require.Len(t, pv.Matches, 1)
	require.Equal(t, "existing", pv.Plan.Conversion.Account.Outcome)
	pv, err = st.Preview(ctx, parsed(t, "p1", "lead-p", "Acme"))
	require.NoError(t, err)
	require.NotNil(t, pv.Replay)
	pv, err = st.Preview(ctx, parsed(t, "p1", "lead-other", "Acme"))
	require.NoError(t, err)
	require.Equal(t, "idempotency_key_reused", pv.Rejection.Code)
	require.Equal(t, before, count())
}

// BenchmarkProcessBatch: a batch of 32 conversions in one transaction, and
// the same with one request whose lead a trigger refuses, singled out under
// savepoints while the others commit.
func BenchmarkProcessBatch(b *testing.B) {
	for _, poisoned := range []bool{false, true} {
		b.Run(map[bool]string{false: "clean", true: "one poisoned"}[poisoned], func(b *testing.B) {
			ctx := context.Background()
			st := openStore(b)
			poisonLeads(b, st)
			n := 0
			for b.Loop() {
				b.StopTimer()
				ps := make([]*conversion.Parsed, 32)
				for i := range ps {
					n++
					lead := fmt.Sprintf("lead-%d", n)
					if poisoned && i == 13 {
						lead = fmt.Sprintf("poison-%d", n)
					}
					ps[i] = parsed(b, fmt.Sprintf("k%d", n), lead, fmt.Sprintf("Company %d", n))
				}
				b.StartTimer()
				outs, err := st.ProcessBatch(ctx, ps)
				require.NoError(b, err)
				require.Equal(b, poisoned, outs[13].Err != nil)
			}
		})
	}
}
