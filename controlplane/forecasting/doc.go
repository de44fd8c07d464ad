// Package forecasting holds Headstart's pure models: online aggregates
// (Welford moments, decaying quantile histograms), per-stage sizing estimators
// with bounds and calibrated confidence, demand-curve time-series models, the
// stage graph, baselines, backtests and bounded checkpoints.
//
// Everything here is deterministic and side-effect free: no clock reads (time
// is always an argument), no I/O, no Temporal, Kubernetes or Prometheus. That
// lets the forecaster workflow run this code directly and replay it.
package forecasting
