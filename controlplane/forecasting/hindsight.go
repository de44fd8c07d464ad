package forecasting

import (
	"math"
	"time"
)

// Hindsight is a reference for replays, not a method: it sizes each task
// knowing every task of its stage in the trace, those not yet submitted
// included. Per stage it allocates whichever wastes less memory·time of
//
//   - the stage's largest peak, and
//   - a line in log(peak) on log(input bytes), fitted by least squares and
//     raised by its largest residual,
//
// so no task fails. What it reaches is what sizing each stage from its
// input sizes could reach with the stage's whole future known.
//
// With Warm set, a task submitted before any task of its stage has finished
// gets the Fallback instead (a replay tells it of finished tasks, as it tells
// every method): no method that learns a stage from its own tasks knows
// more about such a task than its request.
type Hindsight struct {
	Warm     bool
	Fallback Fallback
	lines    map[string]hindsightLine
	finished map[string]bool
}

// hindsightLine is a stage's allocation, log(bytes) = a + b·log(input bytes).
type hindsightLine struct{ a, b float64 }

// hindsightSlack raises each allocation by a relative 1e-12, so the rounding
// of exp and log cannot fail the task the line was raised to fit.
const hindsightSlack = 1 + 1e-12

// NewHindsight returns the reference for a trace's tasks.
func NewHindsight(tasks []TraceTask, warm bool) *Hindsight {
	byStage := map[string][]TraceTask{}
	for _, t := range tasks {
		byStage[t.Stage] = append(byStage[t.Stage], t)
	}
	h := &Hindsight{Warm: warm, lines: map[string]hindsightLine{}, finished: map[string]bool{}}
	for stage, ts := range byStage {
		h.lines[stage] = fitHindsight(ts)
	}
	return h
}

// fitHindsight returns the cheaper of a stage's largest peak and its raised
// log-linear fit.
func fitHindsight(ts []TraceTask) hindsightLine {
	xs, ys := make([]float64, len(ts)), make([]float64, len(ts))
	var mx, my float64
	flat := hindsightLine{a: math.Inf(-1)}
	for i, t := range ts {
		xs[i], ys[i] = logx(t.InputBytes), logx(t.PeakMemory)
		mx += xs[i]
		my += ys[i]
		flat.a = math.Max(flat.a, ys[i])
	}
	n := float64(len(ts))
	mx, my = mx/n, my/n
	var sxx, sxy float64
	for i := range xs {
		sxx += (xs[i] - mx) * (xs[i] - mx)
		sxy += (xs[i] - mx) * (ys[i] - my)
	}
	fit := hindsightLine{}
	if sxx > 0 {
		fit.b = sxy / sxx
	}
	fit.a = my - fit.b*mx
	top := math.Inf(-1)
	for i := range xs {
		top = math.Max(top, ys[i]-fit.a-fit.b*xs[i])
	}
	fit.a += top
	if over(ts, fit) < over(ts, flat) {
		return fit
	}
	return flat
}

// over is the memory·time a stage's allocation wastes over its peaks.
func over(ts []TraceTask, l hindsightLine) float64 {
	var w float64
	for _, t := range ts {
		w += (l.alloc(t.InputBytes) - t.PeakMemory) * t.Runtime.Hours()
	}
	return w
}

func (l hindsightLine) alloc(inputBytes float64) float64 {
	return math.Exp(l.a+l.b*logx(inputBytes)) * hindsightSlack
}

// Name implements Sizer.
func (h *Hindsight) Name() string {
	if h.Warm {
		return "hindsight-warm"
	}
	return "hindsight"
}

// Size implements Sizer.
func (h *Hindsight) Size(t Task) Sizing {
	l, ok := h.lines[t.Stage]
	m := l.alloc(t.InputBytes)
	if !ok || (h.Warm && !h.finished[t.Stage]) {
		m = h.Fallback.Memory(t)
	}
	return Sizing{Memory: Estimate{Target: m, Lower: m, Upper: m}}
}

// Observe implements Sizer.
func (h *Hindsight) Observe(t Task, u Usage, _ time.Time) {
	h.Fallback.Observe(u)
	h.finished[t.Stage] = true
}

// ObserveFailure implements Sizer.
func (*Hindsight) ObserveFailure(Task, float64, time.Time) {}
