package controlplane_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane"
	"github.com/headstart-dev/headstart/controlplane/coordinator"
	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/resources"
)

// TestControlPlaneStartsOnceAndTakesChangedConfiguration: a second Start
// attaches to the running workflows; a changed capacity reaches the
// ledger and a changed configuration the coordinator (through their
// validated updates); an invalid configuration starts nothing.
func TestControlPlaneStartsOnceAndTakesChangedConfiguration(t *testing.T) {
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := controlplane.Options{Fleet: "cp", TaskQueue: "headstart-cp"}
	control, err := controlplane.NewWorker(c, opts)
	require.NoError(t, err)
	require.NoError(t, control.Start())
	defer control.Stop()

	cfg := coordinator.Config{Pool: "cp-pool", LedgerWorkflowID: headstart.LedgerWorkflowID("cp-pool"), Interval: time.Second, Mode: coordinator.ModeForecastOnly}
	plane := controlplane.Plane{Options: opts, Pools: []controlplane.Pool{{Name: "cp-pool", Capacity: resources.Vector{}.With(resources.CPU, 4)}}, Coordinator: &cfg}
	defer func() {
		for _, id := range []string{headstart.ForecasterWorkflowID("cp"), headstart.LedgerWorkflowID("cp-pool"), headstart.CoordinatorWorkflowID("cp")} {
			_ = c.TerminateWorkflow(context.Background(), id, "", "test over")
		}
	}()

	bad := plane
	badCfg := cfg
	badCfg.Pool = "elsewhere"
	bad.Coordinator = &badCfg
	started, err := bad.Start(ctx, c)
	require.ErrorIs(t, err, controlplane.ErrInvalid)
	require.Empty(t, started, "an invalid control plane starts nothing")

	first, err := plane.Start(ctx, c)
	require.NoError(t, err)
	require.Len(t, first, 3)
	for _, s := range first {
		require.False(t, s.Attached, "%s", s)
	}

	again, err := plane.Start(ctx, c)
	require.NoError(t, err)
	for i, s := range again {
		require.True(t, s.Attached, "%s", s)
		require.False(t, s.Changed, "%s: the same configuration changes nothing", s)
		require.Equal(t, first[i].RunID, s.RunID)
	}

	changed := plane
	changedCfg := cfg
	changedCfg.Replicate = []coordinator.StageTarget{{Stage: "W/a", Target: shapers.Target{Kind: "workerpool", Name: "a"}, Queue: "a"}}
	changed.Coordinator = &changedCfg
	changed.Pools = []controlplane.Pool{{Name: "cp-pool", Capacity: resources.Vector{}.With(resources.CPU, 8)}}
	third, err := changed.Start(ctx, c)
	require.NoError(t, err)
	require.False(t, third[0].Changed, "the forecaster has nothing to change")
	require.True(t, third[1].Changed, "the ledger's capacity")
	require.True(t, third[2].Changed, "the coordinator's configuration")

	v, err := c.QueryWorkflow(ctx, headstart.LedgerWorkflowID("cp-pool"), "", headstart.QueryPool)
	require.NoError(t, err)
	var pool headstart.PoolStatus
	require.NoError(t, v.Get(&pool))
	require.Equal(t, 8.0, pool.Capacity.Get(resources.CPU))
	for _, s := range third {
		resp, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: "WorkflowId = '" + s.WorkflowID + "'"})
		require.NoError(t, err)
		require.EqualValues(t, 1, resp.GetCount(), "%s has no twin", s.WorkflowID)
	}
}
