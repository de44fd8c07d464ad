package forecasting

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/headstart-dev/headstart/resources"
)

const day = 24 * time.Hour

func within(t *testing.T, name string, got, lo, hi float64) {
	t.Helper()
	if got < lo || got > hi {
		t.Errorf("%s = %.4g, want within [%.4g, %.4g]", name, got, lo, hi)
	}
}

// TestVPAReproducesItsRule: target p90 × 1.15, lower p50 × 1.15 and upper
// p95 × 1.15 with the confidence multipliers, each within one 5% bucket.
func TestVPAReproducesItsRule(t *testing.T) {
	v := &VPA{}
	task := Task{Stage: "s"}
	for i := 1; i <= 100; i++ {
		// Ten days of history, so the multipliers are (1+1/10) and (1+0.0001)^-2.
		v.Observe(task, Usage{PeakMemory: float64(i) * 1e8}, t0.Add(time.Duration(i)*10*day/100))
	}
	// All samples decay by at most 10 days = 10 half-lives apart; use a stage
	// whose samples share one time to check the percentiles exactly.
	same := &VPA{}
	for i := 1; i <= 100; i++ {
		same.Observe(task, Usage{PeakMemory: float64(i) * 1e8}, t0)
	}
	s := same.Size(task)
	within(t, "target", s.Memory.Target, 90e8*1.15, 90e8*1.15*1.05)
	// One instant of history counts as a minute: the bounds are widest.
	days := 1.0 / 24 / 60
	within(t, "upper", s.Memory.Upper, 95e8*1.15*(1+1/days), 95e8*1.15*(1+1/days)*1.05)
	within(t, "lower", s.Memory.Lower, 50e8*1.15*math.Pow(1+0.001/days, -2), 50e8*1.15*math.Pow(1+0.001/days, -2)*1.05)

	// With ten days of history the upper multiplier is 1.1.
	s = v.Size(task)
	if s.Memory.Upper > s.Memory.Target*2 {
		t.Errorf("ten days of history should narrow the upper bound: %+v", s.Memory)
	}
}

func TestVPAMinimumAndOOMBump(t *testing.T) {
	v := &VPA{}
	task := Task{Stage: "tiny"}
	v.Observe(task, Usage{PeakMemory: 1e6}, t0)
	if got := v.Size(task).Memory.Target; got != 250<<20 {
		t.Errorf("target of a 1 MB stage = %v, want VPA's 250 MiB minimum", got)
	}
	oom := Task{Stage: "oom"}
	v.ObserveFailure(oom, 1e9, t0) // bump: max(1.2 × 1 GB, 1 GB + 100 MB) = 1.2 GB
	within(t, "target after an OOM at 1 GB", v.Size(oom).Memory.Target, 1.2e9*1.15, 1.2e9*1.15*1.05)
	small := Task{Stage: "small-oom"}
	v.ObserveFailure(small, 300e6, t0) // bump: max(360 MB, 400 MB) = 400 MB
	within(t, "target after an OOM at 300 MB", v.Size(small).Memory.Target, 400e6*1.15, 400e6*1.15*1.05)
}

func TestVPAFallsBackToTheRequest(t *testing.T) {
	v := &VPA{}
	if got := v.Size(Task{Stage: "new", RequestMemory: 3e9}).Memory.Target; got != 3e9 {
		t.Errorf("unseen stage target = %v, want the request", got)
	}
}

func TestAutopilotTakesThePeakOfItsWindowPlusTenPercent(t *testing.T) {
	a := &Autopilot{}
	task := Task{Stage: "s"}
	for i, x := range []float64{1e9, 3e9, 2e9} {
		a.Observe(task, Usage{PeakMemory: x}, t0.Add(time.Duration(i)*time.Hour))
	}
	within(t, "target", a.Size(task).Memory.Target, 3.3e9-1, 3.3e9+1)
	// 27 h in, the samples of hours 0 to 2 have left the 24 h window.
	a.Observe(task, Usage{PeakMemory: 1e9}, t0.Add(27*time.Hour))
	within(t, "target after the window moved", a.Size(task).Memory.Target, 1.1e9-1, 1.1e9+1)
}

func TestMaxSeenAndRequest(t *testing.T) {
	m := &MaxSeen{}
	task := Task{Stage: "s", RequestMemory: 8e9}
	if got := m.Size(task).Memory.Target; got != 8e9 {
		t.Errorf("max-seen before any sample = %v, want the request", got)
	}
	m.Observe(task, Usage{PeakMemory: 2e9}, t0)
	m.Observe(task, Usage{PeakMemory: 1e9}, t0)
	if got := m.Size(task).Memory.Target; got != 2e9 {
		t.Errorf("max-seen = %v, want 2e9", got)
	}
	r := &Request{}
	if got := r.Size(task).Memory.Target; got != 8e9 {
		t.Errorf("request = %v, want 8e9", got)
	}
	// Without a request, the fallback is the largest peak seen anywhere ×
	// 1.2, but never below the 2 GiB default.
	if got := r.Size(Task{Stage: "other"}).Memory.Target; got != 2<<30 {
		t.Errorf("fallback before any peak = %v, want 2 GiB", got)
	}
	r.Observe(task, Usage{PeakMemory: 10e6}, t0)
	if got := r.Size(Task{Stage: "other"}).Memory.Target; got != 2<<30 {
		t.Errorf("fallback after a 10 MB peak = %v, want 2 GiB", got)
	}
	r.Observe(task, Usage{PeakMemory: 5e9}, t0)
	if got := r.Size(Task{Stage: "other"}).Memory.Target; got != 6e9 {
		t.Errorf("fallback = %v, want 6e9", got)
	}
}

// stageTasks makes n tasks whose memory is 2 × input, times log-normal noise.
func stageTasks(n int, seed uint64) ([]Task, []Usage) {
	rng := rand.New(rand.NewPCG(seed, 1))
	var ts []Task
	var us []Usage
	for i := 0; i < n; i++ {
		in := math.Exp(18 + 2*rng.Float64()) // 65 MB to 480 MB
		ts = append(ts, Task{Stage: "s", InputBytes: in})
		us = append(us, Usage{PeakMemory: 2 * in * math.Exp(0.1*rng.NormFloat64()), Runtime: time.Duration(in/1e6) * time.Second,
			Rates: resources.Vector{}.With(resources.CPU, 1.5+0.5*rng.Float64())})
	}
	return ts, us
}

func TestHeadstartFollowsInputSizeAndMeetsItsQuantile(t *testing.T) {
	h := NewHeadstart(HeadstartOptions{Quantile: 0.95})
	ts, us := stageTasks(600, 7)
	for i := 0; i < 300; i++ {
		h.Observe(ts[i], us[i], t0)
	}
	fits := 0
	for i := 300; i < 600; i++ {
		s := h.Size(ts[i])
		if s.Memory.Target >= us[i].PeakMemory {
			fits++
		}
		h.Observe(ts[i], us[i], t0)
	}
	rate := float64(fits) / 300
	t.Logf("first-attempt fit rate %.3f at quantile 0.95", rate)
	within(t, "fit rate", rate, 0.92, 0.99)

	// The target scales with the input: ten times the input, about ten times the memory.
	small := h.Size(Task{Stage: "s", InputBytes: 1e8}).Memory.Target
	large := h.Size(Task{Stage: "s", InputBytes: 1e9}).Memory.Target
	within(t, "large/small target", large/small, 7, 13)
	// Runtime is predicted too: median within 20% for a noiseless runtime.
	s := h.Size(Task{Stage: "s", InputBytes: 2e8})
	within(t, "runtime", s.Runtime.Target, 160, 240)
	// CPU: cores uniform in [1.5, 2]: the 90th percentile is 1.95.
	within(t, "cpu target", s.Resources[resources.CPU].Target, 1.8, 2.1)
	if s.Resources[resources.DiskBytes] != (Estimate{}) {
		t.Errorf("a rate never measured is not predicted: %+v", s.Resources[resources.DiskBytes])
	}
	if s.Resources[resources.Memory] != s.Memory {
		t.Error("Resources[Memory] should be the memory estimate")
	}
	if s.Memory.Lower > s.Memory.Target || s.Memory.Upper < s.Memory.Lower {
		t.Errorf("bounds out of order: %+v", s.Memory)
	}
}

func TestHeadstartSizesFromTheFirstTaskAndFallsBackForNewStages(t *testing.T) {
	h := NewHeadstart(HeadstartOptions{})
	if got := h.Size(Task{Stage: "new", RequestMemory: 4e9}).Memory.Target; got != 4e9 {
		t.Errorf("new stage = %v, want the request", got)
	}
	h.Observe(Task{Stage: "s", InputBytes: 1e8}, Usage{PeakMemory: 1e9}, t0)
	same := h.Size(Task{Stage: "s", InputBytes: 1e8}).Memory
	// One task says little about the spread: above its peak, at most maxGrowth times it.
	within(t, "one task of history, same input", same.Target, 1.1e9, 4e9)
	within(t, "its median", same.Median, 0.99e9, 1.01e9)
	// With no slope of its own yet, the stage grows with its input as the
	// shared prior says: as the square root.
	larger := h.Size(Task{Stage: "s", InputBytes: 4e8}).Memory
	within(t, "median at four times the input", larger.Median, 1.9e9, 2.1e9)
	// A request caps the target: the task could not have used more.
	for i := 0; i < 5; i++ {
		h.Observe(Task{Stage: "s", InputBytes: 1e8}, Usage{PeakMemory: 1e9 * float64(1+i)}, t0)
	}
	if got := h.Size(Task{Stage: "s", InputBytes: 1e8, RequestMemory: 2e9}).Memory.Target; got != 2e9 {
		t.Errorf("target = %v, want capped at the 2e9 request", got)
	}
}

// TestHeadstartFollowsAnInputLargerThanItHasSeen: a stage whose memory is a
// fifth of its input has shown inputs of 1 to 2 GB; tasks with 3 to 6 GB come
// next. Sizing them at what the stage used so far would fail every one; the
// regression, its interval widening with the distance from the inputs seen,
// fits them all.
func TestHeadstartFollowsAnInputLargerThanItHasSeen(t *testing.T) {
	h := NewHeadstart(HeadstartOptions{})
	rng := rand.New(rand.NewPCG(3, 1))
	task := func(in float64) (Task, Usage) {
		return Task{Stage: "s", InputBytes: in}, Usage{PeakMemory: 0.2 * in * math.Exp(0.03*rng.NormFloat64())}
	}
	for i := 0; i < 6; i++ {
		tk, u := task(1e9 + float64(i)*0.2e9)
		h.Observe(tk, u, t0)
	}
	for _, in := range []float64{3e9, 4e9, 5e9, 6e9} {
		tk, u := task(in)
		s := h.Size(tk)
		if s.Memory.Target < u.PeakMemory {
			t.Errorf("input %.0f GB: target %.3g, used %.3g", in/1e9, s.Memory.Target, u.PeakMemory)
		}
		// Six tasks leave the slope uncertain, so the margin is wide, but bounded.
		if s.Memory.Target > 3*u.PeakMemory {
			t.Errorf("input %.0f GB: target %.3g is more than three times the %.3g used", in/1e9, s.Memory.Target, u.PeakMemory)
		}
	}
}

// TestHeadstartLeavesUnmeasuredRuntimesOut: traces that record whole
// seconds round short tasks to a runtime of 0, which is no measurement. A
// stage whose tasks ran 10 s, with some recorded as 0, is still predicted to
// run 10 s; a stage with no measured runtime gets no runtime prediction,
// while its memory is sized as usual.
func TestHeadstartLeavesUnmeasuredRuntimesOut(t *testing.T) {
	h := NewHeadstart(HeadstartOptions{})
	for i := range 10 {
		rt := 10 * time.Second
		if i%2 == 1 {
			rt = 0
		}
		h.Observe(Task{Stage: "s", InputBytes: 1e8}, Usage{PeakMemory: 1e9, Runtime: rt}, t0)
		h.Observe(Task{Stage: "unmeasured", InputBytes: 1e8}, Usage{PeakMemory: 1e9}, t0)
	}
	s := h.Size(Task{Stage: "s", InputBytes: 1e8})
	if !s.HasRuntime {
		t.Fatal("no runtime predicted for a stage with measured runtimes")
	}
	within(t, "runtime (s)", s.Runtime.Target, 9.9, 10.1)
	u := h.Size(Task{Stage: "unmeasured", InputBytes: 1e8})
	if u.HasRuntime {
		t.Errorf("runtime predicted for a stage with none measured: %+v", u.Runtime)
	}
	within(t, "memory of the stage without runtimes", u.Memory.Median, 0.99e9, 1.01e9)
	if math.IsNaN(u.Memory.Target) || u.Memory.Target < 1e9 {
		t.Errorf("memory target %v, want at least the 1e9 peaks", u.Memory.Target)
	}
}

// TestHeadstartSearchesUpwardsWhileAStageOnlyFails: a new stage whose first
// tasks ran out of memory at 2 GiB gets 4 GiB next, then 8 GiB.
func TestHeadstartSearchesUpwardsWhileAStageOnlyFails(t *testing.T) {
	h := NewHeadstart(HeadstartOptions{})
	task := Task{Stage: "big"}
	first := h.Size(task).Memory.Target
	if first != 2<<30 {
		t.Fatalf("first guess = %v, want the 2 GiB default", first)
	}
	h.ObserveFailure(task, first, t0)
	if got := h.Size(task).Memory; got.Target != 2*first || got.Lower != first {
		t.Errorf("after a failure at %v: %+v, want twice it, and the failed allocation as the lower bound", first, got)
	}
	h.ObserveFailure(task, 2*first, t0)
	if got := h.Size(task).Memory.Target; got != 4*first {
		t.Errorf("after a failure at %v: %v, want twice it", 2*first, got)
	}
	// Once a task finishes, the stage's own history sizes it.
	h.Observe(task, Usage{PeakMemory: 5e9}, t0)
	if got := h.Size(task).Memory.Target; got < 5e9 || got > 4*8e9 {
		t.Errorf("after a 5 GB peak: %v", got)
	}
}

// TestHeadstartGivesUnseenStagesTheIntervalOfStagesSeen: a stage that has
// not finished a task is allocated its request, and its 90% interval is
// that of the stages seen, each by its first peak relative to its request.
func TestHeadstartGivesUnseenStagesTheIntervalOfStagesSeen(t *testing.T) {
	h := NewHeadstart(HeadstartOptions{})
	unseen := Task{Stage: "new", RequestMemory: 4e9}
	// Too few stages for the 5% and 95% ranks: the interval is open.
	for i := 0; i < 5; i++ {
		h.Observe(Task{Stage: fmt.Sprint("seen", i), RequestMemory: 10e9}, Usage{PeakMemory: float64(i+1) * 0.5e9}, t0)
	}
	if got := h.Size(unseen).Memory; got.Target != 4e9 || got.Lower != 0 || got.Upper != 4e9 {
		t.Errorf("with 5 stages seen: %+v, want [0, 4e9] around the 4e9 request", got)
	}
	// Nineteen stages used 5%, 10%, …, 95% of their requests: the interval
	// runs from the lowest share to the highest, of this task's request.
	for i := 5; i < 19; i++ {
		h.Observe(Task{Stage: fmt.Sprint("seen", i), RequestMemory: 10e9}, Usage{PeakMemory: float64(i+1) * 0.5e9}, t0)
	}
	// Later tasks of a stage do not count again.
	h.Observe(Task{Stage: "seen0", RequestMemory: 10e9}, Usage{PeakMemory: 9.9e9}, t0)
	got := h.Size(unseen)
	within(t, "lower", got.Memory.Lower, 0.2e9*0.999, 0.2e9*1.001)
	within(t, "upper", got.Memory.Upper, 3.8e9*0.999, 3.8e9*1.001)
	within(t, "confidence that the request fits", got.Memory.Confidence, 0.95-1e-9, 0.95+1e-9)
	if got.Memory.Target != 4e9 || got.Resources[resources.Memory] != got.Memory {
		t.Errorf("target %v, want the request, and Resources[Memory] = Memory", got.Memory.Target)
	}
	// Without a request, only stages seen without one count, by their peaks.
	if got := h.Size(Task{Stage: "new"}).Memory; got.Lower != 0 || got.Upper != got.Target {
		t.Errorf("no stage seen without a request: %+v, want an open interval", got)
	}
}

// TestHeadstartUnseenStageIntervalCovers90Percent: stages whose peaks are
// log-normal shares of their requests; each new stage's first task falls in
// the interval the stages before it give about 90% of the time.
func TestHeadstartUnseenStageIntervalCovers90Percent(t *testing.T) {
	h := NewHeadstart(HeadstartOptions{})
	rng := rand.New(rand.NewPCG(11, 1))
	covered, n := 0, 0
	for i := 0; i < 1000; i++ {
		task := Task{Stage: fmt.Sprint("s", i), RequestMemory: 8e9}
		u := Usage{PeakMemory: 8e9 * math.Min(math.Exp(-1.5+0.8*rng.NormFloat64()), 1)}
		if i >= 19 {
			e := h.Size(task).Memory
			if u.PeakMemory >= e.Lower && u.PeakMemory <= e.Upper {
				covered++
			}
			n++
		}
		h.Observe(task, u, t0)
	}
	within(t, "coverage", float64(covered)/float64(n), 0.87, 0.93)
}

// TestHeadstartRuntimeAndRateBoundsBracketASteadyStage: a stage of steady,
// sub-second tasks whose inputs barely vary (the shape of a fan-out shard)
// gets runtime and CPU intervals around what it does, whichever model
// serves them: not a bound that an error in either model's spread inflates
// past anything the stage has shown.
func TestHeadstartRuntimeAndRateBoundsBracketASteadyStage(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	h := NewHeadstart(HeadstartOptions{})
	var maxRuntime, maxCPU float64
	for i := range 200 {
		task := Task{Stage: "W/shard", InputBytes: float64(50 + i%2)}
		runtime := 0.15 * math.Exp(0.6*rng.NormFloat64())
		cpu := 0.3 * math.Exp(0.3*rng.NormFloat64())
		maxRuntime, maxCPU = math.Max(maxRuntime, runtime), math.Max(maxCPU, cpu)
		h.Observe(task, Usage{PeakMemory: 8 << 20, Runtime: time.Duration(runtime * float64(time.Second)),
			Rates: resources.Vector{}.With(resources.CPU, cpu)}, t0)
		if i < 5 {
			continue
		}
		s := h.Size(task)
		for _, e := range []struct {
			name string
			est  Estimate
			max  float64
		}{{"runtime", s.Runtime, maxRuntime}, {"cpu", s.Resources[resources.CPU], maxCPU}} {
			if !(e.est.Lower <= e.est.Target && e.est.Target <= e.est.Upper) {
				t.Fatalf("task %d: %s target %.3g outside its bounds [%.3g, %.3g]", i, e.name, e.est.Target, e.est.Lower, e.est.Upper)
			}
			within(t, fmt.Sprintf("task %d: %s upper", i, e.name), e.est.Upper, 0, 5*e.max)
		}
	}
}

// TestFitMomentsAreAboutTheMeans: the flat model's spread is the
// deviations from the mean, split above and below it.
func TestFitMomentsAreAboutTheMeans(t *testing.T) {
	xs, ys := []float64{1, 2, 3, 4}, []float64{-3, -2, -2, -1}
	l, m := fitMoments(xs, ys)
	within(t, "mean x", l.mx, 2.5, 2.5)
	within(t, "mean y", l.a, -2, -2)
	within(t, "2·Σ above", m.up, 2, 2)
	within(t, "2·Σ below", m.down, 2, 2)
	within(t, "Σ dx·dy", m.sxy, 3, 3)
	within(t, "Σ dy²", m.syy, 2, 2)
}

// TestHeadstartSizesTheSameWhetherOrNotItWasAskedBetweenObservations: the
// fits a Size caches for the next Observe are the ones Observe would make,
// so asking between observations changes nothing, with runtimes sometimes
// unmeasured and the window full.
func TestHeadstartSizesTheSameWhetherOrNotItWasAskedBetweenObservations(t *testing.T) {
	asked, quiet := NewHeadstart(HeadstartOptions{Window: 40}), NewHeadstart(HeadstartOptions{Window: 40})
	ts, us := stageTasks(300, 11)
	for i := range ts {
		if i%7 == 0 {
			us[i].Runtime = 0
		}
		if i%3 == 0 {
			asked.Size(ts[i])
		}
		asked.Observe(ts[i], us[i], t0)
		quiet.Observe(ts[i], us[i], t0)
		cachesHoldTheHistory(t, asked.stages["s"])
	}
	for _, input := range []float64{1e7, 2e8, 5e9} {
		task := Task{Stage: "s", InputBytes: input}
		if a, q := asked.Size(task), quiet.Size(task); !reflect.DeepEqual(a, q) {
			t.Fatalf("input %g: asked between observations %+v, not asked %+v", input, a, q)
		}
	}
}

// cachesHoldTheHistory fails unless every cached fit and sorted residual
// set is what the stage's history gives now.
func cachesHoldTheHistory(t *testing.T, st *stageHistory) {
	t.Helper()
	for r, f := range st.fits {
		if !f.ok {
			continue
		}
		xs, ys := st.known(r)
		l, m := fitMoments(xs, ys)
		if !slices.Equal(f.xs, xs) || !slices.Equal(f.ys, ys) || f.l != l || f.m != m {
			t.Fatalf("target %d: the cached fit is not the history's", r)
		}
	}
	for m, ok := range st.sortedOK {
		if ok && !slices.Equal(st.sorted[m], slices.Sorted(slices.Values(st.res[m]))) {
			t.Fatalf("model %d: the cached order is not the residuals'", m)
		}
	}
}
