package forecasting

import (
	"container/heap"
	"math"
	"sort"
	"time"
)

// TraceTask is one task of a recorded execution: what was known at its
// submission, what it used, and when it completed.
type TraceTask struct {
	Task
	Usage
	Complete time.Time
}

// ReplayOptions shape a replay. Zero values take the defaults.
type ReplayOptions struct {
	// Quantile at which pinball loss is scored. If not set, 0.99.
	Quantile float64
	// MaxAttempts bounds the retries of a task that keeps running out of
	// memory; the last attempt is given what it used. If not set, 10.
	MaxAttempts int
	// Progress, if set, is called after each task with the count done.
	Progress func(done, total int)
}

// MethodReport is how one sizing method did on one trace.
type MethodReport struct {
	Method    string  `json:"method"`
	Tasks     int     `json:"tasks"`
	UsedGBh   float64 `json:"used_gbh"`
	OverGBh   float64 `json:"over_allocated_gbh"`
	FailedGBh float64 `json:"failed_attempt_gbh"`
	// MAQ is memory allocation quality: used / (used + over-allocated + failed attempts).
	MAQ float64 `json:"maq"`
	// Under is the share of tasks whose first attempt ran out of memory.
	Under     float64 `json:"under"`
	WastedGBh float64 `json:"wasted_gbh"`
	// Pinball is the mean pinball loss of the memory target at the replay's quantile, in GB.
	Pinball float64 `json:"pinball_gb"`
	// Coverage is the share of tasks whose peak fell inside the method's [lower, upper].
	Coverage float64 `json:"coverage"`
	// RuntimeMdAPE is the median absolute percentage error of runtime, or NaN
	// when the method does not predict runtime.
	RuntimeMdAPE float64 `json:"runtime_mdape"`
	Retries      int     `json:"retries"`
	// Points are the per-task predictions, for plots.
	Points []ReplayPoint `json:"-"`
}

// ReplayPoint is one task's prediction and outcome.
type ReplayPoint struct {
	Stage            string
	Predicted, Used  float64 // bytes
	Lower, Upper     float64 // bytes: the method's interval
	RuntimeHours     float64
	PredictedRuntime float64 // seconds; 0 when not predicted
	ActualRuntime    float64 // seconds
}

const gb = 1e9

// Replay sizes every task of a trace online, in submission order, with each
// method: a method sizes a task knowing only the tasks that completed before
// the task's submission (and out-of-memory failures that happened before it).
// A first attempt given less memory than the task used fails: it wastes its
// allocation for the task's runtime, the method hears of it when it ends, and
// the task is retried with max(2 × the allocation, the user's request) until
// it fits. Replay is deterministic.
func Replay(tasks []TraceTask, methods []Sizer, opts ReplayOptions) []MethodReport {
	if opts.Quantile <= 0 || opts.Quantile >= 1 {
		opts.Quantile = 0.99
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 10
	}
	order := append([]TraceTask(nil), tasks...)
	sort.SliceStable(order, func(i, j int) bool { return order[i].Submit.Before(order[j].Submit) })

	reports := make([]MethodReport, len(methods))
	total := len(order) * len(methods)
	done := 0
	for mi, m := range methods {
		r := MethodReport{Method: m.Name(), Tasks: len(order)}
		var events eventQueue
		var under, covered int
		var pinball float64
		var apes []float64
		for _, t := range order {
			// Tell the method what finished (or failed) before this submission.
			for events.Len() > 0 && !events.items[0].at.After(t.Submit) {
				e := heap.Pop(&events).(event)
				if e.failed {
					m.ObserveFailure(e.task.Task, e.alloc, e.at)
				} else {
					m.Observe(e.task.Task, e.task.Usage, e.at)
				}
			}
			s := m.Size(t.Task)
			used, hours := t.PeakMemory, t.Runtime.Hours()
			pred := sanitize(s.Memory.Target)
			r.UsedGBh += used / gb * hours
			pinball += pinballLoss(opts.Quantile, used, pred) / gb
			if used >= s.Memory.Lower && used <= s.Memory.Upper {
				covered++
			}
			if s.HasRuntime && s.Runtime.Target > 0 && t.Runtime > 0 {
				apes = append(apes, math.Abs(s.Runtime.Target-t.Runtime.Seconds())/t.Runtime.Seconds())
			}
			pt := ReplayPoint{Stage: t.Stage, Predicted: pred, Used: used, Lower: s.Memory.Lower, Upper: s.Memory.Upper, RuntimeHours: hours, ActualRuntime: t.Runtime.Seconds()}
			if s.HasRuntime {
				pt.PredictedRuntime = s.Runtime.Target
			}
			r.Points = append(r.Points, pt)

			alloc := pred
			if alloc < used {
				under++
			}
			fail := t.Submit
			for attempt := 1; alloc < used; attempt++ {
				r.FailedGBh += alloc / gb * hours
				r.Retries++
				fail = fail.Add(t.Runtime)
				heap.Push(&events, event{at: fail, task: t, failed: true, alloc: alloc})
				if attempt+1 >= opts.MaxAttempts {
					alloc = used
					break
				}
				alloc = math.Max(2*alloc, t.RequestMemory)
			}
			r.OverGBh += (alloc - used) / gb * hours
			complete := t.Complete
			if complete.Before(fail) {
				complete = fail.Add(t.Runtime)
			}
			heap.Push(&events, event{at: complete, task: t})
			done++
			if opts.Progress != nil {
				opts.Progress(done, total)
			}
		}
		n := math.Max(float64(len(order)), 1)
		r.WastedGBh = r.OverGBh + r.FailedGBh
		r.MAQ = ratioOr(r.UsedGBh, r.UsedGBh+r.WastedGBh, 1)
		r.Under = float64(under) / n
		r.Pinball = pinball / n
		r.Coverage = float64(covered) / n
		r.RuntimeMdAPE = median(apes)
		reports[mi] = r
	}
	return reports
}

func sanitize(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
		return 0
	}
	return x
}

func ratioOr(a, b, or float64) float64 {
	if b <= 0 {
		return or
	}
	return a / b
}

// pinballLoss is the quantile loss of predicting p for y at quantile q.
func pinballLoss(q, y, p float64) float64 {
	if y >= p {
		return q * (y - p)
	}
	return (1 - q) * (p - y)
}

// median returns the median, or NaN for no values.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// event is a task finishing or failing, delivered to a method when a later submission comes.
type event struct {
	at     time.Time
	task   TraceTask
	failed bool
	alloc  float64
	seq    int
}

// eventQueue orders events by time; ties keep push order.
type eventQueue struct {
	items []event
	next  int
}

func (q *eventQueue) Len() int { return len(q.items) }
func (q *eventQueue) Less(i, j int) bool {
	a, b := q.items[i], q.items[j]
	if !a.at.Equal(b.at) {
		return a.at.Before(b.at)
	}
	return a.seq < b.seq
}
func (q *eventQueue) Swap(i, j int) { q.items[i], q.items[j] = q.items[j], q.items[i] }
func (q *eventQueue) Push(x any) {
	e := x.(event)
	e.seq = q.next
	q.next++
	q.items = append(q.items, e)
}
func (q *eventQueue) Pop() any {
	e := q.items[len(q.items)-1]
	q.items = q.items[:len(q.items)-1]
	return e
}

// ColdShare returns the share of a trace's used GB·h in tasks submitted
// before any task of their stage had finished. A replay sizes them knowing
// nothing of their stage (its Fallback, or the user's request), so they
// bound how far any method can improve on the request.
func ColdShare(tasks []TraceTask) float64 {
	first := map[string]time.Time{}
	for _, t := range tasks {
		if f, ok := first[t.Stage]; !ok || t.Complete.Before(f) {
			first[t.Stage] = t.Complete
		}
	}
	var cold, total float64
	for _, t := range tasks {
		g := t.PeakMemory * t.Runtime.Hours()
		total += g
		if t.Submit.Before(first[t.Stage]) {
			cold += g
		}
	}
	return ratioOr(cold, total, 0)
}
