package forecasting

import "math"

// HoltWinters is additive triple exponential smoothing: level, trend and a
// seasonal component of Period steps. Its smoothing parameters are chosen by
// a grid search that minimises the one-step-ahead squared error. With Period
// below 2, or less than two periods of data, it is Holt's linear method (no season).
type HoltWinters struct {
	Period int
	// Alpha, Beta, Gamma of the last Fit.
	Alpha, Beta, Gamma float64

	level, trend float64
	season       []float64
	n            int // fitted length
}

// Name implements SeriesModel.
func (*HoltWinters) Name() string { return "holt-winters" }

func (hw *HoltWinters) seasonal(n int) bool { return hw.Period >= 2 && n >= 2*hw.Period }

// Fit implements SeriesModel.
func (hw *HoltWinters) Fit(y []float64) error {
	if len(y) < 3 {
		return ErrTooShort
	}
	grid := []float64{0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9}
	gammas := grid
	if !hw.seasonal(len(y)) {
		gammas = []float64{0}
	}
	best := math.Inf(1)
	for _, a := range grid {
		for _, b := range grid {
			for _, g := range gammas {
				if sse := hw.run(y, a, b, g); sse < best {
					best, hw.Alpha, hw.Beta, hw.Gamma = sse, a, b, g
				}
			}
		}
	}
	hw.run(y, hw.Alpha, hw.Beta, hw.Gamma)
	return nil
}

// run smooths y with the given parameters, leaving the final state, and
// returns the one-step squared error.
func (hw *HoltWinters) run(y []float64, a, b, g float64) float64 {
	m := hw.Period
	seasonal := hw.seasonal(len(y))
	start := 2
	if seasonal {
		var m1, m2 float64
		for i := 0; i < m; i++ {
			m1 += y[i]
			m2 += y[m+i]
		}
		m1, m2 = m1/float64(m), m2/float64(m)
		hw.level, hw.trend = m1, (m2-m1)/float64(m)
		hw.season = make([]float64, m)
		for i := 0; i < m; i++ {
			hw.season[i] = y[i] - m1
		}
		// State after the first period.
		hw.level += hw.trend * float64(m-1)
		start = m
	} else {
		hw.season = nil
		hw.level, hw.trend = y[1], y[1]-y[0]
	}
	var sse float64
	for t := start; t < len(y); t++ {
		var s float64
		if seasonal {
			s = hw.season[t%m]
		}
		pred := hw.level + hw.trend + s
		e := y[t] - pred
		sse += e * e
		prev := hw.level
		hw.level = a*(y[t]-s) + (1-a)*(hw.level+hw.trend)
		hw.trend = b*(hw.level-prev) + (1-b)*hw.trend
		if seasonal {
			hw.season[t%m] = g*(y[t]-hw.level) + (1-g)*s
		}
	}
	hw.n = len(y)
	return sse
}

// Forecast implements SeriesModel.
func (hw *HoltWinters) Forecast(h int) []float64 {
	out := make([]float64, h)
	for k := 1; k <= h; k++ {
		v := hw.level + float64(k)*hw.trend
		if len(hw.season) > 0 {
			v += hw.season[(hw.n+k-1)%hw.Period]
		}
		out[k-1] = v
	}
	return out
}
