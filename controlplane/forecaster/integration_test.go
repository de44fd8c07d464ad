package forecaster_test

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdkpb "go.temporal.io/api/sdk/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane"
	"github.com/headstart-dev/headstart/controlplane/samples/pipeline"
	"github.com/headstart-dev/headstart/interceptors"
	"github.com/headstart-dev/headstart/internal/temporaltest"
)

var record = flag.Bool("record", false, "rewrite "+recordedHistory+" from a run on the dev server")

const recordedHistory = "testdata/forecaster-history.json"

func TestMain(m *testing.M) { os.Exit(temporaltest.Main(m)) }

// TestForecasterPredictsThePipelineOnDevServer: the sample pipeline, profiled
// and batching to the forecaster, yields predictions for every stage within a
// few batches; the temporal CLI's query returns them and the metadata query
// the current details.
func TestForecasterPredictsThePipelineOnDevServer(t *testing.T) {
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := controlplane.Options{Fleet: "it", TaskQueue: "headstart-it"}

	control, err := controlplane.NewWorker(c, opts)
	require.NoError(t, err)
	require.NoError(t, control.Start())
	defer control.Stop()

	sink, err := interceptors.NewBatchingSink(interceptors.BatchOptions{Send: interceptors.ForecasterSender(c, interceptors.SenderOptions{TaskQueue: opts.TaskQueue, Fleet: opts.Fleet}), FlushInterval: 200 * time.Millisecond})
	require.NoError(t, err)
	prof, err := interceptors.NewProfiler(interceptors.ProfilerOptions{Sink: sink})
	require.NoError(t, err)
	w := sdkworker.New(c, "pipeline-it", sdkworker.Options{Interceptors: []interceptor.WorkerInterceptor{prof}})
	w.RegisterWorkflow(pipeline.Pipeline)
	w.RegisterActivity(&pipeline.Activities{Dir: t.TempDir()})
	require.NoError(t, w.Start())
	defer w.Stop()

	for i := 0; i < 4; i++ {
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: "pipeline-it"}, pipeline.Pipeline,
			pipeline.Input{ExtractMiB: 2 + i, Shards: 2, TransformRounds: 10, TrainMiB: 8 + 4*i, Seed: uint64(i)})
		require.NoError(t, err)
		require.NoError(t, run.Get(ctx, nil))
	}

	var preds []headstart.Prediction
	deadline := time.Now().Add(30 * time.Second)
	for {
		preds, err = controlplane.Predictions(ctx, c, opts.Fleet)
		if err == nil && len(preds) == 4 && preds[2].Observed >= 4 { // Train, sorted third
			break
		}
		require.True(t, time.Now().Before(deadline), "no predictions for every stage: %v %+v", err, preds)
		time.Sleep(100 * time.Millisecond)
	}
	stages := []string{}
	for _, p := range preds {
		stages = append(stages, p.Stage)
		require.Positive(t, p.Memory.Target, "%s has a memory target", p.Stage)
	}
	require.Equal(t, []string{"Pipeline/Extract", "Pipeline/Publish", "Pipeline/Train", "Pipeline/Transform"}, stages)
	require.Equal(t, "Pipeline/Transform", preds[0].Next[0].Stage, "after Extract comes Transform")

	// The temporal CLI, as a person would run it.
	cli, err := temporaltest.CLIPath(ctx)
	require.NoError(t, err)
	out, err := exec.CommandContext(ctx, cli, "workflow", "query", "--address", srv.HostPort(),
		"--workflow-id", headstart.ForecasterWorkflowID(opts.Fleet), "--name", headstart.QueryPredictions, "--output", "json").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "Pipeline/Train")
	var cliResult struct {
		QueryResult []json.RawMessage `json:"queryResult"`
	}
	require.NoError(t, json.Unmarshal(out, &cliResult), "%s", out)
	require.Len(t, cliResult.QueryResult, 1)

	// What the Web UI shows: current details in the metadata query.
	v, err := c.QueryWorkflow(ctx, headstart.ForecasterWorkflowID(opts.Fleet), "", "__temporal_workflow_metadata")
	require.NoError(t, err)
	var md sdkpb.WorkflowMetadata
	require.NoError(t, v.Get(&md))
	require.Contains(t, md.GetCurrentDetails(), "| Pipeline/Train |")
	require.NotEmpty(t, md.GetDefinition().GetQueryDefinitions())

	if *record {
		require.NoError(t, prof.Close(ctx))
		h, err := temporaltest.History(ctx, c, headstart.ForecasterWorkflowID(opts.Fleet), "")
		require.NoError(t, err)
		require.NoError(t, temporaltest.WriteHistory(recordedHistory, h))
	}
}

// TestReplayRecordedForecasterHistory guards the forecaster's determinism: a
// history recorded on the dev server replays against the current code.
func TestReplayRecordedForecasterHistory(t *testing.T) {
	if *record {
		t.Skip("recording")
	}
	replayer := sdkworker.NewWorkflowReplayer()
	controlplane.RegisterWorkflows(replayer)
	require.NoError(t, replayer.ReplayWorkflowHistoryFromJSONFile(nil, recordedHistory))
}
