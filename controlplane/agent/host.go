package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/resources"
)

// supervise runs a stage worker in its cgroup until ctx ends, starting it
// again (after 1 s, doubling to 30 s) whenever it exits; on ctx's end it
// is sent SIGTERM, and killed 10 s later if still running.
func (a *Agent) supervise(ctx context.Context, cgroup string, args, env []string) {
	out := a.o.Log
	wait := time.Second
	for ctx.Err() == nil {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = out, out
		started := time.Now()
		if err := a.cgroup.Start(ctx, cgroup, cmd); err != nil {
			fmt.Fprintf(out, "headstart agent: worker of %s: %v\n", cgroup, err)
		} else {
			fmt.Fprintf(out, "headstart agent: started %s (pid %d) in %s\n", args[0], cmd.Process.Pid, a.cgroup.Group(cgroup))
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				fmt.Fprintf(out, "headstart agent: worker of %s exited: %v\n", cgroup, err)
			case <-ctx.Done():
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-done
				}
				return
			}
			if time.Since(started) > time.Minute {
				wait = time.Second
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// report signals the host's status to the coordinator every heartbeat
// until ctx ends; a coordinator not (yet) running is said once, not every time.
func (a *Agent) report(ctx context.Context, c client.Client) {
	var capacity resources.Vector
	capacity = capacity.With(resources.CPU, float64(runtime.NumCPU()))
	var prev cpuTimes
	var lastErr string
	tick := time.NewTicker(a.o.Heartbeat)
	defer tick.Stop()
	for {
		cur, _ := readCPUTimes()
		mem, used := readMemory()
		usage := resources.Vector{}.With(resources.Memory, used)
		if prev.total > 0 && cur.total > prev.total {
			busy := 1 - float64(cur.idle-prev.idle)/float64(cur.total-prev.total)
			usage = usage.With(resources.CPU, busy*float64(runtime.NumCPU()))
		}
		prev = cur
		st := headstart.HostStatus{Host: a.o.Host, Queue: a.Queue(), Capacity: capacity.With(resources.Memory, mem), Usage: usage,
			Shapes: a.Shapes(), At: time.Now()}
		err := c.SignalWorkflow(ctx, a.o.Coordinator, "", headstart.HostHeartbeatSignal, st)
		msg := ""
		if err != nil && ctx.Err() == nil {
			msg = err.Error()
			var nf *serviceerror.NotFound
			if errors.As(err, &nf) {
				msg = a.o.Coordinator + " is not running: the host is not reported until it is"
			}
		}
		if msg != lastErr && msg != "" {
			fmt.Fprintln(a.o.Log, "headstart agent: heartbeat:", msg)
		}
		lastErr = msg
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

type cpuTimes struct{ idle, total uint64 }

// readCPUTimes reads the host's CPU time, all and idle (with iowait), from /proc/stat.
func readCPUTimes() (cpuTimes, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		return cpuTimes{}, err
	}
	var t cpuTimes
	for i, field := range strings.Fields(line)[1:] {
		n, _ := strconv.ParseUint(field, 10, 64)
		t.total += n
		if i == 3 || i == 4 { // idle, iowait
			t.idle += n
		}
	}
	return t, nil
}

// readMemory reads the host's memory, all and in use (not available), in bytes.
func readMemory() (total, used float64) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, 0
	}
	var avail float64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "MemTotal:":
			total = kb * 1024
		case "MemAvailable:":
			avail = kb * 1024
		}
	}
	return total, total - avail
}
