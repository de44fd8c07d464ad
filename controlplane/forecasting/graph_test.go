package forecasting

import (
	"testing"
	"time"
)

func TestStageGraphGivesWhatComesNextAndWhen(t *testing.T) {
	g := NewStageGraph(0)
	for i := 0; i < 30; i++ {
		g.Observe("Pipeline", "extract", "transform", 10*time.Second, t0)
	}
	for i := 0; i < 10; i++ {
		g.Observe("Pipeline", "extract", "publish", 2*time.Minute, t0)
	}
	g.Observe("Other", "extract", "x", time.Second, t0)

	next := g.Next("Pipeline", "extract")
	if len(next) != 2 || next[0].Stage != "transform" || next[1].Stage != "publish" {
		t.Fatalf("next = %+v", next)
	}
	if next[0].Probability != 0.75 || next[1].Probability != 0.25 {
		t.Errorf("probabilities %v and %v, want 0.75 and 0.25", next[0].Probability, next[1].Probability)
	}
	within(t, "transform delay p50 (s)", next[0].DelayP50.Seconds(), 10, 10.5)
	within(t, "publish delay p90 (s)", next[1].DelayP90.Seconds(), 120, 126)
	if g.Next("Pipeline", "publish") != nil || g.Next("Nope", "extract") != nil {
		t.Error("unknown stages and workflows have no successors")
	}
}
