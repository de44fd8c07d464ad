package controlplane_test

import (
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane"
	"github.com/headstart-dev/headstart/controlplane/activities"
	"github.com/headstart-dev/headstart/controlplane/coordinator"
	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/workerpool"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/resources"
)

// prefetchOnce reserves what Decide says, with the decision's summary on the
// activity, then releases it.
func prefetchOnce(ctx workflow.Context, ledgerID string, u coordinator.Upcoming, capacity, free resources.Vector) (headstart.ReserveResult, error) {
	d := coordinator.Decide(u, workflow.Now(ctx), capacity, free, coordinator.Rule{})
	if d.Kind != coordinator.DecideReserve {
		return headstart.ReserveResult{}, temporal.NewNonRetryableApplicationError("no reserve: "+d.Reason, "NoReserve", nil)
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute, Summary: d.Summary})
	var p *activities.Prefetcher
	var res headstart.ReserveResult
	req := headstart.ReserveRequest{Key: "prefetch-" + u.Stage, Pool: "pf-pool", Stage: u.Stage, Resources: d.Amount, TTL: 10 * time.Minute, Soft: true}
	if err := workflow.ExecuteActivity(actx, p.Reserve, activities.ReserveInput{LedgerWorkflowID: ledgerID, Request: req}).Get(ctx, &res); err != nil {
		return res, err
	}
	// A retried reserve holds once.
	var again headstart.ReserveResult
	if err := workflow.ExecuteActivity(actx, p.Reserve, activities.ReserveInput{LedgerWorkflowID: ledgerID, Request: req}).Get(ctx, &again); err != nil {
		return res, err
	}
	if !again.Existing {
		return res, temporal.NewNonRetryableApplicationError("a retried reserve held twice", "NotIdempotent", nil)
	}
	var released bool
	rctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute, Summary: "release " + req.Key})
	err := workflow.ExecuteActivity(rctx, p.Release, activities.ReleaseInput{LedgerWorkflowID: ledgerID, Key: req.Key}).Get(ctx, &released)
	return res, err
}

// TestPrefetchActivitiesReserveAndReleaseWithSummaries: the prefetch
// activities hold and give back capacity in a real ledger, idempotently, and
// the summary a person reads in the Web UI travels with each activity.
func TestPrefetchActivitiesReserveAndReleaseWithSummaries(t *testing.T) {
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := controlplane.Options{TaskQueue: "headstart-prefetch-it"}
	w, err := controlplane.NewWorker(c, opts)
	require.NoError(t, err)
	w.RegisterWorkflowWithOptions(prefetchOnce, workflow.RegisterOptions{Name: "PrefetchOnce"})
	require.NoError(t, w.Start())
	defer w.Stop()

	capacity := resources.Vector{}.With(resources.CPU, 16).With(resources.Memory, 64<<30)
	ledgerID := headstart.LedgerWorkflowID("pf-pool")
	_, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: ledgerID, TaskQueue: opts.TaskQueue}, headstart.LedgerWorkflowName,
		headstart.LedgerInput{Pool: "pf-pool", Capacity: capacity})
	require.NoError(t, err)
	defer func() { _ = c.CancelWorkflow(context.Background(), ledgerID, "") }()

	need := resources.Vector{}.With(resources.CPU, 4).With(resources.Memory, 8<<30)
	u := coordinator.Upcoming{Stage: "Pipeline/Train", Start: time.Now().Add(3 * time.Second), Confidence: 0.93, Need: need}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: opts.TaskQueue}, "PrefetchOnce", ledgerID, u, capacity, capacity)
	require.NoError(t, err)
	var res headstart.ReserveResult
	require.NoError(t, run.Get(ctx, &res))
	require.True(t, res.Reservation.Soft)
	require.Greater(t, res.Reservation.Resources.Get(resources.CPU), 4.0, "a margin over the need at confidence 0.93")

	h, err := temporaltest.History(ctx, c, run.GetID(), run.GetRunID())
	require.NoError(t, err)
	var summaries []string
	for _, e := range h.Events {
		if e.GetActivityTaskScheduledEventAttributes() != nil {
			var s string
			require.NoError(t, converterGet(e.GetUserMetadata().GetSummary(), &s))
			summaries = append(summaries, s)
		}
	}
	require.Len(t, summaries, 3)
	require.Regexp(t, `^reserve 4\.\d CPU / 9\.\d GiB for Pipeline/Train, confidence 0\.93, lead \d s$`, summaries[0])
	require.Equal(t, "release prefetch-Pipeline/Train", summaries[2])

	v, err := c.QueryWorkflow(ctx, ledgerID, "", headstart.QueryPool)
	require.NoError(t, err)
	var pool headstart.PoolStatus
	require.NoError(t, v.Get(&pool))
	require.Zero(t, pool.Reservations, "released")
}

func TestShapeRefusesUnknownKinds(t *testing.T) {
	p := &activities.Prefetcher{}
	_, err := p.Shape(context.Background(), shapers.Action{Target: shapers.Target{Kind: "vm", Name: "x"}, Desired: shapers.Desired{Replicas: shapers.Int(1)}, Reason: "r"})
	var app *temporal.ApplicationError
	require.True(t, errors.As(err, &app))
	require.Equal(t, "UnknownTarget", app.Type())
	require.True(t, app.NonRetryable())
}

// TestMigrateNeedsAMigrator: a migration through a shaper that cannot
// migrate (the worker pool) or of an unknown kind fails without retries.
func TestMigrateNeedsAMigrator(t *testing.T) {
	pool, err := workerpool.New(workerpool.Options{Command: func(string, int) *exec.Cmd { return exec.Command("true") }})
	require.NoError(t, err)
	p := &activities.Prefetcher{Shapers: map[string]shapers.Shaper{workerpool.Kind: pool}}
	for kind, want := range map[string]string{workerpool.Kind: "Unsupported", "vm": "UnknownTarget"} {
		_, err := p.Migrate(context.Background(), shapers.Migration{Target: shapers.Target{Kind: kind, Name: "q"}, From: "host-1", Reason: "hot"})
		var app *temporal.ApplicationError
		require.True(t, errors.As(err, &app), "%s: %v", kind, err)
		require.Equal(t, want, app.Type())
		require.True(t, app.NonRetryable())
	}
}

func converterGet(p *commonpb.Payload, v any) error {
	return converter.GetDefaultDataConverter().FromPayload(p, v)
}

// scheduleOn runs n "Wait" activities on queue and waits for them.
func scheduleOn(ctx workflow.Context, queue string, n int) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{TaskQueue: queue, StartToCloseTimeout: time.Minute})
	var fs []workflow.Future
	for range n {
		fs = append(fs, workflow.ExecuteActivity(ctx, "Wait"))
	}
	for _, f := range fs {
		if err := f.Get(ctx, nil); err != nil {
			return err
		}
	}
	return nil
}

// backlogOf asks the coordinator's Backlog activity about queue.
func backlogOf(ctx workflow.Context, queue string) (int64, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var ctl *coordinator.Activities
	var n int64
	err := workflow.ExecuteActivity(ctx, ctl.Backlog, queue).Get(ctx, &n)
	return n, err
}

// TestBacklogCountsTheTasksWaitingForReplicas: the coordinator's Backlog,
// which a retiring stage's replicas wait on before they stop, counts the
// activity tasks queued where nobody polls, and none once a worker took them.
func TestBacklogCountsTheTasksWaitingForReplicas(t *testing.T) {
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := controlplane.Options{TaskQueue: "headstart-backlog-it"}
	w, err := controlplane.NewWorker(c, opts)
	require.NoError(t, err)
	w.RegisterWorkflowWithOptions(scheduleOn, workflow.RegisterOptions{Name: "ScheduleOn"})
	w.RegisterWorkflowWithOptions(backlogOf, workflow.RegisterOptions{Name: "BacklogOf"})
	require.NoError(t, w.Start())
	defer w.Stop()
	backlog := func() int64 {
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: opts.TaskQueue}, "BacklogOf", "replicas-backlog-it")
		require.NoError(t, err)
		var n int64
		require.NoError(t, run.Get(ctx, &n))
		return n
	}

	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: opts.TaskQueue}, "ScheduleOn", "replicas-backlog-it", 3)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return backlog() == 3 }, time.Minute, 200*time.Millisecond, "three tasks wait where nobody polls")

	replicas := worker.New(c, "replicas-backlog-it", worker.Options{})
	replicas.RegisterActivityWithOptions(func(context.Context) error { return nil }, activity.RegisterOptions{Name: "Wait"})
	require.NoError(t, replicas.Start())
	defer replicas.Stop()
	require.NoError(t, run.Get(ctx, nil))
	require.Eventually(t, func() bool { return backlog() == 0 }, time.Minute, 200*time.Millisecond, "none once a worker took them")
}
