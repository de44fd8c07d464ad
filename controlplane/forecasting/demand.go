package forecasting

import (
	"fmt"
	"math"
	"time"

	"github.com/headstart-dev/headstart/resources"
)

// DemandPoint is a stage's expected demand in one future bucket.
type DemandPoint struct {
	Offset     time.Duration    // from the end of the history to the bucket's end
	Arrivals   float64          // tasks expected to start in the bucket
	Concurrent float64          // tasks expected to be running at the bucket's end
	Demand     resources.Vector // Concurrent × the per-task sizing
}

// DemandModels returns the series models a demand curve weighs: Holt-Winters
// with the given seasonal period (in buckets), ARIMA, a small LSTM and the
// naive forecast.
func DemandModels(period int) []SeriesModel {
	return []SeriesModel{&HoltWinters{Period: period}, &ARIMA{}, &LSTM{Seed: 1}, &Naive{}}
}

// ForecastDemand forecasts a stage's arrivals per bucket over horizon buckets
// with an Ensemble of models weighted by rolling-origin backtests, and turns
// them into concurrent tasks and resources: a task arriving in a bucket is
// counted as running for runtime (Little's law on the expected arrivals), and
// each running task needs perTask. Negative forecasts count as zero.
func ForecastDemand(arrivals []float64, bucket time.Duration, horizon int, runtime time.Duration, perTask resources.Vector, models []SeriesModel) ([]DemandPoint, *Ensemble, error) {
	if bucket <= 0 || horizon <= 0 {
		return nil, nil, fmt.Errorf("forecast demand: bucket %v and horizon %d must be positive", bucket, horizon)
	}
	if err := perTask.Validate(); err != nil {
		return nil, nil, fmt.Errorf("forecast demand: %w", err)
	}
	e := &Ensemble{Models: models, Backtest: BacktestOptions{MinTrain: max(len(arrivals)*2/3, 1), Horizon: min(horizon, max(len(arrivals)/6, 1)), Step: max(len(arrivals)/20, 1)}}
	if err := e.Fit(arrivals); err != nil {
		return nil, nil, fmt.Errorf("forecast demand: %w", err)
	}
	f := e.Forecast(horizon)
	all := append(append([]float64(nil), arrivals...), f...)
	for i := range all {
		all[i] = math.Max(all[i], 0)
	}
	span := runtime.Seconds() / bucket.Seconds() // buckets a task stays running
	out := make([]DemandPoint, horizon)
	for k := range out {
		end := len(arrivals) + k // index of this bucket in all
		var running float64
		for j := end; j >= 0 && float64(end-j) < span; j-- {
			running += all[j] * math.Min(1, span-float64(end-j))
		}
		out[k] = DemandPoint{
			Offset:     time.Duration(k+1) * bucket,
			Arrivals:   all[end],
			Concurrent: running,
			Demand:     perTask.Scale(running),
		}
	}
	return out, e, nil
}
