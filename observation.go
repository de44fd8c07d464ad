package headstart

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Outcome classes of an activity attempt. The error class of an application
// error is its type, kept separately in Observation.ErrorType.
const (
	OutcomeOK          = "ok"
	OutcomeApplication = "application" // an application error; ErrorType holds its type
	OutcomeTimeout     = "timeout"
	OutcomeCanceled    = "canceled"
	OutcomePanic       = "panic"
	OutcomeOther       = "error" // any other error
)

// Observation is what one activity attempt used. Resource figures are what
// was measured for the attempt (see the interceptors package for how each is
// measured and how exact it is); zero means none was measured.
type Observation struct {
	// Stage is WorkflowType/ActivityType unless the user named it.
	Stage        string `json:"stage"`
	WorkflowType string `json:"workflow_type"`
	ActivityType string `json:"activity_type"`
	TaskQueue    string `json:"task_queue"`
	// WorkflowID and RunID name the run the attempt belongs to. They never
	// become metric labels.
	WorkflowID string `json:"workflow_id,omitempty"`
	RunID      string `json:"run_id,omitempty"`
	// Predecessor is the stage scheduled before this one in the same workflow
	// run ("" for the first).
	Predecessor string `json:"predecessor,omitempty"`
	Attempt     int32  `json:"attempt"`

	Scheduled       time.Time     `json:"scheduled"` // when this attempt was scheduled
	Started         time.Time     `json:"started"`   // when a worker started it
	ScheduleToStart time.Duration `json:"schedule_to_start"`
	Wall            time.Duration `json:"wall"` // time the worker spent running it

	CPUSeconds      float64 `json:"cpu_seconds"`
	PeakMemoryBytes float64 `json:"peak_memory_bytes"`
	AllocBytes      float64 `json:"alloc_bytes"`
	DiskReadBytes   float64 `json:"disk_read_bytes"`
	DiskWriteBytes  float64 `json:"disk_write_bytes"`
	DiskOps         float64 `json:"disk_ops"`
	NetBytes        float64 `json:"net_bytes"`
	PayloadInBytes  int64   `json:"payload_in_bytes"`
	PayloadOutBytes int64   `json:"payload_out_bytes"`

	Outcome   string `json:"outcome"`
	ErrorType string `json:"error_type,omitempty"`
}

// StageStart says an activity attempt of a stage started: where a workflow
// run is now, before its observation arrives at the attempt's end.
type StageStart struct {
	Stage        string    `json:"stage"`
	WorkflowType string    `json:"workflow_type"`
	ActivityType string    `json:"activity_type"`
	WorkflowID   string    `json:"workflow_id,omitempty"`
	RunID        string    `json:"run_id,omitempty"`
	Attempt      int32     `json:"attempt"`
	Scheduled    time.Time `json:"scheduled"`
	Started      time.Time `json:"started"`
}

// ErrInvalidObservation is wrapped by Observation.Validate's errors.
var ErrInvalidObservation = errors.New("invalid observation")

// Validate rejects an observation that would corrupt a profile: no stage, a
// negative or non-finite figure, or a non-positive attempt.
// MaxMeasure bounds each of an observation's measures (CPU seconds, bytes,
// operations): 2^60, an exbibyte. Past it a value is a broken counter, and
// the models' sums of squares would overflow.
const MaxMeasure float64 = 1 << 60

func (o Observation) Validate() error {
	if o.Stage == "" {
		return fmt.Errorf("%w: empty stage", ErrInvalidObservation)
	}
	if o.Attempt < 1 {
		return fmt.Errorf("%w: stage %s: attempt %d", ErrInvalidObservation, o.Stage, o.Attempt)
	}
	if o.Wall < 0 || o.ScheduleToStart < 0 || o.PayloadInBytes < 0 || o.PayloadOutBytes < 0 {
		return fmt.Errorf("%w: stage %s: negative duration or payload", ErrInvalidObservation, o.Stage)
	}
	for _, f := range []struct {
		name string
		x    float64
	}{
		{"cpu_seconds", o.CPUSeconds}, {"peak_memory_bytes", o.PeakMemoryBytes}, {"alloc_bytes", o.AllocBytes},
		{"disk_read_bytes", o.DiskReadBytes}, {"disk_write_bytes", o.DiskWriteBytes}, {"disk_ops", o.DiskOps}, {"net_bytes", o.NetBytes},
	} {
		if math.IsNaN(f.x) || f.x < 0 || f.x > MaxMeasure {
			return fmt.Errorf("%w: stage %s: %s = %v, want 0 to %g", ErrInvalidObservation, o.Stage, f.name, f.x, MaxMeasure)
		}
	}
	return nil
}

// OtherStage is the name profiles and metrics fold stages into past their
// caps on distinct stages.
const OtherStage = "other"
