package forecasting

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/headstart-dev/headstart/resources"
)

// seasonalSeries is level 10, trend 0.5 per step and a period-12 season of
// amplitude 5, with optional noise.
func seasonalSeries(n int, noise float64, seed uint64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 2))
	y := make([]float64, n)
	for t := range y {
		y[t] = 10 + 0.5*float64(t) + 5*math.Sin(2*math.Pi*float64(t)/12) + noise*rng.NormFloat64()
	}
	return y
}

func maxAbsErr(a, b []float64) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

func TestHoltWintersForecastsTrendAndSeason(t *testing.T) {
	y := seasonalSeries(120, 0, 1)
	hw := &HoltWinters{Period: 12}
	if err := hw.Fit(y[:96]); err != nil {
		t.Fatal(err)
	}
	if e := maxAbsErr(hw.Forecast(24), y[96:]); e > 1.5 {
		t.Errorf("max error over two seasons %.3f, want ≤ 1.5 (amplitude 5, trend 0.5/step)", e)
	}
	// Without a period it is Holt's linear method: a straight line is forecast exactly.
	line := make([]float64, 30)
	for i := range line {
		line[i] = 3 + 2*float64(i)
	}
	holt := &HoltWinters{}
	if err := holt.Fit(line); err != nil {
		t.Fatal(err)
	}
	if got := holt.Forecast(3); maxAbsErr(got, []float64{63, 65, 67}) > 1e-9 {
		t.Errorf("Holt on a line = %v, want 63 65 67", got)
	}
}

// TestARIMARecoversAnAR1AndPicksItsOrder: y_t = 2 + 0.7 y_{t−1} + e_t.
func TestARIMARecoversAnAR1AndPicksItsOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	y := make([]float64, 400)
	y[0] = 2 / 0.3
	for t := 1; t < len(y); t++ {
		y[t] = 2 + 0.7*y[t-1] + rng.NormFloat64()
	}
	a := &ARIMA{}
	if err := a.Fit(y); err != nil {
		t.Fatal(err)
	}
	if a.D != 0 || a.P < 1 || math.Abs(a.Phi[0]-0.7) > 0.12 {
		t.Fatalf("ARIMA(%d,%d,%d) φ=%v θ=%v; want d=0 and φ₁ near 0.7", a.P, a.D, a.Q, a.Phi, a.Theta)
	}
	// Its forecast reverts to the mean 2/(1−0.7) ≈ 6.67.
	f := a.Forecast(50)
	within(t, "long-run forecast", f[49], 6.67-0.6, 6.67+0.6)
}

func TestARIMADifferencesATrend(t *testing.T) {
	y := make([]float64, 60)
	for i := range y {
		y[i] = 100 + 3*float64(i)
	}
	a := &ARIMA{}
	if err := a.Fit(y); err != nil {
		t.Fatal(err)
	}
	if a.D != 1 {
		t.Fatalf("d = %d, want 1 for a trend", a.D)
	}
	if got := a.Forecast(2); maxAbsErr(got, []float64{280, 283}) > 0.5 {
		t.Errorf("forecast %v, want 280 283", got)
	}
}

func TestLSTMLearnsASineBetterThanNaive(t *testing.T) {
	y := make([]float64, 160)
	for i := range y {
		y[i] = 20 + 10*math.Sin(2*math.Pi*float64(i)/16)
	}
	lstm, naive := &LSTM{Seed: 1}, &Naive{}
	rl, err := Backtest(lstm, y, BacktestOptions{MinTrain: 120, Step: 8, Horizon: 4})
	if err != nil {
		t.Fatal(err)
	}
	rn, _ := Backtest(naive, y, BacktestOptions{MinTrain: 120, Step: 8, Horizon: 4})
	t.Logf("MAE: lstm %.3f, naive %.3f (training MSE %.4f)", rl.MAE, rn.MAE, lstm.TrainedMSE)
	if rl.MAE > 0.5*rn.MAE {
		t.Errorf("LSTM MAE %.3f is not below half of naive's %.3f", rl.MAE, rn.MAE)
	}
	// Same seed, same forecast.
	again := &LSTM{Seed: 1}
	_ = again.Fit(y)
	_ = lstm.Fit(y)
	if maxAbsErr(again.Forecast(5), lstm.Forecast(5)) != 0 {
		t.Error("LSTM training is not deterministic")
	}
}

func TestBacktestScoresByHand(t *testing.T) {
	// Naive on 1, 2, 4, 8 from origin 2: forecasts 2 (actual 4) then 4 (actual 8).
	r, err := Backtest(&Naive{}, []float64{1, 2, 4, 8}, BacktestOptions{MinTrain: 2, Quantiles: []float64{0.5}})
	if err != nil {
		t.Fatal(err)
	}
	// MAE (2+4)/2 = 3. Pinball from the second origin only (quantile of
	// errors seen: {2}): forecast 4+2 = 6 for 8: 0.5 × 2 = 1.
	if r.Origins != 2 || r.MAE != 3 || r.Pinball != 1 {
		t.Errorf("backtest = %+v, want 2 origins, MAE 3, pinball 1", r)
	}
	if _, err := Backtest(&Naive{}, []float64{1}, BacktestOptions{MinTrain: 2}); !errors.Is(err, ErrTooShort) {
		t.Errorf("short series: %v, want ErrTooShort", err)
	}
}

func TestEnsembleWeightsTheBetterModel(t *testing.T) {
	y := seasonalSeries(96, 0.3, 5)
	e := &Ensemble{Models: []SeriesModel{&Naive{}, &HoltWinters{Period: 12}, &ARIMA{}}, Backtest: BacktestOptions{MinTrain: 60, Step: 4, Horizon: 6}}
	if err := e.Fit(y); err != nil {
		t.Fatal(err)
	}
	for i, s := range e.Scores {
		t.Logf("%-12s pinball %.3f MAE %.3f weight %.2f", s.Model, s.Pinball, s.MAE, e.Weights[i])
	}
	if e.Best().Name() != "holt-winters" || e.Weights[1] < 0.5 {
		t.Errorf("best %s with weights %v; want Holt-Winters to carry most weight on a seasonal series", e.Best().Name(), e.Weights)
	}
	if len(e.Forecast(6)) != 6 {
		t.Error("forecast length")
	}
}

func TestForecastDemandTurnsArrivalsIntoConcurrentResources(t *testing.T) {
	// Four arrivals a minute, each task running 2.5 minutes, needing 2 CPU and 1 GiB.
	arrivals := make([]float64, 60)
	for i := range arrivals {
		arrivals[i] = 4
	}
	per := resources.Vector{}.With(resources.CPU, 2).With(resources.Memory, 1<<30)
	curve, e, err := ForecastDemand(arrivals, time.Minute, 5, 150*time.Second, per, DemandModels(0))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range curve {
		within(t, "arrivals", p.Arrivals, 3.99, 4.01)
		within(t, "concurrent", p.Concurrent, 9.99, 10.01) // 4 + 4 + 0.5 × 4
		within(t, "cpu", p.Demand.Get(resources.CPU), 19.9, 20.1)
	}
	if len(e.Weights) != 4 {
		t.Errorf("weights %v", e.Weights)
	}
	if _, _, err := ForecastDemand(arrivals, 0, 5, time.Second, per, DemandModels(0)); err == nil {
		t.Error("a zero bucket must be an error")
	}
	bad := resources.Vector{}.With(resources.CPU, math.NaN())
	if _, _, err := ForecastDemand(arrivals, time.Minute, 5, time.Second, bad, DemandModels(0)); !errors.Is(err, resources.ErrInvalid) {
		t.Errorf("NaN per-task demand: %v, want resources.ErrInvalid", err)
	}
}
