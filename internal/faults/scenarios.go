package faults

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

var scenarios = []*Scenario{
	{ID: 1, Name: "baseline", Title: "baseline, 2 processes", Full: 20000, run: baseline},
	{ID: 2, Name: "kill9", Title: "kill -9 of a worker process ×10, 2 processes", Full: 20000, run: killWorkers(2)},
	{ID: 3, Name: "commit-ack-crash", Title: "crash between commit and ack ×100", Full: 20000, run: commitAckCrash},
	{ID: 4, Name: "ack-wait-overrun", Title: "ack-wait overrun: 1% slower than ACK_WAIT, 4 workers", Full: 20000, run: ackWaitOverrun},
	{ID: 5, Name: "duplicates", Title: "every request published 3×, 1% again after the duplicate window", Full: 20000, run: duplicates},
	{ID: 6, Name: "broker-restart", Title: "nats-server restarted ×5 on the same store", Full: 20000, run: brokerRestart},
	{ID: 7, Name: "cluster-node-loss", Title: "3-node NATS cluster, R3: one node killed and restarted, then another", Full: 20000, run: clusterNodeLoss},
	{ID: 8, Name: "postgres-crash", Title: "PostgreSQL stop -m immediate ×5 + pg_terminate_backend ×5", Full: 20000, run: postgresCrash},
	{ID: 9, Name: "network", Title: "network faults through toxiproxy: latency above ACK_WAIT, resets, a 30 s partition", Full: 20000, run: network},
	{ID: 10, Name: "hot-lead", Title: "hot lead: 50 concurrent requests for one lead, 50 for one new company", run: hotLead},
	{ID: 11, Name: "poison", Title: "poison: 1% fail forever", Full: 20000, run: poison},
	{ID: 12, Name: "relay-kill", Title: "kill -9 of the relay leader ×10, 2 processes", Full: 20000, run: relayKill},
	{ID: 13, Name: "kill9-3procs", Title: "kill -9 of a worker process ×10, 3 processes", Full: 20000, run: killWorkers(3)},
	{ID: 14, Name: "cross-tenant", Title: "cross-tenant: requests citing another org's records", Full: 1000, run: crossTenant},
	{ID: 15, Name: "hostile-input", Title: "hostile input", run: hostileInput},
	{ID: 16, Name: "pii", Title: "PII canaries in every log file", run: piiCanaries},
}

// 1: the reference run; its throughput is what scenario 11 compares with.
func baseline(r *run) error {
	ctx := r.ctx
	if err := r.setup(ctx, 2, nil); err != nil {
		return err
	}
	reqs := standardRequests("faults-base", "base", r.n, nil)
	if err := r.drive(ctx, reqs, 0, nil); err != nil {
		return err
	}
	r.s.baseline, _ = r.throughput(keysOf(reqs))
	r.row.Faults = "none"
	_, _, err := r.finish(ctx, reqs, checkOptions{})
	return err
}

// 2 and 13: kill -9 a random worker process ten times, restarting it each time.
func killWorkers(procs int) func(*run) error {
	return func(r *run) error {
		ctx := r.ctx
		if err := r.setup(ctx, procs, nil); err != nil {
			return err
		}
		tag := fmt.Sprintf("kill%d", procs)
		reqs := standardRequests("faults-"+tag, tag, r.n, nil)
		const kills = 10
		err := r.drive(ctx, reqs, kills, func(i int) error {
			p := r.procs[r.rng.IntN(len(r.procs))]
			r.fault("kill -9 %s", p.Name)
			p.Kill9()
			time.Sleep(time.Duration(r.rng.IntN(1000)) * time.Millisecond)
			return p.Restart()
		})
		if err != nil {
			return err
		}
		r.row.Faults = fmt.Sprintf("%d× kill -9 (random process, restarted)", len(r.faults))
		_, _, err = r.finish(ctx, reqs, checkOptions{})
		return err
	}
}

// 3: a leadflow process dies after its transaction committed and before it
// acknowledged, through the fault point of a binary built with the faults
// tag: LEADFLOW_FAULT_CRASH_AFTER_COMMIT=crash- has a process that committed
// the outcome of a request for a crash- lead (not a replay of it) kill
// itself (SIGKILL) before its ack. The suite restarts each process that died. The request was
// never acknowledged: its redelivery must replay the recorded outcome.
func commitAckCrash(r *run) error {
	ctx := r.ctx
	if err := r.setup(ctx, 2, map[string]string{"LEADFLOW_FAULT_CRASH_AFTER_COMMIT": "crash-"}); err != nil {
		return err
	}
	// Two crash- leads whose outcomes commit in one transaction make one
	// crash, and the requests a crash cut short come back together: four
	// times the leads of the crashes wanted, and the fault point is taken
	// from a process's environment at its restart once there were enough.
	crashes := max(r.n/200, 1) // 100 at full size
	leads := 4 * crashes
	every := max(r.n/leads, 1)
	crashKeys := map[string]bool{}
	reqs := standardRequests("faults-crash", "crash", r.n, func(i int) string {
		if i%every == every/2 && len(crashKeys) < leads {
			crashKeys[fmt.Sprintf("k-crash-%d", i)] = true
			return fmt.Sprintf("crash-%d", i)
		}
		return fmt.Sprintf("fine-%d", i)
	})
	pubErr := r.publishAsync(ctx, itemsOf(reqs))
	held := 0
	// restartDead restarts the processes that killed themselves; one may
	// do so again while it starts, before it reports ready.
	restartDead := func(int) error {
		for _, p := range r.procs {
			for tries := 0; !p.Proc.Running(); tries++ {
				held++
				r.fault("%s killed itself after a COMMIT, before its ack", p.Name)
				if held >= crashes {
					p.Proc.Env = slices.DeleteFunc(p.Proc.Env, func(kv string) bool {
						return strings.HasPrefix(kv, "LEADFLOW_FAULT_CRASH_AFTER_COMMIT=")
					})
				}
				err := p.Restart()
				if err == nil {
					break
				}
				if p.Proc.Running() || tries == 2*crashes {
					return err
				}
			}
		}
		return nil
	}
	err := r.await(ctx, keysOf(reqs), restartDead)
	if perr := <-pubErr; perr != nil {
		return perr
	}
	// One may have died after the last outcome arrived.
	if rerr := restartDead(0); rerr != nil {
		return rerr
	}
	if err != nil {
		r.note("%v", err)
		r.row.Result = "FAIL"
	}
	r.row.Faults = fmt.Sprintf("%d× SIGKILL after COMMIT, before ack (fault point)", held)
	switch {
	case held == 0:
		r.note("no crash: leadflow must be built with -tags faults")
		r.row.Result = "FAIL"
	case held < crashes:
		r.note("only %d crashes of %d", held, crashes)
		r.row.Result = "FAIL"
	}
	_, _, err = r.finish(ctx, reqs, checkOptions{})
	if err != nil {
		return err
	}
	// Each held request was committed by the killed process; its outcome must
	// come from a replay on redelivery.
	replayed, err := replayedKeys(r.leadflowLogs())
	if err != nil {
		return err
	}
	n := 0
	for k := range crashKeys {
		if replayed[k] {
			n++
		}
	}
	r.note("%d of %d crash- requests got their outcome by a replay on redelivery (committed by a process that then died)", n, len(crashKeys))
	return nil
}

// 4: 1% of the requests sleep in a trigger longer than ACK_WAIT on their first
// attempt (and half of it afterwards): JetStream redelivers them while the
// first delivery still runs.
func ackWaitOverrun(r *run) error {
	ctx := r.ctx
	const ackWait = 2 * time.Second
	if err := r.setup(ctx, 2, map[string]string{"LEADFLOW_WORKERS": "4", "LEADFLOW_ACK_WAIT": ackWait.String()}); err != nil {
		return err
	}
	var slow []int
	reqs := standardRequests("faults-slow", "slow", r.n, func(i int) string {
		if i%100 == 37 {
			slow = append(slow, i)
			return fmt.Sprintf("slow-%d", i)
		}
		return fmt.Sprintf("quick-%d", i)
	})
	var ddl strings.Builder
	for _, i := range slow {
		fmt.Fprintf(&ddl, "CREATE SEQUENCE faults_slow_%d;\n", i)
	}
	ddl.WriteString(fmt.Sprintf(`
		CREATE FUNCTION faults_slow() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.id LIKE 'slow-%%' THEN
				IF nextval(('faults_slow_' || substr(NEW.id, 6))::regclass) = 1 THEN
					PERFORM pg_sleep(%f);
				ELSE
					PERFORM pg_sleep(%f);
				END IF;
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER faults_slow BEFORE INSERT ON leads FOR EACH ROW EXECUTE FUNCTION faults_slow();`,
		1.5*ackWait.Seconds(), 0.5*ackWait.Seconds()))
	if _, err := r.pool.Exec(ctx, ddl.String()); err != nil {
		return err
	}
	if err := r.drive(ctx, reqs, 0, nil); err != nil {
		return err
	}
	r.row.Faults = fmt.Sprintf("%d slow requests (%.0f s on the first attempt, %.0f s after; ACK_WAIT %s)",
		len(slow), 1.5*ackWait.Seconds(), 0.5*ackWait.Seconds(), ackWait)
	_, ls, err := r.finish(ctx, reqs, checkOptions{})
	if err != nil {
		return err
	}
	r.note("slowest handling %.0f ms", ls.SlowestMS)
	return nil
}

// 5: each request three times under distinct Nats-Msg-Ids (JetStream keeps
// all three), back to back; after the duplicate window 1% once more under
// its first Nats-Msg-Id.
func duplicates(r *run) error {
	ctx := r.ctx
	const window = 5 * time.Second
	if err := r.setup(ctx, 2, map[string]string{"LEADFLOW_DUPLICATE_WINDOW": window.String(), "LEADFLOW_RELAY_MAX_BACKOFF": "2s"}); err != nil {
		return err
	}
	reqs := standardRequests("faults-dup", "dup", r.n, nil)
	for _, q := range reqs {
		q.MsgIDs = []string{q.Key, q.Key + "#2", q.Key + "#3"}
	}
	if err := r.drive(ctx, reqs, 0, nil); err != nil {
		return err
	}
	time.Sleep(window + time.Second)
	var again []*Request
	for i, q := range reqs {
		if i%100 == 0 {
			again = append(again, &Request{Key: q.Key, Org: q.Org, Lead: q.Lead, Subject: q.Subject, Body: q.Body})
		}
	}
	r.logf("%d requests re-sent after the duplicate window", len(again))
	if err := r.pub.publishAll(ctx, itemsOf(again)); err != nil {
		return err
	}
	r.row.Faults = fmt.Sprintf("%d copies within the window (3 per request), %d re-sent %s later", 3*len(reqs), len(again), window)
	v, _, err := r.finish(ctx, reqs, checkOptions{allowCopies: true})
	if err != nil {
		return err
	}
	// A re-sent request re-publishes its outcome under its recorded id; a
	// copy of anything else, or more copies than re-sent requests, is a
	// duplicate publication.
	r.obs.mu.Lock()
	bad := 0
	for id, n := range r.obs.copies {
		if n > 1 && !isTerminal(r.obs.events[id].Type) {
			bad += n - 1
		}
	}
	r.obs.mu.Unlock()
	if bad > 0 || v.Copies > len(again)*2 {
		r.row.Result = "FAIL"
		r.note("%d non-outcome events stored twice; %d copies for %d re-sent requests", bad, v.Copies, len(again))
	}
	return nil
}

// 6: the one nats-server is restarted five times on its store, alternately
// with SIGTERM and SIGKILL.
func brokerRestart(r *run) error {
	ctx := r.ctx
	if err := r.setup(ctx, 2, nil); err != nil {
		return err
	}
	reqs := standardRequests("faults-broker", "broker", r.n, nil)
	err := r.drive(ctx, reqs, 5, func(i int) error {
		kill := i%2 == 1
		how := "SIGTERM"
		if kill {
			how = "SIGKILL"
		}
		r.fault("nats-server %s and restart", how)
		return r.nats[0].Restart(kill, time.Duration(500+r.rng.IntN(1500))*time.Millisecond)
	})
	if err != nil {
		return err
	}
	r.row.Faults = fmt.Sprintf("%d× nats-server restart (SIGTERM/SIGKILL alternately, 0.5–2 s down)", len(r.faults))
	_, _, err = r.finish(ctx, reqs, checkOptions{})
	return err
}

// 7: R3 streams on a 3-node cluster; the leader of LEAD_REQUESTS is killed
// and restarted, then another node.
func clusterNodeLoss(r *run) error {
	ctx := r.ctx
	if err := r.startCluster(); err != nil {
		return err
	}
	if err := r.setup(ctx, 2, map[string]string{"LEADFLOW_STREAM_REPLICAS": "3"}); err != nil {
		return err
	}
	reqs := standardRequests("faults-cluster", "cluster", r.n, nil)
	var killed []string
	err := r.drive(ctx, reqs, 2, func(i int) error {
		victim := r.nats[r.rng.IntN(len(r.nats))]
		if si, err := r.js.Stream(ctx, "LEAD_REQUESTS"); err == nil && si.CachedInfo().Cluster != nil {
			for _, n := range r.nats {
				if n.Proc.Name == si.CachedInfo().Cluster.Leader {
					victim = n
				}
			}
		}
		if len(killed) > 0 && victim.Proc.Name == killed[0] {
			for _, n := range r.nats {
				if n.Proc.Name != killed[0] {
					victim = n
					break
				}
			}
		}
		killed = append(killed, victim.Proc.Name)
		r.fault("kill -9 %s", victim.Proc.Name)
		return victim.Restart(true, 3*time.Second)
	})
	if err != nil {
		return err
	}
	r.row.Faults = fmt.Sprintf("kill -9 and restart of %s (3 s down each)", strings.Join(killed, ", then "))
	_, _, err = r.finish(ctx, reqs, checkOptions{})
	return err
}

// 8: the private PostgreSQL crashes (stop -m immediate) five times, and
// five times leadflow's connections are terminated.
func postgresCrash(r *run) error {
	ctx := r.ctx
	if err := r.privatePG(ctx); err != nil {
		return err
	}
	if err := r.setup(ctx, 2, nil); err != nil {
		return err
	}
	reqs := standardRequests("faults-pg", "pg", r.n, nil)
	crashes, terminations := 0, 0
	err := r.drive(ctx, reqs, 10, func(i int) error {
		if i%2 == 0 {
			crashes++
			r.fault("pg_ctl stop -m immediate")
			if err := r.pg.Stop("immediate"); err != nil {
				return err
			}
			time.Sleep(time.Duration(1000+r.rng.IntN(2000)) * time.Millisecond)
			return r.pg.Start()
		}
		terminations++
		r.fault("pg_terminate_backend of leadflow's connections")
		var n int
		err := r.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE application_name LIKE 'lf%' AND pid <> pg_backend_pid()) t`).Scan(&n)
		if err != nil {
			return err
		}
		r.logf("terminated %d connections", n)
		return nil
	})
	if err != nil {
		return err
	}
	r.row.Faults = fmt.Sprintf("%d× stop -m immediate (1–3 s down), %d× pg_terminate_backend", crashes, terminations)
	_, _, err = r.finish(ctx, reqs, checkOptions{})
	return err
}

// 12: kill -9 of the process holding the relay's leader lock, ten times.
func relayKill(r *run) error {
	ctx := r.ctx
	if err := r.setup(ctx, 2, nil); err != nil {
		return err
	}
	reqs := standardRequests("faults-relay", "relay", r.n, nil)
	guessed := 0
	err := r.drive(ctx, reqs, 10, func(i int) error {
		var p *Leadflow
		for range 40 {
			if name := r.relayLeader(ctx); name != "" {
				for _, c := range r.procs {
					if c.Name == name {
						p = c
					}
				}
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if p == nil {
			guessed++
			p = r.procs[i%len(r.procs)]
		}
		var outbox int
		_ = r.pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&outbox)
		r.fault("kill -9 relay leader %s (%d outbox rows)", p.Name, outbox)
		p.Kill9()
		time.Sleep(time.Duration(r.rng.IntN(500)) * time.Millisecond)
		return p.Restart()
	})
	if err != nil {
		return err
	}
	r.row.Faults = fmt.Sprintf("%d× kill -9 of the relay leader", len(r.faults))
	if guessed > 0 {
		r.note("%d times no relay held the lock; a process was killed anyway", guessed)
	}
	_, _, err = r.finish(ctx, reqs, checkOptions{})
	return err
}

// relayLeader names the process holding the relay's session advisory lock.
func (r *run) relayLeader(ctx context.Context) string {
	var key uint64 = 0x6c656164666c6f77 // relay.leaderLock
	var name string
	err := r.pool.QueryRow(ctx, `SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid AND l.objsubid = 1`,
		int64(uint32(key>>32)), int64(uint32(key))).Scan(&name)
	if err != nil {
		return ""
	}
	return name
}

// 9: network faults between leadflow and its servers, through in-process
// toxiproxy proxies: latency above ACK_WAIT, connections reset by peer,
// and a 30 s partition that leaves connections open and drops what they carry.
func network(r *run) error {
	ctx := r.ctx
	if err := r.sharedDB(ctx); err != nil {
		return err
	}
	if err := r.startNATS(); err != nil {
		return err
	}
	u, err := url.Parse(r.dbURL)
	if err != nil {
		return err
	}
	pgProxy, err := startProxy(fmt.Sprintf("postgres-%d", r.sc.ID), u.Host)
	if err != nil {
		return err
	}
	defer pgProxy.Close()
	natsProxy, err := startProxy(fmt.Sprintf("nats-%d", r.sc.ID), fmt.Sprintf("127.0.0.1:%d", r.nats[0].Port))
	if err != nil {
		return err
	}
	defer natsProxy.Close()
	u.Host = pgProxy.Addr()
	const ackWait = 5 * time.Second
	if err := r.startLeadflow(2, map[string]string{"LEADFLOW_DATABASE_URL": u.String(),
		"LEADFLOW_NATS_URL": "nats://" + natsProxy.Addr(), "LEADFLOW_ACK_WAIT": ackWait.String()}); err != nil {
		return err
	}
	if err := r.connect(ctx); err != nil {
		return err
	}
	const latency, span, partition = ackWait + time.Second, 15 * time.Second, 30 * time.Second
	faults := []struct {
		what string
		do   func() error
	}{
		{fmt.Sprintf("PostgreSQL latency %s each way (ACK_WAIT %s) for %s", latency, ackWait, span),
			func() error { return pgProxy.Latency(latency, span) }},
		{"PostgreSQL connections reset by peer for 2 s", func() error { return pgProxy.Reset(2 * time.Second) }},
		{fmt.Sprintf("NATS latency %s each way for %s", latency, span), func() error { return natsProxy.Latency(latency, span) }},
		{"NATS connections reset by peer for 2 s", func() error { return natsProxy.Reset(2 * time.Second) }},
		{fmt.Sprintf("PostgreSQL and NATS partitioned for %s (connections open, data dropped)", partition), func() error {
			errs := make(chan error, 2)
			go func() { errs <- pgProxy.Partition(partition) }()
			go func() { errs <- natsProxy.Partition(partition) }()
			return errors.Join(<-errs, <-errs)
		}},
	}
	reqs := standardRequests("faults-net", "net", r.n, nil)
	var done []string
	err = r.drive(ctx, reqs, len(faults), func(i int) error {
		f := faults[i]
		r.fault("%s", f.what)
		if err := f.do(); err != nil {
			return err
		}
		done = append(done, f.what)
		return nil
	})
	if err != nil {
		return err
	}
	r.row.Faults = strings.Join(done, "; ")
	_, _, err = r.finish(ctx, reqs, checkOptions{})
	return err
}
