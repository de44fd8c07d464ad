package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/agent"
	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/cgroups"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/resources"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(killedHelper())
	}
	os.Exit(temporaltest.Main(m))
}

// helperEnv makes the test binary the agent TestAnAgentKilledMidChangeReconcilesOnRestart kills.
const helperEnv = "HEADSTART_AGENT_KILL_HELPER"

// killedHelper opens an agent on the state folder and cgroup root of its
// environment, asks for a CPU limit it reaches in several steps, says so,
// and steps until it is killed.
func killedHelper() int {
	a, err := agent.New(killOptions(os.Getenv("STATE_DIR"), os.Getenv("ROOT")))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	limit := resources.Vector{}.With(resources.CPU, 0.125)
	if _, err := a.Cgroups().Apply(context.Background(), shapers.Action{Target: shapers.Target{Kind: cgroups.Kind, Name: "stage"},
		Desired: shapers.Desired{Resources: &limit}, Reason: "before the kill"}); err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("applied")
	select {}
}

func killOptions(stateDir, root string) agent.Options {
	return agent.Options{Host: "killed", Coordinator: "none", StateDir: stateDir,
		Cgroups: cgroups.Options{Root: root, StepInterval: 200 * time.Millisecond}}
}

func TestOptionsSayEverythingTheAgentCannotRunWith(t *testing.T) {
	good := agent.Options{Host: "node-1", Coordinator: "headstart-coordinator-x",
		Workers: []agent.Worker{{Cgroup: "etl", Command: []string{"worker"}}}}
	if err := good.Validate(); err != nil {
		t.Fatalf("good options: %v", err)
	}
	bad := agent.Options{Host: "a/b", Heartbeat: -time.Second, Cgroups: cgroups.Options{MaxStep: 1},
		Workers: []agent.Worker{{Cgroup: "..", Command: []string{"w"}}, {Cgroup: "x"}}}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad options accepted")
	}
	for _, want := range []string{`host "a/b"`, "coordinator: not set", "heartbeat -1s is negative",
		"max step 1", `workers[0]: cgroup ".."`, "workers[1]: no command"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// coordinator stands in for the fleet's coordinator: it returns the first
// heartbeat a host sends it.
func coordinator(ctx workflow.Context) (headstart.HostStatus, error) {
	var st headstart.HostStatus
	workflow.GetSignalChannel(ctx, headstart.HostHeartbeatSignal).Receive(ctx, &st)
	return st, nil
}

// shapeOn runs the coordinator's shape activity on a host's queue.
func shapeOn(ctx workflow.Context, queue string, a shapers.Action) (shapers.Status, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{TaskQueue: queue, StartToCloseTimeout: time.Minute})
	var st shapers.Status
	err := workflow.ExecuteActivity(ctx, "Shape", a).Get(ctx, &st)
	return st, err
}

// TestAnAgentShapesItsHostRunsItsWorkersAndReportsIt starts an agent
// against a real dev server and real cgroups: a shape activity sent to the
// host's queue limits the cgroup, the agent's stage worker runs inside that
// cgroup and is started again when it exits, the coordinator receives the
// host's capacity, and stopping the agent stops its worker.
func TestAnAgentShapesItsHostRunsItsWorkersAndReportsIt(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("the agent's tests need root: they shape real cgroups")
	}
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	id := os.Getpid()
	root, group := fmt.Sprintf("headstart-agent-test-%d", id), "stage"
	seen := filepath.Join(t.TempDir(), "cgroups")
	a, err := agent.New(agent.Options{
		Host: fmt.Sprintf("agent-test-%d", id), Coordinator: fmt.Sprintf("agent-test-coordinator-%d", id),
		Heartbeat: 200 * time.Millisecond,
		Cgroups:   cgroups.Options{Root: root, StepInterval: 50 * time.Millisecond, StateDir: t.TempDir()},
		// The worker writes the cgroups it runs in and exits at once: the agent starts it again.
		Workers: []agent.Worker{{Cgroup: group, Command: []string{"/bin/sh", "-c", "cat /proc/self/cgroup >> " + seen + "; echo ---- >> " + seen}}},
		Log:     testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Close(context.Background())
		if err := a.Cgroups().Remove(context.Background(), group); err != nil {
			t.Errorf("remove the test's cgroup: %v", err)
		}
		for _, ctl := range []string{"cpu", "memory", "blkio", ""} {
			os.Remove(filepath.Join("/sys/fs/cgroup", ctl, root))
		}
	})
	w := a.NewWorker(c)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	tq := fmt.Sprintf("agent-test-%d", id)
	tw := worker.New(c, tq, worker.Options{})
	tw.RegisterWorkflow(coordinator)
	tw.RegisterWorkflow(shapeOn)
	if err := tw.Start(); err != nil {
		t.Fatal(err)
	}
	defer tw.Stop()
	hb, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fmt.Sprintf("agent-test-coordinator-%d", id), TaskQueue: tq}, coordinator)
	if err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { a.Run(runCtx, c); close(ran) }()

	limit := resources.Vector{}.With(resources.CPU, 0.25)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: tq}, shapeOn, a.Queue(),
		shapers.Action{Target: shapers.Target{Kind: cgroups.Kind, Name: group}, Desired: shapers.Desired{Resources: &limit}, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var st shapers.Status
	if err := run.Get(ctx, &st); err != nil {
		t.Fatalf("shape on the host's queue: %v", err)
	}
	if !strings.Contains(st.Message, "target 0.25") && !st.Converged {
		t.Errorf("the shape activity's status does not say where the cgroup is going: %+v", st)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, err := a.Cgroups().Status(ctx, shapers.Target{Kind: cgroups.Kind, Name: group})
		if err != nil {
			t.Fatal(err)
		}
		if st.Converged {
			if got := st.Resources.Get(resources.CPU); got < 0.24 || got > 0.26 {
				t.Errorf("the cgroup's CPU limit after the shape activity: %v cores, want 0.25 (status %+v)", got, st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cgroup did not reach the limit in 30 s: %+v", st)
		}
	}

	var host headstart.HostStatus
	if err := hb.Get(ctx, &host); err != nil {
		t.Fatal(err)
	}
	if host.Queue != a.Queue() || host.Capacity.Get(resources.CPU) != float64(runtime.NumCPU()) || host.Capacity.Get(resources.Memory) <= 0 {
		t.Errorf("heartbeat %+v: want queue %s, %d CPUs and the host's memory", host, a.Queue(), runtime.NumCPU())
	}

	// Started twice (the second after the first exited), each time inside the cgroup.
	deadline := time.Now().Add(time.Minute)
	var runs []string
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(seen)
		if runs = strings.Split(strings.TrimSuffix(string(b), "----\n"), "----\n"); len(b) > 0 && len(runs) >= 2 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(runs) < 2 {
		t.Fatalf("the worker ran %d times in a minute, want it started again after it exits", len(runs))
	}
	for i, r := range runs[:2] {
		if in := "/" + root + "/" + group + "\n"; !strings.Contains(r, ":memory:"+in) && !strings.Contains(r, "0::"+in) { // v1, v2
			t.Errorf("run %d of the worker was not in %s/%s:\n%s", i+1, root, group, r)
		}
	}

	stop()
	select {
	case <-ran:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30 s of its context's end")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// TestAnAgentKilledMidChangeReconcilesOnRestart: an agent is killed
// (SIGKILL) while it steps a cgroup's CPU limit from none down to 0.125
// cores: from the host's cores, halved each step. What it leaves is one of
// the steps, never a value off the way, and an agent started again on the
// same state folder reaches the desired limit without being asked again.
func TestAnAgentKilledMidChangeReconcilesOnRestart(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("the agent's tests need root: they shape real cgroups")
	}
	stateDir, root := t.TempDir(), fmt.Sprintf("headstart-kill-test-%d", os.Getpid())
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "STATE_DIR="+stateDir, "ROOT="+root)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "applied\n" {
		t.Fatalf("the agent did not apply the limit: %q %v", line, err)
	}
	quota := filepath.Join("/sys/fs/cgroup/cpu", root, "stage", "cpu.cfs_quota_us")
	if _, err := os.Stat(quota); err != nil {
		quota = filepath.Join("/sys/fs/cgroup", root, "stage", "cpu.max") // v2
	}
	steps := map[string]bool{}
	for c := float64(runtime.NumCPU()); c >= 0.125; c /= 2 {
		steps[fmt.Sprint(int(c*100000))] = true
	}
	// Kill it once it has taken a step after the first, before it is done.
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(quota)
		q := strings.Fields(string(b))
		if len(q) > 0 && q[0] != "-1" && q[0] != "max" && q[0] != fmt.Sprint(runtime.NumCPU()*100000) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent took no second step in 20 s: quota %q", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	b, err := os.ReadFile(quota)
	if err != nil {
		t.Fatal(err)
	}
	left := strings.Fields(string(b))[0]
	if !steps[left] {
		t.Fatalf("the killed agent left a quota of %s µs per 100 ms, not one of its steps %v", left, steps)
	}
	t.Logf("killed with the quota at %s µs per 100 ms", left)

	a, err := agent.New(killOptions(stateDir, root))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Close(context.Background())
		if err := a.Cgroups().Remove(context.Background(), "stage"); err != nil {
			t.Errorf("remove: %v", err)
		}
		for _, ctl := range []string{"cpu", "memory", "blkio", ""} {
			os.Remove(filepath.Join("/sys/fs/cgroup", ctl, root))
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, err := a.Cgroups().Status(context.Background(), shapers.Target{Kind: cgroups.Kind, Name: "stage"})
		if err != nil {
			t.Fatal(err)
		}
		if st.Converged && st.Resources.Get(resources.CPU) == 0.125 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted agent did not reach the desired 0.125 cores in 20 s: %+v", st)
		}
	}
}

// TestAnAgentMeasuresItsDiskIOPSBudgetWhenAsked and says what it found.
func TestAnAgentMeasuresItsDiskIOPSBudgetWhenAsked(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("the agent's tests need root: they shape real cgroups")
	}
	var log strings.Builder
	dir := t.TempDir()
	a, err := agent.New(agent.Options{Host: "measuring", Coordinator: "none", MeasureDiskIOPS: true, Log: &log,
		Cgroups: cgroups.Options{Root: fmt.Sprintf("headstart-measure-test-%d", os.Getpid()), Devices: []string{dir}}})
	if err != nil {
		t.Fatal(err)
	}
	a.Close(context.Background())
	var iops float64
	if _, err := fmt.Sscanf(strings.TrimPrefix(log.String(), "headstart agent: the disk under "+dir+" sustains "), "%f IOPS", &iops); err != nil || iops <= 0 {
		t.Fatalf("the agent did not say what it measured: %q", log.String())
	}
	if _, err := agent.New(agent.Options{Host: "x", Coordinator: "none", MeasureDiskIOPS: true,
		Cgroups: cgroups.Options{Devices: []string{"8:0"}}}); err == nil || !strings.Contains(err.Error(), "none of the cgroup devices is a folder") {
		t.Errorf("measuring with no folder: %v", err)
	}
}
