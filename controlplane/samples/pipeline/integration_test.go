package pipeline

import (
	"context"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/headstart-dev/headstart/internal/temporaltest"
)

var record = flag.Bool("record", false, "rewrite the recorded histories in testdata from runs on the dev server")

const recordedHistory = "testdata/pipeline-history.json"

func TestMain(m *testing.M) { os.Exit(temporaltest.Main(m)) }

func TestPipelineEndToEndOnDevServer(t *testing.T) {
	srv := temporaltest.Shared(t)
	c := srv.Client()
	taskQueue := "pipeline-" + t.Name()
	w := worker.New(c, taskQueue, worker.Options{})
	w.RegisterWorkflow(Pipeline)
	w.RegisterActivity(&Activities{Dir: t.TempDir()})
	require.NoError(t, w.Start())
	defer w.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	in := Input{ExtractMiB: 4, Shards: 4, TransformRounds: 32, TrainMiB: 16, Seed: 7, PublishFailures: 1}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "pipeline-e2e", TaskQueue: taskQueue}, Pipeline, in)
	require.NoError(t, err)
	var r Report
	require.NoError(t, run.Get(ctx, &r))
	require.Equal(t, int64(4<<20), r.ExtractedBytes)
	require.Len(t, r.ShardDigests, 4)
	require.Equal(t, int64(16<<20), r.TrainedBytes)

	history, err := temporaltest.History(ctx, c, run.GetID(), run.GetRunID())
	require.NoError(t, err)
	scheduled := map[string]int{}
	var publishAttempt int32
	startedType := map[int64]string{}
	for _, e := range history.Events {
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
			scheduled[a.ActivityType.Name]++
			startedType[e.EventId] = a.ActivityType.Name
		}
		if a := e.GetActivityTaskStartedEventAttributes(); a != nil && startedType[a.ScheduledEventId] == "Publish" {
			publishAttempt = a.Attempt
		}
	}
	require.Equal(t, map[string]int{"Extract": 1, "Transform": 4, "Train": 1, "Publish": 1}, scheduled)
	require.Equal(t, int32(2), publishAttempt, "publish should succeed on its second attempt")

	replayer := worker.NewWorkflowReplayer()
	replayer.RegisterWorkflow(Pipeline)
	require.NoError(t, replayer.ReplayWorkflowHistory(nil, history))

	if *record {
		require.NoError(t, temporaltest.WriteHistory(recordedHistory, history))
	}
}

// TestReplayRecordedHistory guards the workflow's determinism: a history
// recorded on the dev server must replay against the current code.
func TestReplayRecordedHistory(t *testing.T) {
	if *record {
		t.Skip("recording")
	}
	replayer := worker.NewWorkflowReplayer()
	replayer.RegisterWorkflow(Pipeline)
	require.NoError(t, replayer.ReplayWorkflowHistoryFromJSONFile(nil, recordedHistory))
}
