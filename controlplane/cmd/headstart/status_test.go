package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane"
	"github.com/headstart-dev/headstart/controlplane/coordinator"
	"github.com/headstart-dev/headstart/controlplane/internal/synthetic"
	"github.com/headstart-dev/headstart/interceptors"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/resources"
)

// TestStatusPrintsTheControlPlane: headstart status prints the forecaster's
// predictions, the coordinator's mode and pool, and the pool's capacity, as
// the Web UI shows them; a fleet with nothing running is said to be so.
func TestStatusPrintsTheControlPlane(t *testing.T) {
	noTemporalEnvironment(t)
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const fleet, pool = "status", "status-pool"
	opts := controlplane.Options{Fleet: fleet, TaskQueue: "headstart-status"}
	w, err := controlplane.NewWorker(c, opts)
	require.NoError(t, err)
	require.NoError(t, w.Start())
	defer w.Stop()
	plane := controlplane.Plane{Options: opts,
		Pools:       []controlplane.Pool{{Name: pool, Capacity: resources.Vector{}.With(resources.CPU, 8).With(resources.Memory, 16<<30)}},
		Coordinator: &coordinator.Config{Mode: coordinator.ModeForecastOnly, Pool: pool, LedgerWorkflowID: headstart.LedgerWorkflowID(pool)}}
	_, err = plane.Start(ctx, c)
	require.NoError(t, err)
	defer func() {
		for _, id := range []string{headstart.ForecasterWorkflowID(fleet), headstart.CoordinatorWorkflowID(fleet), headstart.LedgerWorkflowID(pool)} {
			_ = c.TerminateWorkflow(context.Background(), id, "", "test over")
		}
	}()
	send := interceptors.ForecasterSender(c, interceptors.SenderOptions{Fleet: fleet, TaskQueue: opts.TaskQueue})
	require.NoError(t, send(ctx, synthetic.RunsThrough(5, time.Now())))

	var out, errOut bytes.Buffer
	require.Eventually(t, func() bool {
		out.Reset()
		errOut.Reset()
		code := run([]string{"status", "-address", srv.HostPort(), "-fleet", fleet}, &out, &errOut)
		return code == 0 && strings.Contains(out.String(), "W/train")
	}, 30*time.Second, 200*time.Millisecond, "status lists the predicted stages:\n%s%s", &out, &errOut)
	t.Logf("headstart status:\n%s", out.String())
	for _, want := range []string{
		"Forecaster headstart-forecaster-status: 10 observations (0 rejected), 2 stages",
		"STAGE", "NEXT", "W/extract", "W/train 100%",
		"Coordinator headstart-coordinator-status: forecast-only, pool status-pool",
		"Pool status-pool (headstart-ledger-status-pool): capacity cpu=8",
	} {
		require.Contains(t, out.String(), want)
	}

	out.Reset()
	require.Equal(t, 0, run([]string{"status", "-address", srv.HostPort(), "-fleet", "nobody"}, &out, &errOut))
	require.Contains(t, out.String(), "headstart-forecaster-nobody: not answering")
	require.Contains(t, out.String(), "headstart-coordinator-nobody: not answering")
}
