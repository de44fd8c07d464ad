package forecasting

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/headstart-dev/headstart/resources"
)

// TestSizesAreFiniteWhateverTheHistory: a stage whose tasks swing over
// twenty orders of magnitude, or never move at all, still gets finite,
// ordered sizes (lower ≤ upper): an infinite or NaN size cannot be sent
// to anyone (JSON has neither) and would stop every query of predictions.
func TestSizesAreFiniteWhateverTheHistory(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	pick := func(xs ...float64) float64 { return xs[rng.IntN(len(xs))] }
	h := NewHeadstart(HeadstartOptions{})
	for i := range 3000 {
		stage := []string{"wild", "flat", "tiny"}[i%3]
		task := Task{Stage: stage, InputBytes: pick(0, 1, 1e3, 1e15, 1e18)}
		u := Usage{PeakMemory: pick(1, 1e6, 1e18), Runtime: time.Duration(pick(1, 1e3, 1e9, 1e15))}
		u.Rates = u.Rates.With(resources.CPU, pick(0, 1e-9, 1, 1e18)).With(resources.DiskBytes, pick(0, 1, 1e27)).With(resources.NetBytes, pick(0, 1e27))
		switch stage {
		case "flat":
			task.InputBytes, u = 1e3, Usage{PeakMemory: 1e6, Runtime: time.Second}
		case "tiny":
			u = Usage{PeakMemory: 1e-300, Runtime: 1}
		}
		h.Observe(task, u, time.Time{})
		for _, x := range []float64{0, 1e3, 1e18} {
			s := h.Size(Task{Stage: stage, InputBytes: x})
			for k, e := range append([]Estimate{s.Memory, s.Runtime}, s.Resources[:]...) {
				for _, v := range []float64{e.Target, e.Median, e.Lower, e.Upper, e.Confidence} {
					if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
						t.Fatalf("task %d, stage %s, input %g: estimate %d is %+v", i, stage, x, k, e)
					}
				}
				if e.Lower > e.Upper {
					t.Fatalf("task %d, stage %s: estimate %d has lower %g above upper %g", i, stage, k, e.Lower, e.Upper)
				}
			}
		}
	}
}
