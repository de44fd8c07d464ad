package benchprofiler_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/headstart-dev/headstart/interceptors"
)

// BenchmarkActivityOverhead measures the cost per activity of no interceptor,
// the SDK's OpenTelemetry tracing interceptor, and the profiler, each on both
// sides (the workflow schedules, the activity runs), in the SDK's in-process
// test environment so that no server round trip hides the difference.
// `make bench-profiler` runs it and prints
// profiler_overhead_ratio_vs_otel = (profiler − none) / (otel − none).
func BenchmarkActivityOverhead(b *testing.B) {
	// Tracing as deployed: every span sampled and batched to an exporter (one
	// that discards, so no I/O is measured).
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	otel, err := opentelemetry.NewTracingInterceptor(opentelemetry.TracerOptions{Tracer: tp.Tracer("bench")})
	if err != nil {
		b.Fatal(err)
	}
	prof, err := interceptors.NewProfiler(interceptors.ProfilerOptions{Sink: interceptors.NewMemorySink(1000)})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = prof.Close(context.Background()) }()

	for _, bc := range []struct {
		name string
		ics  []interceptor.WorkerInterceptor
	}{
		{"none", nil},
		{"otel", []interceptor.WorkerInterceptor{otel}},
		{"profiler", []interceptor.WorkerInterceptor{prof}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var suite testsuite.WorkflowTestSuite
			suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
			env := suite.NewTestWorkflowEnvironment()
			env.SetWorkerOptions(worker.Options{Interceptors: bc.ics})
			env.RegisterWorkflowWithOptions(sequence, workflow.RegisterOptions{Name: "Sequence"})
			env.RegisterActivityWithOptions(double, activity.RegisterOptions{Name: "Double"})
			b.ReportAllocs()
			b.ResetTimer()
			env.ExecuteWorkflow("Sequence", b.N)
			b.StopTimer()
			if err := env.GetWorkflowError(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// sequence runs n activities one after another.
func sequence(ctx workflow.Context, n int) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	for i := 0; i < n; i++ {
		if err := workflow.ExecuteActivity(ctx, "Double", i).Get(ctx, nil); err != nil {
			return err
		}
	}
	return nil
}

func double(_ context.Context, x int) (int, error) { return 2 * x, nil }
