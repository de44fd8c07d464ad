package controlplane_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane"
	"github.com/headstart-dev/headstart/controlplane/coordinator"
	"github.com/headstart-dev/headstart/controlplane/internal/kubetest"
	"github.com/headstart-dev/headstart/controlplane/samples/pipeline"
	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/kubernetes"
	"github.com/headstart-dev/headstart/controlplane/shapers/workerpool"
	"github.com/headstart-dev/headstart/interceptors"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/resources"
)

// replica is the test binary as a replica: a worker running the pipeline's
// activities on a stage queue until SIGTERM, letting running activities
// finish. HEADSTART_REPLICA_CONCURRENCY bounds its concurrent activities;
// with HEADSTART_REPLICA_FLEET it is profiled, sending to that fleet's forecaster.
func replica(queue string) int {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	c, err := client.Dial(client.Options{HostPort: os.Getenv("HEADSTART_REPLICA_ADDRESS"), Identity: fmt.Sprintf("replica-%d", os.Getpid()),
		Logger: log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	concurrency, _ := strconv.Atoi(os.Getenv("HEADSTART_REPLICA_CONCURRENCY"))
	opts := sdkworker.Options{MaxConcurrentActivityExecutionSize: concurrency, WorkerStopTimeout: 30 * time.Second}
	if fleet := os.Getenv("HEADSTART_REPLICA_FLEET"); fleet != "" {
		prof, err := forecastingProfiler(c, controlplane.Options{Fleet: fleet})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer prof.Close(context.Background())
		opts.Interceptors = []interceptor.WorkerInterceptor{prof}
	}
	w := sdkworker.New(c, queue, opts)
	w.RegisterActivity(&pipeline.Activities{})
	interrupt := make(chan any)
	go func() { <-stop; close(interrupt) }()
	if err := w.Run(interrupt); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// forecastingProfiler is a user's worker's profiler, batching to the
// forecaster of opts every 100 ms. Close it when the worker stops.
func forecastingProfiler(c client.Client, opts controlplane.Options) (*interceptors.Profiler, error) {
	sink, err := interceptors.NewBatchingSink(interceptors.BatchOptions{Send: interceptors.ForecasterSender(c, interceptors.SenderOptions{TaskQueue: opts.TaskQueue, Fleet: opts.Fleet}), FlushInterval: 100 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	return interceptors.NewProfiler(interceptors.ProfilerOptions{Sink: sink})
}

// TestHeavyStageIsReplicatedBeforeItsTasksArrive: the profiled pipeline
// feeds the forecaster; the coordinator, seeing runs on their way to Train,
// replicates Train as worker processes polling its own queue; the routing
// interceptor sends Train there once replicas poll; and Train's tasks of the
// next runs are scheduled after the replicas were ready and start on them.
func TestHeavyStageIsReplicatedBeforeItsTasksArrive(t *testing.T) {
	srv := temporaltest.Shared(t)
	pool, err := workerpool.New(workerpool.Options{Command: func(queue string, _ int) *exec.Cmd {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "HEADSTART_REPLICA_QUEUE="+queue, "HEADSTART_REPLICA_ADDRESS="+srv.HostPort())
		return cmd
	}})
	require.NoError(t, err)
	defer pool.Close(context.Background())
	const trainQueue = "e2e-train-replicas"
	polled := interceptors.PollersReady(srv.Client(), "default")
	h := prefetchEndToEnd(t, "e2e", pool, shapers.Target{Kind: workerpool.Kind, Name: trainQueue}, trainQueue, true,
		func(ctx context.Context) (bool, error) { return polled(ctx, trainQueue) }, nil)
	if *record {
		require.NoError(t, temporaltest.WriteHistory(recordedCoordinatorHistory, h))
	}
}

// TestStageDeploymentIsScaledBeforeItsTasksAreScheduled: the same, with the
// Kubernetes shaper on a real control plane: the coordinator scales Train's
// Deployment, and its pods run on kwok's nodes before Train's tasks are
// scheduled. (kwok's pods run no worker, so the routing interceptor, finding
// no pollers on the stage's queue, keeps Train on the pipeline's queue.)
// Its reservations are held as placeholder pods until Train starts; asked
// to rebalance, the coordinator then evicts Train's pods from their node.
func TestStageDeploymentIsScaledBeforeItsTasksAreScheduled(t *testing.T) {
	plane := kubetest.Start(t, "32", "128Gi")
	ctx := context.Background()
	_, err := plane.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "stages"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	labels := map[string]string{"app": "train-workers"}
	_, err = plane.Client.AppsV1().Deployments("stages").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "train-workers", Namespace: "stages"},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Tolerations: []corev1.Toleration{kubetest.Toleration},
					Containers: []corev1.Container{{Name: "worker", Image: "headstart-sample-pipeline", Args: []string{"--task-queue=e2e-k8s-train"}}}},
			},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	s := kubernetes.New(plane.Client, kubernetes.Options{Placeholders: kubernetes.Placeholders{Namespace: "stages", Tolerations: []corev1.Toleration{kubetest.Toleration}}})
	require.NoError(t, s.EnsurePriorityClass(ctx))
	prefetchEndToEnd(t, "e2e-k8s", s, shapers.Target{Kind: kubernetes.Kind, Name: "stages/train-workers"}, "e2e-k8s-train", false,
		func(ctx context.Context) (bool, error) {
			d, err := plane.Client.AppsV1().Deployments("stages").Get(ctx, "train-workers", metav1.GetOptions{})
			return err == nil && d.Status.ReadyReplicas > 0, err
		},
		func(ctx context.Context, c client.Client, run func(int) client.WorkflowRun) {
			// Reservations are held as placeholder pods, and released with
			// them. Whether a run's reservation comes before its Train starts
			// depends on when the coordinator's tick falls: a few more runs,
			// as the load goes on, give it the chance.
			holdsCompleted := func() int {
				h, err := temporaltest.History(ctx, c, headstart.CoordinatorWorkflowID("e2e-k8s"), "")
				require.NoError(t, err)
				holds := map[int64]bool{}
				completed := 0
				for _, e := range h.Events {
					if a := e.GetActivityTaskScheduledEventAttributes(); a != nil && a.ActivityType.GetName() == "Hold" {
						holds[e.EventId] = true
					}
					if a := e.GetActivityTaskCompletedEventAttributes(); a != nil && holds[a.ScheduledEventId] {
						completed++
					}
				}
				return completed
			}
			for i := 8; i < 16 && holdsCompleted() == 0; i++ {
				require.NoError(t, run(i).Get(ctx, nil))
			}
			require.Positive(t, holdsCompleted(), "the coordinator held its reservations as placeholders")
			require.Eventually(t, func() bool {
				d, err := plane.Client.AppsV1().Deployments("stages").List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelReservation})
				return err == nil && len(d.Items) == 0
			}, time.Minute, 50*time.Millisecond, "placeholders released once Train was no longer upcoming")

			// Asked to rebalance, the coordinator evicts Train's pods from the node.
			pods, err := plane.Client.CoreV1().Pods("stages").List(ctx, metav1.ListOptions{LabelSelector: "app=train-workers"})
			require.NoError(t, err)
			require.NotEmpty(t, pods.Items)
			upd, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: headstart.CoordinatorWorkflowID("e2e-k8s"), UpdateName: headstart.UpdateRebalance,
				Args:         []any{shapers.Migration{Target: shapers.Target{Kind: kubernetes.Kind, Name: "stages/train-workers"}, From: "kwok-node-0", Reason: "kwok-node-0 is hot"}},
				WaitForStage: client.WorkflowUpdateStageCompleted})
			require.NoError(t, err)
			var moved shapers.Moved
			require.NoError(t, upd.Get(ctx, &moved))
			t.Logf("rebalance: %s", moved.Message)
			require.NotEmpty(t, moved.Moved)
			for _, name := range moved.Moved {
				require.Eventually(t, func() bool {
					p, err := plane.Client.CoreV1().Pods("stages").Get(ctx, name, metav1.GetOptions{})
					return err != nil || p.DeletionTimestamp != nil
				}, time.Minute, 50*time.Millisecond, "pod %s evicted", name)
			}
		})
}

// prefetchEndToEnd runs the pipeline with the control plane, the profiled
// and routing user worker and a coordinator that replicates Train through
// shaper on target, whose replicas poll stageQueue. ready tells when the
// target's capacity is up. It checks that a later run's Train task was
// scheduled after the capacity was ready — with onReplicas, on stageQueue
// and started by a replica — and returns the coordinator's history, having
// replayed it.
func prefetchEndToEnd(t *testing.T, fleet string, shaper shapers.Shaper, target shapers.Target, stageQueue string, onReplicas bool,
	ready func(context.Context) (bool, error), then func(context.Context, client.Client, func(int) client.WorkflowRun)) *historypb.History {
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mainQueue, train := fleet+"-pipeline", "Pipeline/Train"

	opts := controlplane.Options{Fleet: fleet, TaskQueue: "headstart-" + fleet, Shapers: map[string]shapers.Shaper{target.Kind: shaper}}
	control, err := controlplane.NewWorker(c, opts)
	require.NoError(t, err)
	require.NoError(t, control.Start())
	defer control.Stop()

	// The user's worker: profiled, batching to the forecaster, and routing replicated stages.
	prof, err := forecastingProfiler(c, opts)
	require.NoError(t, err)
	defer prof.Close(context.Background())
	router := interceptors.NewRouter()
	w := sdkworker.New(c, mainQueue, sdkworker.Options{Interceptors: []interceptor.WorkerInterceptor{prof, interceptors.NewRouting(router, interceptors.RoutingOptions{})}})
	w.RegisterWorkflow(pipeline.Pipeline)
	w.RegisterActivity(&pipeline.Activities{})
	require.NoError(t, w.Start())
	defer w.Stop()
	var readyNanos atomic.Int64 // when the stage's capacity was first up
	go func() {
		for ctx.Err() == nil {
			if ok, _ := ready(ctx); ok {
				readyNanos.CompareAndSwap(0, time.Now().UnixNano())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	go func() {
		for ctx.Err() == nil {
			_ = router.Sync(ctx, map[string]string{train: stageQueue}, interceptors.PollersReady(c, "default"))
			time.Sleep(100 * time.Millisecond)
		}
	}()

	runPipeline := func(i int) client.WorkflowRun {
		r, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fmt.Sprintf("%s-%d", fleet, i), TaskQueue: mainQueue}, pipeline.Pipeline,
			pipeline.Input{ExtractMiB: 2, Shards: 2, TransformRounds: 3000, TrainMiB: 16, Seed: uint64(i)})
		require.NoError(t, err)
		return r
	}
	// Warm up: the forecaster learns the stages and that Train follows Transform.
	for i := 0; i < 3; i++ {
		require.NoError(t, runPipeline(i).Get(ctx, nil))
	}
	require.Zero(t, readyNanos.Load(), "%s had capacity before Headstart acted", target)

	holdWith := "" // a shaper that can hold capacity holds what the coordinator reserves
	if _, ok := shaper.(shapers.Reserver); ok {
		holdWith = target.Kind
	}
	pool := fleet + "-pool"
	ledgerID := headstart.LedgerWorkflowID(pool)
	_, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: ledgerID, TaskQueue: opts.TaskQueue}, headstart.LedgerWorkflowName,
		headstart.LedgerInput{Pool: pool, Capacity: resources.Vector{}.With(resources.CPU, 8).With(resources.Memory, 16<<30)})
	require.NoError(t, err)
	_, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: headstart.CoordinatorWorkflowID(fleet), TaskQueue: opts.TaskQueue}, headstart.CoordinatorWorkflowName,
		coordinator.Input{Fleet: fleet, Config: coordinator.Config{LedgerWorkflowID: ledgerID, Pool: pool, Interval: 300 * time.Millisecond,
			Rule:      coordinator.Rule{MinConfidence: 0.5, ActuationTime: time.Second, Lead: time.Second},
			Replicate: []coordinator.StageTarget{{Stage: train, Target: target}}, HoldWith: holdWith}})
	require.NoError(t, err)
	defer func() {
		_ = c.CancelWorkflow(context.Background(), headstart.CoordinatorWorkflowID(fleet), "")
		_ = c.CancelWorkflow(context.Background(), ledgerID, "")
	}()

	// Runs from now on: Train's tasks should be scheduled after the capacity was ready.
	var ahead int
	for i := 3; i < 8 && ahead == 0; i++ {
		r := runPipeline(i)
		require.NoError(t, r.Get(ctx, nil))
		h, err := temporaltest.History(ctx, c, r.GetID(), r.GetRunID())
		require.NoError(t, err)
		scheduled := map[int64]time.Time{}
		for _, e := range h.Events {
			if a := e.GetActivityTaskScheduledEventAttributes(); a != nil && a.ActivityType.Name == "Train" && readyNanos.Load() != 0 {
				readyAt, at := time.Unix(0, readyNanos.Load()), e.EventTime.AsTime()
				if readyAt.Before(at) && (!onReplicas || a.TaskQueue.GetName() == stageQueue) {
					t.Logf("run %d: %s ready %v before Train was scheduled on %s", i, target, at.Sub(readyAt).Round(time.Millisecond), a.TaskQueue.GetName())
					scheduled[e.EventId] = at
				}
			}
			if a := e.GetActivityTaskStartedEventAttributes(); a != nil {
				if _, ok := scheduled[a.ScheduledEventId]; ok {
					if onReplicas {
						require.Regexp(t, `^replica-\d+$`, a.Identity, "Train started on a replica")
					}
					t.Logf("run %d: Train started by %s", i, a.Identity)
					ahead++
				}
			}
		}
	}
	require.Positive(t, ahead, "no Train task was scheduled after %s was ready", target)
	v, err := c.QueryWorkflow(ctx, headstart.CoordinatorWorkflowID(fleet), "", headstart.QueryDecisions)
	require.NoError(t, err)
	var decisions []coordinator.Decision
	require.NoError(t, v.Get(&decisions))
	t.Logf("coordinator's last decisions: %+v", decisions)
	if then != nil {
		then(ctx, c, runPipeline)
	}

	// The coordinator's history replays against the code.
	h, err := temporaltest.History(ctx, c, headstart.CoordinatorWorkflowID(fleet), "")
	require.NoError(t, err)
	replayer := sdkworker.NewWorkflowReplayer()
	controlplane.RegisterWorkflows(replayer)
	require.NoError(t, replayer.ReplayWorkflowHistory(nil, h))
	return h
}

const recordedCoordinatorHistory = "testdata/coordinator-history.json"

var record = flag.Bool("record", false, "rewrite "+recordedCoordinatorHistory+" from a run on the dev server")

// TestReplayRecordedCoordinatorHistory guards the coordinator's determinism across code changes.
func TestReplayRecordedCoordinatorHistory(t *testing.T) {
	if *record {
		t.Skip("recording")
	}
	replayer := sdkworker.NewWorkflowReplayer()
	controlplane.RegisterWorkflows(replayer)
	require.NoError(t, replayer.ReplayWorkflowHistoryFromJSONFile(nil, recordedCoordinatorHistory))
}
