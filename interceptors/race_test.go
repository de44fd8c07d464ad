//go:build race

package interceptors_test

// raceEnabled: the race detector slows every memory access several times, and
// more when other instrumented test binaries share the cores.
const raceEnabled = true
