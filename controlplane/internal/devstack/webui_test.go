package devstack

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane"
	"github.com/headstart-dev/headstart/controlplane/coordinator"
	"github.com/headstart-dev/headstart/controlplane/internal/browsertest"
	"github.com/headstart-dev/headstart/controlplane/internal/synthetic"
	"github.com/headstart-dev/headstart/interceptors"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/resources"
)

// TestTheWebUIShowsTheForecastAndTheDecisions opens the Web UI in headless
// Chromium, as a person would, and checks that the forecaster's and the
// coordinator's pages render their tables with the real stage names. The
// screenshots are kept with go test -artifacts.
func TestTheWebUIShowsTheForecastAndTheDecisions(t *testing.T) {
	browser := browsertest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	srv, err := temporaltest.Start(ctx, temporaltest.Options{UI: true})
	require.NoError(t, err)
	defer srv.Stop()
	c := srv.Client()
	const fleet, pool = "webui", "webui-pool"
	opts := controlplane.Options{Fleet: fleet}
	w, err := controlplane.NewWorker(c, opts)
	require.NoError(t, err)
	require.NoError(t, w.Start())
	defer w.Stop() // the pages need a live worker to answer
	plane := controlplane.Plane{Options: opts,
		Pools: []controlplane.Pool{{Name: pool, Capacity: resources.Vector{}.With(resources.CPU, 8).With(resources.Memory, 16<<30)}},
		Coordinator: &coordinator.Config{Mode: coordinator.ModeForecastOnly, Pool: pool, LedgerWorkflowID: headstart.LedgerWorkflowID(pool),
			Interval: 500 * time.Millisecond, Rule: coordinator.Rule{MinConfidence: 0.5, ActuationTime: time.Minute}}}
	started, err := plane.Start(ctx, c)
	require.NoError(t, err)
	send := interceptors.ForecasterSender(c, interceptors.SenderOptions{Fleet: fleet})
	require.NoError(t, send(ctx, synthetic.RunsThrough(6, time.Now())))
	require.Eventually(t, func() bool {
		v, err := c.QueryWorkflow(ctx, headstart.CoordinatorWorkflowID(fleet), "", headstart.QueryDecisions)
		var ds []coordinator.Decision
		return err == nil && v.Get(&ds) == nil && len(ds) > 0
	}, time.Minute, 100*time.Millisecond, "the coordinator decides about the live run's next stage")

	dir := t.ArtifactDir()
	page := func(id, name string, waitFor ...string) browsertest.Page {
		t.Helper()
		var runID string
		for _, s := range started {
			if s.WorkflowID == id {
				runID = s.RunID
			}
		}
		url := fmt.Sprintf("http://%s/namespaces/default/workflows/%s/%s/history", srv.UIAddress(), id, runID)
		p, err := browser.Open(ctx, url, "User Metadata", dir, name, waitFor...)
		require.NoError(t, err, "screenshot: %s", p.Screenshot)
		t.Logf("%s page: %s", name, p.Screenshot)
		return p
	}
	rowOf := func(table [][]string, stage string) []string {
		for _, r := range table[1:] {
			if len(r) > 0 && r[0] == stage {
				return r
			}
		}
		return nil
	}

	forecaster := page(headstart.ForecasterWorkflowID(fleet), "forecaster", "Headstart forecaster", "W/train")
	predictions, ok := forecaster.Table("stage", "next expected", "CPU", "memory (lower–upper)", "confidence")
	require.True(t, ok, "the predictions table renders as a table: %v", forecaster.Tables)
	extract := rowOf(predictions, "W/extract")
	require.NotNil(t, extract, "a row for W/extract: %v", predictions)
	require.True(t, strings.HasPrefix(extract[1], "W/train (100%"), "what comes after extract: %v", extract)
	require.NotNil(t, rowOf(predictions, "W/train"))

	coord := page(headstart.CoordinatorWorkflowID(fleet), "coordinator", "Headstart coordinator", "W/train")
	require.Contains(t, coord.Text, "Pool webui-pool: capacity 8 CPU / 16 GiB")
	decisions, ok := coord.Table("stage", "decision", "amount", "reason")
	require.True(t, ok, "the decisions table renders as a table: %v", coord.Tables)
	train := rowOf(decisions, "W/train")
	require.NotNil(t, train, "a decision about the live run's next stage: %v", decisions)
	require.Equal(t, string(coordinator.DecideReserve), train[1], "forecast-only decides, and shows it: %v", train)

	ledger := page(headstart.LedgerWorkflowID(pool), "ledger", "Pool webui-pool")
	_, ok = ledger.Table("key", "stage", "resources", "kind")
	require.True(t, ok, "the reservations table renders: %v", ledger.Tables)
}
