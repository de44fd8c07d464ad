package ledger_test

import (
	"context"
	"errors"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/resources"
)

const recordedLedgerHistory = "testdata/ledger-history.json"

var record = flag.Bool("record", false, "rewrite "+recordedLedgerHistory+" from a run on the dev server")

func reserve(ctx context.Context, t *testing.T, c client.Client, id string, r headstart.ReserveRequest) (headstart.ReserveResult, error) {
	t.Helper()
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: id, UpdateName: headstart.UpdateReserve, Args: []any{r}, WaitForStage: client.WorkflowUpdateStageCompleted})
	if err != nil {
		return headstart.ReserveResult{}, err
	}
	var res headstart.ReserveResult
	err = h.Get(ctx, &res)
	return res, err
}

// TestLedgerOnDevServer: reservations through real updates; typed errors
// cross the wire; the history replays.
func TestLedgerOnDevServer(t *testing.T) {
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := controlplane.Options{TaskQueue: "headstart-ledger-it"}
	w, err := controlplane.NewWorker(c, opts)
	require.NoError(t, err)
	require.NoError(t, w.Start())
	defer w.Stop()

	capacity := resources.Vector{}.With(resources.CPU, 8).With(resources.Memory, 32<<30)
	id := headstart.LedgerWorkflowID("it-pool")
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: opts.TaskQueue}, headstart.LedgerWorkflowName,
		headstart.LedgerInput{Pool: "it-pool", Capacity: capacity})
	require.NoError(t, err)

	r := headstart.ReserveRequest{Key: "prefetch-1", Pool: "it-pool", Stage: "Pipeline/Train", TTL: time.Hour, Soft: true,
		Resources: resources.Vector{}.With(resources.CPU, 4).With(resources.Memory, 8<<30)}
	res, err := reserve(ctx, t, c, id, r)
	require.NoError(t, err)
	require.False(t, res.Existing)
	res, err = reserve(ctx, t, c, id, r)
	require.NoError(t, err)
	require.True(t, res.Existing)

	bad := r
	bad.Resources = resources.Vector{}.With(resources.CPU, -2)
	_, err = reserve(ctx, t, c, id, bad)
	var app *temporal.ApplicationError
	require.True(t, errors.As(err, &app), "%v", err)
	require.Equal(t, "InvalidReservation", app.Type())

	hard := r
	hard.Key, hard.Soft, hard.Resources = "run-7", false, resources.Vector{}.With(resources.CPU, 6)
	res, err = reserve(ctx, t, c, id, hard)
	require.NoError(t, err)
	require.Equal(t, []string{"prefetch-1"}, res.Reclaimed)

	v, err := c.QueryWorkflow(ctx, id, "", headstart.QueryPool)
	require.NoError(t, err)
	var pool headstart.PoolStatus
	require.NoError(t, v.Get(&pool))
	require.Equal(t, 1, pool.Reservations)
	require.Equal(t, 6.0, pool.Hard.Get(resources.CPU))

	hist, err := temporaltest.History(ctx, c, id, run.GetRunID())
	require.NoError(t, err)
	replayer := sdkworker.NewWorkflowReplayer()
	controlplane.RegisterWorkflows(replayer)
	require.NoError(t, replayer.ReplayWorkflowHistory(nil, hist))
	if *record {
		require.NoError(t, temporaltest.WriteHistory(recordedLedgerHistory, hist))
	}
	require.NoError(t, c.CancelWorkflow(ctx, id, ""))
}

// TestReplayRecordedLedgerHistory guards the ledger's determinism across code changes.
func TestReplayRecordedLedgerHistory(t *testing.T) {
	if *record {
		t.Skip("recording")
	}
	replayer := sdkworker.NewWorkflowReplayer()
	controlplane.RegisterWorkflows(replayer)
	require.NoError(t, replayer.ReplayWorkflowHistoryFromJSONFile(nil, recordedLedgerHistory))
}

func TestMain(m *testing.M) { os.Exit(temporaltest.Main(m)) }
