//go:build race

package importer_test

// raceDetector slows leadflow's validation and transactions several times
// over; the big import tests use fewer rows under it.
const raceDetector = true
