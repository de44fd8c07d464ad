package interceptors_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/headstart-dev/headstart/interceptors"
)

// flaky fails its first attempt.
func flaky(ctx context.Context, x int) (int, error) {
	if activity.GetInfo(ctx).Attempt == 1 {
		return 0, temporal.NewApplicationError("first attempt fails", "Flaky")
	}
	return x, nil
}

func fourStages(ctx workflow.Context) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
	})
	for _, name := range []string{"A", "B", "C", "D"} {
		if err := workflow.ExecuteActivity(ctx, name, 1).Get(ctx, nil); err != nil {
			return err
		}
	}
	return nil
}

// TestMetricsCountAttemptsRetriesAndErrorsWithCappedStages: the first
// MaxMetricStages stages get their own label; later ones share "other".
func TestMetricsCountAttemptsRetriesAndErrorsWithCappedStages(t *testing.T) {
	reg := prometheus.NewRegistry()
	prof, err := interceptors.NewProfiler(interceptors.ProfilerOptions{Registerer: reg, MaxMetricStages: 2})
	require.NoError(t, err)
	env := (&testsuite.WorkflowTestSuite{}).NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{prof}})
	env.RegisterWorkflowWithOptions(fourStages, workflow.RegisterOptions{Name: "Four"})
	env.RegisterActivityWithOptions(double, activityOptions("A"))
	env.RegisterActivityWithOptions(flaky, activityOptions("B"))
	env.RegisterActivityWithOptions(double, activityOptions("C"))
	env.RegisterActivityWithOptions(double, activityOptions("D"))
	env.ExecuteWorkflow("Four")
	require.NoError(t, env.GetWorkflowError())
	require.NoError(t, prof.Close(context.Background()))

	const want = `
# HELP headstart_activity_attempts_total Activity attempts observed.
# TYPE headstart_activity_attempts_total counter
headstart_activity_attempts_total{stage="Four/A"} 1
headstart_activity_attempts_total{stage="Four/B"} 2
headstart_activity_attempts_total{stage="other"} 2
# HELP headstart_activity_errors_total Activity attempts that failed, by class.
# TYPE headstart_activity_errors_total counter
headstart_activity_errors_total{class="application",stage="Four/B"} 1
# HELP headstart_activity_retries_total Activity attempts that were retries (attempt ≥ 2).
# TYPE headstart_activity_retries_total counter
headstart_activity_retries_total{stage="Four/A"} 0
headstart_activity_retries_total{stage="Four/B"} 1
headstart_activity_retries_total{stage="other"} 0
`
	require.NoError(t, testutil.CollectAndCompare(reg, strings.NewReader(want),
		"headstart_activity_attempts_total", "headstart_activity_errors_total", "headstart_activity_retries_total"))
	// Every histogram has one series per label value, no more.
	require.Equal(t, 3, testutil.CollectAndCount(reg, "headstart_activity_cpu_seconds"))
}

func TestRegisteringTwiceOnOneRegistryIsAnError(t *testing.T) {
	reg := prometheus.NewRegistry()
	p, err := interceptors.NewProfiler(interceptors.ProfilerOptions{Registerer: reg})
	require.NoError(t, err)
	defer p.Close(context.Background())
	_, err = interceptors.NewProfiler(interceptors.ProfilerOptions{Registerer: reg})
	require.ErrorContains(t, err, "register profiler metrics")
}
