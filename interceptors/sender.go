package interceptors

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/client"

	"github.com/headstart-dev/headstart"
)

// SenderOptions name the forecaster a sender reports to. Zero values take the defaults.
type SenderOptions struct {
	// TaskQueue the control worker polls. If not set, headstart.TaskQueue ("headstart").
	TaskQueue string
	// Fleet names the forecaster. If not set, headstart.DefaultFleet.
	Fleet string
	// Forecaster options for a forecaster the first batch starts. A running
	// forecaster keeps its own.
	Forecaster headstart.ForecasterOptions
}

func (o SenderOptions) withDefaults() SenderOptions {
	if o.TaskQueue == "" {
		o.TaskQueue = headstart.TaskQueue
	}
	if o.Fleet == "" {
		o.Fleet = headstart.DefaultFleet
	}
	return o
}

// ErrEmptyBatch is returned by the sender for an empty batch.
var ErrEmptyBatch = errors.New("headstart: empty observation batch")

// ForecasterSender returns a function that delivers batches of observations
// and start events to the fleet's forecaster with signal-with-start, so the
// first worker to report creates it. Use it as BatchOptions.Send.
func ForecasterSender(c client.Client, opts SenderOptions) func(context.Context, headstart.Batch) error {
	opts = opts.withDefaults()
	return func(ctx context.Context, batch headstart.Batch) error {
		if batch.Len() == 0 {
			return ErrEmptyBatch
		}
		b, err := headstart.NewObservationBatch(batch)
		if err != nil {
			return err
		}
		_, err = c.SignalWithStartWorkflow(ctx, headstart.ForecasterWorkflowID(opts.Fleet), headstart.ObservationsSignal, b,
			client.StartWorkflowOptions{ID: headstart.ForecasterWorkflowID(opts.Fleet), TaskQueue: opts.TaskQueue},
			headstart.ForecasterWorkflowName, headstart.ForecasterInput{Options: opts.Forecaster})
		if err != nil {
			return fmt.Errorf("send %d observations and starts to %s: %w", batch.Len(), headstart.ForecasterWorkflowID(opts.Fleet), err)
		}
		return nil
	}
}

// routes queries the fleet's coordinator for its routes (headstart.QueryRoutes):
// stage → the task queue of its replicas.
func routes(ctx context.Context, c client.Client, fleet string) (map[string]string, error) {
	if fleet == "" {
		fleet = headstart.DefaultFleet
	}
	id := headstart.CoordinatorWorkflowID(fleet)
	v, err := c.QueryWorkflow(ctx, id, "", headstart.QueryRoutes)
	if err != nil {
		return nil, fmt.Errorf("query %s of %s: %w", headstart.QueryRoutes, id, err)
	}
	var routes map[string]string
	if err := v.Get(&routes); err != nil {
		return nil, fmt.Errorf("decode %s of %s: %w", headstart.QueryRoutes, id, err)
	}
	return routes, nil
}
