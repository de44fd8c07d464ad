// Package testproc holds what the test harnesses share about the servers
// they start: free loopback ports, and stopping a process gently.
package testproc

import (
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Stop sends SIGTERM to a started command and waits for it, killing it
// after timeout.
func Stop(cmd *exec.Cmd, timeout time.Duration) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
	}
}
