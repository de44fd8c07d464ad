package forecaster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	sdkpb "go.temporal.io/api/sdk/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/activities"
	"github.com/headstart-dev/headstart/controlplane/forecasting"
	"github.com/headstart-dev/headstart/controlplane/internal/promtest"
)

func newEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	env := s.NewTestWorkflowEnvironment()
	env.SetTestTimeout(2 * time.Minute) // real time: fitting demand trains an LSTM, slow under -race
	env.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: headstart.ForecasterWorkflowName})
	fitter, err := activities.NewFitter(prometheus.NewRegistry())
	require.NoError(t, err)
	env.RegisterActivity(fitter)
	env.RegisterActivity(Rest)
	return env
}

var t0 = time.Unix(0, 0)

// pipelineBatch is n runs of extract → transform → train, memory as given.
func pipelineBatch(first, n int, trainMemory float64) []headstart.Observation {
	var b []headstart.Observation
	for r := first; r < first+n; r++ {
		run := fmt.Sprintf("run-%d", r)
		start := t0.Add(time.Duration(r) * time.Minute)
		for i, st := range []struct {
			activity string
			mem      float64
			wall     time.Duration
		}{{"Extract", 50e6, 2 * time.Second}, {"Transform", 100e6, 5 * time.Second}, {"Train", trainMemory, 10 * time.Second}} {
			pred := ""
			if i > 0 {
				pred = "Pipeline/" + []string{"Extract", "Transform"}[i-1]
			}
			b = append(b, headstart.Observation{
				Stage: "Pipeline/" + st.activity, WorkflowType: "Pipeline", ActivityType: st.activity,
				WorkflowID: run, RunID: run, Predecessor: pred, Attempt: 1,
				Scheduled: start.Add(time.Duration(i) * 20 * time.Second), Started: start.Add(time.Duration(i) * 20 * time.Second),
				Wall: st.wall, CPUSeconds: st.wall.Seconds() * 0.9, PeakMemoryBytes: st.mem * (1 + 0.02*float64(r%5)),
				PayloadInBytes: 1000, Outcome: headstart.OutcomeOK,
			})
		}
	}
	return b
}

func query[T any](t *testing.T, env *testsuite.TestWorkflowEnvironment, name string) T {
	t.Helper()
	v, err := env.QueryWorkflow(name)
	require.NoError(t, err)
	var out T
	require.NoError(t, v.Get(&out))
	return out
}

func TestForecasterTurnsBatchesIntoPredictions(t *testing.T) {
	env := newEnv(t)
	var preds []headstart.Prediction
	var status headstart.ForecasterStatus
	var details string
	var instances []headstart.InstanceForecast
	env.RegisterDelayedCallback(func() {
		// Ten whole runs, and an eleventh that has reached Transform.
		env.SignalWorkflow(headstart.ObservationsSignal, headstart.ObservationBatch{Observations: append(pipelineBatch(0, 10, 1e9), pipelineBatch(10, 1, 1e9)[:2]...)})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		// A bad observation is counted and skipped, not fatal.
		env.SignalWorkflow(headstart.ObservationsSignal, headstart.ObservationBatch{Observations: []headstart.Observation{{Stage: "", Attempt: 1}}})
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		preds = query[[]headstart.Prediction](t, env, headstart.QueryPredictions)
		status = query[headstart.ForecasterStatus](t, env, headstart.QueryStatus)
		instances = query[[]headstart.InstanceForecast](t, env, headstart.QueryInstances)
		details = query[*sdkpb.WorkflowMetadata](t, env, "__temporal_workflow_metadata").GetCurrentDetails()
		env.CancelWorkflow()
	}, 3*time.Minute)
	env.ExecuteWorkflow(headstart.ForecasterWorkflowName, headstart.ForecasterInput{})

	require.Equal(t, int64(32), status.Observed)
	require.Equal(t, int64(1), status.Rejected)
	require.Len(t, preds, 3)
	byStage := map[string]headstart.Prediction{}
	for _, p := range preds {
		byStage[p.Stage] = p
	}
	train := byStage["Pipeline/Train"]
	require.Greater(t, train.Memory.Target, 1e9, "the target covers the peaks seen")
	require.Less(t, train.Memory.Target, 2e9)
	require.InDelta(t, 10, train.Duration.Target, 1)
	require.Equal(t, int64(10), train.Observed)
	ext := byStage["Pipeline/Extract"]
	require.Len(t, ext.Next, 1)
	require.Equal(t, "Pipeline/Transform", ext.Next[0].Stage)
	require.Equal(t, 1.0, ext.Next[0].Probability)
	require.InDelta(t, 20, ext.Next[0].DelayP50.Seconds(), 1.5)
	// The run at Transform is expected to start Train about 20 s later;
	// runs at Train, their last stage, are finishing and not listed.
	require.Len(t, instances, 1)
	require.Equal(t, "run-10", instances[0].RunID)
	require.Equal(t, "Pipeline/Transform", instances[0].Stage)
	require.Equal(t, "Pipeline/Train", instances[0].Next[0].Stage)
	require.InDelta(t, 20, instances[0].Next[0].ExpectedAt.Sub(instances[0].Started).Seconds(), 1.5)
	// The Web UI's current details: the predictions table, Train's row included.
	require.Contains(t, details, "| stage | next expected | CPU | memory (lower–upper) | duration | confidence | recent error |")
	require.Contains(t, details, "| Pipeline/Extract | Pipeline/Transform (100%, ~20s) |")
	require.Contains(t, details, "| Pipeline/Train |")
}

func TestForecasterContinuesAsNewWithItsStateIntact(t *testing.T) {
	env := newEnv(t)
	opts := headstart.ForecasterOptions{MaxSignalsPerRun: 2}
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(headstart.ObservationsSignal, headstart.ObservationBatch{Observations: pipelineBatch(0, 5, 1e9)})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		b, err := headstart.NewObservationBatch(headstart.Batch{Observations: pipelineBatch(5, 5, 1e9)}) // packed, as senders do
		require.NoError(t, err)
		env.SignalWorkflow(headstart.ObservationsSignal, b)
	}, 2*time.Minute)
	var before []headstart.Prediction
	env.RegisterDelayedCallback(func() { before = query[[]headstart.Prediction](t, env, headstart.QueryPredictions) }, 90*time.Second)
	env.ExecuteWorkflow(headstart.ForecasterWorkflowName, headstart.ForecasterInput{Options: opts})

	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(env.GetWorkflowError(), &can), "want continue-as-new, got %v", env.GetWorkflowError())
	var next headstart.ForecasterInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.NotEmpty(t, next.Checkpoint)
	t.Logf("checkpoint after 30 observations: %d bytes", len(next.Checkpoint))

	// The next run starts from the checkpoint with the same predictions.
	env2 := newEnv(t)
	var after []headstart.Prediction
	var status headstart.ForecasterStatus
	env2.RegisterDelayedCallback(func() {
		after = query[[]headstart.Prediction](t, env2, headstart.QueryPredictions)
		status = query[headstart.ForecasterStatus](t, env2, headstart.QueryStatus)
		env2.CancelWorkflow()
	}, time.Minute)
	env2.ExecuteWorkflow(headstart.ForecasterWorkflowName, next)
	require.Equal(t, int64(30), status.Observed)
	require.Len(t, after, 3)
	require.Len(t, before, 3, "predictions before the second batch")
	for i := range after {
		require.Equal(t, after[i].Stage, before[i].Stage)
		require.Equal(t, int64(10), after[i].Observed)
	}
}

// TestFeedbackDetectsAStageWhoseMemoryDoubles: Train's memory doubles; the
// drift is detected, the stage refitted, and its prediction recovers.
func TestFeedbackDetectsAStageWhoseMemoryDoubles(t *testing.T) {
	st := newForecasterState(headstart.ForecasterOptions{})
	st.ingest(pipelineBatch(0, 40, 1e9), t0)
	before := st.current["Pipeline/Train"].Memory.Target
	require.Less(t, before, 1.5e9)

	// After the change, count observations until the target covers 2 GB again.
	recovered := -1
	for i := 0; i < 30; i++ {
		st.ingest(pipelineBatch(40+i, 1, 2e9), t0)
		if recovered < 0 && st.current["Pipeline/Train"].Memory.Target >= 2.08e9 {
			recovered = i + 1
		}
	}
	fb := st.feedback["Pipeline/Train"]
	t.Logf("target before %.2f GB; recovered after %d observations of the doubled stage; refits %d", before/1e9, recovered, fb.Refits)
	require.Positive(t, fb.Refits, "the drift should be detected")
	require.Positive(t, recovered)
	require.LessOrEqual(t, recovered, 5)
	require.Less(t, st.current["Pipeline/Train"].Memory.Target, 4e9, "and the target settles near the new level")
}

// TestForecasterFitsDemandCurvesInAnActivity: with enough history, the
// scheduled fit weighs its models per stage and its demand reaches the predictions.
func TestForecasterFitsDemandCurvesInAnActivity(t *testing.T) {
	env := newEnv(t)
	var preds []headstart.Prediction
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(headstart.ObservationsSignal, headstart.ObservationBatch{Observations: pipelineBatch(0, 40, 1e9)})
	}, 30*time.Second)
	env.RegisterDelayedCallback(func() {
		preds = query[[]headstart.Prediction](t, env, headstart.QueryPredictions)
		env.CancelWorkflow()
	}, 3*time.Minute)
	env.ExecuteWorkflow(headstart.ForecasterWorkflowName, headstart.ForecasterInput{})

	require.Len(t, preds, 3)
	for _, p := range preds {
		require.NotNil(t, p.Demand, "%s has no fitted demand", p.Stage)
		// One run a minute, each task shorter than a minute: about one arrival a minute.
		require.InDelta(t, 1, p.Demand.NextArrivals, 0.5, "%s", p.Stage)
		require.Len(t, p.Demand.Weights, 4)
		var sum float64
		for _, w := range p.Demand.Weights {
			sum += w
		}
		require.InDelta(t, 1, sum, 1e-9)
	}
}

// TestForecasterReadsUtilizationFromARealPrometheus: the configured PromQL is
// read every fit interval and shown in the status.
func TestForecasterReadsUtilizationFromARealPrometheus(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# TYPE node_busy_cores gauge\nnode_busy_cores{node=\"a\"} 3\n")
	}))
	defer target.Close()
	prom := promtest.Start(t, time.Second, strings.TrimPrefix(target.URL, "http://"))
	reader := &activities.PrometheusReader{URL: prom.URL}
	require.Eventually(t, func() bool {
		_, err := reader.Query(context.Background(), "sum(node_busy_cores)")
		return err == nil
	}, 30*time.Second, 100*time.Millisecond, "prometheus has not scraped the target")

	env := newEnv(t)
	env.RegisterActivity(reader)
	var status headstart.ForecasterStatus
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(headstart.ObservationsSignal, headstart.ObservationBatch{Observations: pipelineBatch(0, 3, 1e9)})
	}, 30*time.Second)
	env.RegisterDelayedCallback(func() {
		status = query[headstart.ForecasterStatus](t, env, headstart.QueryStatus)
		env.CancelWorkflow()
	}, 3*time.Minute)
	env.ExecuteWorkflow(headstart.ForecasterWorkflowName, headstart.ForecasterInput{Options: headstart.ForecasterOptions{Utilization: map[string]string{"cpu": "sum(node_busy_cores)"}}})
	require.Equal(t, 3.0, status.Utilization.Values["cpu"], "errors: %v", status.Utilization.Errors)
}

// TestStartEventsMoveRunsAhead: a run's start event of Train moves it to
// Train before Train's observation arrives; the observation then adds no edge.
func TestStartEventsMoveRunsAhead(t *testing.T) {
	st := newForecasterState(headstart.ForecasterOptions{})
	st.ingest(pipelineBatch(0, 5, 1e9), t0)
	partial := pipelineBatch(5, 1, 1e9)
	st.ingest(partial[:2], t0) // run-5 has finished Extract and Transform
	require.Equal(t, "Pipeline/Transform", st.runs.ByID["run-5"].Stage)
	edges := st.graph.Next("Pipeline", "Pipeline/Transform")[0].Count

	train := partial[2]
	st.starts([]headstart.StageStart{{Stage: train.Stage, WorkflowType: "Pipeline", RunID: "run-5", Attempt: 1, Started: train.Started}}, t0)
	require.Equal(t, "Pipeline/Train", st.runs.ByID["run-5"].Stage, "the start event moves the run on")
	require.Equal(t, edges+1, st.graph.Next("Pipeline", "Pipeline/Transform")[0].Count)

	st.ingest(partial[2:], t0) // Train's observation, after its start
	require.Equal(t, edges+1, st.graph.Next("Pipeline", "Pipeline/Transform")[0].Count, "one attempt, one edge")
	st.starts([]headstart.StageStart{{Stage: ""}}, t0)
	require.Equal(t, int64(1), st.rejected)
}

// TestTasksPerRunFollowTheFanOut: a stage whose runs start 4 tasks each
// predicts 4 per run, even when the observations of a run's last tasks come
// after it has moved on; when the fan-out grows to 8, the estimate follows
// within twenty runs; retries are not tasks.
func TestTasksPerRunFollowTheFanOut(t *testing.T) {
	st := newForecasterState(headstart.ForecasterOptions{})
	perRun := func() float64 {
		for _, p := range st.predictions() {
			if p.Stage == "Pipeline/Transform" {
				return p.TasksPerRun
			}
		}
		return 0
	}
	run := func(r, shards int) {
		b := pipelineBatch(r, 1, 1e9)
		extract, transform, train := b[0], b[1], b[2]
		extra := []headstart.Observation{}
		for i := 1; i < shards; i++ {
			extra = append(extra, transform)
		}
		retry := transform
		retry.Attempt = 2
		st.ingest([]headstart.Observation{extract, transform, train}, t0) // the run moves on to Train…
		st.ingest(append(extra, retry), t0)                               // …before its other shards are seen
	}
	for r := 0; r < 20; r++ {
		run(r, 4)
	}
	require.InDelta(t, 4, perRun(), 1e-9)
	for r := 20; r < 40; r++ {
		run(r, 8)
	}
	require.InDelta(t, 8, perRun(), 1e-9, "after 20 runs of 8")
	for _, p := range st.predictions() {
		if p.Stage == "Pipeline/Train" {
			require.Equal(t, 1.0, p.TasksPerRun)
		}
	}
}

// TestARunCountsTasksForBoundedStages: a run through 100 stages counts the
// tasks of its first 64 only, so a tracked run stays small.
func TestARunCountsTasksForBoundedStages(t *testing.T) {
	st := newForecasterState(headstart.ForecasterOptions{})
	var b []headstart.Observation
	for i := range 100 {
		b = append(b, headstart.Observation{Stage: fmt.Sprintf("W/s%d", i), WorkflowType: "W", ActivityType: fmt.Sprintf("s%d", i),
			RunID: "wide", Attempt: 1, Outcome: headstart.OutcomeOK, Scheduled: t0.Add(time.Duration(i) * time.Second),
			Started: t0.Add(time.Duration(i) * time.Second), Wall: time.Second, PeakMemoryBytes: 1e6})
	}
	st.ingest(b, t0)
	require.Len(t, st.runs.ByID["wide"].Tasks, forecasting.MaxCountedStages)
}
