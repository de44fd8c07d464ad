package worker_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/headstart-dev/headstart/interceptors"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/resources"
	"github.com/headstart-dev/headstart/samples/pipeline"
	"github.com/headstart-dev/headstart/shapers"
	"github.com/headstart-dev/headstart/shapers/workerpool"
	headstart "github.com/headstart-dev/headstart/worker"
)

// replica is the test binary as a replica: a worker running the pipeline's
// activities on a stage queue until SIGTERM.
func replica(queue string) int {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	c, err := client.Dial(client.Options{HostPort: os.Getenv("HEADSTART_REPLICA_ADDRESS"), Identity: fmt.Sprintf("replica-%d", os.Getpid())})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	w := sdkworker.New(c, queue, sdkworker.Options{})
	w.RegisterActivity(&pipeline.Activities{})
	interrupt := make(chan any)
	go func() { <-stop; close(interrupt) }()
	if err := w.Run(interrupt); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestHeavyStageIsReplicatedBeforeItsTasksArrive: the profiled pipeline
// feeds the forecaster; the coordinator, seeing runs on their way to Train,
// replicates Train as worker processes polling its own queue; the routing
// interceptor sends Train there once replicas poll; and Train's tasks of the
// next runs are scheduled after the replicas were ready and start on them.
func TestHeavyStageIsReplicatedBeforeItsTasksArrive(t *testing.T) {
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const mainQueue, trainQueue, train = "e2e-pipeline", "e2e-train-replicas", "Pipeline/Train"
	fleet := "e2e"

	pool, err := workerpool.New(workerpool.Options{Command: func(queue string, _ int) *exec.Cmd {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "HEADSTART_REPLICA_QUEUE="+queue, "HEADSTART_REPLICA_ADDRESS="+srv.HostPort())
		return cmd
	}})
	require.NoError(t, err)
	defer pool.Close(context.Background())
	opts := headstart.Options{Fleet: fleet, TaskQueue: "headstart-e2e", Shapers: map[string]shapers.Shaper{workerpool.Kind: pool}}
	control, err := headstart.New(c, opts)
	require.NoError(t, err)
	require.NoError(t, control.Start())
	defer control.Stop()

	// The user's worker: profiled, batching to the forecaster, and routing replicated stages.
	sink, err := interceptors.NewBatchingSink(interceptors.BatchOptions{Send: headstart.ForecasterSender(c, opts), FlushInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	prof, err := interceptors.NewProfiler(interceptors.ProfilerOptions{Sink: sink})
	require.NoError(t, err)
	defer prof.Close(context.Background())
	router := interceptors.NewRouter()
	w := sdkworker.New(c, mainQueue, sdkworker.Options{Interceptors: []interceptor.WorkerInterceptor{prof, interceptors.NewRouting(router, interceptors.RoutingOptions{})}})
	w.RegisterWorkflow(pipeline.Pipeline)
	w.RegisterActivity(&pipeline.Activities{})
	require.NoError(t, w.Start())
	defer w.Stop()
	var readyNanos atomic.Int64 // when replicas first polled Train's queue
	pollersReady := interceptors.PollersReady(c, "default")
	go func() {
		for ctx.Err() == nil {
			_ = router.Sync(ctx, map[string]string{train: trainQueue}, func(ctx context.Context, q string) (bool, error) {
				ready, err := pollersReady(ctx, q)
				if ready {
					readyNanos.CompareAndSwap(0, time.Now().UnixNano())
				}
				return ready, err
			})
			time.Sleep(100 * time.Millisecond)
		}
	}()

	runPipeline := func(i int) client.WorkflowRun {
		r, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fmt.Sprintf("e2e-%d", i), TaskQueue: mainQueue}, pipeline.Pipeline,
			pipeline.Input{ExtractMiB: 2, Shards: 2, TransformRounds: 600, TrainMiB: 16, Seed: uint64(i)})
		require.NoError(t, err)
		return r
	}
	// Warm up: the forecaster learns the stages and that Train follows Transform.
	for i := 0; i < 3; i++ {
		require.NoError(t, runPipeline(i).Get(ctx, nil))
	}

	ledgerID := headstart.LedgerWorkflowID("e2e-pool")
	_, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: ledgerID, TaskQueue: opts.TaskQueue}, headstart.LedgerWorkflowName,
		headstart.LedgerInput{Pool: "e2e-pool", Capacity: resources.Vector{}.With(resources.CPU, 8).With(resources.Memory, 16<<30)})
	require.NoError(t, err)
	_, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: headstart.CoordinatorWorkflowID(fleet), TaskQueue: opts.TaskQueue}, headstart.CoordinatorWorkflowName,
		headstart.CoordinatorInput{Fleet: fleet, LedgerWorkflowID: ledgerID, Pool: "e2e-pool", Interval: 300 * time.Millisecond,
			Rule:      headstart.CoordinatorOptions{MinConfidence: 0.5, ActuationTime: time.Second, Lead: time.Second},
			Replicate: []headstart.StageTarget{{Stage: train, Target: shapers.Target{Kind: workerpool.Kind, Name: trainQueue}}}})
	require.NoError(t, err)
	defer func() {
		_ = c.CancelWorkflow(context.Background(), headstart.CoordinatorWorkflowID(fleet), "")
		_ = c.CancelWorkflow(context.Background(), ledgerID, "")
	}()

	// Runs from now on: Train's tasks should be scheduled on the replicas' queue after they were ready.
	var onReplicas int
	for i := 3; i < 8 && onReplicas == 0; i++ {
		r := runPipeline(i)
		require.NoError(t, r.Get(ctx, nil))
		h, err := temporaltest.History(ctx, c, r.GetID(), r.GetRunID())
		require.NoError(t, err)
		scheduled := map[int64]time.Time{}
		for _, e := range h.Events {
			if a := e.GetActivityTaskScheduledEventAttributes(); a != nil && a.ActivityType.Name == "Train" && a.TaskQueue.GetName() == trainQueue {
				scheduled[e.EventId] = e.EventTime.AsTime()
			}
			if a := e.GetActivityTaskStartedEventAttributes(); a != nil {
				if at, ok := scheduled[a.ScheduledEventId]; ok {
					require.Regexp(t, `^replica-\d+$`, a.Identity, "Train started on a replica")
					require.NotZero(t, readyNanos.Load())
					readyAt := time.Unix(0, readyNanos.Load())
					require.True(t, readyAt.Before(at), "replicas were ready (%v) before Train's task was scheduled (%v)", readyAt, at)
					t.Logf("run %d: replicas ready %v before Train was scheduled; started by %s", i, at.Sub(readyAt).Round(time.Millisecond), a.Identity)
					onReplicas++
				}
			}
		}
	}
	require.Positive(t, onReplicas, "no Train task ran on the replicas")
	v, err := c.QueryWorkflow(ctx, headstart.CoordinatorWorkflowID(fleet), "", "decisions")
	require.NoError(t, err)
	var decisions []headstart.Decision
	require.NoError(t, v.Get(&decisions))
	t.Logf("coordinator's last decisions: %+v", decisions)

	// The coordinator's history replays against the code.
	h, err := temporaltest.History(ctx, c, headstart.CoordinatorWorkflowID(fleet), "")
	require.NoError(t, err)
	replayer := sdkworker.NewWorkflowReplayer()
	headstart.Register(replayer)
	require.NoError(t, replayer.ReplayWorkflowHistory(nil, h))
	if *record {
		require.NoError(t, temporaltest.WriteHistory(recordedCoordinatorHistory, h))
	}
}

const recordedCoordinatorHistory = "testdata/coordinator-history.json"

// TestReplayRecordedCoordinatorHistory guards the coordinator's determinism across code changes.
func TestReplayRecordedCoordinatorHistory(t *testing.T) {
	if *record {
		t.Skip("recording")
	}
	replayer := sdkworker.NewWorkflowReplayer()
	headstart.Register(replayer)
	require.NoError(t, replayer.ReplayWorkflowHistoryFromJSONFile(nil, recordedCoordinatorHistory))
}
