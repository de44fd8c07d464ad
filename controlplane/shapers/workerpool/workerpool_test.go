package workerpool_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/shapertest"
	"github.com/headstart-dev/headstart/controlplane/shapers/workerpool"
	"github.com/headstart-dev/headstart/interceptors"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/resources"
)

// The test binary doubles as the replicas' worker: with HEADSTART_CHILD set
// it runs a Temporal worker on the queue (or, without an address, just waits)
// until SIGTERM.
func TestMain(m *testing.M) {
	if queue := os.Getenv("HEADSTART_CHILD_QUEUE"); queue != "" {
		os.Exit(child(queue))
	}
	if dir := os.Getenv("HEADSTART_SHAPER_STATE"); dir != "" {
		os.Exit(shaperProcess(dir))
	}
	os.Exit(temporaltest.Main(m))
}

func child(queue string) int {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	address := os.Getenv("HEADSTART_CHILD_ADDRESS")
	if address == "" {
		<-stop
		return 0
	}
	c, err := client.Dial(client.Options{HostPort: address, Identity: fmt.Sprintf("replica-%d", os.Getpid())})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	concurrency, _ := strconv.Atoi(os.Getenv("HEADSTART_CHILD_CONCURRENCY"))
	w := worker.New(c, queue, worker.Options{MaxConcurrentActivityExecutionSize: concurrency})
	w.RegisterActivityWithOptions(func(ctx context.Context) (int, error) { return os.Getpid(), nil }, activity.RegisterOptions{Name: "Heavy"})
	interrupt := make(chan any)
	go func() { <-stop; close(interrupt) }()
	if err := w.Run(interrupt); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// shaperProcess is a control worker's worker-pool shaper keeping its state
// in dir: it runs two replicas of "adopt", prints their PIDs, and waits to
// be killed.
func shaperProcess(dir string) int {
	s, err := workerpool.New(workerpool.Options{Command: command(""), StateDir: dir, Output: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	target := shapers.Target{Kind: workerpool.Kind, Name: "adopt"}
	if _, err := s.Apply(context.Background(), shapers.Action{Target: target, Desired: shapers.Desired{Replicas: shapers.Int(2)}, Reason: "x"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for len(s.PIDs("adopt")) < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println(s.PIDs("adopt"))
	select {}
}

func command(address string) func(string, int) *exec.Cmd {
	return func(queue string, concurrency int) *exec.Cmd {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "HEADSTART_CHILD_QUEUE="+queue, "HEADSTART_CHILD_ADDRESS="+address,
			"HEADSTART_CHILD_CONCURRENCY="+strconv.Itoa(concurrency))
		return cmd
	}
}

func TestWorkerPoolPassesTheConformanceSuite(t *testing.T) {
	s, err := workerpool.New(workerpool.Options{Command: command(""), StartupDelay: 50 * time.Millisecond})
	require.NoError(t, err)
	defer s.Close(context.Background())
	shapertest.Run(t, s, shapertest.Options{Target: shapers.Target{Kind: workerpool.Kind, Name: "conformance"}})

	cpu := resources.Vector{}.With(resources.CPU, 2)
	_, err = s.Apply(context.Background(), shapers.Action{Target: shapers.Target{Kind: workerpool.Kind, Name: "q"},
		Desired: shapers.Desired{Resources: &cpu}, Reason: "x"})
	require.ErrorIs(t, err, shapers.ErrUnsupported)
	_, err = workerpool.New(workerpool.Options{})
	require.ErrorIs(t, err, workerpool.ErrNoCommand)
}

// TestWorkerSecondsCountEveryReplicaFromItsColdStart: two replicas asked for
// and stopped after a while cost twice that while, start-up delay included;
// the cost stays once they are gone.
func TestWorkerSecondsCountEveryReplicaFromItsColdStart(t *testing.T) {
	s, err := workerpool.New(workerpool.Options{Command: command(""), StartupDelay: 200 * time.Millisecond})
	require.NoError(t, err)
	defer s.Close(context.Background())
	target := shapers.Target{Kind: workerpool.Kind, Name: "cost"}
	require.Zero(t, s.WorkerSeconds("cost"))
	began := time.Now()
	_, err = s.Apply(context.Background(), shapers.Action{Target: target, Desired: shapers.Desired{Replicas: shapers.Int(2)}, Reason: "x"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { st, _ := s.Status(context.Background(), target); return st.Ready == 2 }, 30*time.Second, 10*time.Millisecond)
	_, err = s.Apply(context.Background(), shapers.Action{Target: target, Desired: shapers.Desired{Replicas: shapers.Int(0)}, Reason: "x"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { st, _ := s.Status(context.Background(), target); return st.Converged }, 30*time.Second, 10*time.Millisecond)
	lived := time.Since(began).Seconds()
	cost := s.WorkerSeconds("cost")
	require.InDelta(t, 2*lived, cost, 0.1*lived, "two replicas over %.2f s", lived)
	require.GreaterOrEqual(t, cost, 2*0.2, "the start-up delays are paid for")
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, cost, s.WorkerSeconds("cost"), "stopped replicas cost nothing more")
}

// pollers returns the identities polling a queue for activities.
func pollers(ctx context.Context, t *testing.T, c client.Client, queue string) map[string]bool {
	resp, err := c.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
		Namespace: "default", TaskQueue: &taskqueuepb.TaskQueue{Name: queue, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
		TaskQueueType: enumspb.TASK_QUEUE_TYPE_ACTIVITY,
	})
	require.NoError(t, err)
	out := map[string]bool{}
	for _, p := range resp.GetPollers() {
		if time.Since(p.GetLastAccessTime().AsTime()) < 10*time.Second {
			out[p.GetIdentity()] = true
		}
	}
	return out
}

// TestReplicasPollTheStageQueueAndAreReplaced: real Temporal workers in
// child processes poll the stage's queue; one that dies is replaced; a new
// concurrency rolls them.
func TestReplicasPollTheStageQueueAndAreReplaced(t *testing.T) {
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const queue = "stage-train-replicas"
	s, err := workerpool.New(workerpool.Options{Command: command(srv.HostPort()), StartupDelay: 100 * time.Millisecond})
	require.NoError(t, err)
	defer s.Close(context.Background())
	target := shapers.Target{Kind: workerpool.Kind, Name: queue}

	start := time.Now()
	_, err = s.Apply(ctx, shapers.Action{Target: target, Desired: shapers.Desired{Replicas: shapers.Int(2)}, Reason: "predicted burst of train"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(pollers(ctx, t, c, queue)) == 2 }, time.Minute, 100*time.Millisecond, "two replicas should poll %s", queue)
	t.Logf("2 replicas polling %s %v after the action (start-up delay 100ms)", queue, time.Since(start).Round(time.Millisecond))

	// A replica that dies is replaced by a new process.
	pids := s.PIDs(queue)
	require.Len(t, pids, 2)
	require.NoError(t, syscall.Kill(pids[0], syscall.SIGKILL))
	require.Eventually(t, func() bool {
		now := s.PIDs(queue)
		return len(now) == 2 && now[0] != pids[0] && now[1] != pids[0]
	}, time.Minute, 50*time.Millisecond, "the dead replica should be replaced")
	require.Eventually(t, func() bool { return pollers(ctx, t, c, queue)[fmt.Sprintf("replica-%d", s.PIDs(queue)[1])] },
		time.Minute, 100*time.Millisecond, "the replacement polls too")

	// A new concurrency rolls every replica.
	_, err = s.Apply(ctx, shapers.Action{Target: target, Desired: shapers.Desired{Concurrency: shapers.Int(3)}, Reason: "resize"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, _ := s.Status(ctx, target)
		now := s.PIDs(queue)
		return st.Converged && st.Concurrency == 3 && len(now) == 2 && !contains(now, pids[1])
	}, time.Minute, 50*time.Millisecond)
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// routeWorkflow runs the Heavy stage and returns the PID of the process that ran it.
func routeWorkflow(ctx workflow.Context) (int, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	var pid int
	err := workflow.ExecuteActivity(ctx, "Heavy").Get(ctx, &pid)
	return pid, err
}

// TestRoutedStageRunsOnItsReplicas: with no replica ready the stage runs on
// its own queue; once replicas poll the stage queue, the routing interceptor
// sends the stage's activities there and they run in the replicas' processes;
// the histories replay whatever the router holds.
func TestRoutedStageRunsOnItsReplicas(t *testing.T) {
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const mainQueue, replicaQueue, stage = "route-main", "route-heavy-replicas", "Route/Heavy"

	router := interceptors.NewRouter()
	w := worker.New(c, mainQueue, worker.Options{Interceptors: []interceptor.WorkerInterceptor{interceptors.NewRouting(router, interceptors.RoutingOptions{})}})
	w.RegisterWorkflowWithOptions(routeWorkflow, workflow.RegisterOptions{Name: "Route"})
	w.RegisterActivityWithOptions(func(context.Context) (int, error) { return os.Getpid(), nil }, activity.RegisterOptions{Name: "Heavy"})
	require.NoError(t, w.Start())
	defer w.Stop()

	run := func(id string) (int, client.WorkflowRun) {
		r, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: mainQueue}, "Route")
		require.NoError(t, err)
		var pid int
		require.NoError(t, r.Get(ctx, &pid))
		return pid, r
	}
	ready := interceptors.PollersReady(c, "default")
	replicas := map[string]string{stage: replicaQueue}

	// No replicas: the stage falls back to its own queue.
	require.NoError(t, router.Sync(ctx, replicas, ready))
	pid, before := run("route-before")
	require.Equal(t, os.Getpid(), pid, "without replicas the activity runs on the workflow's worker")

	s, err := workerpool.New(workerpool.Options{Command: command(srv.HostPort())})
	require.NoError(t, err)
	defer s.Close(context.Background())
	_, err = s.Apply(ctx, shapers.Action{Target: shapers.Target{Kind: workerpool.Kind, Name: replicaQueue}, Desired: shapers.Desired{Replicas: shapers.Int(2)}, Reason: "replicate Heavy"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_ = router.Sync(ctx, replicas, ready)
		_, ok := router.Route(stage)
		return ok
	}, time.Minute, 100*time.Millisecond, "the route appears once replicas poll")

	pid, after := run("route-after")
	require.Contains(t, s.PIDs(replicaQueue), pid, "the routed activity runs in a replica")

	// Replay with an empty router: the recorded routes decide.
	for _, r := range []client.WorkflowRun{before, after} {
		h, err := temporaltest.History(ctx, c, r.GetID(), r.GetRunID())
		require.NoError(t, err)
		replayer, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{
			Interceptors: []interceptor.WorkerInterceptor{interceptors.NewRouting(interceptors.NewRouter(), interceptors.RoutingOptions{})}})
		require.NoError(t, err)
		replayer.RegisterWorkflowWithOptions(routeWorkflow, workflow.RegisterOptions{Name: "Route"})
		require.NoError(t, replayer.ReplayWorkflowHistory(nil, h), "replay of %s", r.GetID())
	}
	// Without the interceptor the recorded route markers do not replay: the decisions are in the history.
	h, err := temporaltest.History(ctx, c, after.GetID(), after.GetRunID())
	require.NoError(t, err)
	bare := worker.NewWorkflowReplayer()
	bare.RegisterWorkflowWithOptions(routeWorkflow, workflow.RegisterOptions{Name: "Route"})
	require.Error(t, bare.ReplayWorkflowHistory(nil, h))
}

// TestAShaperAdoptsTheReplicasOfOneThatDied: with a state folder, the
// replicas of a control worker killed with SIGKILL keep running, and the
// shaper of the next control worker adopts them — as many as it found,
// no more started — stops them when asked, and on Close.
func TestAShaperAdoptsTheReplicasOfOneThatDied(t *testing.T) {
	dir := t.TempDir()
	first := exec.Command(os.Args[0])
	first.Env = append(os.Environ(), "HEADSTART_SHAPER_STATE="+dir)
	first.Stderr = os.Stderr
	out, err := first.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, first.Start())
	var a, b int
	_, err = fmt.Fscanf(out, "[%d %d]\n", &a, &b)
	require.NoError(t, err, "the first shaper's replicas")
	require.NoError(t, first.Process.Kill())
	_ = first.Wait()
	alive := func(pid int) bool { return syscall.Kill(pid, 0) == nil && !zombie(pid) }
	t.Cleanup(func() { _ = syscall.Kill(a, syscall.SIGKILL); _ = syscall.Kill(b, syscall.SIGKILL) })
	require.True(t, alive(a) && alive(b), "the replicas outlive their shaper's process")

	s, err := workerpool.New(workerpool.Options{Command: command(""), StateDir: dir})
	require.NoError(t, err)
	target := shapers.Target{Kind: workerpool.Kind, Name: "adopt"}
	require.ElementsMatch(t, []int{a, b}, s.PIDs("adopt"), "adopted, not started anew")
	st, err := s.Status(context.Background(), target)
	require.NoError(t, err)
	require.True(t, st.Converged, "%+v", st)
	require.Equal(t, 2, st.Replicas)

	_, err = s.Apply(context.Background(), shapers.Action{Target: target, Desired: shapers.Desired{Replicas: shapers.Int(1)}, Reason: "x"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return alive(a) != alive(b) }, 30*time.Second, 10*time.Millisecond, "one adopted replica stopped")
	require.Eventually(t, func() bool { return len(s.PIDs("adopt")) == 1 }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, s.Close(context.Background()))
	require.False(t, alive(a) || alive(b), "Close stops the adopted replicas too")
	files, _ := os.ReadDir(dir)
	require.Empty(t, files, "no record outlives its replica")
}

// zombie reports whether pid has exited but not been reaped.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || bytes.HasPrefix(bytes.TrimSpace(b[i+1:]), []byte("Z"))
}
