package controlplane_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	sdkworker "go.temporal.io/sdk/worker"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane"
	"github.com/headstart-dev/headstart/controlplane/coordinator"
	"github.com/headstart-dev/headstart/controlplane/internal/kubetest"
	"github.com/headstart-dev/headstart/controlplane/samples/pipeline"
	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/kubernetes"
	"github.com/headstart-dev/headstart/interceptors"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/resources"
)

// TestOtherPodsFillingTheNodeMakeTheCoordinatorHoldBack: the coordinator's
// pool is measured from a real Kubernetes control plane on every tick. On
// an empty 4-CPU node it reserves for Train ahead of its tasks; once other
// pods request 3.5 of the 4 CPU, the measured pool shrinks to what they
// leave, soft reservations that no longer fit are reclaimed, and the
// coordinator holds back (delays, or reserves part) and says why, instead of
// reserving room the node does not have.
func TestOtherPodsFillingTheNodeMakeTheCoordinatorHoldBack(t *testing.T) {
	plane := kubetest.Start(t, "4", "16Gi")
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const fleet, pool = "measured", "measured-cluster"
	ledgerID := headstart.LedgerWorkflowID(pool)

	opts := controlplane.Options{Fleet: fleet, TaskQueue: "headstart-" + fleet,
		Shapers: map[string]shapers.Shaper{kubernetes.Kind: kubernetes.New(plane.Client, kubernetes.Options{})}}
	control, err := controlplane.NewWorker(c, opts)
	require.NoError(t, err)
	require.NoError(t, control.Start())
	defer control.Stop()
	hs, err := interceptors.New(c, interceptors.Options{Fleet: fleet, ControlTaskQueue: opts.TaskQueue, DisableRouting: true,
		Batch: interceptors.BatchOptions{FlushInterval: 100 * time.Millisecond}})
	require.NoError(t, err)
	defer hs.Close(context.Background())
	queue := fleet + "-pipeline"
	w := sdkworker.New(c, queue, sdkworker.Options{Interceptors: []interceptor.WorkerInterceptor{hs}})
	w.RegisterWorkflow(pipeline.Pipeline)
	w.RegisterActivity(&pipeline.Activities{})
	require.NoError(t, w.Start())
	defer w.Stop()

	plan := controlplane.Plane{Options: opts, Pools: []controlplane.Pool{{Name: pool, Measured: true}},
		Coordinator: &coordinator.Config{Pool: pool, LedgerWorkflowID: ledgerID, Interval: 300 * time.Millisecond,
			Rule:    coordinator.Rule{MinConfidence: 0.5, ActuationTime: time.Second, Lead: time.Second},
			Measure: &coordinator.Measure{With: kubernetes.Kind}}}
	_, err = plan.Start(ctx, c)
	require.NoError(t, err)
	defer func() {
		for _, id := range []string{headstart.CoordinatorWorkflowID(fleet), ledgerID, headstart.ForecasterWorkflowID(fleet)} {
			_ = c.TerminateWorkflow(context.Background(), id, "", "test over")
		}
	}()

	// Pipelines run one after another for the whole test, so runs are always on their way to Train.
	runs, stopRuns := context.WithCancel(ctx)
	defer stopRuns()
	go func() {
		for i := 0; runs.Err() == nil; i++ {
			r, err := c.ExecuteWorkflow(runs, client.StartWorkflowOptions{ID: fmt.Sprintf("%s-%d", fleet, i), TaskQueue: queue}, pipeline.Pipeline,
				pipeline.Input{ExtractMiB: 2, Shards: 2, TransformRounds: 600, TrainMiB: 16, Seed: uint64(i)})
			if err == nil {
				_ = r.Get(runs, nil)
			}
		}
	}()
	poolStatus := func() headstart.PoolStatus {
		v, err := c.QueryWorkflow(ctx, ledgerID, "", headstart.QueryPool)
		require.NoError(t, err)
		var st headstart.PoolStatus
		require.NoError(t, v.Get(&st))
		return st
	}
	train := func() (coordinator.Decision, bool) {
		v, err := c.QueryWorkflow(ctx, headstart.CoordinatorWorkflowID(fleet), "", headstart.QueryDecisions)
		require.NoError(t, err)
		var ds []coordinator.Decision
		require.NoError(t, v.Get(&ds))
		for _, d := range ds {
			if d.Stage == "Pipeline/Train" {
				return d, true
			}
		}
		return coordinator.Decision{}, false
	}
	cpu := func(v resources.Vector) float64 { return v.Get(resources.CPU) }

	require.Eventually(t, func() bool {
		st := poolStatus()
		return !st.Measured.IsZero() && cpu(st.Capacity) == 4 && cpu(st.InUse) == 0 && strings.Contains(st.Source, "kubernetes nodes")
	}, time.Minute, 100*time.Millisecond, "the ledger has the node's measured capacity")
	require.Eventually(t, func() bool {
		d, ok := train()
		return ok && d.Kind == coordinator.DecideReserve
	}, 2*time.Minute, 100*time.Millisecond, "on an empty node, Train is reserved for ahead of its tasks")

	// Other work takes 3.5 of the node's 4 CPU.
	_, err = plane.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "others"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	for i := range 7 {
		_, err := plane.Client.CoreV1().Pods("others").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("other-%d", i)},
			Spec: corev1.PodSpec{Tolerations: []corev1.Toleration{kubetest.Toleration},
				Containers: []corev1.Container{{Name: "w", Image: "someone-else", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}}}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return cpu(poolStatus().InUse) == 3.5 }, time.Minute, 100*time.Millisecond,
		"the next measurement counts the other pods bound to the node")
	var held coordinator.Decision
	require.Eventually(t, func() bool {
		d, ok := train()
		held = d
		return ok && (d.Kind == coordinator.DecideDelay || d.Kind == coordinator.DecidePartial)
	}, 2*time.Minute, 100*time.Millisecond, "with 0.5 CPU left and 20% protected, Train is no longer reserved in full")
	t.Logf("Train: %s — %s", held.Kind, held.Reason)
	require.Contains(t, held.Reason, "outside the protected 20%")

	st := poolStatus()
	require.LessOrEqual(t, cpu(st.Soft), cpu(st.Capacity)-cpu(st.InUse)-cpu(st.Hard)+1e-9,
		"no soft reservation promises room other work holds: %+v", st)
	require.Positive(t, st.Reclaims+st.Expiries+int64(st.Reservations), "reservations were made while the node was empty")

	// A restart of the control plane attaches to the ledger and leaves its measured capacity alone.
	started, err := plan.Start(ctx, c)
	require.NoError(t, err)
	require.True(t, started[1].Attached)
	require.False(t, started[1].Changed)
	require.Equal(t, 4.0, cpu(poolStatus().Capacity))
}
