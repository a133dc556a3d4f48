package main

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTuneGC: serve sets the collector's GOGC and soft memory limit, unless
// the environment sets either; under a limit of the environment's, a lower
// GOGC.
func TestTuneGC(t *testing.T) {
	percent, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(percent); debug.SetMemoryLimit(limit) })

	env := map[string]string{}
	tuneGC(func(k string) string { return env[k] })
	require.Equal(t, ownGCPercent, debug.SetGCPercent(100))
	require.Equal(t, int64(memoryLimit), debug.SetMemoryLimit(math.MaxInt64))

	env = map[string]string{"GOMEMLIMIT": "460MiB"}
	tuneGC(func(k string) string { return env[k] })
	require.Equal(t, gcPercent, debug.SetGCPercent(100), "a limit of the environment's: the heap grows to five times what is live")
	require.Equal(t, int64(math.MaxInt64), debug.SetMemoryLimit(math.MaxInt64), "GOMEMLIMIT set: left alone")

	env = map[string]string{"GOGC": "100", "GOMEMLIMIT": "1GiB"}
	tuneGC(func(k string) string { return env[k] })
	require.Equal(t, 100, debug.SetGCPercent(100), "GOGC set: left alone")
	require.Equal(t, int64(math.MaxInt64), debug.SetMemoryLimit(math.MaxInt64), "GOMEMLIMIT set: left alone")
}
