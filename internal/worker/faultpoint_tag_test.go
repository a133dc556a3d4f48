//go:build faults

package worker

const faultsTag = true
