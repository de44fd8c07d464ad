package forecasting

import (
	"math"
	"time"

	"github.com/headstart-dev/headstart"
)

// FeedbackWeight is the weight of the newest error in a stage's feedback
// (exponentially weighted means).
const FeedbackWeight = 0.2

// DatedSizing is what feedback needs of a prediction, and when it came into force.
type DatedSizing struct {
	At                time.Time
	Median, Low, High float64 // memory
	Runtime           float64 // seconds; 0 when not predicted
}

// Dated is sizing z as it came into force at at.
func Dated(at time.Time, z Sizing) DatedSizing {
	d := DatedSizing{At: at, Median: z.Memory.Median, Low: z.Memory.Lower, High: z.Memory.Upper}
	if z.HasRuntime {
		d.Runtime = z.Runtime.Target
	}
	return d
}

// MaxPastPredictions bounds the predictions kept per stage for scoring.
const MaxPastPredictions = 8

// AppendDated adds p to a stage's predictions, oldest first, keeping MaxPastPredictions.
func AppendDated(ps []DatedSizing, p DatedSizing) []DatedSizing {
	ps = append(ps, p)
	if len(ps) > MaxPastPredictions {
		ps = append([]DatedSizing(nil), ps[len(ps)-MaxPastPredictions:]...)
	}
	return ps
}

// SizingAt is the prediction in force when a task was scheduled: the newest
// of ps (oldest first) made at or before then, else the oldest kept.
func SizingAt(ps []DatedSizing, scheduled time.Time) (DatedSizing, bool) {
	if len(ps) == 0 {
		return DatedSizing{}, false
	}
	for i := len(ps) - 1; i >= 0; i-- {
		if !ps[i].At.After(scheduled) {
			return ps[i], true
		}
	}
	return ps[0], true
}

// Score folds observation o, sized by prediction p, into its stage's
// feedback f. Errors are of the median estimate, not of the target, which
// sits above it by design; both sides floored at 1 MiB, as the sizer does.
// It reports refit when the stage has come to need more than predicted (its
// bias past driftThreshold after 3 scored tasks): what it did before the
// change no longer applies, so the caller forgets the stage's model and f
// starts afresh. A noisy stage errs both ways and keeps a small bias; one
// that needs less is left to its window. An observation without memory, or
// a prediction without a median, is not scored.
func Score(f *headstart.Feedback, o headstart.Observation, p DatedSizing, driftThreshold float64) (refit bool) {
	if o.PeakMemoryBytes <= 0 || p.Median <= 0 {
		return false
	}
	actual := math.Max(o.PeakMemoryBytes, 1<<20)
	err := (actual - math.Max(p.Median, 1<<20)) / actual
	rtErr := 0.0
	if p.Runtime > 0 && o.Wall > 0 {
		rtErr = math.Abs(o.Wall.Seconds()-p.Runtime) / o.Wall.Seconds()
	}
	if f.Scored == 0 {
		f.MAPE, f.Bias, f.RuntimeMAPE = math.Abs(err), err, rtErr
	} else {
		f.MAPE += FeedbackWeight * (math.Abs(err) - f.MAPE)
		f.Bias += FeedbackWeight * (err - f.Bias)
		f.RuntimeMAPE += FeedbackWeight * (rtErr - f.RuntimeMAPE)
	}
	f.Scored++
	if o.PeakMemoryBytes >= p.Low && o.PeakMemoryBytes <= p.High {
		f.Inside++
	}
	if f.Scored >= 3 && f.Bias > driftThreshold {
		f.Refits++
		f.MAPE, f.Scored, f.Inside = 0, 0, 0
		return true
	}
	return false
}
