// Package activities holds Headstart's control-plane activities — fitting
// demand curves, reading utilization, and reserving, shaping and releasing
// capacity — as thin, idempotent adapters between the control
// workflows and the models and systems they drive.
package activities

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/activity"

	"github.com/headstart-dev/headstart/controlplane/forecasting"
	"github.com/headstart-dev/headstart/resources"
)

// StageSeries is what the forecaster knows of a stage's recent demand.
type StageSeries struct {
	Stage string
	// Arrivals per bucket, oldest first.
	Arrivals []float64
	Bucket   time.Duration
	// Runtime and PerTask are the stage's current sizing.
	Runtime time.Duration
	PerTask resources.Vector
}

// StageFeedback is a stage's prediction error, for export.
type StageFeedback struct {
	Stage                string
	MAPE, Bias, Coverage float64
	RuntimeMAPE          float64
	Refits               int64
}

// FitInput asks for demand curves and exports feedback.
type FitInput struct {
	Stages []StageSeries
	// Horizon in buckets. If not set, 15.
	Horizon  int
	Feedback []StageFeedback
}

// StageDemand is a fitted stage's demand curve and how its models were weighted.
type StageDemand struct {
	Stage   string
	Points  []forecasting.DemandPoint
	Weights map[string]float64 // model name → weight
	Err     string             `json:",omitempty"` // why no curve could be fitted
}

// FitResult holds one curve per stage asked for, in the same order.
type FitResult struct {
	Demand []StageDemand
}

// Fitter runs the forecaster's heavy fitting outside workflow code and exports
// its feedback as Prometheus metrics of the control worker. Safe for concurrent use.
type Fitter struct {
	feedback *prometheus.GaugeVec
	refits   *prometheus.GaugeVec
}

// NewFitter registers the feedback metrics on reg (nil: none).
func NewFitter(reg prometheus.Registerer) (*Fitter, error) {
	f := &Fitter{
		feedback: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "headstart", Subsystem: "forecaster", Name: "prediction_error",
			Help: "Recent prediction error per stage: mape and bias of memory (fractions), coverage of the 90% interval, runtime_mape.",
		}, []string{"stage", "measure"}),
		refits: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "headstart", Subsystem: "forecaster", Name: "refits",
			Help: "Times a stage was refitted because its error drifted.",
		}, []string{"stage"}),
	}
	if reg != nil {
		var err error
		if f.feedback, err = register(reg, f.feedback); err != nil {
			return nil, err
		}
		if f.refits, err = register(reg, f.refits); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// register registers c on reg, or returns the same metric registered
// there before (a control worker built again in the same process).
func register(reg prometheus.Registerer, c *prometheus.GaugeVec) (*prometheus.GaugeVec, error) {
	err := reg.Register(c)
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(*prometheus.GaugeVec); ok {
			return existing, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("register forecaster metrics: %w", err)
	}
	return c, nil
}

// maxExportedStages bounds the stage label of the feedback metrics.
const maxExportedStages = 100

// Fit fits a demand curve per stage (an ensemble of Holt-Winters, ARIMA, an
// LSTM and the naive forecast, weighted by rolling-origin backtests) and
// exports the feedback it was given. Deterministic for the same input; safe
// to retry.
func (f *Fitter) Fit(ctx context.Context, in FitInput) (FitResult, error) {
	horizon := in.Horizon
	if horizon <= 0 {
		horizon = 15
	}
	f.export(in.Feedback)
	out := FitResult{Demand: make([]StageDemand, len(in.Stages))}
	for i, s := range in.Stages {
		if err := ctx.Err(); err != nil {
			return FitResult{}, err
		}
		activity.RecordHeartbeat(ctx, i)
		d := StageDemand{Stage: s.Stage}
		curve, e, err := forecasting.ForecastDemand(s.Arrivals, s.Bucket, horizon, s.Runtime, s.PerTask, forecasting.DemandModels(0))
		if err != nil {
			d.Err = err.Error()
		} else {
			d.Points = curve
			d.Weights = map[string]float64{}
			for j, m := range e.Models {
				d.Weights[m.Name()] = e.Weights[j]
			}
		}
		out.Demand[i] = d
	}
	return out, nil
}

// export sets the feedback gauges of the stages with the most refits and
// error, at most maxExportedStages of them.
func (f *Fitter) export(fb []StageFeedback) {
	fb = append([]StageFeedback(nil), fb...)
	sort.SliceStable(fb, func(i, j int) bool { return fb[i].MAPE > fb[j].MAPE })
	if len(fb) > maxExportedStages {
		fb = fb[:maxExportedStages]
	}
	f.feedback.Reset()
	f.refits.Reset()
	for _, s := range fb {
		f.feedback.WithLabelValues(s.Stage, "mape").Set(s.MAPE)
		f.feedback.WithLabelValues(s.Stage, "bias").Set(s.Bias)
		f.feedback.WithLabelValues(s.Stage, "coverage").Set(s.Coverage)
		f.feedback.WithLabelValues(s.Stage, "runtime_mape").Set(s.RuntimeMAPE)
		f.refits.WithLabelValues(s.Stage).Set(float64(s.Refits))
	}
}
