package headstart

import "time"

// ObservationsSignal carries an ObservationBatch to the forecaster.
const ObservationsSignal = "headstart-observations"

// Queries the forecaster answers.
const (
	QueryPredictions = "predictions"
	QueryProfiles    = "profiles"
	QueryStageGraph  = "stage-graph"
	QueryFeedback    = "feedback"
	QueryStatus      = "status"
	QueryInstances   = "instances"
)

// ForecasterWorkflowName is the forecaster's workflow type.
const ForecasterWorkflowName = "HeadstartForecaster"

// ForecasterWorkflowID is the forecaster's workflow ID for a namespace or fleet.
func ForecasterWorkflowID(fleet string) string { return "headstart-forecaster-" + fleet }

// ForecasterInput starts (or continues) a forecaster.
type ForecasterInput struct {
	Options ForecasterOptions
	// Checkpoint is the state carried by continue-as-new; empty to start afresh.
	Checkpoint []byte
}

// ForecasterStatus is the forecaster's headline figures.
type ForecasterStatus struct {
	Observed, Rejected int64
	Stages             int
	Running            int // workflow runs tracked
	CarriedBytes       int // size of the checkpoint this run started from
	CheckpointBytes    int // size of a checkpoint of the state now
	Batches            int // batches received in this run
	// Utilization is the last system-wide utilization read from Prometheus.
	Utilization UtilizationResult
	// Shed counts the observations and start events, and ShedBatches the
	// batches, dropped unread because the forecaster fell too far behind
	// (ForecasterOptions.MaxBacklogBatches). Shed counts only the batches
	// that say how many items they hold (the sender's do).
	Shed, ShedBatches int64
	// Backlog is how many batches wait to be taken in.
	Backlog int
}

// ForecasterOptions configure the forecaster. Zero values take the defaults.
type ForecasterOptions struct {
	// MaxStages bounds the stages tracked. Past it, the sizer forgets the
	// stage observed least recently and profiles fold new stages into one
	// named "other". If not set, 1000.
	MaxStages int
	// Quantile of memory the predictions size for. If not set, 0.99.
	Quantile float64
	// Window of recent tasks per stage the sizer keeps. If not set, 50.
	Window int
	// DriftThreshold is the recent under-prediction (signed percentage
	// error, positive when tasks use more) of a stage's median memory
	// prediction past which the stage is refitted from its latest tasks only.
	// If not set, 0.3 (a stage whose memory doubles errs by 0.5).
	DriftThreshold float64
	// MaxRunningInstances bounds the workflow runs tracked for "what comes
	// next"; the least recently seen is forgotten past it. If not set, 1000.
	MaxRunningInstances int
	// MaxItemsPerTask bounds the observations and start events taken in by
	// one workflow task; the rest wait for the next task, so that no task
	// runs long enough to time out, however far behind the forecaster is
	// (each batch is taken in between yields to the workflow's dispatcher,
	// so the SDK's deadlock detector times a batch, not the task). At about
	// 15 µs an observation, 8000 is some 0.1 s of work, 1 s on a host ten
	// times slower, against the 10 s task timeout; a smaller cap costs
	// throughput (a round trip to the server per task). If not set, 8000.
	MaxItemsPerTask int
	// MaxBacklogBatches is how many batches may wait to be taken in; past
	// it the oldest are shed unread, and counted (ForecasterStatus.Shed,
	// the current details and the control worker's
	// headstart_forecaster_shed_items metric). If not set, 1000.
	MaxBacklogBatches int
	// MaxSignalsPerRun continues the forecaster as new after this many
	// batches even if the server has not suggested it. If not set, 2000.
	MaxSignalsPerRun int
	// MaxHistoryBytes continues the forecaster as new once its history is
	// this large (the server refuses histories past 50 MiB). If not set, 8 MiB.
	MaxHistoryBytes int
	// FitInterval between demand-curve fits. If not set, 1 minute.
	FitInterval time.Duration
	// DemandBucket is the width of the arrival series' buckets. If not set, 1 minute.
	DemandBucket time.Duration
	// DemandBuckets is how many buckets of arrivals each stage keeps. If not set, 60.
	DemandBuckets int
	// FitStages is how many of the busiest stages are fitted each time. If not set, 20.
	FitStages int
	// Utilization names a PromQL query per resource for system-wide
	// utilization, read every FitInterval as one more input (the control
	// worker needs Options.PrometheusURL). If not set, none is read.
	Utilization map[string]string
}

// WithDefaults returns the options with every unset field at its default.
func (o ForecasterOptions) WithDefaults() ForecasterOptions {
	if o.MaxStages <= 0 {
		o.MaxStages = 1000
	}
	if o.Quantile <= 0 || o.Quantile >= 1 {
		o.Quantile = 0.99
	}
	if o.Window <= 0 {
		o.Window = 50
	}
	if o.DriftThreshold <= 0 {
		o.DriftThreshold = 0.3
	}
	if o.MaxRunningInstances <= 0 {
		o.MaxRunningInstances = 1000
	}
	if o.MaxItemsPerTask <= 0 {
		o.MaxItemsPerTask = 8000
	}
	if o.MaxBacklogBatches <= 0 {
		o.MaxBacklogBatches = 1000
	}
	if o.MaxSignalsPerRun <= 0 {
		o.MaxSignalsPerRun = 2000
	}
	if o.MaxHistoryBytes <= 0 {
		o.MaxHistoryBytes = 8 << 20
	}
	if o.FitInterval <= 0 {
		o.FitInterval = time.Minute
	}
	if o.DemandBucket <= 0 {
		o.DemandBucket = time.Minute
	}
	if o.DemandBuckets <= 0 {
		o.DemandBuckets = 60
	}
	if o.FitStages <= 0 {
		o.FitStages = 20
	}
	return o
}

// Prediction is what the forecaster expects of a stage's next task.
type Prediction struct {
	Stage        string  `json:"stage"`
	WorkflowType string  `json:"workflow_type"`
	CPU          Bounds  `json:"cpu_cores"`
	Memory       Bounds  `json:"memory_bytes"`
	Duration     Bounds  `json:"duration_seconds"`
	Confidence   float64 `json:"confidence"`
	// RecentError is the mean absolute percentage error of the stage's last
	// memory predictions (exponentially weighted).
	RecentError float64 `json:"recent_error"`
	Observed    int64   `json:"observed"`
	// TasksPerRun is how many tasks of the stage a run starts (its fan-out),
	// over the latest runs past the stage; 1 until known.
	TasksPerRun float64 `json:"tasks_per_run"`
	// Next lists the stages expected after this one, most likely first.
	Next []NextStage `json:"next,omitempty"`
	// Demand is the stage's fitted demand over the coming horizon, once fitted.
	Demand *DemandSummary `json:"demand,omitempty"`
}

// Bounds is a target with lower and upper bounds.
type Bounds struct {
	Target float64 `json:"target"`
	Lower  float64 `json:"lower"`
	Upper  float64 `json:"upper"`
}

// NextStage is a likely successor, with when it starts after this stage starts.
type NextStage struct {
	Stage       string        `json:"stage"`
	Probability float64       `json:"probability"`
	DelayP50    time.Duration `json:"delay_p50"`
	DelayP90    time.Duration `json:"delay_p90"`
}

// Feedback is how one stage's predictions compare with what happened.
type Feedback struct {
	Stage string `json:"stage"`
	// Scored observations, and those whose memory fell inside [lower, upper].
	Scored, Inside int64
	// MAPE and Bias are exponentially weighted: absolute and signed
	// percentage error of the median memory estimate ((actual − predicted) / actual).
	MAPE, Bias float64
	// RuntimeMAPE likewise for duration.
	RuntimeMAPE float64
	Refits      int64
}

// Coverage is the share of scored observations inside the interval.
func (f Feedback) Coverage() float64 {
	if f.Scored == 0 {
		return 0
	}
	return float64(f.Inside) / float64(f.Scored)
}

// InstanceForecast is where a running workflow run is and what it will run next.
type InstanceForecast struct {
	RunID        string    `json:"run_id"`
	WorkflowType string    `json:"workflow_type"`
	Stage        string    `json:"stage"` // the last stage it started
	Started      time.Time `json:"started"`
	// Next are the likely next stages with their expected start (Started + the median delay).
	Next []NextInstanceStage `json:"next"`
}

// NextInstanceStage is one likely next stage of a run.
type NextInstanceStage struct {
	Stage       string    `json:"stage"`
	Probability float64   `json:"probability"`
	ExpectedAt  time.Time `json:"expected_at"`
}

// DemandSummary is a stage's fitted demand over the horizon.
type DemandSummary struct {
	Horizon        time.Duration      `json:"horizon"`
	NextArrivals   float64            `json:"next_arrivals"`   // in the next bucket
	PeakConcurrent float64            `json:"peak_concurrent"` // tasks running at once, at most
	PeakCPU        float64            `json:"peak_cpu"`        // cores
	PeakMemory     float64            `json:"peak_memory"`     // bytes
	Weights        map[string]float64 `json:"model_weights"`
	FittedAt       time.Time          `json:"fitted_at"`
}

// UtilizationResult holds each query's value (the sum of the returned
// vector) and, for the queries that failed, why.
type UtilizationResult struct {
	Values map[string]float64
	Errors map[string]string
	At     time.Time
}
