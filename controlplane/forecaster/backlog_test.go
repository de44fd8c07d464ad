package forecaster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane"
	"github.com/headstart-dev/headstart/controlplane/forecaster"
	"github.com/headstart-dev/headstart/interceptors"
	"github.com/headstart-dev/headstart/internal/temporaltest"
)

// TestABacklogIsTakenInTaskByTaskOrShedNeverFailed: batches pile up while
// no control worker runs (as behind a slow or stopped one); when the worker
// comes, the forecaster takes them in a bounded number at a time, sheds
// the oldest past its backlog bound and counts them, and no workflow task
// fails or times out: every item is either taken in or counted as shed.
func TestABacklogIsTakenInTaskByTaskOrShedNeverFailed(t *testing.T) {
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := controlplane.Options{Fleet: fmt.Sprintf("backlog-%d", time.Now().UnixNano()), TaskQueue: "headstart-backlog",
		Forecaster: headstart.ForecasterOptions{MaxItemsPerTask: 1000, MaxBacklogBatches: 40}}
	send := interceptors.ForecasterSender(c, interceptors.SenderOptions{TaskQueue: opts.TaskQueue, Fleet: opts.Fleet, Forecaster: opts.Forecaster})
	const batches, size, stages = 120, 500, 200
	for i := range batches {
		require.NoError(t, send(ctx, headstart.Batch{Observations: forecaster.LoadBatch(i*size, size, stages)}))
	}
	id := headstart.ForecasterWorkflowID(opts.Fleet)
	defer c.TerminateWorkflow(context.Background(), id, "", "test over")

	w, err := controlplane.NewWorker(c, opts)
	require.NoError(t, err)
	require.NoError(t, w.Start())
	defer w.Stop()
	var st headstart.ForecasterStatus
	require.Eventually(t, func() bool {
		v, err := c.QueryWorkflow(ctx, id, "", headstart.QueryStatus)
		st = headstart.ForecasterStatus{}
		return err == nil && v.Get(&st) == nil && st.Observed+st.Shed == batches*size && st.Backlog == 0
	}, time.Minute, 50*time.Millisecond, "every item taken in or shed: %+v", &st)
	t.Logf("taken in %d, shed %d items in %d batches", st.Observed, st.Shed, st.ShedBatches)
	require.Positive(t, st.Shed, "120 batches waiting, 40 allowed: the oldest are shed")
	require.Positive(t, st.Observed)
	require.Equal(t, int64(batches), int64(st.Batches)+st.ShedBatches, "each batch taken in or shed, once")

	iter := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	tasks, yields := 0, 0
	for iter.HasNext() {
		e, err := iter.Next()
		require.NoError(t, err)
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED, enumspb.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
			t.Fatalf("a workflow task failed: %v", e)
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			tasks++
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			yields++
		}
	}
	t.Logf("%d workflow tasks; %d ended to take in the rest in the next", tasks, yields)
	require.Greater(t, yields, 2, "the backlog was taken in chunks")

	// Its history, chunks, yields and all, replays against the code.
	h, err := temporaltest.History(ctx, c, id, "")
	require.NoError(t, err)
	replayer := sdkworker.NewWorkflowReplayer()
	controlplane.RegisterWorkflows(replayer)
	require.NoError(t, replayer.ReplayWorkflowHistory(nil, h))
}
