package forecasting

import (
	"math"
	"time"
)

// Request sizes every task at the user's request (the fallback where none is given).
type Request struct{ Fallback Fallback }

// Name implements Sizer.
func (*Request) Name() string { return "request" }

// Size implements Sizer.
func (r *Request) Size(t Task) Sizing {
	m := r.Fallback.Memory(t)
	return Sizing{Memory: Estimate{Target: m, Lower: m, Upper: m}}
}

// Observe implements Sizer.
func (r *Request) Observe(_ Task, u Usage, _ time.Time) { r.Fallback.Observe(u) }

// ObserveFailure implements Sizer.
func (*Request) ObserveFailure(Task, float64, time.Time) {}

// MaxSeen sizes a stage at the largest peak it has shown (the fallback before any).
type MaxSeen struct {
	Fallback Fallback
	max      map[string]float64
}

// Name implements Sizer.
func (*MaxSeen) Name() string { return "maxseen" }

// Size implements Sizer.
func (m *MaxSeen) Size(t Task) Sizing {
	x, ok := m.max[t.Stage]
	if !ok {
		x = m.Fallback.Memory(t)
	}
	return Sizing{Memory: Estimate{Target: x, Lower: x, Upper: x}}
}

// Observe implements Sizer.
func (m *MaxSeen) Observe(t Task, u Usage, _ time.Time) {
	m.Fallback.Observe(u)
	if m.max == nil {
		m.max = map[string]float64{}
	}
	m.max[t.Stage] = math.Max(m.max[t.Stage], u.PeakMemory)
}

// ObserveFailure implements Sizer.
func (m *MaxSeen) ObserveFailure(t Task, allocated float64, _ time.Time) {
	if m.max == nil {
		m.max = map[string]float64{}
	}
	m.max[t.Stage] = math.Max(m.max[t.Stage], allocated)
}

// VPA is the Kubernetes Vertical Pod Autoscaler recommender's memory rule,
// per stage (a stage stands for a container): every peak is a sample in a
// decaying histogram (first bucket 10 MB, buckets 5% apart, half-life 24 h);
// the target is the 90th percentile, the lower bound the 50th and the upper
// bound the 95th, each with a 15% safety margin, and no target below 250 MiB.
// The bounds widen with little history, as VPA's confidence multipliers do:
// upper × (1 + 1/days), lower × (1 + 0.001/days)^−2, where days is the span
// of history. An out-of-memory adds a sample of max(1.2 × allocation,
// allocation + 100 MB). A stage with no samples gets the fallback.
type VPA struct {
	Fallback Fallback
	stages   map[string]*vpaStage
}

type vpaStage struct {
	hist        *DecayingHistogram
	first, last time.Time
}

// VPA's published constants.
const (
	vpaSafetyMargin  = 0.15
	vpaMinMemory     = 250 << 20
	vpaOOMMinBump    = 100e6
	vpaOOMBumpRatio  = 1.2
	vpaTargetPct     = 0.90
	vpaLowerPct      = 0.50
	vpaUpperPct      = 0.95
	vpaFirstBucket   = 1e7
	vpaBucketRatio   = 1.05
	vpaHalfLife      = 24 * time.Hour
	vpaUpperConfMult = 1.0
	vpaLowerConfMult = 0.001
)

// Name implements Sizer.
func (*VPA) Name() string { return "vpa" }

func (v *VPA) stage(name string) *vpaStage {
	if v.stages == nil {
		v.stages = map[string]*vpaStage{}
	}
	s := v.stages[name]
	if s == nil {
		s = &vpaStage{hist: NewDecayingHistogram(HistogramOptions{First: vpaFirstBucket, Ratio: vpaBucketRatio, HalfLife: vpaHalfLife})}
		v.stages[name] = s
	}
	return s
}

// Size implements Sizer.
func (v *VPA) Size(t Task) Sizing {
	s := v.stages[t.Stage]
	if s == nil || s.hist.Empty() {
		m := v.Fallback.Memory(t)
		return Sizing{Memory: Estimate{Target: m, Lower: m, Upper: m}}
	}
	days := math.Max(s.last.Sub(s.first).Hours()/24, 1.0/24/60) // at least a minute of history
	margin := 1 + vpaSafetyMargin
	target := math.Max(s.hist.Quantile(vpaTargetPct)*margin, vpaMinMemory)
	lower := s.hist.Quantile(vpaLowerPct) * margin * math.Pow(1+vpaLowerConfMult/days, -2)
	upper := s.hist.Quantile(vpaUpperPct) * margin * (1 + vpaUpperConfMult/days)
	return Sizing{Memory: Estimate{Target: target, Lower: math.Min(lower, target), Upper: math.Max(upper, target)}}
}

// Observe implements Sizer.
func (v *VPA) Observe(t Task, u Usage, now time.Time) {
	v.Fallback.Observe(u)
	v.add(t.Stage, u.PeakMemory, now)
}

// ObserveFailure implements Sizer: VPA's out-of-memory bump.
func (v *VPA) ObserveFailure(t Task, allocated float64, now time.Time) {
	v.add(t.Stage, math.Max(allocated*vpaOOMBumpRatio, allocated+vpaOOMMinBump), now)
}

func (v *VPA) add(stage string, x float64, now time.Time) {
	s := v.stage(stage)
	if s.first.IsZero() {
		s.first = now
	}
	s.last = now
	s.hist.Add(x, 1, now)
}

// Autopilot is the memory rule of Google's Autopilot moving-window
// recommender (Rzadca et al., EuroSys 2020), per stage: over the samples of
// the last Window it keeps the peak, an exponentially decayed average and a
// decaying histogram; the memory limit is the peak plus a 10% safety margin
// (the rule for jobs that do not tolerate OOMs). The lower bound is the
// decayed average and the upper bound the histogram's 98th percentile with
// the margin, or the limit if higher. A stage with no samples gets the fallback.
type Autopilot struct {
	Fallback Fallback
	// Window of samples the peak is taken over. If not set, 24 h.
	Window time.Duration
	stages map[string]*autopilotStage
}

type autopilotStage struct {
	samples []timedSample
	avg     float64 // decayed average
	avgW    float64
	lastAvg time.Time
	hist    *DecayingHistogram
}

type timedSample struct {
	t time.Time
	x float64
}

// Autopilot's constants as published for memory.
const (
	autopilotMargin   = 0.10
	autopilotHalfLife = 48 * time.Hour
)

// Name implements Sizer.
func (*Autopilot) Name() string { return "autopilot" }

// Size implements Sizer.
func (a *Autopilot) Size(t Task) Sizing {
	s := a.stages[t.Stage]
	if s == nil || len(s.samples) == 0 {
		m := a.Fallback.Memory(t)
		return Sizing{Memory: Estimate{Target: m, Lower: m, Upper: m}}
	}
	var peak float64
	for _, x := range s.samples {
		peak = math.Max(peak, x.x)
	}
	limit := peak * (1 + autopilotMargin)
	upper := math.Max(s.hist.Quantile(0.98)*(1+autopilotMargin), limit)
	return Sizing{Memory: Estimate{Target: limit, Lower: math.Min(s.avg, limit), Upper: upper}}
}

// Observe implements Sizer.
func (a *Autopilot) Observe(t Task, u Usage, now time.Time) {
	a.Fallback.Observe(u)
	a.add(t.Stage, u.PeakMemory, now)
}

// ObserveFailure implements Sizer: the task needed more than its allocation.
func (a *Autopilot) ObserveFailure(t Task, allocated float64, now time.Time) {
	a.add(t.Stage, allocated, now)
}

func (a *Autopilot) add(stage string, x float64, now time.Time) {
	if a.stages == nil {
		a.stages = map[string]*autopilotStage{}
	}
	s := a.stages[stage]
	if s == nil {
		s = &autopilotStage{hist: NewDecayingHistogram(HistogramOptions{HalfLife: autopilotHalfLife, First: 1e6})}
		a.stages[stage] = s
	}
	window := a.Window
	if window <= 0 {
		window = 24 * time.Hour
	}
	s.samples = append(s.samples, timedSample{now, x})
	i := 0
	for i < len(s.samples) && now.Sub(s.samples[i].t) > window {
		i++
	}
	s.samples = s.samples[i:]
	if !s.lastAvg.IsZero() {
		decay := math.Exp2(-float64(now.Sub(s.lastAvg)) / float64(autopilotHalfLife))
		s.avgW *= decay
	}
	s.avg = (s.avg*s.avgW + x) / (s.avgW + 1)
	s.avgW++
	s.lastAvg = now
	s.hist.Add(x, 1, now)
}
