// Package forecaster is the forecaster workflow: fed observation batches
// by the workers' profilers (headstart.ObservationsSignal), it keeps each
// stage's profile, each workflow type's stage graph, where each running
// workflow run is, and the sizing models, scores every observation
// against the prediction that sized it, fits demand curves in an activity,
// and answers with predictions (headstart.QueryPredictions and the other
// queries). Its state is pure and deterministic (state.go); the models are
// in package forecasting.
package forecaster
