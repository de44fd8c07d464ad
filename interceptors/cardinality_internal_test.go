package interceptors

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headstart-dev/headstart"
)

// TestHostileCardinalityKeepsMetricsBounded: 100,000 distinct stages give
// at most MaxMetricStages stage labels plus "other", and the metrics keep
// no per-stage state beyond those.
func TestHostileCardinalityKeepsMetricsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	const maxStages, n = 100, 100000
	m, err := newProfilerMetrics(reg, maxStages)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		m.observe(headstart.Observation{Stage: fmt.Sprintf("W/a%d", i), Attempt: 1, Wall: time.Millisecond, Outcome: headstart.OutcomeOK})
	}
	if len(m.stages) > maxStages || len(m.byLabel) > maxStages+1 {
		t.Fatalf("%d stages remembered, %d labels, for %d distinct stages", len(m.stages), len(m.byLabel), n)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		labels := map[string]bool{}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "stage" {
					labels[l.GetValue()] = true
				}
			}
		}
		if len(labels) > maxStages+1 {
			t.Errorf("%s has %d stage labels", f.GetName(), len(labels))
		}
	}
}
