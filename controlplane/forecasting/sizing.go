package forecasting

import (
	"math"
	"slices"
	"sort"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/headstart-dev/headstart/resources"
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
	// Runtime is 0 when not measured: traces that record whole seconds
	// round shorter tasks down to it, and no task runs in no time.
	Runtime time.Duration
	// Rates are its average CPU cores and disk and network bytes per second
	// over its runtime (zero where not measured).
	Rates resources.Vector
}

// Estimate is a prediction with bounds and a confidence: the probability,
// as calibrated so far, that the true value is at most Target.
type Estimate struct {
	Target     float64 `json:"target"`
	Median     float64 `json:"median,omitempty"` // where the method has one
	Lower      float64 `json:"lower"`            // 5% quantile where the method has one
	Upper      float64 `json:"upper"`            // 95% quantile where the method has one
	Confidence float64 `json:"confidence"`
}

// Sizing is a method's prediction for one task.
type Sizing struct {
	Memory Estimate `json:"memory"`
	// Runtime in seconds; HasRuntime is false when the method does not predict it.
	Runtime    Estimate `json:"runtime"`
	HasRuntime bool     `json:"has_runtime"`
	// Resources holds, by kind, memory (as Memory) and the rates the method
	// predicts (CPU cores, disk and network bytes per second); zero where it does not.
	Resources [resources.NumKinds]Estimate `json:"resources"`
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
// request if given, else the larger of Default and the largest peak seen in
// any stage so far times Margin. Default is a floor: another stage's peak
// says little about a new stage, and a first attempt that fails costs its
// allocation and a retry at twice it.
type Fallback struct {
	Margin  float64 // if not set, 1.2
	Default float64 // bytes; if not set, 2 GiB
	maxSeen float64
}

// Memory returns the fallback allocation for t.
func (f *Fallback) Memory(t Task) float64 {
	if t.RequestMemory > 0 {
		return t.RequestMemory
	}
	return math.Max(f.maxSeen*orDefault(f.Margin, 1.2), orDefault(f.Default, 2<<30))
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
	// below it the stage's largest peak times Margin is used. If not set,
	// 1: the models' priors (the slope and spread all stages share) make
	// one task enough.
	MinHistory int
	// Margin over the largest peak below MinHistory. If not set, 1.2.
	Margin float64
	// Window is how many recent tasks of a stage are kept. If not set, 100.
	Window int
	// RateQuantile is the quantile of CPU, disk and network rates to size
	// for (a rate above it is throttled, not fatal). If not set, 0.9.
	RateQuantile float64
	// Fallback for stages never seen.
	Fallback Fallback
	// MaxStages bounds the stages kept; past it the stage observed least
	// recently is forgotten. If not set, 1000.
	MaxStages int
}

// Headstart sizes memory and runtime per stage with two log-space models
// and picks, per stage, the one whose past predictions scored better:
//
//   - a regression of log(value) on log(input bytes): Bayesian, its slope's
//     prior the slope all stages share (starting at 0.5, a square root), so
//     a stage with one task already scales with its input, and its
//     prediction interval widens with the distance from the inputs the
//     stage has shown (the slope's own uncertainty), and
//   - the same without the input term (the stage's typical value), which
//     serves only within the input sizes the stage has shown.
//
// Each memory model's upper quantile is calibrated online: every
// prediction's residual, recorded when its task finishes, joins the model's
// calibration set, and once there are enough residuals the target is the
// median plus the ⌈(n+1)q⌉-th residual, so first attempts fit with
// probability at least q (split conformal prediction, for exchangeable
// tasks); a per-stage working level adapts to misses (adaptive conformal
// inference). Before that, beyond the inputs seen, and for runtime and
// rates, quantiles come from the Student-t prediction interval of the
// regression, split above and below the line, its variance pooled with the
// prediction errors of all stages, each stage counting once. Memory and rate
// models are scored by pinball loss at their quantile, runtime models by
// absolute error, weighted towards each stage's recent tasks (a
// rolling-origin backtest that runs as tasks finish). A user's memory
// request caps the memory target, and so does maxGrowth times the stage's
// largest peak. A stage that has not finished a task is allocated the
// Fallback, and its interval is that of the stages seen so far, each by its
// first peak relative to its request.
type Headstart struct {
	opts   HeadstartOptions
	stages map[string]*stageHistory
	pooled [numTargets]pooledVariance
	slopes [numTargets]sharedSlope
	seq    int64
	tCache map[[2]float64]float64 // Student-t quantiles by (ν, q), a pure function's memo
}

// studentT returns the q-quantile of Student's t with nu degrees of freedom,
// q rounded to 1e-4. Computing it costs microseconds, so it is memoised.
func (h *Headstart) studentT(nu, q float64) float64 {
	q = math.Round(q*1e4) / 1e4
	k := [2]float64{nu, q}
	if v, ok := h.tCache[k]; ok {
		return v
	}
	if h.tCache == nil || len(h.tCache) > 100000 {
		h.tCache = map[[2]float64]float64{}
	}
	v := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: nu}.Quantile(q)
	h.tCache[k] = v
	return v
}

// evict forgets the least recently observed stage when MaxStages are kept.
func (h *Headstart) evict() {
	if len(h.stages) < h.opts.MaxStages {
		return
	}
	var oldest string
	//workflowcheck:ignore the minimum, ties broken by name, does not depend on order
	for name, st := range h.stages {
		o := h.stages[oldest]
		if oldest == "" || st.lastSeq < o.lastSeq || (st.lastSeq == o.lastSeq && name < oldest) {
			oldest = name
		}
	}
	h.drop(oldest)
}

// touch returns a stage's history, made if new, and marks it observed now.
func (h *Headstart) touch(stage string) *stageHistory {
	st := h.stages[stage]
	if st == nil {
		h.evict()
		st = &stageHistory{}
		h.stages[stage] = st
	}
	h.seq++
	st.lastSeq = h.seq
	return st
}

// drop forgets a stage and its shares of the shared slopes and spreads.
func (h *Headstart) drop(stage string) {
	if st := h.stages[stage]; st != nil {
		for r, c := range st.slope {
			h.slopes[r].sum -= c.w * c.b
			h.slopes[r].weight -= c.w
			h.pooled[r].remove(st.errs[r].variances())
		}
	}
	delete(h.stages, stage)
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
	alpha   float64
	x       []float64                      // log input bytes
	y       [numTargets][]float64          // log of each target (see memoryRes...)
	res     [numModels][]float64           // each memory model's conformal residuals
	score   [numTargets][numModels]float64 // each model's recent loss (exponentially weighted)
	scored  [numTargets][numModels]bool
	maxMem  float64
	seen    [numTargets]bool // a rate was ever non-zero
	lastSeq int64            // when it was last observed, in observations
	// slope is the stage's share of Headstart.slopes: its fitted slope of
	// each target and that slope's weight.
	slope [numTargets]struct{ b, w float64 }
	// errs are the stage's own prediction residuals, its share of Headstart.pooled.
	errs [numTargets]pooledVariance
	// first is the log of the stage's first finished peak, relative to its
	// request if it had one: the stage's share of what unseen stages expect.
	first firstPeak
	// fits caches each target's pass over the history as it stands (see
	// predictor): Observe scores the models on the fit the last Size made.
	// Any change to x or y clears it; it is never checkpointed.
	fits [numTargets]momentFit
	// sorted caches each memory model's residuals in order (see
	// conformal), where sortedOK; a new residual clears it.
	sorted   [numModels][]float64
	sortedOK [numModels]bool
}

// momentFit is one target's fitMoments over the history, and the history's
// known points it was fitted on.
type momentFit struct {
	xs, ys []float64
	l      line
	m      moments
	ok     bool
}

// firstPeak is a stage's first finished peak, as log(peak/request) when the
// task had a request, else log(peak).
type firstPeak struct {
	v            float64
	request, set bool
}

// NewHeadstart returns the Headstart sizer.
func NewHeadstart(opts HeadstartOptions) *Headstart {
	if opts.Quantile <= 0 || opts.Quantile >= 1 {
		opts.Quantile = 0.99
	}
	if opts.MinHistory <= 0 {
		opts.MinHistory = 1
	}
	if opts.Margin <= 0 {
		opts.Margin = 1.2
	}
	if opts.Window <= 0 {
		opts.Window = 100
	}
	if opts.RateQuantile <= 0 || opts.RateQuantile >= 1 {
		opts.RateQuantile = 0.9
	}
	if opts.MaxStages <= 0 {
		opts.MaxStages = 1000
	}
	return &Headstart{opts: opts, stages: map[string]*stageHistory{}}
}

// Name implements Sizer.
func (h *Headstart) Name() string { return "headstart" }

func logx(x float64) float64 { return math.Log(math.Max(x, 1)) }

// Slope limits of the regression on log input size: memory and runtime
// grow at most a little faster than the input.
const (
	minSlope = -0.5
	maxSlope = 2
)

// slopePriorSD is the prior standard deviation of a stage's slope around
// the slope all stages share (see sharedSlope), in log units: a
// stage's own tasks outweigh it once their inputs vary by a factor of about
// e^(σ/slopePriorSD), σ being the stage's residual spread.
const slopePriorSD = 0.5

// line is a stage's fitted log-linear model of one target, y ≈ a + b·x,
// with what its prediction interval needs.
type line struct {
	a, b     float64
	mx, sxx  float64 // mean and spread of x
	n        float64
	up, down float64 // residual semi-variances above and below the line, pooled with the prior
	nu       float64 // degrees of freedom
	varB     float64 // variance of the slope
	w        float64 // how far the stage's own inputs determine the slope, in [0, 1)
}

// A line is fitted in two steps: fitMoments, the pass both models share,
// then slope (the posterior mean of a Bayesian regression whose prior is
// the shared slope ± slopePriorSD, clamped to [minSlope, maxSlope]) or, for
// the model without slope, finish on the flat line at the mean. Residual
// semi-variances are pooled with the prior, weighted as priorWeight observations.

// moments are the sums about the means that both models use.
type moments struct {
	sxx, sxy, syy float64
	up, down      float64 // 2·Σ squared deviations from the mean, above and below it
}

// fitMoments returns the flat line at the means (before its spread) and the
// moments about them.
func fitMoments(xs, ys []float64) (line, moments) {
	n := float64(len(xs))
	l := line{n: n}
	var my float64
	for i := range xs {
		l.mx += xs[i]
		my += ys[i]
	}
	l.mx, my = l.mx/n, my/n
	l.a = my
	var m moments
	for i := range xs {
		dx, dy := xs[i]-l.mx, ys[i]-my
		m.sxx += dx * dx
		m.sxy += dx * dy
		m.syy += dy * dy
		if dy > 0 {
			m.up += 2 * dy * dy
		} else {
			m.down += 2 * dy * dy
		}
	}
	return l, m
}

// slope turns the flat line at the means into the line with the slope's
// posterior mean, and sets its spread.
func (l *line) slope(xs, ys []float64, m moments, prior0 float64, prior pooledVariance) {
	n, my := l.n, l.a
	l.sxx = m.sxx
	// Two passes: the prior's weight against the data is σ²/τ², and σ²
	// comes from the residuals of the first pass.
	s2 := (prior.get(true) + prior.get(false)) / 2
	for pass := 0; pass < 2; pass++ {
		lambda := s2 / (slopePriorSD * slopePriorSD)
		l.b = math.Min(math.Max((m.sxy+lambda*prior0)/(l.sxx+lambda), minSlope), maxSlope)
		l.varB = s2 / (l.sxx + lambda)
		l.w = l.sxx / (l.sxx + lambda)
		ss := math.Max(m.syy-2*l.b*m.sxy+l.b*l.b*l.sxx, 0) // Σ residual²
		s2 = (ss + priorWeight*s2) / (n + priorWeight)
	}
	l.a = my - l.b*l.mx
	// Split-normal: the upper quantiles take their spread from the residuals
	// above the line and the lower ones from those below, so a few small
	// outliers do not inflate the allocation.
	var up, down float64
	for i := range xs {
		d := ys[i] - (l.a + l.b*xs[i])
		if d > 0 {
			up += 2 * d * d
		} else {
			down += 2 * d * d
		}
	}
	l.finish(up, down, 2, prior)
}

// finish sets the line's residual semi-variances, pooled with the prior,
// and its degrees of freedom, from 2·Σ squared residuals above and below it.
func (l *line) finish(up, down, params float64, prior pooledVariance) {
	l.nu = math.Max(l.n-params, 0) + priorWeight
	l.up = (up + priorWeight*prior.get(true)) / l.nu
	l.down = (down + priorWeight*prior.get(false)) / l.nu
}

// conformal returns model m's rank-⌈(n+1)q⌉ residual, or ok=false when
// there are too few.
func (st *stageHistory) conformal(m int, q float64) (float64, bool) {
	n := len(st.res[m])
	k := int(math.Ceil(float64(n+1)*q)) - 1
	if n == 0 || k >= n || k < 0 {
		return 0, false
	}
	if !st.sortedOK[m] {
		st.sorted[m] = append(st.sorted[m][:0], st.res[m]...)
		sort.Float64s(st.sorted[m])
		st.sortedOK[m] = true
	}
	return st.sorted[m][k], true
}

// priorWeight is how many observations the pooled variance counts as.
const priorWeight = 2

// priorVariance is the log-space variance assumed before any residual: a
// factor of about e^0.5 ≈ 1.65 for one standard deviation.
const priorVariance = 0.25

// pooledVariance tracks the semi-variances of residuals, above and below
// the line: a stage's own (errs), or across stages, each stage's counting
// once (Headstart.pooled), the prior for stages with little history. A
// stage's tasks do not outweigh another's: a few large stages of steady
// tasks would make every new stage look steady.
type pooledVariance struct{ up, down, n float64 }

// variances returns a stage's semi-variances as one observation of the pool.
func (p pooledVariance) variances() pooledVariance {
	if p.n == 0 {
		return pooledVariance{}
	}
	return pooledVariance{p.up / p.n, p.down / p.n, 1}
}

func (p *pooledVariance) include(v pooledVariance) {
	p.up, p.down, p.n = p.up+v.up, p.down+v.down, p.n+v.n
}

func (p *pooledVariance) remove(v pooledVariance) {
	p.up, p.down, p.n = max(p.up-v.up, 0), max(p.down-v.down, 0), max(p.n-v.n, 0)
}

func (p *pooledVariance) add(r float64) {
	if r > 0 {
		p.up += 2 * r * r
	} else {
		p.down += 2 * r * r
	}
	p.n++
}

func (p pooledVariance) get(upper bool) float64 {
	if upper {
		return (p.up + priorVariance) / (p.n + 1)
	}
	return (p.down + priorVariance) / (p.n + 1)
}

// prediction is one model's forecast of a log value at x.
type prediction struct {
	median float64
	x      float64
	l      line
	st     *stageHistory
	r, m   int
	h      *Headstart
}

func (h *Headstart) predict(st *stageHistory, r, m int, x float64) prediction {
	return h.predictor(st, r)(m, x)
}

// predictor fits target r's models on the stage's history, sharing the
// pass over the data: each call finishes model m's line with the priors as
// they are at the call, as predict would.
func (h *Headstart) predictor(st *stageHistory, r int) func(m int, x float64) prediction {
	f := &st.fits[r]
	if !f.ok {
		f.xs, f.ys = st.known(r)
		f.l, f.m = fitMoments(f.xs, f.ys)
		f.ok = true
	}
	xs, ys, l0, mo := f.xs, f.ys, f.l, f.m
	return func(m int, x float64) prediction {
		l := l0
		if m == withInput {
			l.slope(xs, ys, mo, h.slopes[r].get(), h.pooled[r])
		} else {
			l.finish(mo.up, mo.down, 1, h.pooled[r])
		}
		return prediction{median: l.a + l.b*x, x: x, l: l, st: st, r: r, m: m, h: h}
	}
}

// known returns the stage's inputs and values of target r where the value
// was measured (a runtime of 0 was not; see Usage).
func (st *stageHistory) known(r int) (xs, ys []float64) {
	if r != runtimeRes || !slices.ContainsFunc(st.y[r], math.IsNaN) {
		return st.x, st.y[r]
	}
	for i, y := range st.y[r] {
		if !math.IsNaN(y) {
			xs, ys = append(xs, st.x[i]), append(ys, y)
		}
	}
	return xs, ys
}

// measured reports whether the stage has a measured value of target r.
func (st *stageHistory) measured(r int) bool {
	for _, y := range st.y[r] {
		if !math.IsNaN(y) {
			return true
		}
	}
	return false
}

// quantile returns the model's q-quantile of the log value and whether it is
// conformal (else parametric). Conformal quantiles serve memory within the
// range of input sizes the stage has shown; beyond it the parametric
// interval, which widens with the distance from the inputs seen, does.
func (p prediction) quantile(q float64) (float64, bool) {
	if p.r == memoryRes && p.st.within(p.x) {
		if c, ok := p.st.conformal(p.m, q); ok {
			return p.median + c, true
		}
	}
	l := p.l
	s2 := l.down
	if q >= 0.5 {
		s2 = l.up
	}
	d := p.x - l.mx
	sd := math.Sqrt(s2*(1+1/l.n) + d*d*l.varB)
	return p.median + p.h.studentT(l.nu, q)*sd, false
}

// within reports whether x lies within the input sizes the stage has shown.
func (st *stageHistory) within(x float64) bool {
	var below, above bool
	for _, v := range st.x {
		below, above = below || v <= x, above || v >= x
		if below && above {
			return true
		}
	}
	return false
}

// sharedSlope is the slope of one target on input size that stages share:
// the mean of their fitted slopes, each weighted by how well its inputs
// determine it, starting from 0.5 (a value growing as the square root of
// its input) counted as one stage.
type sharedSlope struct{ sum, weight float64 }

func (s sharedSlope) get() float64 { return (0.5 + s.sum) / (1 + s.weight) }

// best returns the model of target r to predict at x: the one with the
// lower recent loss, except that only the input model predicts beyond the
// input sizes the stage has shown (the typical value cannot follow an
// input that grew), and the input model on ties and while neither has been
// scored.
func (st *stageHistory) best(r int, x float64) int {
	if st.scored[r][typical] && st.scored[r][withInput] && st.score[r][typical] < st.score[r][withInput] && st.within(x) {
		return typical
	}
	return withInput
}

// scoreWeight is the weight of the newest loss in a model's score: about the
// last 20 tasks count.
const scoreWeight = 0.1

// What the sizer predicts, each in log space above a floor.
const (
	memoryRes  = iota // peak bytes
	runtimeRes        // seconds
	cpuRes            // cores, averaged over the runtime
	diskRes           // disk bytes per second
	netRes            // network bytes per second
	numTargets
)

// targetFloor is the least value of each target: no task runs in less than
// 1 MiB, and a smaller measured peak (a heap that shrank while it ran) says
// nothing about its needs.
var targetFloor = [numTargets]float64{1 << 20, 1e-3, 1e-3, 1, 1}

// maxGrowth bounds a memory target at this many times the largest peak the
// stage has shown (or its request, if larger): an out-of-memory retry is
// cheaper than an allocation a distribution's tail made up.
const maxGrowth = 4

// rateKinds are the rate targets' resource kinds, from cpuRes on.
var rateKinds = [numTargets]resources.Kind{cpuRes: resources.CPU, diskRes: resources.DiskBytes, netRes: resources.NetBytes}

// targetValues returns the log of each target a task used, NaN for a
// runtime that was not measured.
func targetValues(u Usage) [numTargets]float64 {
	v := [numTargets]float64{u.PeakMemory, u.Runtime.Seconds(), u.Rates.Get(resources.CPU), u.Rates.Get(resources.DiskBytes), u.Rates.Get(resources.NetBytes)}
	for r := range v {
		v[r] = math.Log(math.Max(v[r], targetFloor[r]))
	}
	if u.Runtime <= 0 {
		v[runtimeRes] = math.NaN()
	}
	return v
}

// Size implements Sizer.
func (h *Headstart) Size(t Task) Sizing {
	s := h.size(t)
	s.Memory, s.Runtime = s.Memory.bounded(), s.Runtime.bounded()
	for k := range s.Resources {
		s.Resources[k] = s.Resources[k].bounded()
	}
	return s
}

// maxEstimate caps every size: beyond anything a machine has (bytes, bytes
// per second, cores, seconds), and finite, so that it can be sent. The
// exponential of a wide interval's log bound can overflow to +Inf.
const maxEstimate = 1e30

// bounded returns e with every value in [0, maxEstimate] (NaN as 0) and
// Lower ≤ Upper.
func (e Estimate) bounded() Estimate {
	clamp := func(x float64) float64 {
		if math.IsNaN(x) {
			return 0
		}
		return math.Min(math.Max(x, 0), maxEstimate)
	}
	e.Target, e.Median, e.Lower, e.Upper = clamp(e.Target), clamp(e.Median), clamp(e.Lower), clamp(e.Upper)
	e.Confidence = math.Min(clamp(e.Confidence), 1)
	e.Lower = math.Min(e.Lower, e.Upper)
	return e
}

func (h *Headstart) size(t Task) Sizing {
	st := h.stages[t.Stage]
	if st == nil || len(st.x) == 0 {
		m := h.opts.Fallback.Memory(t)
		if st != nil && 2*st.maxMem > m {
			// Only failures so far: search upwards as a retry would.
			m = 2 * st.maxMem
		}
		s := Sizing{Memory: h.unseen(t, m)}
		if st != nil {
			// A failure shows the stage needs more than its allocation.
			s.Memory.Lower = math.Max(s.Memory.Lower, st.maxMem)
			s.Memory.Upper = math.Max(s.Memory.Upper, s.Memory.Lower)
		}
		s.Resources[resources.Memory] = s.Memory
		return s
	}
	if len(st.x) < h.opts.MinHistory {
		maxed := math.Max(st.maxMem, targetFloor[memoryRes]) * h.opts.Margin
		return Sizing{Memory: Estimate{Target: maxed, Lower: 0, Upper: maxed}}
	}
	x := logx(t.InputBytes)
	q := st.level(h.opts.Quantile)
	var s Sizing

	mem := h.predict(st, memoryRes, st.best(memoryRes, x), x)
	target, exact := mem.quantile(q)
	s.Memory.Target = math.Exp(target)
	s.Memory.Median = math.Exp(mem.median)
	s.Memory.Confidence = q
	if exact {
		n := float64(len(st.res[mem.m]))
		s.Memory.Confidence = math.Min(math.Ceil((n+1)*q)/(n+1), 1)
	}
	lo, _ := mem.quantile(0.05)
	hi, _ := mem.quantile(0.95)
	s.Memory.Lower, s.Memory.Upper = math.Exp(lo), math.Exp(hi)
	// A user's request is a limit the task could not have exceeded.
	if t.RequestMemory > 0 && s.Memory.Target > t.RequestMemory {
		s.Memory.Target = t.RequestMemory
	}
	if limit := math.Max(maxGrowth*math.Max(st.maxMem, targetFloor[memoryRes]), t.RequestMemory); s.Memory.Target > limit {
		s.Memory.Target = limit
	}

	if st.measured(runtimeRes) {
		rt := h.predict(st, runtimeRes, st.best(runtimeRes, x), x)
		s.HasRuntime = true
		s.Runtime.Target = math.Exp(rt.median)
		s.Runtime.Median = s.Runtime.Target
		lo, _ = rt.quantile(0.05)
		hi, _ = rt.quantile(0.95)
		s.Runtime.Lower, s.Runtime.Upper = math.Exp(lo), math.Exp(hi)
		s.Runtime.Confidence = 0.5
	}

	// Rates: the RateQuantile of the better model, bounds at 5% and 95%.
	for r := cpuRes; r < numTargets; r++ {
		if !st.seen[r] {
			continue
		}
		p := h.predict(st, r, st.best(r, x), x)
		tq, _ := p.quantile(h.opts.RateQuantile)
		lo, _ := p.quantile(0.05)
		hi, _ := p.quantile(0.95)
		s.Resources[rateKinds[r]] = Estimate{Target: math.Exp(tq), Lower: math.Exp(lo), Upper: math.Exp(hi), Confidence: h.opts.RateQuantile}
	}
	s.Resources[resources.Memory] = s.Memory
	return s
}

// unseen estimates the memory of a task whose stage has not finished a
// task: the allocation m (the Fallback's), and a 90% interval from the
// stages seen so far, each counting once by its first finished task: the
// 5th and 95th percentiles of their peaks, relative to their requests when
// this task has one (split conformal ranks, so the interval covers a new
// stage's task with probability at least 90% for exchangeable stages).
// While too few stages are known for a rank, that side of the interval is
// open: 0 below, m above. Confidence is how many of those stages' first
// tasks would have fitted in m, out of n+1 (a conformal rank, 0 while none
// is known).
func (h *Headstart) unseen(t Task, m float64) Estimate {
	withRequest := t.RequestMemory > 0
	var firsts []float64
	//workflowcheck:ignore collected, then sorted
	for _, st := range h.stages {
		if st.first.set && st.first.request == withRequest {
			firsts = append(firsts, st.first.v)
		}
	}
	sort.Float64s(firsts)
	ref := 1.0
	if withRequest {
		ref = t.RequestMemory
	}
	e := Estimate{Target: m, Upper: m}
	n := len(firsts)
	if k := int(math.Floor(0.05 * float64(n+1))); k >= 1 {
		e.Lower = ref * math.Exp(firsts[k-1])
	}
	if k := int(math.Ceil(0.95 * float64(n+1))); k <= n {
		e.Upper = ref * math.Exp(firsts[k-1])
	}
	fits := sort.SearchFloat64s(firsts, math.Nextafter(math.Log(m/ref), math.Inf(1)))
	e.Confidence = float64(fits) / float64(n+1)
	return e
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
	st := h.touch(t.Stage)
	if !st.first.set {
		st.first = firstPeak{v: math.Log(math.Max(u.PeakMemory, targetFloor[memoryRes])), request: t.RequestMemory > 0, set: true}
		if st.first.request {
			st.first.v -= math.Log(t.RequestMemory)
		}
	}
	x := logx(t.InputBytes)
	ys := targetValues(u)
	if len(st.x) >= h.opts.MinHistory {
		// Both memory models as they stood when the task was sized: the
		// loop below scores them after updating what they share.
		fitMem := h.predictor(st, memoryRes)
		var mem [numModels]prediction
		for m := range mem {
			mem[m] = fitMem(m, x)
		}
		target, _ := mem[st.best(memoryRes, x)].quantile(st.level(h.opts.Quantile))
		miss := 0.0
		if ys[memoryRes] > target {
			miss = 1
		}
		st.alpha += aciRate * ((1 - h.opts.Quantile) - miss)
		for r := range ys {
			if math.IsNaN(ys[r]) || !st.measured(r) {
				continue
			}
			fit := h.predictor(st, r)
			for m := 0; m < numModels; m++ {
				p := mem[m]
				if r != memoryRes {
					p = fit(m, x) // after the update of what the models share, below
				}
				var loss float64
				switch r {
				case memoryRes:
					qv, _ := p.quantile(h.opts.Quantile)
					loss = pinballLoss(h.opts.Quantile, math.Exp(ys[r]), math.Exp(qv))
				case cpuRes, diskRes, netRes:
					qv, _ := p.quantile(h.opts.RateQuantile)
					loss = pinballLoss(h.opts.RateQuantile, math.Exp(ys[r]), math.Exp(qv))
				default:
					loss = math.Abs(math.Exp(ys[r]) - math.Exp(p.median))
				}
				if st.scored[r][m] {
					st.score[r][m] += scoreWeight * (loss - st.score[r][m])
				} else {
					st.score[r][m], st.scored[r][m] = loss, true
				}
				if r == memoryRes {
					st.res[m] = appendWindow(st.res[m], ys[r]-p.median, h.opts.Window)
					st.sortedOK[m] = false
				}
				if m == withInput {
					h.pooled[r].remove(st.errs[r].variances())
					st.errs[r].add(ys[r] - p.median)
					h.pooled[r].include(st.errs[r].variances())
					// The stage's share of the shared slope: the fit just
					// scored, which has not seen this task yet.
					c := &st.slope[r]
					h.slopes[r].sum += p.l.w*p.l.b - c.w*c.b
					h.slopes[r].weight += p.l.w - c.w
					c.b, c.w = p.l.b, p.l.w
				}
			}
		}
	}
	st.x = appendWindow(st.x, x, h.opts.Window)
	for r := range ys {
		st.y[r] = appendWindow(st.y[r], ys[r], h.opts.Window)
	}
	st.fits = [numTargets]momentFit{}
	st.maxMem = math.Max(st.maxMem, u.PeakMemory)
	for r := cpuRes; r < numTargets; r++ {
		if u.Rates.Get(rateKinds[r]) > 0 {
			st.seen[r] = true
		}
	}
}

// ObserveFailure implements Sizer: an out-of-memory shows the stage needs
// more than the allocation. Until one of its tasks finishes, the stage's
// tasks get at least twice the largest allocation that failed.
func (h *Headstart) ObserveFailure(t Task, allocated float64, _ time.Time) {
	st := h.touch(t.Stage)
	st.maxMem = math.Max(st.maxMem, allocated)
}

func appendWindow(xs []float64, x float64, window int) []float64 {
	xs = append(xs, x)
	if len(xs) > window {
		xs = xs[len(xs)-window:]
	}
	return xs
}

// Forget drops a stage's history, so it is refitted from the tasks that
// come next (the feedback loop calls it when a stage's errors drift).
func (h *Headstart) Forget(stage string) { h.drop(stage) }

// Knows reports whether the sizer holds a stage's history: it forgets the
// least recently observed past MaxStages.
func (h *Headstart) Knows(stage string) bool {
	_, ok := h.stages[stage]
	return ok
}
