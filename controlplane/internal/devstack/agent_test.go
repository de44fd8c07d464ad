package devstack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/samples/pipeline"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/internal/testproc"
)

// TestTheAgentLimitsAStageAheadOfItsTasks runs the whole chain of host
// shaping from the binaries and one config file: `headstart worker` with
// coordinator.limits naming a cgroup on a host, and `headstart agent` on that
// host running the sample's worker inside the cgroup. Once the forecaster
// has seen a few runs, the coordinator raises the cgroup's CPU and IOPS
// limits while a run is still in Extract, so Transform's first task starts
// under them, and lowers them again after the run.
func TestTheAgentLimitsAStageAheadOfItsTasks(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("the agent's chain test needs root: it shapes real cgroups")
	}
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	bin := buildBinaries(t, ctx, "./cmd/headstart", "./samples/pipeline/worker")
	id := os.Getpid()
	fleet, host, root, group := fmt.Sprintf("agent-%d", id), fmt.Sprintf("test-host-%d", id), fmt.Sprintf("headstart-test-%d", id), "pipeline"
	dir := t.TempDir()
	config := filepath.Join(dir, "headstart.yaml")
	const idleCPU, raisedCPU, idleIOPS, raisedIOPS = 0.5, 1.5, 200, 2000
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`fleet: %[1]s
task_queue: headstart-%[1]s
pools:
  - name: %[1]s
    capacity: {cpu: 8, memory: 16Gi}
coordinator:
  pool: %[1]s
  interval: 1s
  min_confidence: 0.5
  actuation_time: 2s
  lead: 1s
  limits:
    - stage: Pipeline/Transform
      target: {kind: cgroup, name: %[4]s, host: %[2]s}
      idle: {cpu: 500m, disk_iops: %[5]d}
      raised: {cpu: 1500m, disk_iops: %[6]d}
      lower_after: 3s
agent:
  host: %[2]s
  heartbeat: 1s
  state_dir: %[7]s/agent
  cgroups: {root: %[3]s, devices: [%[7]s], max_step: 4, step_interval: 100ms}
  workers:
    - cgroup: %[4]s
      command: [%[8]s/worker, -address, "{address}", -namespace, "{namespace}", -fleet, %[1]s, -metrics-address=, -route=false, -task-queue, %[9]s]
`, fleet, host, root, group, idleIOPS, raisedIOPS, dir, bin, "pipeline-"+fleet)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, wid := range []string{headstart.ForecasterWorkflowID(fleet), headstart.LedgerWorkflowID(fleet), headstart.CoordinatorWorkflowID(fleet)} {
			_ = c.TerminateWorkflow(context.Background(), wid, "", "test over")
		}
	})
	start := func(name string, args ...string) *testproc.Proc {
		return startBinary(t, bin, name, "headstart", args...)
	}
	control := start("headstart worker", "worker", "-config", config, "-address", srv.HostPort())
	agent := start("headstart agent", "agent", "-config", config, "-address", srv.HostPort())
	t.Cleanup(func() { // after the agent and its worker have stopped (cleanups run last first)
		for _, ctl := range []string{"cpu", "memory", "blkio"} {
			os.Remove(filepath.Join("/sys/fs/cgroup", ctl, root, group))
			os.Remove(filepath.Join("/sys/fs/cgroup", ctl, root))
		}
	})
	cgroup := func(ctl, file string) string { return filepath.Join("/sys/fs/cgroup", ctl, root, group, file) }
	waitFor(t, time.Minute, "the agent to start the sample's worker in its cgroup", func() bool {
		return strings.Contains(agent.Log.Tail(1<<20), "in /"+root+"/"+group) || agent.Exited() != nil
	})
	if err := agent.Exited(); err != nil {
		t.Fatalf("the agent exited: %v\n%s", err, agent.Log.Tail(4096))
	}

	limits := func() (cpu float64, iops int) {
		q, _ := os.ReadFile(cgroup("cpu", "cpu.cfs_quota_us"))
		n, _ := strconv.Atoi(strings.TrimSpace(string(q)))
		b, _ := os.ReadFile(cgroup("blkio", "blkio.throttle.read_iops_device"))
		if f := strings.Fields(string(b)); len(f) == 2 {
			iops, _ = strconv.Atoi(f[1])
		}
		return float64(n) / 100000, iops
	}
	atIdle := func() bool { cpu, iops := limits(); return cpu == idleCPU && iops == idleIOPS }
	waitFor(t, time.Minute, "the idle limits", atIdle)

	type sample struct {
		cpu  float64
		iops int
	}
	transformStarted, raisedAt, atStart := raiseAheadOfTransform(t, ctx, c, fleet, atIdle,
		func() sample { cpu, iops := limits(); return sample{cpu, iops} },
		func(s sample) bool { return s.cpu >= raisedCPU && s.iops == raisedIOPS })
	t.Logf("limits raised %v before Transform's first task; at its start: %.2f cores, %d IOPS",
		transformStarted.Sub(raisedAt).Round(time.Millisecond), atStart.cpu, atStart.iops)
	if raisedAt.IsZero() || !raisedAt.Before(transformStarted) || atStart.cpu < raisedCPU || atStart.iops != raisedIOPS {
		t.Fatalf("Transform's first task (started %s) did not start under the raised limits (raised at %s; at its start %.2f cores, %d IOPS)\ncontrol worker:\n%s\nagent:\n%s",
			transformStarted.Format(time.StampMilli), raisedAt.Format(time.StampMilli), atStart.cpu, atStart.iops, control.Log.Tail(3000), agent.Log.Tail(3000))
	}
	waitFor(t, time.Minute, "the limits to be lowered after the run", atIdle)
	if !strings.Contains(agent.Log.Tail(1<<20), "Pipeline/Transform has been idle for") {
		t.Errorf("the agent's log does not say why the limits were lowered:\n%s", agent.Log.Tail(3000))
	}
	// Stopped as an operator stops it, the agent stops its worker.
	if err := syscall.Kill(agent.Pid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the agent to stop", func() bool { return agent.Exited() != nil })
	if !strings.Contains(agent.Log.Tail(1<<20), "headstart agent: stopping") {
		t.Errorf("the agent did not stop cleanly:\n%s", agent.Log.Tail(3000))
	}
}

// raiseAheadOfTransform runs the sample pipeline on fleet's queue: four
// runs for the forecaster to learn it, a wait until atIdle, then a measured
// run while read samples the limits every 10 ms. It returns when
// Transform's first task started, when a sample was first raised, and the
// sample in force when Transform started.
func raiseAheadOfTransform[S any](t *testing.T, ctx context.Context, c client.Client, fleet string, atIdle func() bool, read func() S, raised func(S) bool) (transformStarted, raisedAt time.Time, atStart S) {
	t.Helper()
	queue := "pipeline-" + fleet
	in := pipeline.Input{ExtractMiB: 1, Shards: 2, TransformRounds: 1, TrainMiB: 1,
		Simulate: &pipeline.Durations{Extract: 5 * time.Second, Transform: 2 * time.Second, Train: time.Second, Publish: 200 * time.Millisecond}}
	runOne := func(i int) string {
		wid := fmt.Sprintf("%s-run-%d", fleet, i)
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: wid, TaskQueue: queue}, pipeline.Pipeline, in)
		if err != nil {
			t.Fatal(err)
		}
		if err := run.Get(ctx, nil); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		return wid
	}
	for i := range 4 {
		runOne(i)
	}
	waitFor(t, time.Minute, "the limits to be lowered after the warm-up runs", atIdle)

	type dated struct {
		at time.Time
		s  S
	}
	var mu sync.Mutex
	var samples []dated
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			s := read()
			mu.Lock()
			samples = append(samples, dated{time.Now(), s})
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	wid := runOne(99)
	close(stop)
	<-sampled
	transformStarted = firstStarted(t, c, wid, "Transform")
	for _, d := range samples {
		if raisedAt.IsZero() && raised(d.s) {
			raisedAt = d.at
		}
		if !d.at.After(transformStarted) {
			atStart = d.s
		}
	}
	return transformStarted, raisedAt, atStart
}

// firstStarted is when the run's first activity of type activityType started.
func firstStarted(t *testing.T, c client.Client, workflowID, activityType string) time.Time {
	t.Helper()
	scheduled := map[int64]bool{}
	iter := c.GetWorkflowHistory(context.Background(), workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		e, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == activityType {
			scheduled[e.GetEventId()] = true
		}
		if a := e.GetActivityTaskStartedEventAttributes(); a != nil && scheduled[a.GetScheduledEventId()] {
			return e.GetEventTime().AsTime()
		}
	}
	t.Fatalf("%s ran no %s", workflowID, activityType)
	return time.Time{}
}
