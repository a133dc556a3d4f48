package worker

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"

	"github.com/leadflow/leadflow/internal/conversion"
	"github.com/stretchr/testify/require"
)

// childEnv makes the test binary run faultPointChild rather than the test.
const childEnv = "LEADFLOW_TEST_FAULT_POINT_CHILD"

// faultPointChild calls the fault point as the worker would, for the lead
// and replay its environment names; it exits 3 when the binary has none.
func faultPointChild() {
	if crashAfterCommit == nil {
		os.Exit(3)
	}
	lead := os.Getenv("LEADFLOW_TEST_LEAD")
	crashAfterCommit(&conversion.Parsed{LeadID: &lead}, os.Getenv("LEADFLOW_TEST_REPLAYED") == "true")
	os.Exit(0)
}

// TestFaultPointCrashAfterCommit: in a binary built with the faults tag,
// LEADFLOW_FAULT_CRASH_AFTER_COMMIT kills the process after it committed
// the outcome of a request for a lead it names (not after a replay of the
// outcome); a binary built
// without the tag has no fault point, whatever its environment says.
// (`make test` runs it both ways.)
func TestFaultPointCrashAfterCommit(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		faultPointChild()
		return
	}
	run := func(prefix, lead string, replayed bool) (exit int, killed bool) {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestFaultPointCrashAfterCommit$")
		cmd.Env = append(os.Environ(), childEnv+"=1", "LEADFLOW_FAULT_CRASH_AFTER_COMMIT="+prefix,
			"LEADFLOW_TEST_LEAD="+lead, "LEADFLOW_TEST_REPLAYED="+strconv.FormatBool(replayed))
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			ws := ee.Sys().(syscall.WaitStatus)
			return ws.ExitStatus(), ws.Signaled() && ws.Signal() == syscall.SIGKILL
		}
		require.NoError(t, err)
		return 0, false
	}
	if !faultsTag {
		exit, killed := run("crash-", "crash-1", false)
		require.Equal(t, 3, exit, "no fault point in a build without the faults tag")
		require.False(t, killed)
		return
	}
	_, killed := run("crash-", "crash-1", false)
	require.True(t, killed, "the outcome of a crash- lead committed")
	exit, killed := run("crash-", "crash-1", true)
	require.Equal(t, 0, exit, "a replay: no second crash")
	require.False(t, killed)
	exit, killed = run("crash-", "fine-1", false)
	require.Equal(t, 0, exit)
	require.False(t, killed)
	exit, _ = run("", "crash-1", false)
	require.Equal(t, 3, exit, "no variable, no fault point")
}
