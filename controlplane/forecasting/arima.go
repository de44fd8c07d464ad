package forecasting

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/optimize"
)

// ARIMA is an ARIMA(p, d, q) model with a constant, fitted by conditional sum
// of squares (Nelder–Mead). Fit chooses the orders: d is 1 when the series'
// lag-1 autocorrelation exceeds 0.9 (a persistent, trending series) and 0
// otherwise; p and q up to MaxP and MaxQ are chosen by the smallest AIC.
// Parameters are kept where |φ|₁ < 1 and |θ|₁ < 1, a sufficient condition for
// stationarity and invertibility.
type ARIMA struct {
	// MaxP and MaxQ bound the orders tried. If not set, 2 each.
	MaxP, MaxQ int

	// The chosen orders and parameters.
	P, D, Q  int
	Const    float64
	Phi      []float64
	Theta    []float64
	AIC      float64
	y        []float64 // the fitted series
	w        []float64 // after differencing
	residual []float64
}

// Name implements SeriesModel.
func (a *ARIMA) Name() string { return "arima" }

// Fit implements SeriesModel.
func (a *ARIMA) Fit(y []float64) error {
	maxP, maxQ := a.MaxP, a.MaxQ
	if maxP <= 0 {
		maxP = 2
	}
	if maxQ <= 0 {
		maxQ = 2
	}
	if len(y) < 8 {
		return ErrTooShort
	}
	d := 0
	if lag1Autocorrelation(y) > 0.9 {
		d = 1
	}
	w := y
	if d == 1 {
		w = diff(y)
	}
	best := math.Inf(1)
	for p := 0; p <= maxP; p++ {
		for q := 0; q <= maxQ; q++ {
			if len(w) < p+q+4 {
				continue
			}
			params, sse, n := fitCSS(w, p, q)
			if n <= 0 || math.IsInf(sse, 0) || math.IsNaN(sse) {
				continue
			}
			aic := float64(n)*math.Log(math.Max(sse/float64(n), 1e-12)) + 2*float64(p+q+2)
			if aic < best {
				best = aic
				a.P, a.D, a.Q, a.AIC = p, d, q, aic
				a.Const, a.Phi, a.Theta = params[0], append([]float64(nil), params[1:1+p]...), append([]float64(nil), params[1+p:]...)
			}
		}
	}
	if math.IsInf(best, 1) {
		return fmt.Errorf("arima: %w", ErrTooShort)
	}
	a.y, a.w = append([]float64(nil), y...), w
	a.residual = cssResiduals(w, a.Const, a.Phi, a.Theta)
	return nil
}

// fitCSS minimises the conditional sum of squares of an ARMA(p, q) with a
// constant; it returns the parameters (c, φ…, θ…), the SSE and how many terms it summed.
func fitCSS(w []float64, p, q int) ([]float64, float64, int) {
	var mean float64
	for _, v := range w {
		mean += v
	}
	mean /= float64(len(w))
	x0 := make([]float64, 1+p+q)
	x0[0] = mean
	obj := func(x []float64) float64 {
		phi, theta := x[1:1+p], x[1+p:]
		if l1(phi) >= 1 || l1(theta) >= 1 {
			return math.Inf(1)
		}
		var sse float64
		for _, e := range cssResiduals(w, x[0], phi, theta) {
			sse += e * e
		}
		return sse
	}
	if p+q == 0 {
		return x0, obj(x0), len(w)
	}
	res, err := optimize.Minimize(optimize.Problem{Func: obj}, x0, &optimize.Settings{FuncEvaluations: 2000}, &optimize.NelderMead{})
	if err != nil && res == nil {
		return x0, obj(x0), len(w) - p
	}
	return res.X, res.F, len(w) - p
}

// cssResiduals returns e_t = w_t − c − Σφ_i w_{t−i} − Σθ_j e_{t−j} for t ≥ p, with earlier e = 0.
func cssResiduals(w []float64, c float64, phi, theta []float64) []float64 {
	p := len(phi)
	e := make([]float64, len(w))
	for t := p; t < len(w); t++ {
		pred := c
		for i, f := range phi {
			pred += f * w[t-1-i]
		}
		for j, th := range theta {
			if t-1-j >= 0 {
				pred += th * e[t-1-j]
			}
		}
		e[t] = w[t] - pred
	}
	return e[p:]
}

// Forecast implements SeriesModel.
func (a *ARIMA) Forecast(h int) []float64 {
	w := append([]float64(nil), a.w...)
	e := make([]float64, len(w))
	copy(e[len(w)-len(a.residual):], a.residual)
	out := make([]float64, h)
	last := 0.0
	if len(a.y) > 0 {
		last = a.y[len(a.y)-1]
	}
	for k := 0; k < h; k++ {
		t := len(w)
		pred := a.Const
		for i, f := range a.Phi {
			if t-1-i >= 0 {
				pred += f * w[t-1-i]
			}
		}
		for j, th := range a.Theta {
			if t-1-j >= 0 {
				pred += th * e[t-1-j]
			}
		}
		w = append(w, pred)
		e = append(e, 0)
		if a.D == 1 {
			last += pred
			out[k] = last
		} else {
			out[k] = pred
		}
	}
	return out
}

func diff(y []float64) []float64 {
	out := make([]float64, len(y)-1)
	for i := range out {
		out[i] = y[i+1] - y[i]
	}
	return out
}

func l1(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += math.Abs(x)
	}
	return s
}

func lag1Autocorrelation(y []float64) float64 {
	var mean float64
	for _, v := range y {
		mean += v
	}
	mean /= float64(len(y))
	var num, den float64
	for i, v := range y {
		den += (v - mean) * (v - mean)
		if i > 0 {
			num += (v - mean) * (y[i-1] - mean)
		}
	}
	if den == 0 {
		return 0
	}
	return num / den
}
