package coordinator

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/resources"
)

// Rule are the prefetch rule's knobs. Zero values take the defaults.
type Rule struct {
	// MinConfidence below which nothing is prefetched. If not set, 0.8.
	MinConfidence float64
	// ActuationTime is how long the shaper needs to make capacity ready (a
	// worker's start, a pod's). If not set, 5 s.
	ActuationTime time.Duration
	// Lead is extra time before a predicted start at which to act. If not set, 2 s.
	Lead time.Duration
	// ProtectedShare of each pool that prefetching never takes: headroom for
	// work nobody predicted. If not set, 0.2.
	ProtectedShare float64
	// MaxMargin is the margin over the predicted need at the lowest confidence
	// acted on; it shrinks linearly to zero at confidence 1. If not set, 0.5.
	MaxMargin float64
	// MinPartial is the least share of the need worth reserving when the whole
	// does not fit. If not set, 0.5.
	MinPartial float64
	// RetryAfter is how long a delayed prefetch waits before trying again. If not set, 5 s.
	RetryAfter time.Duration
}

// Validate reports every knob out of its range, each a *FieldError (joined
// with errors.Join); zero values are valid (they take the defaults).
func (o Rule) Validate() error {
	var fs headstart.FieldErrors
	for _, c := range []struct {
		name   string
		v, max float64
	}{{"min_confidence", o.MinConfidence, 1}, {"protected_share", o.ProtectedShare, 0.99}, {"min_partial", o.MinPartial, 1}} {
		if c.v < 0 || c.v > c.max {
			fs.Add(c.name, "%v is outside [0, %v]", c.v, c.max)
		}
	}
	for _, c := range []struct {
		name string
		v    time.Duration
	}{{"actuation_time", o.ActuationTime}, {"lead", o.Lead}, {"retry_after", o.RetryAfter}} {
		if c.v < 0 {
			fs.Add(c.name, "%v is negative", c.v)
		}
	}
	if o.MaxMargin < 0 {
		fs.Add("max_margin", "%v is negative", o.MaxMargin)
	}
	return fs.Err()
}

func (o Rule) withDefaults() Rule {
	if o.MinConfidence <= 0 {
		o.MinConfidence = 0.8
	}
	if o.ActuationTime <= 0 {
		o.ActuationTime = 5 * time.Second
	}
	if o.Lead <= 0 {
		o.Lead = 2 * time.Second
	}
	if o.ProtectedShare <= 0 {
		o.ProtectedShare = 0.2
	}
	if o.MaxMargin <= 0 {
		o.MaxMargin = 0.5
	}
	if o.MinPartial <= 0 {
		o.MinPartial = 0.5
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = 5 * time.Second
	}
	return o
}

// Upcoming is a stage predicted to start: when, how sure, and what it needs.
type Upcoming struct {
	Stage      string
	Start      time.Time
	Confidence float64
	Need       resources.Vector // the predicted need of the whole stage (tasks × per-task)
	Tasks      int              // how many tasks Need is for
}

// DecisionKind is what the coordinator does about an upcoming stage.
type DecisionKind string

// The decisions.
const (
	DecideSkip    DecisionKind = "skip"    // confidence below the threshold
	DecideWait    DecisionKind = "wait"    // not yet within actuation time + lead
	DecideReserve DecisionKind = "reserve" // reserve the need with its margin
	DecidePartial DecisionKind = "partial" // only part fits: reserve that
	DecideDelay   DecisionKind = "delay"   // too little room: try again after RetryAfter
)

// Decision is the coordinator's answer for one upcoming stage, with its reason.
type Decision struct {
	Stage   string
	Kind    DecisionKind
	Amount  resources.Vector // what to reserve, for reserve and partial
	Margin  float64          // the margin applied over the need
	ActAt   time.Time        // when to act, for wait and delay
	Reason  string
	Summary string // what a person reads in the Web UI
}

// Decide applies the prefetch rule to one upcoming stage at time now, given
// the pool's capacity and what is free in it:
//   - below MinConfidence: skip;
//   - before its start minus (ActuationTime + Lead): wait;
//   - otherwise reserve the need times (1 + margin), the margin shrinking
//     from MaxMargin at MinConfidence to 0 at confidence 1;
//   - never into the pool's ProtectedShare: if the whole does not fit, reserve
//     what does when that is at least MinPartial of the need, else delay.
//
// Deterministic: the coordinator workflow calls it.
func Decide(u Upcoming, now time.Time, capacity, free resources.Vector, opts Rule) Decision {
	opts = opts.withDefaults()
	d := Decision{Stage: u.Stage}
	if u.Confidence < opts.MinConfidence {
		d.Kind = DecideSkip
		d.Reason = fmt.Sprintf("confidence %.2f is below %.2f", u.Confidence, opts.MinConfidence)
		return d
	}
	lead := opts.ActuationTime + opts.Lead
	if actAt := u.Start.Add(-lead); now.Before(actAt) {
		d.Kind, d.ActAt = DecideWait, actAt
		d.Reason = fmt.Sprintf("starts in %v; acting %v ahead", u.Start.Sub(now).Round(time.Millisecond), lead)
		return d
	}
	span := math.Max(1-opts.MinConfidence, 1e-9)
	d.Margin = opts.MaxMargin * math.Min(math.Max((1-u.Confidence)/span, 0), 1)
	want := u.Need.Scale(1 + d.Margin)
	// Prefetching may use what is free beyond the protected share of capacity.
	usable := free.Sub(capacity.Scale(opts.ProtectedShare)).ClampZero()
	if want.Fits(usable) {
		d.Kind, d.Amount = DecideReserve, want
		d.Reason = fmt.Sprintf("confidence %.2f, margin %.0f%%", u.Confidence, 100*d.Margin)
		d.Summary = fmt.Sprintf("reserve %s for %s, confidence %.2f, lead %s", human(want), u.Stage, u.Confidence, seconds(u.Start.Sub(now)))
		return d
	}
	// The largest share of the need that fits in every resource it asks for.
	share := math.Inf(1)
	for k := range resources.NumKinds {
		if w := want.Get(k); w > 0 {
			share = math.Min(share, usable.Get(k)/w)
		}
	}
	if share*(1+d.Margin) >= opts.MinPartial {
		d.Kind, d.Amount = DecidePartial, want.Scale(share)
		d.Reason = fmt.Sprintf("only %.0f%% fits outside the protected %.0f%%", 100*share, 100*opts.ProtectedShare)
		d.Summary = fmt.Sprintf("reserve %s of %s for %s (partial), confidence %.2f, lead %s", human(d.Amount), human(want), u.Stage, u.Confidence, seconds(u.Start.Sub(now)))
		return d
	}
	d.Kind, d.ActAt = DecideDelay, now.Add(opts.RetryAfter)
	d.Reason = fmt.Sprintf("too little room (%.0f%% of the need) outside the protected %.0f%%; retrying in %v", 100*math.Max(share, 0), 100*opts.ProtectedShare, opts.RetryAfter)
	return d
}

// human writes resources as a person reads them: "4 CPU / 8 GiB".
func human(v resources.Vector) string {
	var parts []string
	if c := v.Get(resources.CPU); c > 0 {
		parts = append(parts, strconv.FormatFloat(math.Round(c*10)/10, 'f', -1, 64)+" CPU")
	}
	if m := v.Get(resources.Memory); m > 0 {
		b := resources.FormatBytes(m) // "9.4Gi" → "9.4 GiB", "512" → "512 B"
		if i := strings.IndexFunc(b, unicode.IsLetter); i >= 0 {
			b = b[:i] + " " + b[i:] + "B"
		} else {
			b += " B"
		}
		parts = append(parts, b)
	}
	for _, k := range []resources.Kind{resources.DiskIOPS, resources.DiskBytes, resources.NetBytes} {
		if x := v.Get(k); x > 0 {
			parts = append(parts, resources.FormatQuantity(x)+" "+k.String()+"/s")
		}
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, " / ")
}

func seconds(d time.Duration) string { return strconv.Itoa(int(d.Round(time.Second).Seconds())) + " s" }
