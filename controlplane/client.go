package controlplane

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/client"

	"github.com/headstart-dev/headstart"
)

// Predictions queries the fleet's forecaster for every stage's prediction.
func Predictions(ctx context.Context, c client.Client, fleet string) ([]headstart.Prediction, error) {
	if fleet == "" {
		fleet = headstart.DefaultFleet
	}
	v, err := c.QueryWorkflow(ctx, headstart.ForecasterWorkflowID(fleet), "", headstart.QueryPredictions)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", headstart.ForecasterWorkflowID(fleet), err)
	}
	var out []headstart.Prediction
	if err := v.Get(&out); err != nil {
		return nil, fmt.Errorf("decode predictions: %w", err)
	}
	return out, nil
}
