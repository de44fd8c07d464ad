package forecasting

import (
	"math"
	"sort"
	"time"

	"gonum.org/v1/gonum/stat/distuv"
)

// Task is what is known about a task before it starts: its stage, its input
// size, the user's request and when it is submitted.
type Task struct {
	ID           string
	Stage        string
	WorkflowType string
	// InputBytes is the size of the task's input (payload or input files); 0 if unknown.
	InputBytes float64
	// RequestMemory and RequestRuntime are what the user asked for; 0 if not given.
	RequestMemory  float64       // bytes
	RequestRuntime time.Duration // a limit, not a prediction
	Submit         time.Time
}

// Usage is what a finished task used.
type Usage struct {
	PeakMemory float64 // bytes
	Runtime    time.Duration
}

// Estimate is a prediction with bounds and a confidence: the probability,
// as calibrated so far, that the true value is at most Target.
type Estimate struct {
	Target     float64 `json:"target"`
	Lower      float64 `json:"lower"` // 5% quantile where the method has one
	Upper      float64 `json:"upper"` // 95% quantile where the method has one
	Confidence float64 `json:"confidence"`
}

// Sizing is a method's prediction for one task.
type Sizing struct {
	Memory Estimate `json:"memory"`
	// Runtime in seconds; HasRuntime is false when the method does not predict it.
	Runtime    Estimate `json:"runtime"`
	HasRuntime bool     `json:"has_runtime"`
}

// Sizer sizes tasks from the tasks that finished before. Implementations are
// deterministic and read no clock: time comes with the calls.
type Sizer interface {
	Name() string
	// Size predicts a task's needs at its submission.
	Size(t Task) Sizing
	// Observe reports a finished task at time now.
	Observe(t Task, u Usage, now time.Time)
	// ObserveFailure reports that a task ran out of memory with the given allocation.
	ObserveFailure(t Task, allocated float64, now time.Time)
}

// Fallback sizes memory when a method has no history for a stage: the user's
// request if given, else the largest peak seen in any stage so far times
// Margin, else Default.
type Fallback struct {
	Margin  float64 // if not set, 1.2
	Default float64 // bytes; if not set, 2 GiB
	maxSeen float64
}

// Memory returns the fallback allocation for t.
func (f *Fallback) Memory(t Task) float64 {
	switch {
	case t.RequestMemory > 0:
		return t.RequestMemory
	case f.maxSeen > 0:
		return f.maxSeen * orDefault(f.Margin, 1.2)
	}
	return orDefault(f.Default, 2<<30)
}

// Observe records a finished task's peak.
func (f *Fallback) Observe(u Usage) { f.maxSeen = math.Max(f.maxSeen, u.PeakMemory) }

func orDefault(x, d float64) float64 {
	if x > 0 {
		return x
	}
	return d
}

// HeadstartOptions tune the Headstart sizer. Zero values take the defaults.
type HeadstartOptions struct {
	// Quantile is the operating quantile of memory: the share of first
	// attempts that should fit. If not set, 0.99.
	Quantile float64
	// MinHistory is how many finished tasks of a stage its models need;
	// below it the stage's largest peak times Margin is used. If not set, 3.
	MinHistory int
	// Margin over the largest peak while history is short. If not set, 1.2.
	Margin float64
	// Window is how many recent tasks of a stage are kept. If not set, 200.
	Window int
	// Fallback for stages never seen.
	Fallback Fallback
}

// Headstart sizes memory and runtime per stage with two log-space models
// and picks, per stage, the one whose past predictions scored better:
//
//   - a regression of log(value) on log(input bytes) (ridge-regularised
//     least squares over a window of recent tasks), and
//   - the same without the input term (the stage's typical value).
//
// Each model's upper quantile is calibrated online: every prediction's
// residual, recorded when its task finishes, joins the model's calibration
// set, and once there are enough residuals the target is the median plus the
// ⌈(n+1)q⌉-th residual, so first attempts fit with probability at least q
// (split conformal prediction, for exchangeable tasks). Before that it is
// the Student-t prediction interval of the regression, its variance pooled
// with all stages' residual variance. Memory models are scored by pinball
// loss at Quantile, runtime models by absolute error, over each stage's
// recent tasks (a rolling-origin backtest that runs as tasks finish). While a
// stage has fewer than MinHistory tasks it is sized at its largest peak times
// Margin; a stage never seen uses the Fallback.
type Headstart struct {
	opts   HeadstartOptions
	stages map[string]*stageHistory
	pooled [2]pooledVariance // memory, runtime
}

// The two models of each resource.
const (
	withInput = iota
	typical
	numModels
)

type stageHistory struct {
	// alpha is the stage's working miss rate for memory, adapted online
	// (adaptive conformal inference): misses lower it, fits raise it, so
	// the long-run miss rate tracks 1 − Quantile even when the stage drifts.
	alpha  float64
	x      []float64               // log input bytes
	y      [2][]float64            // log peak memory, log runtime seconds
	res    [2][numModels][]float64 // each model's conformal residuals
	score  [2][numModels][]float64 // each model's recent losses
	maxMem float64
}

// NewHeadstart returns the Headstart sizer.
func NewHeadstart(opts HeadstartOptions) *Headstart {
	if opts.Quantile <= 0 || opts.Quantile >= 1 {
		opts.Quantile = 0.99
	}
	if opts.MinHistory <= 0 {
		opts.MinHistory = 3
	}
	if opts.Margin <= 0 {
		opts.Margin = 1.2
	}
	if opts.Window <= 0 {
		opts.Window = 200
	}
	return &Headstart{opts: opts, stages: map[string]*stageHistory{}}
}

// Name implements Sizer.
func (h *Headstart) Name() string { return "headstart" }

func logx(x float64) float64 { return math.Log(math.Max(x, 1)) }

// Slope limits and ridge penalty of the regression on log input size: memory
// and runtime grow at most a little faster than the input, and a slope needs
// input sizes that really vary (the penalty is in log units squared).
const (
	minSlope   = -0.5
	maxSlope   = 2
	slopeRidge = 1.0
)

// fit returns the ridge-regularised least-squares line of ys on xs: the
// slope shrinks towards 0 when xs barely vary, and is clamped to
// [minSlope, maxSlope]. With slope false it fits the mean.
func fit(xs, ys []float64, slope bool) (a, b float64) {
	n := float64(len(xs))
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx, my = mx/n, my/n
	if !slope {
		return my, 0
	}
	var sxx, sxy float64
	for i := range xs {
		sxx += (xs[i] - mx) * (xs[i] - mx)
		sxy += (xs[i] - mx) * (ys[i] - my)
	}
	b = math.Min(math.Max(sxy/(sxx+slopeRidge), minSlope), maxSlope)
	return my - b*mx, b
}

// conformal returns the rank-⌈(n+1)q⌉ residual, or ok=false when there are too few.
func conformal(res []float64, q float64) (float64, bool) {
	n := len(res)
	k := int(math.Ceil(float64(n+1)*q)) - 1
	if n == 0 || k >= n || k < 0 {
		return 0, false
	}
	s := append([]float64(nil), res...)
	sort.Float64s(s)
	return s[k], true
}

// priorWeight is how many observations the pooled variance counts as.
const priorWeight = 2

// priorVariance is the log-space variance assumed before any residual: a
// factor of about e^0.5 ≈ 1.65 for one standard deviation.
const priorVariance = 0.25

// pooledVariance tracks the semi-variances of residuals across stages, above
// and below the line, the prior for stages with little history.
type pooledVariance struct{ up, down, n float64 }

func (p *pooledVariance) add(r float64) {
	if r > 0 {
		p.up += 2 * r * r
	} else {
		p.down += 2 * r * r
	}
	p.n++
}

func (p *pooledVariance) get(upper bool) float64 {
	if upper {
		return (p.up + priorVariance) / (p.n + 1)
	}
	return (p.down + priorVariance) / (p.n + 1)
}

// prediction is one model's forecast of a log value.
type prediction struct {
	median float64
	st     *stageHistory
	r, m   int
	h      *Headstart
}

func (h *Headstart) predict(st *stageHistory, r, m int, x float64) prediction {
	a, b := fit(st.x, st.y[r], m == withInput)
	return prediction{median: a + b*x, st: st, r: r, m: m, h: h}
}

// quantile returns the model's q-quantile of the log value and whether it is
// conformal (else parametric).
func (p prediction) quantile(q float64) (float64, bool) {
	if c, ok := conformal(p.st.res[p.r][p.m], q); ok {
		return p.median + c, true
	}
	ys := p.st.y[p.r]
	n := float64(len(ys))
	a, b := fit(p.st.x, ys, p.m == withInput)
	// Split-normal: the upper quantiles take their spread from the residuals
	// above the line and the lower ones from those below, so a few small
	// outliers do not inflate the allocation.
	upper := q >= 0.5
	var ssr float64
	for i, y := range ys {
		d := y - (a + b*p.st.x[i])
		if (d > 0) == upper {
			ssr += 2 * d * d
		}
	}
	params := 1.0
	if p.m == withInput {
		params = 2
	}
	nu := math.Max(n-params, 0) + priorWeight
	sd := math.Sqrt((ssr + priorWeight*p.h.pooled[p.r].get(upper)) / nu)
	return p.median + distuv.StudentsT{Mu: 0, Sigma: 1, Nu: nu}.Quantile(q)*sd*math.Sqrt(1+1/n), false
}

// best returns the model of resource r with the lower mean recent loss
// (the input model on ties, and while neither has a score).
func (st *stageHistory) best(r int) int {
	mean := func(xs []float64) float64 {
		if len(xs) == 0 {
			return math.Inf(1)
		}
		var s float64
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	if mean(st.score[r][typical]) < mean(st.score[r][withInput]) {
		return typical
	}
	return withInput
}

const (
	memoryRes  = 0
	runtimeRes = 1
)

// Size implements Sizer.
func (h *Headstart) Size(t Task) Sizing {
	st := h.stages[t.Stage]
	if st == nil {
		m := h.opts.Fallback.Memory(t)
		return Sizing{Memory: Estimate{Target: m, Lower: 0, Upper: m}}
	}
	if len(st.x) < h.opts.MinHistory {
		maxed := st.maxMem * h.opts.Margin
		return Sizing{Memory: Estimate{Target: maxed, Lower: 0, Upper: maxed}}
	}
	x := logx(t.InputBytes)
	q := st.level(h.opts.Quantile)
	var s Sizing

	mem := h.predict(st, memoryRes, st.best(memoryRes), x)
	target, exact := mem.quantile(q)
	s.Memory.Target = math.Exp(target)
	s.Memory.Confidence = q
	if exact {
		n := float64(len(st.res[memoryRes][mem.m]))
		s.Memory.Confidence = math.Min(math.Ceil((n+1)*q)/(n+1), 1)
	}
	lo, _ := mem.quantile(0.05)
	hi, _ := mem.quantile(0.95)
	s.Memory.Lower, s.Memory.Upper = math.Exp(lo), math.Exp(hi)
	// A user's request is a limit the task could not have exceeded.
	if t.RequestMemory > 0 && s.Memory.Target > t.RequestMemory {
		s.Memory.Target = t.RequestMemory
	}

	rt := h.predict(st, runtimeRes, st.best(runtimeRes), x)
	s.HasRuntime = true
	s.Runtime.Target = math.Exp(rt.median)
	lo, _ = rt.quantile(0.05)
	hi, _ = rt.quantile(0.95)
	s.Runtime.Lower, s.Runtime.Upper = math.Exp(lo), math.Exp(hi)
	s.Runtime.Confidence = 0.5
	return s
}

// aciRate is the step of adaptive conformal inference (Gibbs and Candès, 2021).
const aciRate = 0.005

// level returns the quantile the stage works at: q adjusted by its misses, in
// [q/2, 0.9995].
func (st *stageHistory) level(q float64) float64 {
	return math.Min(math.Max(1-(1-q)-st.alpha, q/2), 0.9995)
}

// Observe implements Sizer: each model is scored on the task and its
// residual joins the model's calibration set; then the task joins the history.
func (h *Headstart) Observe(t Task, u Usage, _ time.Time) {
	h.opts.Fallback.Observe(u)
	st := h.stages[t.Stage]
	if st == nil {
		st = &stageHistory{}
		h.stages[t.Stage] = st
	}
	x := logx(t.InputBytes)
	ys := [2]float64{logx(u.PeakMemory), math.Log(math.Max(u.Runtime.Seconds(), 1e-3))}
	if len(st.x) >= h.opts.MinHistory {
		mem := h.predict(st, memoryRes, st.best(memoryRes), x)
		target, _ := mem.quantile(st.level(h.opts.Quantile))
		miss := 0.0
		if ys[memoryRes] > target {
			miss = 1
		}
		st.alpha += aciRate * ((1 - h.opts.Quantile) - miss)
		for r := range ys {
			for m := 0; m < numModels; m++ {
				p := h.predict(st, r, m, x)
				var loss float64
				if r == memoryRes {
					qv, _ := p.quantile(h.opts.Quantile)
					loss = pinballLoss(h.opts.Quantile, math.Exp(ys[r]), math.Exp(qv))
				} else {
					loss = math.Abs(math.Exp(ys[r]) - math.Exp(p.median))
				}
				st.score[r][m] = appendWindow(st.score[r][m], loss, h.opts.Window)
				st.res[r][m] = appendWindow(st.res[r][m], ys[r]-p.median, h.opts.Window)
				if m == withInput {
					h.pooled[r].add(ys[r] - p.median)
				}
			}
		}
	}
	st.x = appendWindow(st.x, x, h.opts.Window)
	for r := range ys {
		st.y[r] = appendWindow(st.y[r], ys[r], h.opts.Window)
	}
	st.maxMem = math.Max(st.maxMem, u.PeakMemory)
}

// ObserveFailure implements Sizer: an out-of-memory shows the stage needs
// more than the allocation.
func (h *Headstart) ObserveFailure(t Task, allocated float64, _ time.Time) {
	if st := h.stages[t.Stage]; st != nil {
		st.maxMem = math.Max(st.maxMem, allocated)
	}
}

func appendWindow(xs []float64, x float64, window int) []float64 {
	xs = append(xs, x)
	if len(xs) > window {
		xs = xs[len(xs)-window:]
	}
	return xs
}
