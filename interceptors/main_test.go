package interceptors_test

import (
	"os"
	"testing"

	"github.com/headstart-dev/headstart/internal/temporaltest"
)

// TestMain stops the dev server the package's tests share when they end.
func TestMain(m *testing.M) { os.Exit(temporaltest.Main(m)) }
