package pipeline_test

import (
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/forecasting"
	"github.com/headstart-dev/headstart/controlplane/samples/pipeline"
	"github.com/headstart-dev/headstart/interceptors"
	"github.com/headstart-dev/headstart/internal/temporaltest"
)

const mib = 1 << 20

// TestProfilerMeasuresThePipeline runs the sample pipeline on a real dev
// server with the profiler and checks each stage's observations against what
// its activities really did.
func TestProfilerMeasuresThePipeline(t *testing.T) {
	srv := temporaltest.Shared(t)
	c := srv.Client()
	reg := prometheus.NewRegistry()
	sink := interceptors.NewMemorySink(0)
	prof, err := interceptors.NewProfiler(interceptors.ProfilerOptions{Sink: sink, Registerer: reg})
	require.NoError(t, err)
	metricsServer := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer metricsServer.Close()

	taskQueue := "profiler-" + t.Name()
	w := worker.New(c, taskQueue, worker.Options{Interceptors: []interceptor.WorkerInterceptor{prof}})
	w.RegisterWorkflow(pipeline.Pipeline)
	w.RegisterActivity(&pipeline.Activities{Dir: t.TempDir()})
	require.NoError(t, w.Start())

	const extractMiB, trainMiB, shards = 32, 128, 2
	in := pipeline.Input{ExtractMiB: extractMiB, Shards: shards, TransformRounds: 200, TrainMiB: trainMiB, Seed: 3, PublishFailures: 1}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "profiled-pipeline", TaskQueue: taskQueue}, pipeline.Pipeline, in)
	require.NoError(t, err)
	require.NoError(t, run.Get(ctx, nil))
	w.Stop()
	require.NoError(t, prof.Close(ctx))

	byType := map[string][]headstart.Observation{}
	for _, o := range sink.Observations() {
		byType[o.ActivityType] = append(byType[o.ActivityType], o)
	}
	require.Len(t, byType["Extract"], 1)
	require.Len(t, byType["Transform"], shards)
	require.Len(t, byType["Train"], 1)
	require.Len(t, byType["Publish"], 2)
	extract, train := byType["Extract"][0], byType["Train"][0]

	t.Run("stages and predecessors follow the pipeline", func(t *testing.T) {
		want := map[string]string{"Extract": "", "Transform": "Pipeline/Extract", "Train": "Pipeline/Transform", "Publish": "Pipeline/Train"}
		for typ, obs := range byType {
			for _, o := range obs {
				require.Equal(t, "Pipeline/"+typ, o.Stage)
				require.Equal(t, want[typ], o.Predecessor, "predecessor of %s", typ)
				require.Equal(t, taskQueue, o.TaskQueue)
				require.Greater(t, o.Wall, time.Duration(0))
				require.GreaterOrEqual(t, o.ScheduleToStart, time.Duration(0))
				require.Less(t, o.ScheduleToStart, 10*time.Second)
			}
		}
	})

	t.Run("attempts that run past a sample interval report their start too", func(t *testing.T) {
		starts := sink.Starts()
		// Extract, the Transforms and Train each run longer than the 50 ms
		// interval; Publish's attempts may end within it.
		require.GreaterOrEqual(t, len(starts), 4)
		seen := map[string]bool{}
		for _, s := range starts {
			seen[s.ActivityType] = true
		}
		for _, typ := range []string{"Extract", "Transform", "Train"} {
			require.True(t, seen[typ], "no start event of %s", typ)
		}
		started := map[time.Time]bool{}
		for _, o := range sink.Observations() {
			started[o.Started] = true
		}
		for _, s := range starts {
			require.Equal(t, run.GetRunID(), s.RunID)
			require.True(t, started[s.Started], "start %+v matches an observation", s)
		}
	})

	t.Run("the failing-then-retried publish shows both attempts", func(t *testing.T) {
		first, second := byType["Publish"][0], byType["Publish"][1]
		require.Equal(t, int32(1), first.Attempt)
		require.Equal(t, headstart.OutcomeApplication, first.Outcome)
		require.Equal(t, pipeline.ErrTypeTransientPublish, first.ErrorType)
		require.Equal(t, int32(2), second.Attempt)
		require.Equal(t, headstart.OutcomeOK, second.Outcome)
	})

	t.Run("CPU-bound transform uses the CPU its work costs", func(t *testing.T) {
		// The same shard's work, run alone without the profiler, is the yardstick.
		alone := cpuOf(t, func() {
			env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
			env.RegisterActivity(&pipeline.Activities{})
			_, err := env.ExecuteActivity((&pipeline.Activities{}).Transform, pipeline.TransformInput{Seed: 1, Rounds: in.TransformRounds})
			require.NoError(t, err)
		})
		var total float64
		first, last := byType["Transform"][0].Started, byType["Transform"][0].Started
		for _, o := range byType["Transform"] {
			t.Logf("transform shard: cpu %.3f s, wall %.3f s; the same work alone: cpu %.3f s", o.CPUSeconds, o.Wall.Seconds(), alone)
			// Concurrent attempts share each CPU delta equally, so a shard
			// that got more than its half of the cores reads low, its sibling
			// high; and the worker's own work meanwhile (polling, heartbeats,
			// GC, heavier under -race beside other test binaries) is charged
			// to them. Measured: 0.76–1.56× the bare work.
			require.GreaterOrEqual(t, o.CPUSeconds, 0.5*alone)
			require.LessOrEqual(t, o.CPUSeconds, 2*alone)
			total += o.CPUSeconds
			first, last = minTime(first, o.Started), maxTime(last, o.Started.Add(o.Wall))
		}
		// Together the shards used what their work costs, plus the worker's
		// own work meanwhile (polling, heartbeats, GC), which is charged to
		// the attempts running (measured up to 1.4×); and no more than the
		// cores allow.
		span := last.Sub(first).Seconds()
		t.Logf("transform: %d shards used %.3f CPU s in %.3f s on %d cores", shards, total, span, runtime.NumCPU())
		require.GreaterOrEqual(t, total, 0.8*shards*alone)
		require.LessOrEqual(t, total, 1.6*shards*alone)
		require.LessOrEqual(t, total, span*float64(runtime.NumCPU())*1.1)
		// Publish only hashes a few digests.
		require.Less(t, byType["Publish"][1].CPUSeconds, 0.1*alone)
	})

	t.Run("memory-heavy train peaks above the others by what it allocates", func(t *testing.T) {
		var others float64
		for typ, obs := range byType {
			for _, o := range obs {
				if typ != "Train" {
					others = max(others, o.PeakMemoryBytes)
				}
			}
		}
		t.Logf("train peak %.1f MiB, highest other stage %.1f MiB, allocated %d MiB", train.PeakMemoryBytes/mib, others/mib, trainMiB)
		require.InDelta(t, float64(trainMiB*mib), train.PeakMemoryBytes, 0.15*trainMiB*mib)
		require.Greater(t, train.PeakMemoryBytes-others, 0.8*trainMiB*mib)
	})

	t.Run("I/O-bound extract wrote the bytes it wrote", func(t *testing.T) {
		t.Logf("extract wrote %.2f MiB (file %d MiB), read %.2f MiB, %v ops", extract.DiskWriteBytes/mib, extractMiB, extract.DiskReadBytes/mib, extract.DiskOps)
		require.GreaterOrEqual(t, extract.DiskWriteBytes, float64(extractMiB*mib))
		require.Less(t, extract.DiskWriteBytes, 1.1*extractMiB*mib)       // file data plus filesystem metadata
		require.GreaterOrEqual(t, extract.DiskOps, float64(2*extractMiB)) // one write and one read call per MiB at least
		for _, o := range append(byType["Transform"], train) {
			require.Less(t, o.DiskWriteBytes, float64(mib), "%s wrote to disk", o.Stage)
		}
	})

	t.Run("payload sizes match the encoded inputs and results", func(t *testing.T) {
		in, out := payloadSizesFromHistory(ctx, t, c, run)
		for typ, obs := range byType {
			var gotIn, gotOut []int
			for _, o := range obs {
				gotIn = append(gotIn, int(o.PayloadInBytes))
				if o.Outcome == headstart.OutcomeOK {
					gotOut = append(gotOut, int(o.PayloadOutBytes))
				}
			}
			// Retries reuse the scheduled input: one history input per attempt.
			wantIn := in[typ]
			if typ == "Publish" {
				wantIn = append(wantIn, wantIn...)
			}
			require.ElementsMatch(t, wantIn, gotIn, "input payload bytes of %s", typ)
			require.ElementsMatch(t, out[typ], gotOut, "result payload bytes of %s", typ)
		}
	})

	t.Run("the observations make the stages' profiles", func(t *testing.T) {
		profiles := forecasting.NewProfileSet(forecasting.ProfileOptions{})
		for _, o := range sink.Observations() {
			profiles.Add(o, time.Now())
		}
		pub, ok := profiles.Get("Pipeline/Publish"), profiles.Get("Pipeline/Publish") != nil
		require.True(t, ok)
		require.Equal(t, int64(2), pub.Count)
		require.Equal(t, int64(1), pub.Errors)
		require.Equal(t, int64(1), pub.Retries)
		ext := profiles.Get("Pipeline/Extract")
		require.Equal(t, []forecasting.Edge{{Stage: "Pipeline/Transform", Count: shards}}, ext.Successors)
		tr := profiles.Get("Pipeline/Train")
		require.Equal(t, []forecasting.Edge{{Stage: "Pipeline/Transform", Count: 1}}, tr.Predecessors)
		require.InDelta(t, train.PeakMemoryBytes, tr.Moments[forecasting.MetricPeakMemory].Max, 1)
	})

	t.Run("the workflow replays deterministically with the profiler", func(t *testing.T) {
		history, err := temporaltest.History(ctx, c, run.GetID(), run.GetRunID())
		require.NoError(t, err)
		replayer, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{Interceptors: []interceptor.WorkerInterceptor{prof}})
		require.NoError(t, err)
		replayer.RegisterWorkflow(pipeline.Pipeline)
		require.NoError(t, replayer.ReplayWorkflowHistory(nil, history))
		if recording() {
			require.NoError(t, temporaltest.WriteHistory(recordedProfiledHistory, history))
		}
	})

	t.Run("the metrics endpoint serves every stage", func(t *testing.T) {
		resp, err := http.Get(metricsServer.URL)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		text := string(body)
		for _, want := range []string{
			`headstart_activity_attempts_total{stage="Pipeline/Publish"} 2`,
			`headstart_activity_retries_total{stage="Pipeline/Publish"} 1`,
			`headstart_activity_errors_total{class="application",stage="Pipeline/Publish"} 1`,
			`headstart_activity_cpu_seconds_count{stage="Pipeline/Transform"} 2`,
			`headstart_activity_peak_memory_bytes_count{stage="Pipeline/Train"} 1`,
			`headstart_activity_duration_seconds_count{stage="Pipeline/Extract"} 1`,
			`headstart_activity_schedule_to_start_seconds_count{stage="Pipeline/Extract"} 1`,
			`headstart_activity_disk_write_bytes_total{stage="Pipeline/Extract"}`,
			`headstart_activity_payload_in_bytes_total{stage="Pipeline/Train"}`,
		} {
			require.Contains(t, text, want)
		}
		require.NotContains(t, text, "profiled-pipeline", "a workflow ID leaked into a label")
	})
}

const recordedProfiledHistory = "testdata/profiled-pipeline-history.json"

// recording reports the -record flag, which the package's internal tests declare.
func recording() bool {
	f := flag.Lookup("record")
	return f != nil && f.Value.String() == "true"
}

// TestReplayRecordedProfiledHistory guards determinism across code changes: a
// history recorded with the profiler installed (its predecessor headers in
// every activity) replays against the current workflow and interceptor.
func TestReplayRecordedProfiledHistory(t *testing.T) {
	prof, err := interceptors.NewProfiler(interceptors.ProfilerOptions{})
	require.NoError(t, err)
	defer prof.Close(context.Background())
	replayer, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{Interceptors: []interceptor.WorkerInterceptor{prof}})
	require.NoError(t, err)
	replayer.RegisterWorkflow(pipeline.Pipeline)
	require.NoError(t, replayer.ReplayWorkflowHistoryFromJSONFile(nil, recordedProfiledHistory))
}

// payloadSizesFromHistory returns, per activity type, the sizes of the input
// payload data as scheduled and of the result payload data as completed.
func payloadSizesFromHistory(ctx context.Context, t *testing.T, c client.Client, run client.WorkflowRun) (in, out map[string][]int) {
	in, out = map[string][]int{}, map[string][]int{}
	types := map[int64]string{}
	history, err := temporaltest.History(ctx, c, run.GetID(), run.GetRunID())
	require.NoError(t, err)
	for _, e := range history.Events {
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
			types[e.EventId] = a.ActivityType.Name
			n := 0
			for _, p := range a.Input.GetPayloads() {
				n += len(p.Data)
			}
			in[a.ActivityType.Name] = append(in[a.ActivityType.Name], n)
		}
		if a := e.GetActivityTaskCompletedEventAttributes(); a != nil {
			n := 0
			for _, p := range a.Result.GetPayloads() {
				n += len(p.Data)
			}
			typ := types[a.ScheduledEventId]
			out[typ] = append(out[typ], n)
		}
	}
	require.NotEmpty(t, in)
	return in, out
}

func cpuOf(t *testing.T, f func()) float64 {
	t.Helper()
	cpu := func() float64 {
		var ru syscall.Rusage
		require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
		return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	}
	before := cpu()
	f()
	return cpu() - before
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
