package controlplane

import (
	"context"
	"fmt"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/activities"
)

// Predictions queries the fleet's forecaster for every stage's prediction.
func Predictions(ctx context.Context, c client.Client, fleet string) ([]headstart.Prediction, error) {
	if fleet == "" {
		fleet = headstart.DefaultFleet
	}
	return activities.Query[[]headstart.Prediction](ctx, c, headstart.ForecasterWorkflowID(fleet), headstart.QueryPredictions)
}

// HasUserWorkflows reports whether the client's namespace holds any
// workflow execution, running or closed, that is not one of Headstart's
// own: a control plane in a namespace without one is most likely pointed
// at the wrong namespace. It looks at the first page of the namespace's
// visibility, newest first.
func HasUserWorkflows(ctx context.Context, c client.Client, namespace string) (bool, error) {
	resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: namespace, PageSize: 100})
	if err != nil {
		return false, fmt.Errorf("list workflows of namespace %s: %w", namespace, err)
	}
	for _, e := range resp.GetExecutions() {
		switch e.GetType().GetName() {
		case headstart.ForecasterWorkflowName, headstart.LedgerWorkflowName, headstart.CoordinatorWorkflowName:
		default:
			return true, nil
		}
	}
	return false, nil
}
