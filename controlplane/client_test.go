package controlplane_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/resources"
)

// TestANamespaceWithOnlyHeadstartsWorkflowsIsReportedEmpty: what headstart
// worker checks to warn an operator pointed at the wrong namespace.
func TestANamespaceWithOnlyHeadstartsWorkflowsIsReportedEmpty(t *testing.T) {
	srv := temporaltest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ns = "headstart-empty"
	_, err := srv.Client().WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace: ns, WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour)})
	require.NoError(t, err)
	c, err := srv.NewClient(ctx, client.Options{Namespace: ns})
	require.NoError(t, err)
	defer c.Close()

	used, err := controlplane.HasUserWorkflows(ctx, c, ns)
	require.NoError(t, err)
	require.False(t, used, "a new namespace")
	_, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: headstart.LedgerWorkflowID("p"), TaskQueue: "nobody"}, headstart.LedgerWorkflowName,
		headstart.LedgerInput{Pool: "p", Capacity: resources.Vector{}.With(resources.CPU, 1)})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: ns})
		return err == nil && len(resp.GetExecutions()) == 1
	}, 30*time.Second, 100*time.Millisecond, "the ledger is visible")
	used, err = controlplane.HasUserWorkflows(ctx, c, ns)
	require.NoError(t, err)
	require.False(t, used, "Headstart's own workflows do not count")
	_, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: "nobody"}, "OrderWorkflow")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		used, err := controlplane.HasUserWorkflows(ctx, c, ns)
		return err == nil && used
	}, 30*time.Second, 100*time.Millisecond, "a workflow of the user's counts once visible")
}
