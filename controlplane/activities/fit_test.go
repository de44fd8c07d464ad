package activities

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.temporal.io/sdk/testsuite"

	"github.com/headstart-dev/headstart/resources"
)

func TestFitReturnsCurvesAndExportsFeedback(t *testing.T) {
	reg := prometheus.NewRegistry()
	f, err := NewFitter(reg)
	if err != nil {
		t.Fatal(err)
	}
	steady := make([]float64, 30)
	for i := range steady {
		steady[i] = 3
	}
	env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
	env.RegisterActivity(f)
	v, err := env.ExecuteActivity(f.Fit, FitInput{
		Stages: []StageSeries{
			{Stage: "W/a", Arrivals: steady, Bucket: time.Minute, Runtime: 2 * time.Minute, PerTask: resources.Vector{}.With(resources.CPU, 1)},
			{Stage: "W/short", Arrivals: []float64{1}, Bucket: time.Minute},
		},
		Horizon:  5,
		Feedback: []StageFeedback{{Stage: "W/a", MAPE: 0.1, Bias: -0.05, Coverage: 0.9, RuntimeMAPE: 0.2, Refits: 2}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var res FitResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	a, short := res.Demand[0], res.Demand[1]
	if len(a.Points) != 5 || a.Err != "" {
		t.Fatalf("W/a: %+v", a)
	}
	// Three arrivals a minute, two minutes each: six running, six cores.
	if c := a.Points[4].Concurrent; c < 5.9 || c > 6.1 {
		t.Errorf("concurrent %v, want 6", c)
	}
	if short.Err == "" || len(short.Points) != 0 {
		t.Errorf("a one-bucket series should report why it has no curve: %+v", short)
	}
	const want = `
# HELP headstart_forecaster_refits Times a stage was refitted because its error drifted.
# TYPE headstart_forecaster_refits gauge
headstart_forecaster_refits{stage="W/a"} 2
`
	if err := testutil.CollectAndCompare(reg, strings.NewReader(want), "headstart_forecaster_refits"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(f.feedback.WithLabelValues("W/a", "coverage")); got != 0.9 {
		t.Errorf("coverage gauge %v, want 0.9", got)
	}
}
