package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// testLog writes the suite's progress lines to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// knownDefects are scenarios that fail because of a leadflow defect the
// suite found and docs/reliability.md ("Defects found") describes with its
// evidence. Their failure is logged, not failed, so that the other
// scenarios keep guarding; LEADFLOW_FAULTS_STRICT=1 fails them too. A known
// defect that no longer reproduces is logged, to be removed from here.
var knownDefects = map[int]string{
	11: "defect 1: a converted request is also dead-lettered when slow batches let its deliveries pile up",
}

// TestFaultSuiteShort runs the fault suite at a fifth of its size on the
// scenarios that need neither a private PostgreSQL nor a NATS cluster:
// every request gets exactly one outcome, every committed event is
// published once, poison goes to the dead letters, other orgs' records
// stay out of reach, hostile input is refused, and no log holds lead data.
func TestFaultSuiteShort(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault suite runs real leadflow, nats-server and PostgreSQL processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var out bytes.Buffer
	rows, code, err := run(ctx, []string{"--short",
		"--scenario", "baseline,kill9,duplicates,hot-lead,poison,cross-tenant,hostile-input,pii"}, &out, testLog{t})
	t.Logf("results:\n%s", out.String())
	if len(rows) == 0 {
		t.Fatalf("fault suite: exit %d: %v", code, err)
	}
	strict := os.Getenv("LEADFLOW_FAULTS_STRICT") == "1"
	for _, r := range rows {
		defect, known := knownDefects[r.ID]
		switch {
		case r.Passed() && known:
			t.Logf("scenario %d passes now: remove it from knownDefects (%s)", r.ID, defect)
		case r.Passed():
		case known && !strict:
			t.Logf("scenario %d fails by a known defect (%s): %s", r.ID, defect, strings.Join(r.Notes, "; "))
		default:
			t.Errorf("scenario %d %s: %s: %s", r.ID, r.Name, r.Result, strings.Join(r.Notes, "; "))
		}
	}
}
