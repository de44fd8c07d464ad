package interceptors_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/interceptors"
)

func double(_ context.Context, x int) (int, error) { return 2 * x, nil }

// timing records, for each attempt, how long the rest of the chain after it
// takes. Placed around the profiler and again inside it, the difference of
// the two for one attempt is what the profiler added to that attempt, free of
// whatever else the machine was doing to the activity itself.
type timing struct {
	interceptor.WorkerInterceptorBase
	mu        sync.Mutex
	durations []time.Duration
}

func (t *timing) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &timingActivity{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}, t: t}
}

type timingActivity struct {
	interceptor.ActivityInboundInterceptorBase
	t *timing
}

func (a *timingActivity) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	start := time.Now()
	r, err := a.Next.ExecuteActivity(ctx, in)
	d := time.Since(start)
	a.t.mu.Lock()
	a.t.durations = append(a.t.durations, d)
	a.t.mu.Unlock()
	return r, err
}

// addedP99 is the 99th percentile over attempts of outer − inner.
func addedP99(outer, inner *timing) time.Duration {
	added := make([]time.Duration, len(outer.durations))
	for i := range added {
		added[i] = outer.durations[i] - inner.durations[i]
	}
	slices.Sort(added)
	return added[len(added)*99/100]
}

// runActivities runs n activities through the given interceptors and checks every result.
func runActivities(t *testing.T, n int, ics ...interceptor.WorkerInterceptor) {
	t.Helper()
	env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: ics})
	env.RegisterActivity(double)
	for i := 0; i < n; i++ {
		v, err := env.ExecuteActivity(double, i)
		require.NoError(t, err)
		var got int
		require.NoError(t, v.Get(&got))
		require.Equal(t, 2*i, got)
	}
}

type blockingSink struct{ release chan struct{} }

func (s blockingSink) Observe(ctx context.Context, _ headstart.Observation) error {
	<-s.release
	return nil
}

type erroringSink struct{}

func (erroringSink) Observe(context.Context, headstart.Observation) error {
	return errors.New("forecaster unreachable")
}

type panickingSink struct{}

func (panickingSink) Observe(context.Context, headstart.Observation) error { panic("sink bug") }

// p99Limit is what the profiler may add to an activity at p99: 1 ms. Under the
// race detector, whose instrumentation slows every memory access, 10 ms;
// `make test` runs this test without it too.
var p99Limit = map[bool]time.Duration{false: time.Millisecond, true: 10 * time.Millisecond}[raceEnabled]

// TestSinkFailuresNeverReachActivities: a sink that blocks, errors or panics
// leaves every activity's result unchanged, adds under 1 ms at p99, and what
// could not be delivered is counted.
func TestSinkFailuresNeverReachActivities(t *testing.T) {
	const n = 600
	release := make(chan struct{})
	tests := []struct {
		name  string
		sink  interceptors.Sink
		check func(t *testing.T, s interceptors.Stats)
	}{
		{"blocking", blockingSink{release}, func(t *testing.T, s interceptors.Stats) {
			require.Positive(t, s.Dropped(), "a blocked sink must cause counted drops")
			require.Equal(t, int64(n), s.Observed+s.DroppedFull)
		}},
		{"erroring", erroringSink{}, func(t *testing.T, s interceptors.Stats) {
			require.Equal(t, s.Observed-s.DroppedBacklog, s.SinkErrors)
			require.Zero(t, s.Delivered)
		}},
		{"panicking", panickingSink{}, func(t *testing.T, s interceptors.Stats) {
			require.Equal(t, s.Observed-s.DroppedBacklog, s.SinkPanics)
			require.Zero(t, s.InternalPanics)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			prof, err := interceptors.NewProfiler(interceptors.ProfilerOptions{Sink: tt.sink, Registerer: reg, BufferSize: 16})
			require.NoError(t, err)
			outer, inner := &timing{}, &timing{}
			runActivities(t, n, outer, prof, inner)

			added := addedP99(outer, inner)
			t.Logf("the profiler with a %s sink added %v at p99 over %d activities (limit %v)", tt.name, added, n, p99Limit)
			require.Less(t, added, p99Limit)

			if tt.name == "blocking" {
				close(release)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, prof.Close(ctx))
			s := prof.Stats()
			t.Logf("stats: %+v", s)
			tt.check(t, s)
			if s.Dropped() > 0 {
				require.Positive(t, testutil.ToFloat64(metricVec(t, reg, "headstart_profiler_observations_dropped_total")))
			}
		})
	}
}

// metricVec sums every series of a metric family in reg.
func metricVec(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sum"})
	c.Add(sum)
	return c
}

func TestPanickingActivityIsObservedAndStillFails(t *testing.T) {
	sink := interceptors.NewMemorySink(0)
	prof, err := interceptors.NewProfiler(interceptors.ProfilerOptions{Sink: sink})
	require.NoError(t, err)
	env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{prof}})
	boom := func(context.Context) error { panic("boom") }
	env.RegisterActivityWithOptions(boom, activityOptions("Boom"))
	_, err = env.ExecuteActivity("Boom")
	var panicErr *temporal.PanicError
	require.True(t, errors.As(err, &panicErr), "the activity's panic must still reach the SDK, got %v", err)

	fail := func(context.Context) error { return temporal.NewApplicationError("no", "Nope") }
	env.RegisterActivityWithOptions(fail, activityOptions("Fail"))
	_, err = env.ExecuteActivity("Fail")
	require.Error(t, err)

	require.NoError(t, prof.Close(context.Background()))
	obs := sink.Observations()
	require.Len(t, obs, 2)
	require.Equal(t, headstart.OutcomePanic, obs[0].Outcome)
	require.Equal(t, headstart.OutcomeApplication, obs[1].Outcome)
	require.Equal(t, "Nope", obs[1].ErrorType)
}

// TestRecordChildAddsTheChildsExactUsage: a child process's own rusage is
// added to the attempt that started it.
func TestRecordChildAddsTheChildsExactUsage(t *testing.T) {
	sink := interceptors.NewMemorySink(0)
	prof, err := interceptors.NewProfiler(interceptors.ProfilerOptions{Sink: sink})
	require.NoError(t, err)
	// The child holds more memory than this process ever has, so its peak
	// RSS cannot be the one Linux copies from the parent at exec.
	childBytes := int64(2*highWaterMark(t)) + 100<<20
	var childCPU, selfCPU float64 // what the child's own rusage says; what this process used meanwhile
	spawn := func(ctx context.Context) error {
		self := processCPU(t)
		cmd := exec.CommandContext(ctx, "sh", "-c", fmt.Sprintf(
			"i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; dd if=/dev/zero of=/dev/null bs=%d count=1 2>/dev/null", childBytes))
		if err := cmd.Run(); err != nil {
			return err
		}
		selfCPU = processCPU(t) - self
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		childCPU = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
		interceptors.RecordChild(ctx, cmd.ProcessState)
		return nil
	}
	env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{prof}})
	env.RegisterActivityWithOptions(spawn, activityOptions("Spawn"))
	_, err = env.ExecuteActivity("Spawn")
	require.NoError(t, err)
	require.NoError(t, prof.Close(context.Background()))

	o := sink.Observations()[0]
	t.Logf("child cpu %.3f s, this process meanwhile %.3f s; observation cpu %.3f s, peak memory %.0f MiB (child held %d MiB)",
		childCPU, selfCPU, o.CPUSeconds, o.PeakMemoryBytes/(1<<20), childBytes>>20)
	require.Greater(t, childCPU, 0.02, "the child should have burned CPU")
	require.GreaterOrEqual(t, o.CPUSeconds, childCPU)
	require.LessOrEqual(t, o.CPUSeconds-childCPU, selfCPU+0.01, "beyond the child, only this process's own CPU is added")
	require.Greater(t, o.PeakMemoryBytes, 0.95*float64(childBytes), "the child's peak RSS counts")
}

func processCPU(t *testing.T) float64 {
	var ru syscall.Rusage
	require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// highWaterMark is this process's peak RSS in bytes.
func highWaterMark(t *testing.T) float64 {
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			require.NoError(t, err)
			return kb * 1024
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// TestPredecessorsFollowSchedulingOrder: a fan-out shares the predecessor of
// its first activity; a stage repeated later gets the stage before it.
func TestPredecessorsFollowSchedulingOrder(t *testing.T) {
	sink := interceptors.NewMemorySink(0)
	prof, err := interceptors.NewProfiler(interceptors.ProfilerOptions{Sink: sink})
	require.NoError(t, err)
	env := (&testsuite.WorkflowTestSuite{}).NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{prof}})
	env.RegisterWorkflowWithOptions(stagesWorkflow, workflow.RegisterOptions{Name: "Stages"})
	for _, name := range []string{"A", "B", "C"} {
		env.RegisterActivityWithOptions(double, activityOptions(name))
	}
	env.ExecuteWorkflow("Stages")
	require.NoError(t, env.GetWorkflowError())
	require.NoError(t, prof.Close(context.Background()))

	var got []string
	for _, o := range sink.Observations() {
		got = append(got, o.ActivityType+"<"+o.Predecessor)
	}
	slices.Sort(got)
	require.Equal(t, []string{"A<", "A<Stages/C", "B<Stages/A", "B<Stages/A", "B<Stages/A", "C<Stages/B"}, got)
}

// stagesWorkflow runs A, then B three times in parallel, then C, then A again.
func stagesWorkflow(ctx workflow.Context) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	if err := workflow.ExecuteActivity(ctx, "A", 1).Get(ctx, nil); err != nil {
		return err
	}
	var fs []workflow.Future
	for i := 0; i < 3; i++ {
		fs = append(fs, workflow.ExecuteActivity(ctx, "B", i))
	}
	for _, f := range fs {
		if err := f.Get(ctx, nil); err != nil {
			return err
		}
	}
	if err := workflow.ExecuteActivity(ctx, "C", 1).Get(ctx, nil); err != nil {
		return err
	}
	return workflow.ExecuteActivity(ctx, "A", 2).Get(ctx, nil)
}
