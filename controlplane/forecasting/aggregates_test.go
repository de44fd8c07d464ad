package forecasting

import (
	"math"
	"testing"
	"time"

	"github.com/headstart-dev/headstart"
)

var t0 = time.Unix(0, 0)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestMomentsMatchHandComputedValues(t *testing.T) {
	var m Moments
	for _, x := range []float64{2, 4, 4, 4, 5, 5, 7, 9, math.NaN(), math.Inf(1)} {
		m.Add(x)
	}
	// mean 5, sum of squared deviations 32, sample variance 32/7.
	if m.N != 8 || m.Mean != 5 || !near(m.Variance(), 32.0/7, 1e-12) || m.Min != 2 || m.Max != 9 {
		t.Fatalf("moments = %+v, variance %v", m, m.Variance())
	}
	var a, b Moments
	for _, x := range []float64{2, 4, 4, 4} {
		a.Add(x)
	}
	for _, x := range []float64{5, 5, 7, 9} {
		b.Add(x)
	}
	if got := a.Merge(b); got.N != m.N || !near(got.Mean, m.Mean, 1e-12) || !near(got.M2, m.M2, 1e-9) || got.Min != 2 || got.Max != 9 {
		t.Fatalf("merge = %+v, want %+v", got, m)
	}
	if (Moments{}).Merge(a) != a || a.Merge(Moments{}) != a {
		t.Fatal("merging with empty changed the summary")
	}
}

func TestDecayingHistogramQuantiles(t *testing.T) {
	h := NewDecayingHistogram(HistogramOptions{})
	for i := 1; i <= 100; i++ {
		h.Add(float64(i), 1, t0)
	}
	for _, tt := range []struct{ q, want float64 }{{0.5, 50}, {0.9, 90}, {1, 100}, {0, 1}} {
		got := h.Quantile(tt.q)
		// Upper bucket bound: at most one 5% bucket above the true value.
		if got < tt.want || got > tt.want*1.05*1.0001 {
			t.Errorf("Quantile(%v) = %v, want within [%v, %v]", tt.q, got, tt.want, tt.want*1.05)
		}
	}
	if !near(h.Weight(t0), 100, 1e-9) || !near(h.Weight(t0.Add(24*time.Hour)), 50, 1e-9) {
		t.Errorf("weight now %v, a half-life later %v; want 100 and 50", h.Weight(t0), h.Weight(t0.Add(24*time.Hour)))
	}
}

func TestDecayingHistogramForgetsOldSamples(t *testing.T) {
	h := NewDecayingHistogram(HistogramOptions{HalfLife: time.Hour})
	for i := 0; i < 100; i++ {
		h.Add(10, 1, t0)
	}
	// Ten half-lives later, 10 new samples at 1000 outweigh 100 old ones 10 to 0.1.
	later := t0.Add(10 * time.Hour)
	for i := 0; i < 10; i++ {
		h.Add(1000, 1, later)
	}
	if got := h.Quantile(0.5); got < 1000 {
		t.Fatalf("median after the shift = %v, want about 1000", got)
	}
	// Far in the future the weights are renormalised instead of overflowing.
	far := t0.Add(1000 * time.Hour)
	h.Add(5, 1, far)
	if math.IsInf(h.Total, 0) || math.IsNaN(h.Total) || h.Quantile(0.5) > 5.3 {
		t.Fatalf("after 1000 half-lives: total %v, median %v", h.Total, h.Quantile(0.5))
	}
}

func TestDecayingHistogramIgnoresBadInput(t *testing.T) {
	h := NewDecayingHistogram(HistogramOptions{})
	for _, x := range []float64{math.NaN(), math.Inf(1), -1} {
		h.Add(x, 1, t0)
	}
	h.Add(1, 0, t0)
	h.Add(1, math.NaN(), t0)
	if !h.Empty() || h.Quantile(0.5) != 0 {
		t.Fatalf("bad input was counted: %+v", h)
	}
	h.Add(0, 1, t0) // zero is a real value: bucket 0
	if h.Empty() || h.Quantile(0.5) != 1e-3 {
		t.Fatalf("zero not counted in the first bucket: %+v", h)
	}
}

func TestDecayingHistogramStoresOnlyTheUsedSpan(t *testing.T) {
	h := NewDecayingHistogram(HistogramOptions{})
	for i := 0; i < 1000; i++ {
		h.Add(1e9+float64(i)*1e6, 1, t0) // 1 GB to 2 GB
	}
	if len(h.Weights) > 16 {
		t.Fatalf("%d buckets stored for values within a factor of two", len(h.Weights))
	}
}

func TestProfileSetCountsEdgesAndCapsStages(t *testing.T) {
	s := NewProfileSet(ProfileOptions{MaxStages: 4, MaxEdges: 2})
	obs := func(stage, pred string, attempt int32, outcome string) headstart.Observation {
		return headstart.Observation{Stage: stage, Predecessor: pred, Attempt: attempt, Outcome: outcome, Wall: time.Second, CPUSeconds: 1}
	}
	s.Add(obs("W/a", "", 1, headstart.OutcomeOK), t0)
	s.Add(obs("W/b", "W/a", 1, headstart.OutcomeOK), t0)
	s.Add(obs("W/b", "W/a", 1, headstart.OutcomeApplication), t0)
	s.Add(obs("W/b", "W/a", 2, headstart.OutcomeOK), t0)
	s.Add(obs("W/c", "W/b", 1, headstart.OutcomeTimeout), t0)
	if got := s.Add(obs("W/d", "W/c", 1, headstart.OutcomeOK), t0); got != OtherStage {
		t.Fatalf("fourth stage went into %q, want %q (cap 4 including other)", got, OtherStage)
	}
	b := s.Get("W/b")
	if b.Count != 3 || b.Errors != 1 || b.Retries != 1 || !near(b.ErrorRate(), 1.0/3, 1e-12) {
		t.Fatalf("profile b = count %d errors %d retries %d", b.Count, b.Errors, b.Retries)
	}
	if len(b.Predecessors) != 1 || b.Predecessors[0] != (Edge{"W/a", 3}) {
		t.Fatalf("b's predecessors = %v", b.Predecessors)
	}
	if a := s.Get("W/a"); len(a.Successors) != 1 || a.Successors[0] != (Edge{"W/b", 3}) {
		t.Fatalf("a's successors = %v", a.Successors)
	}
	if c := s.Get("W/c"); c.Timeouts != 1 || len(c.Successors) != 1 || c.Successors[0].Stage != OtherStage {
		t.Fatalf("c = timeouts %d successors %v", c.Timeouts, c.Successors)
	}
	if got := s.Stages(); len(got) != 4 || got[0] != "W/a" || got[3] != OtherStage {
		t.Fatalf("stages = %v", got)
	}
	// Edges past MaxEdges fold into other.
	for _, pred := range []string{"x", "y", "z", "w"} {
		s.Add(obs("W/a", pred, 1, headstart.OutcomeOK), t0)
	}
	a := s.Get("W/a")
	if len(a.Predecessors) != 3 || a.Predecessors[0].Stage != OtherStage || a.Predecessors[0].Count != 2 {
		t.Fatalf("a's predecessors past the cap = %v", a.Predecessors)
	}
}

func TestObservationValidate(t *testing.T) {
	ok := headstart.Observation{Stage: "W/a", Attempt: 1}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]headstart.Observation{
		"no stage":     {Attempt: 1},
		"attempt 0":    {Stage: "s"},
		"negative cpu": {Stage: "s", Attempt: 1, CPUSeconds: -1},
		"NaN memory":   {Stage: "s", Attempt: 1, PeakMemoryBytes: math.NaN()},
		"negative in":  {Stage: "s", Attempt: 1, PayloadInBytes: -1},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, o)
		}
	}
}
