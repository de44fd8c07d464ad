package testproc

import (
	"strings"
	"testing"
	"time"
)

// waitExit waits until p has exited, or fails the test after a deadline.
func waitExit(t *testing.T, p *Proc) error {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := p.Exited(); err != nil {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not exit within 10 s", p.Name)
	return nil
}

func TestProcSaysWhenAndHowItExited(t *testing.T) {
	p, err := Start("server", "sh", "-c", "echo listening failed; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	err = waitExit(t, p)
	if !strings.Contains(err.Error(), "server exited") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("Exited() = %v, want the name and the exit status", err)
	}
	if got := p.Log.Tail(1000); got != "listening failed\n" {
		t.Errorf("log = %q", got)
	}
	if got := p.Log.Tail(7); got != "failed\n" {
		t.Errorf("tail of 7 bytes = %q", got)
	}
}

func TestProcStopEndsARunningProcess(t *testing.T) {
	p, err := Start("sleeper", "sleep", "60")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Exited(); err != nil {
		t.Fatalf("a running process reports %v", err)
	}
	p.Stop(10 * time.Second)
	if err := p.Exited(); err == nil {
		t.Error("after Stop, the process still runs")
	}
	stopped := make(chan struct{})
	go func() { p.Stop(time.Minute); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Error("a second Stop did not return at once")
	}
}

func TestStartReportsAMissingBinary(t *testing.T) {
	if _, err := Start("nothing", "/nonexistent/bin"); err == nil || !strings.Contains(err.Error(), "start nothing") {
		t.Errorf("Start = %v, want an error naming the process", err)
	}
}
