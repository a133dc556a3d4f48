package main

import (
	"bytes"
	"context"
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
	for _, r := range rows {
		if !r.Passed() {
			t.Errorf("scenario %d %s: %s: %s", r.ID, r.Name, r.Result, strings.Join(r.Notes, "; "))
		}
	}
}
