package controlplane

import (
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/activities"
	"github.com/headstart-dev/headstart/controlplane/coordinator"
	"github.com/headstart-dev/headstart/controlplane/forecaster"
	"github.com/headstart-dev/headstart/controlplane/ledger"
	"github.com/headstart-dev/headstart/controlplane/shapers"
)

// Options configure the Headstart control worker.
type Options struct {
	// TaskQueue the control worker polls. If not set, headstart.TaskQueue.
	TaskQueue string
	// Fleet names the forecaster and the coordinator: one per namespace or
	// per fleet of workers that share stages. If not set, headstart.DefaultFleet.
	Fleet string
	// Forecaster options for a forecaster this process starts.
	Forecaster headstart.ForecasterOptions
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
		o.TaskQueue = headstart.TaskQueue
	}
	if o.Fleet == "" {
		o.Fleet = headstart.DefaultFleet
	}
	return o
}

// RegisterWorkflows registers the control plane's workflows (forecaster,
// ledger, coordinator) under their workflow types, on a worker or a replayer.
func RegisterWorkflows(r sdkworker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(forecaster.Workflow, workflow.RegisterOptions{Name: headstart.ForecasterWorkflowName})
	r.RegisterWorkflowWithOptions(ledger.Workflow, workflow.RegisterOptions{Name: headstart.LedgerWorkflowName})
	r.RegisterWorkflowWithOptions(coordinator.Workflow, workflow.RegisterOptions{Name: headstart.CoordinatorWorkflowName})
}

// Register registers everything the control worker runs: the workflows
// (RegisterWorkflows) and their activities — the forecaster's demand
// fitting (exporting its metrics on opts.Registerer), its Rest and, with
// opts.PrometheusURL, its utilization reads; the coordinator's snapshot;
// the prefetch activities, shaping through opts.Shapers. c is the client
// the activities query and update the workflows with.
func Register(r sdkworker.Registry, c client.Client, opts Options) error {
	RegisterWorkflows(r)
	f, err := activities.NewFitter(opts.Registerer)
	if err != nil {
		return err
	}
	r.RegisterActivity(f)
	r.RegisterActivity(forecaster.Rest)
	if opts.PrometheusURL != "" {
		r.RegisterActivity(&activities.PrometheusReader{URL: opts.PrometheusURL})
	}
	r.RegisterActivity(&activities.Prefetcher{Client: c, Shapers: opts.Shapers})
	r.RegisterActivity(&coordinator.Activities{Client: c})
	return nil
}

// NewWorker returns the control worker: a Temporal worker on opts.TaskQueue
// with everything registered (Register). Start or Run it; it starts none
// of the workflows: the first observation batch starts the forecaster
// (interceptors.ForecasterSender), and Plane.Start starts all of them.
func NewWorker(c client.Client, opts Options) (sdkworker.Worker, error) {
	opts = opts.withDefaults()
	w := sdkworker.New(c, opts.TaskQueue, sdkworker.Options{})
	if err := Register(w, c, opts); err != nil {
		return nil, err
	}
	return w, nil
}
