package coordinator

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/workflow"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/activities"
	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/resources"
)

// TestCoordinatorRaisesAStagesLimitsAheadOfItAndLowersThemAfter: a limited
// stage predicted to start soon gets its raised limits (its predicted need
// where that is higher) on its host's queue before it starts, keeps them
// while its runs are in it, and is lowered to its idle limits LowerAfter
// after it ends; nothing is re-applied in between but the periodic reconcile.
func TestCoordinatorRaisesAStagesLimitsAheadOfItAndLowersThemAfter(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: headstart.CoordinatorWorkflowName})
	var ctl *Activities
	var pf *activities.Prefetcher
	var mu sync.Mutex
	ticks := 0
	env.OnActivity(ctl.Snapshot, mock.Anything, mock.Anything).Return(func(ctx context.Context, _ SnapshotInput) (Snapshot, error) {
		mu.Lock()
		defer mu.Unlock()
		ticks++
		s := Snapshot{Capacity: vec(16, 64), Free: vec(16, 64)}
		switch {
		case ticks <= 2: // coming
			s.Upcoming = []Upcoming{{Stage: "W/train", Start: env.Now().Add(3 * time.Second), Confidence: 1, Need: vec(4, 8), Tasks: 4}}
		case ticks <= 5: // running
			s.Running = map[string]float64{"W/train": 1}
		}
		return s, nil
	})
	env.OnActivity(pf.Reserve, mock.Anything, mock.Anything).Return(headstart.ReserveResult{}, nil)
	env.OnActivity(pf.Release, mock.Anything, mock.Anything).Return(true, nil)
	type applied struct {
		tick   int
		queue  string
		action shapers.Action
	}
	var shaped []applied
	env.OnActivity(pf.Shape, mock.Anything, mock.Anything).Return(func(ctx context.Context, a shapers.Action) (shapers.Status, error) {
		mu.Lock()
		defer mu.Unlock()
		shaped = append(shaped, applied{ticks, activity.GetInfo(ctx).TaskQueue, a})
		return shapers.Status{Target: a.Target, Converged: true}, nil
	})
	target := shapers.Target{Kind: "cgroup", Name: "train", Host: "h1"}
	idle := resources.Vector{}.With(resources.CPU, 0.5).With(resources.DiskIOPS, 50)
	raised := resources.Vector{}.With(resources.CPU, 1).With(resources.DiskIOPS, 500)
	env.ExecuteWorkflow(headstart.CoordinatorWorkflowName, Input{
		Fleet: "f", MaxTicks: 12, Config: Config{LedgerWorkflowID: "ledger", Pool: "p", Interval: time.Second,
			Limits: []StageLimits{{Stage: "W/train", Target: target, Idle: idle, Raised: raised, LowerAfter: 3 * time.Second}}},
	})
	require.ErrorContains(t, env.GetWorkflowError(), "continue as new")

	require.GreaterOrEqual(t, len(shaped), 2)
	up := shaped[0]
	require.Equal(t, 1, up.tick, "raised on the first tick it is upcoming, before it starts")
	require.Equal(t, headstart.HostQueue("h1"), up.queue, "on the host's agent's queue")
	require.Equal(t, target, up.action.Target)
	got := *up.action.Desired.Resources
	require.Equal(t, 4.0, got.Get(resources.CPU), "CPU rises to the predicted need of its 4 tasks")
	require.Equal(t, 500.0, got.Get(resources.DiskIOPS), "IOPS to its raised limit")
	require.Zero(t, got.Get(resources.Memory), "memory is set in neither idle nor raised: not shaped")
	require.Contains(t, up.action.Reason, "W/train is upcoming")

	var lowered []applied
	for _, a := range shaped[1:] {
		if *a.action.Desired.Resources == idle {
			lowered = append(lowered, a)
		} else {
			require.Contains(t, a.action.Reason, "reconcile", "only a reconcile re-applies unchanged limits: %+v", a)
		}
	}
	require.NotEmpty(t, lowered, "lowered to idle after it ended")
	require.Equal(t, 5+3, lowered[0].tick-0, "lowered LowerAfter (3 ticks) after its last running tick (5)")
	require.Contains(t, lowered[0].action.Reason, "idle for")
}

// TestCoordinatorKeepsWhatHostsReport: an agent's heartbeat shows in the
// coordinator's state, hot or not.
func TestCoordinatorKeepsWhatHostsReport(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: headstart.CoordinatorWorkflowName})
	var ctl *Activities
	env.OnActivity(ctl.Snapshot, mock.Anything, mock.Anything).Return(Snapshot{}, nil)
	h := headstart.HostStatus{Host: "h1", Queue: headstart.HostQueue("h1"), Capacity: vec(2, 8), Usage: vec(1.9, 1), Shapes: []string{"cgroup"}, At: t0}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(headstart.HostHeartbeatSignal, h) }, 1500*time.Millisecond)
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(headstart.QueryCoordinatorState)
		require.NoError(t, err)
		var s Status
		require.NoError(t, v.Get(&s))
		require.Equal(t, h.Host, s.State.Hosts["h1"].Host)
		require.Equal(t, h.Usage, s.State.Hosts["h1"].Usage)
		require.True(t, s.State.Hosts["h1"].Hot(HotShare), "1.9 of 2 cores busy")
	}, 2500*time.Millisecond)
	env.ExecuteWorkflow(headstart.CoordinatorWorkflowName, Input{Fleet: "f", MaxTicks: 3, Config: Config{LedgerWorkflowID: "ledger", Pool: "p", Interval: time.Second}})
	require.ErrorContains(t, env.GetWorkflowError(), "continue as new")
}
