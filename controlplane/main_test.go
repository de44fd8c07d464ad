package controlplane_test

import (
	"os"
	"testing"

	"github.com/headstart-dev/headstart/internal/temporaltest"
)

// TestMain runs the tests against one shared dev server; started with
// HEADSTART_REPLICA_QUEUE, the test binary is a stage's replica worker
// instead (the worker-pool shaper's command in the end-to-end tests).
func TestMain(m *testing.M) {
	if queue := os.Getenv("HEADSTART_REPLICA_QUEUE"); queue != "" {
		os.Exit(replica(queue))
	}
	os.Exit(temporaltest.Main(m))
}
