package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/headstart-dev/headstart/activities"
	"github.com/headstart-dev/headstart/interceptors"
	"github.com/headstart-dev/headstart/shapers"
)

// Options configure the Headstart control plane.
type Options struct {
	// TaskQueue the control worker polls. If not set, TaskQueue ("headstart").
	TaskQueue string
	// Fleet names the forecaster: one per namespace or per fleet of workers
	// that share stages. If not set, "default".
	Fleet string
	// Forecaster options for a forecaster this process starts.
	Forecaster ForecasterOptions
	// Registerer receives the control worker's metrics (feedback errors). If
	// not set, none are registered.
	Registerer prometheus.Registerer
	// PrometheusURL is the Prometheus HTTP API the forecaster reads
	// utilization from (ForecasterOptions.Utilization). If not set, none.
	PrometheusURL string
	// Shapers the prefetch activities apply actions through, by target kind.
	Shapers map[string]shapers.Shaper
}

func (o Options) withDefaults() Options {
	if o.TaskQueue == "" {
		o.TaskQueue = TaskQueue
	}
	if o.Fleet == "" {
		o.Fleet = "default"
	}
	return o
}

// Register registers the control plane's workflows on a worker or a replayer.
func Register(r sdkworker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(Forecaster, workflow.RegisterOptions{Name: ForecasterWorkflowName})
	r.RegisterWorkflowWithOptions(Ledger, workflow.RegisterOptions{Name: LedgerWorkflowName})
	r.RegisterWorkflowWithOptions(Coordinator, workflow.RegisterOptions{Name: CoordinatorWorkflowName})
}

// RegisterActivities registers the control plane's activities, exporting
// their metrics on reg (nil: none).
func RegisterActivities(r sdkworker.ActivityRegistry, reg prometheus.Registerer) error {
	f, err := activities.NewFitter(reg)
	if err != nil {
		return err
	}
	r.RegisterActivity(f)
	return nil
}

// New returns the control worker: a Temporal worker on opts.TaskQueue with
// everything registered. Start or Run it; it does not start the forecaster
// (the first batch does, see ForecasterSender).
func New(c client.Client, opts Options) (sdkworker.Worker, error) {
	opts = opts.withDefaults()
	w := sdkworker.New(c, opts.TaskQueue, sdkworker.Options{})
	Register(w)
	if err := RegisterActivities(w, opts.Registerer); err != nil {
		return nil, err
	}
	if opts.PrometheusURL != "" {
		w.RegisterActivity(&activities.PrometheusReader{URL: opts.PrometheusURL})
	}
	w.RegisterActivity(&activities.Prefetcher{Client: c, Shapers: opts.Shapers})
	w.RegisterActivity(&controlActivities{c: c})
	return w, nil
}

// ErrEmptyBatch is returned by the sender for an empty batch.
var ErrEmptyBatch = errors.New("headstart: empty observation batch")

// ForecasterSender returns a function that delivers batches of observations
// and start events to the fleet's forecaster with signal-with-start, so the
// first worker to report creates it. Use it as interceptors.BatchOptions.Send.
func ForecasterSender(c client.Client, opts Options) func(context.Context, interceptors.Batch) error {
	opts = opts.withDefaults()
	return func(ctx context.Context, batch interceptors.Batch) error {
		if batch.Len() == 0 {
			return ErrEmptyBatch
		}
		b, err := NewObservationBatch(batch)
		if err != nil {
			return err
		}
		_, err = c.SignalWithStartWorkflow(ctx, ForecasterWorkflowID(opts.Fleet), ObservationsSignal, b,
			client.StartWorkflowOptions{ID: ForecasterWorkflowID(opts.Fleet), TaskQueue: opts.TaskQueue},
			ForecasterWorkflowName, ForecasterInput{Options: opts.Forecaster})
		if err != nil {
			return fmt.Errorf("send %d observations and starts to %s: %w", batch.Len(), ForecasterWorkflowID(opts.Fleet), err)
		}
		return nil
	}
}

// Predictions queries the fleet's forecaster for every stage's prediction.
func Predictions(ctx context.Context, c client.Client, fleet string) ([]Prediction, error) {
	if fleet == "" {
		fleet = "default"
	}
	v, err := c.QueryWorkflow(ctx, ForecasterWorkflowID(fleet), "", QueryPredictions)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", ForecasterWorkflowID(fleet), err)
	}
	var out []Prediction
	if err := v.Get(&out); err != nil {
		return nil, fmt.Errorf("decode predictions: %w", err)
	}
	return out, nil
}
