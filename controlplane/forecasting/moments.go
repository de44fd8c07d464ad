package forecasting

import "math"

// Moments is Welford's online mean and variance, with the count, minimum and
// maximum. The zero value is empty. Add is O(1) and numerically stable.
type Moments struct {
	N    int64   `json:"n"`
	Mean float64 `json:"mean"`
	M2   float64 `json:"m2"` // sum of squared deviations from the mean
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
}

// Add folds x in. NaN and infinities are ignored.
func (m *Moments) Add(x float64) {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return
	}
	m.N++
	if m.N == 1 {
		m.Min, m.Max = x, x
	} else {
		m.Min, m.Max = math.Min(m.Min, x), math.Max(m.Max, x)
	}
	d := x - m.Mean
	m.Mean += d / float64(m.N)
	m.M2 += d * (x - m.Mean)
}

// Variance is the sample variance (n−1 in the denominator); 0 below two values.
func (m Moments) Variance() float64 {
	if m.N < 2 {
		return 0
	}
	return m.M2 / float64(m.N-1)
}

// StdDev is the square root of Variance.
func (m Moments) StdDev() float64 { return math.Sqrt(m.Variance()) }

// Merge combines two summaries as if every value had been added to one
// (Chan et al.'s parallel update).
func (m Moments) Merge(o Moments) Moments {
	switch {
	case o.N == 0:
		return m
	case m.N == 0:
		return o
	}
	n := m.N + o.N
	d := o.Mean - m.Mean
	return Moments{
		N:    n,
		Mean: m.Mean + d*float64(o.N)/float64(n),
		M2:   m.M2 + o.M2 + d*d*float64(m.N)*float64(o.N)/float64(n),
		Min:  math.Min(m.Min, o.Min),
		Max:  math.Max(m.Max, o.Max),
	}
}
