package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/internal/testproc"
)

// TestWorkerWaitsForAServerThatIsNotUpYet: a control worker started before
// its server (or while it restarts) says it is waiting, and starts the
// control plane once the server answers, instead of exiting.
func TestWorkerWaitsForAServerThatIsNotUpYet(t *testing.T) {
	noTemporalEnvironment(t)
	address := fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t))
	var out, errOut testproc.Log
	exited := make(chan int, 1)
	go func() { exited <- run([]string{"worker", "-address", address}, &out, &errOut) }()
	waitForOutput(t, &errOut, "headstart worker: dial "+address+": ", 30*time.Second, exited)
	if !strings.Contains(errOut.Tail(1<<20), "trying again in") {
		t.Fatalf("the worker does not say it will try again:\n%s", errOut.Tail(4000))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	srv, err := temporaltest.Start(ctx, temporaltest.Options{HostPort: address})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	waitForOutput(t, &out, "started headstart-forecaster-default", 2*time.Minute, exited)

	// Stopped as an operator stops it.
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("exit code %d after SIGINT:\n%s", code, errOut.Tail(4000))
		}
	case <-time.After(time.Minute):
		t.Fatal("the worker did not stop on SIGINT")
	}
}

// TestWorkerGivesUpOnAnUnreachableServerAfterItsConnectTimeout, and says
// which setting bounds the wait.
func TestWorkerGivesUpOnAnUnreachableServerAfterItsConnectTimeout(t *testing.T) {
	noTemporalEnvironment(t)
	address := fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t))
	file := filepath.Join(t.TempDir(), "headstart.yaml")
	if err := os.WriteFile(file, []byte("temporal:\n  address: "+address+"\n  connect_timeout: 3s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut testproc.Log
	if code := run([]string{"worker", "-config", file}, &out, &errOut); code != 1 {
		t.Fatalf("exit code %d, want 1:\n%s", code, errOut.Tail(4000))
	}
	want := "headstart worker: dial " + address + ": gave up after 3s (temporal.connect_timeout): "
	if got := errOut.Tail(1 << 20); !strings.Contains(got, want) || !strings.Contains(got, "connection refused") {
		t.Fatalf("stderr does not say why it gave up; want %q and the cause in:\n%s", want, got)
	}
	if strings.Contains(out.Tail(1<<20), "started") {
		t.Fatalf("something started:\n%s", out.Tail(4000))
	}
}

// waitForOutput waits until log holds want, failing the test if the
// command exits first or within isn't enough.
func waitForOutput(t *testing.T, log *testproc.Log, want string, within time.Duration, exited <-chan int) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(log.Tail(1<<20), want) {
		select {
		case code := <-exited:
			t.Fatalf("the worker exited (code %d) before printing %q:\n%s", code, want, log.Tail(4000))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %v:\n%s", want, within, log.Tail(4000))
		}
	}
}
