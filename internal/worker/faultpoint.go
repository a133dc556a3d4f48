//go:build faults

package worker

import (
	"os"
	"strings"
	"syscall"

	"github.com/leadflow/leadflow/internal/conversion"
)

// CrashAfterCommitEnv names a lead id prefix in a binary built with the
// faults tag (the fault suite's, never a release): a process that committed
// a request for such a lead (its outcome, not a replay of it) kills itself
// (SIGKILL) before acknowledging it, as a crash between commit and ack
// would; the redelivery replays the outcome and goes through. A
// binary built without the tag has no such code and reads no such variable.
const CrashAfterCommitEnv = "LEADFLOW_FAULT_CRASH_AFTER_COMMIT"

func init() {
	prefix := os.Getenv(CrashAfterCommitEnv)
	if prefix == "" {
		return
	}
	crashAfterCommit = func(p *conversion.Parsed, replayed bool) {
		if !replayed && p.LeadID != nil && strings.HasPrefix(*p.LeadID, prefix) {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal ends the process
		}
	}
}
