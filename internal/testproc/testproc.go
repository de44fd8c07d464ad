// Package testproc holds what the test harnesses share about the servers
// they start: free loopback ports, and processes whose exit is watched.
package testproc

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Port is FreePort for a harness without a test at hand.
func Port() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Proc is a started server process. Its exit is noticed as it happens, so
// a harness waiting for the server to be ready fails at once, with the
// server's output, instead of waiting out its deadline.
type Proc struct {
	Name string
	// Log is what the process wrote to stdout and stderr.
	Log  *Log
	cmd  *exec.Cmd
	done chan struct{}
	err  error // how it exited, once done is closed
}

// Start starts bin; it is killed if the test binary dies.
func Start(name, bin string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, Log: &Log{}, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	// The output goes through a pipe the process holds as a file, so that
	// its exit is noticed when it exits, even while children it left behind
	// (a killed control worker's replicas) still hold and write to the pipe.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _, _ = io.Copy(p.Log, r); r.Close() }()
	p.cmd.Stdout, p.cmd.Stderr = w, w
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = p.cmd.Start()
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process's ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited returns an error saying how the process ended, or nil while it runs.
func (p *Proc) Exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v)", p.Name, p.err)
	default:
		return nil
	}
}

// Stop sends SIGTERM and waits for the process to end, killing it after
// timeout. Stopping a process that has ended returns at once.
func (p *Proc) Stop(timeout time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Log is a process's output, safe to read while the process writes it.
// It keeps the newest 512 KiB to 1 MiB.
type Log struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Log) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		l.b.Next(l.b.Len() - 1<<19)
	}
	return l.b.Write(b)
}

// Tail returns the last n bytes written.
func (l *Log) Tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}
