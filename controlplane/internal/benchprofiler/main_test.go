package benchprofiler_test

import (
	"os"
	"testing"

	"github.com/headstart-dev/headstart/internal/temporaltest"
)

// TestMain stops the dev server the latency benchmark shares, if it started one.
func TestMain(m *testing.M) { os.Exit(temporaltest.Main(m)) }
