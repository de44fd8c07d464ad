package forecasting

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// SeriesModel forecasts a regularly sampled series (e.g. a stage's arrivals
// per minute). Fit replaces any previous fit. Implementations are
// deterministic.
type SeriesModel interface {
	Name() string
	// Fit learns from y, oldest first.
	Fit(y []float64) error
	// Forecast returns the next h values after the fitted series.
	Forecast(h int) []float64
}

// ErrTooShort is returned by Fit when a series is too short for the model.
var ErrTooShort = errors.New("series too short for the model")

// Naive forecasts the last value (the baseline every model must beat).
type Naive struct{ last float64 }

// Name implements SeriesModel.
func (*Naive) Name() string { return "naive" }

// Fit implements SeriesModel.
func (n *Naive) Fit(y []float64) error {
	if len(y) == 0 {
		return ErrTooShort
	}
	n.last = y[len(y)-1]
	return nil
}

// Forecast implements SeriesModel.
func (n *Naive) Forecast(h int) []float64 {
	out := make([]float64, h)
	for i := range out {
		out[i] = n.last
	}
	return out
}

// BacktestOptions shape a rolling-origin backtest.
type BacktestOptions struct {
	// MinTrain is the length of the first training window. If not set, half the series.
	MinTrain int
	// Horizon is how far each origin forecasts. If not set, 1.
	Horizon int
	// Step between origins. If not set, 1.
	Step int
	// Quantiles at which pinball loss is scored; quantile forecasts are the
	// point forecast plus that quantile of the errors at earlier origins. If
	// not set, {0.5, 0.9}.
	Quantiles []float64
}

// BacktestResult is a model's rolling-origin score.
type BacktestResult struct {
	Model   string
	Pinball float64 // mean pinball loss over origins, horizons and quantiles
	MAE     float64
	Origins int
}

// Backtest refits the model at each origin on everything before it and
// scores its forecasts of the next Horizon values (rolling-origin evaluation).
func Backtest(m SeriesModel, y []float64, opts BacktestOptions) (BacktestResult, error) {
	if opts.MinTrain <= 0 {
		opts.MinTrain = len(y) / 2
	}
	if opts.Horizon <= 0 {
		opts.Horizon = 1
	}
	if opts.Step <= 0 {
		opts.Step = 1
	}
	if len(opts.Quantiles) == 0 {
		opts.Quantiles = []float64{0.5, 0.9}
	}
	res := BacktestResult{Model: m.Name()}
	var errs []float64 // forecast errors seen so far, for quantile forecasts
	var pin, abs float64
	var nPin, nAbs int
	for origin := opts.MinTrain; origin+opts.Horizon <= len(y); origin += opts.Step {
		if err := m.Fit(y[:origin]); err != nil {
			return res, fmt.Errorf("backtest %s at origin %d: %w", m.Name(), origin, err)
		}
		f := m.Forecast(opts.Horizon)
		for k := 0; k < opts.Horizon; k++ {
			actual := y[origin+k]
			if len(errs) > 0 {
				for _, q := range opts.Quantiles {
					pin += pinballLoss(q, actual, f[k]+quantileOf(errs, q))
					nPin++
				}
			}
			abs += math.Abs(actual - f[k])
			nAbs++
		}
		for k := 0; k < opts.Horizon; k++ {
			errs = append(errs, y[origin+k]-f[k])
		}
		res.Origins++
	}
	if res.Origins == 0 {
		return res, fmt.Errorf("backtest %s: %w: %d values, training needs %d", m.Name(), ErrTooShort, len(y), opts.MinTrain+opts.Horizon)
	}
	res.MAE = abs / float64(nAbs)
	res.Pinball = math.NaN()
	if nPin > 0 {
		res.Pinball = pin / float64(nPin)
	}
	return res, nil
}

func quantileOf(xs []float64, q float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Ensemble weights models by their backtest: each model's weight is
// proportional to the inverse of its pinball loss, and models that cannot fit
// the series get none. Its forecast is the weighted mean.
type Ensemble struct {
	Models   []SeriesModel
	Backtest BacktestOptions
	// Scores and Weights of the last Fit, in the order of Models.
	Scores  []BacktestResult
	Weights []float64
}

// Name implements SeriesModel.
func (*Ensemble) Name() string { return "ensemble" }

// Fit backtests every model on y, weights them, and refits each on all of y.
func (e *Ensemble) Fit(y []float64) error {
	e.Scores = make([]BacktestResult, len(e.Models))
	e.Weights = make([]float64, len(e.Models))
	var total float64
	for i, m := range e.Models {
		r, err := Backtest(m, y, e.Backtest)
		e.Scores[i] = r
		if err != nil || math.IsNaN(r.Pinball) {
			continue
		}
		if err := m.Fit(y); err != nil {
			continue
		}
		e.Weights[i] = 1 / math.Max(r.Pinball, 1e-12)
		total += e.Weights[i]
	}
	if total == 0 {
		return fmt.Errorf("ensemble: %w: no model could be backtested on %d values", ErrTooShort, len(y))
	}
	for i := range e.Weights {
		e.Weights[i] /= total
	}
	return nil
}

// Forecast implements SeriesModel.
func (e *Ensemble) Forecast(h int) []float64 {
	out := make([]float64, h)
	for i, m := range e.Models {
		if e.Weights[i] == 0 {
			continue
		}
		for k, v := range m.Forecast(h) {
			out[k] += e.Weights[i] * v
		}
	}
	return out
}

// Best returns the model with the highest weight after Fit.
func (e *Ensemble) Best() SeriesModel {
	best := 0
	for i, w := range e.Weights {
		if w > e.Weights[best] {
			best = i
		}
	}
	return e.Models[best]
}
