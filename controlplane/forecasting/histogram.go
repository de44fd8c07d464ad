package forecasting

import (
	"math"
	"time"
)

// HistogramOptions shape a DecayingHistogram. Buckets are exponential: bucket
// i covers [First·Ratio^(i-1), First·Ratio^i), and bucket 0 covers [0, First).
type HistogramOptions struct {
	// First is the upper bound of the first bucket. If not set, 1e-3.
	First float64
	// Ratio between consecutive bucket bounds (> 1). If not set, 1.05 (the VPA
	// recommender's), so a quantile is within 5% of the true value.
	Ratio float64
	// HalfLife after which a sample's weight halves. If not set, 24 h.
	HalfLife time.Duration
	// MaxBuckets caps the buckets (values above the last go into it). If not
	// set, 1000: with the defaults that reaches past 1e18.
	MaxBuckets int
}

func (o HistogramOptions) withDefaults() HistogramOptions {
	if o.First <= 0 {
		o.First = 1e-3
	}
	if o.Ratio <= 1 {
		o.Ratio = 1.05
	}
	if o.HalfLife <= 0 {
		o.HalfLife = 24 * time.Hour
	}
	if o.MaxBuckets <= 0 {
		o.MaxBuckets = 1000
	}
	return o
}

// DecayingHistogram is a histogram whose samples lose half their weight every
// HalfLife, so quantiles follow recent behaviour, as in the Kubernetes VPA
// recommender. Only the span of buckets between the lowest and highest used is
// stored, so a stage whose values stay within a factor of ten keeps about 50
// weights. Time is always passed in.
//
// Weights are kept relative to a reference time and renormalised when they
// grow large, so any span of time is safe.
type DecayingHistogram struct {
	Opts    HistogramOptions `json:"opts"`
	Ref     time.Time        `json:"ref"`   // time at which a weight of 1 is one sample
	Lo      int              `json:"lo"`    // index of Weights[0]
	Weights []float64        `json:"w"`     // per bucket, relative to Ref
	Total   float64          `json:"total"` // sum of Weights
}

// NewDecayingHistogram returns an empty histogram.
func NewDecayingHistogram(opts HistogramOptions) *DecayingHistogram {
	return &DecayingHistogram{Opts: opts.withDefaults()}
}

// maxExponent bounds the decay exponent before renormalising (2^64 ≈ 1.8e19).
const maxExponent = 64

// Add adds value x with weight w observed at time t. Negative, NaN and
// infinite values and non-positive weights are ignored.
func (h *DecayingHistogram) Add(x, w float64, t time.Time) {
	if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 || !(w > 0) || math.IsInf(w, 0) {
		return
	}
	h.Opts = h.Opts.withDefaults()
	if h.Ref.IsZero() {
		h.Ref = t
	}
	e := h.exponent(t)
	if e > maxExponent {
		h.shift(t)
		e = 0
	}
	h.addAt(h.bucket(x), w*math.Exp2(e))
}

func (h *DecayingHistogram) exponent(t time.Time) float64 {
	return float64(t.Sub(h.Ref)) / float64(h.Opts.HalfLife)
}

// shift moves the reference time to t, scaling every weight down to match.
func (h *DecayingHistogram) shift(t time.Time) {
	f := math.Exp2(-h.exponent(t))
	h.Total = 0
	for i := range h.Weights {
		h.Weights[i] *= f
		h.Total += h.Weights[i]
	}
	h.Ref = t
}

func (h *DecayingHistogram) bucket(x float64) int {
	if x < h.Opts.First {
		return 0
	}
	i := 1 + int(math.Floor(math.Log(x/h.Opts.First)/math.Log(h.Opts.Ratio)))
	return min(max(i, 1), h.Opts.MaxBuckets-1)
}

func (h *DecayingHistogram) addAt(i int, w float64) {
	switch {
	case len(h.Weights) == 0:
		h.Lo, h.Weights = i, []float64{0}
	case i < h.Lo:
		grown := make([]float64, h.Lo-i+len(h.Weights))
		copy(grown[h.Lo-i:], h.Weights)
		h.Lo, h.Weights = i, grown
	case i >= h.Lo+len(h.Weights):
		h.Weights = append(h.Weights, make([]float64, i-h.Lo-len(h.Weights)+1)...)
	}
	h.Weights[i-h.Lo] += w
	h.Total += w
}

// upper is bucket i's upper bound.
func (h *DecayingHistogram) upper(i int) float64 {
	return h.Opts.First * math.Pow(h.Opts.Ratio, float64(i))
}

// Quantile returns the upper bound of the bucket holding quantile q in [0, 1]
// of the decayed weights (so it errs high by at most one bucket), or 0 when empty.
func (h *DecayingHistogram) Quantile(q float64) float64 {
	if h.Total <= 0 || len(h.Weights) == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	target := q * h.Total
	var cum float64
	for j, w := range h.Weights {
		cum += w
		if cum >= target && w > 0 {
			return h.upper(h.Lo + j)
		}
	}
	return h.upper(h.Lo + len(h.Weights) - 1)
}

// Weight returns the total decayed weight as of time t: the effective number
// of samples.
func (h *DecayingHistogram) Weight(t time.Time) float64 {
	if h.Total <= 0 {
		return 0
	}
	return h.Total * math.Exp2(-h.exponent(t))
}

// Empty reports whether nothing was added.
func (h *DecayingHistogram) Empty() bool { return h.Total <= 0 }

// Clone returns a deep copy.
func (h *DecayingHistogram) Clone() *DecayingHistogram {
	c := *h
	c.Weights = append([]float64(nil), h.Weights...)
	return &c
}
