package controlplane_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"

	"github.com/headstart-dev/headstart/controlplane"
	"github.com/headstart-dev/headstart/controlplane/samples/pipeline"
	"github.com/headstart-dev/headstart/interceptors"
	"github.com/headstart-dev/headstart/internal/temporaltest"
)

// The drop-in (interceptors.New) with the control plane and the sample pipeline.

func runPipeline(ctx context.Context, t *testing.T, c client.Client, id, queue string) {
	t.Helper()
	in := pipeline.Input{ExtractMiB: 4, Shards: 2, TransformRounds: 20, TrainMiB: 8, Seed: 1}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, pipeline.Pipeline, in)
	require.NoError(t, err)
	require.NoError(t, run.Get(ctx, nil), "the pipeline completes with the drop-in, whatever happens to Headstart")
}

// TestDropInIsOneValueThatReportsToTheForecaster: one value in
// worker.Options.Interceptors profiles the pipeline, its observations reach
// the forecaster run by a control worker, and its metrics are served.
func TestDropInIsOneValueThatReportsToTheForecaster(t *testing.T) {
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	control := controlplane.Options{TaskQueue: "dropin-control", Fleet: "dropin"}
	cw, err := controlplane.NewWorker(c, control)
	require.NoError(t, err)
	require.NoError(t, cw.Start())
	defer cw.Stop()

	hs, err := interceptors.New(c, interceptors.Options{
		Fleet: control.Fleet, ControlTaskQueue: control.TaskQueue, MetricsAddress: "127.0.0.1:0",
		Batch: interceptors.BatchOptions{FlushInterval: 100 * time.Millisecond},
	})
	require.NoError(t, err)
	defer hs.Close(context.Background())
	require.Contains(t, scrape(t, hs), "headstart_batch_send_failures_total 0", "the failure counter exists before the first failure")

	queue := "dropin-" + t.Name()
	w := worker.New(c, queue, worker.Options{Interceptors: []interceptor.WorkerInterceptor{hs}})
	w.RegisterWorkflow(pipeline.Pipeline)
	w.RegisterActivity(&pipeline.Activities{Dir: t.TempDir()})
	require.NoError(t, w.Start())
	defer w.Stop()
	runPipeline(ctx, t, c, "dropin-pipeline", queue)

	require.Eventually(t, func() bool {
		preds, err := controlplane.Predictions(ctx, c, control.Fleet)
		stages := map[string]bool{}
		for _, p := range preds {
			stages[p.Stage] = true
		}
		return err == nil && stages["Pipeline/Extract"] && stages["Pipeline/Transform"] && stages["Pipeline/Train"] && stages["Pipeline/Publish"]
	}, time.Minute, 100*time.Millisecond, "every stage of the pipeline reaches the forecaster")
	m := scrape(t, hs)
	require.Contains(t, m, `headstart_activity_attempts_total{stage="Pipeline/Train"} 1`)
	require.Contains(t, m, "headstart_batch_send_failures_total 0")
	require.NotContains(t, m, "headstart_batch_sends_total 0", "batches were sent")
}

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestDropInWithHeadstartUnreachable: with neither forecaster nor
// coordinator reachable (its client dials a closed port), the worker's
// workflows complete as they would without it; the lost batches are
// counted, and each kind of trouble is logged once a minute, not once per
// failure.
func TestDropInWithHeadstartUnreachable(t *testing.T) {
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nowhere, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	require.NoError(t, err)
	defer nowhere.Close()
	var logs lockedBuffer
	hs, err := interceptors.New(nowhere, interceptors.Options{
		MetricsAddress: "127.0.0.1:0", RouteSyncInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Batch:  interceptors.BatchOptions{MaxBatch: 1, SendTimeout: time.Second},
	})
	require.NoError(t, err)
	defer hs.Close(context.Background())

	queue := "dropin-unreachable"
	w := worker.New(c, queue, worker.Options{Interceptors: []interceptor.WorkerInterceptor{hs}})
	w.RegisterWorkflow(pipeline.Pipeline)
	w.RegisterActivity(&pipeline.Activities{Dir: t.TempDir()})
	require.NoError(t, w.Start())
	defer w.Stop()
	runPipeline(ctx, t, c, "dropin-unreachable", queue)

	require.Eventually(t, func() bool {
		return hs.Profiler().Stats().SinkErrors >= 2 && strings.Count(logs.String(), "no routes") == 1
	}, time.Minute, 50*time.Millisecond, "failed sends are counted, route failures logged")
	require.NotContains(t, scrape(t, hs), "headstart_batch_send_failures_total 0")
	require.Equal(t, 1, strings.Count(logs.String(), "observations lost"), "one line for every failed send this minute:\n%s", logs.String())
	require.Equal(t, 1, strings.Count(logs.String(), "no routes"), "one line for every failed route sync this minute")
	_, routed := hs.Router().Route("Pipeline/Transform")
	require.False(t, routed)
}

// scrape returns the drop-in's metrics as Prometheus serves them.
func scrape(t *testing.T, hs *interceptors.Interceptor) string {
	t.Helper()
	resp, err := http.Get("http://" + hs.MetricsAddr().String() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
