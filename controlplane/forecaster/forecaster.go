package forecaster

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/activities"
	"github.com/headstart-dev/headstart/controlplane/internal/details"

	"github.com/headstart-dev/headstart/controlplane/forecasting"
	"github.com/headstart-dev/headstart/resources"
)

// Rest is the activity the forecaster waits on between bounded chunks of a
// backlog, to end one workflow task and start the next. It does nothing;
// controlplane.Register registers it.
func Rest(context.Context) error { return nil }

// maxDrainTasks bounds the workflow tasks spent taking in the batches
// that arrived before continuing as new.
const maxDrainTasks = 10

// publishEvery is how often, in workflow tasks, the forecaster publishes
// its details while it works through a backlog.
const publishEvery = 10

// Workflow is the long-running forecaster that keeps each stage's profile,
// each workflow type's stage graph and the sizing models, fed by observation
// batches, and answers with predictions. It continues as new when the server
// suggests it (or after MaxSignalsPerRun batches), once every handler has
// finished, carrying a bounded checkpoint. Deterministic: time is workflow time.
func Workflow(ctx workflow.Context, in headstart.ForecasterInput) error {
	logger := workflow.GetLogger(ctx)
	st := newForecasterState(in.Options)
	if len(in.Checkpoint) > 0 {
		restored, err := restoreState(in.Checkpoint)
		if err != nil {
			return fmt.Errorf("forecaster: %w", err)
		}
		st = restored
	}
	batches := 0
	for _, q := range []struct{ name, desc string }{
		{headstart.QueryPredictions, "Per stage: memory, CPU and duration targets with bounds, confidence, recent error and the likely next stages."},
		{headstart.QueryProfiles, "Per stage: the running profile (counts, moments, quantile histograms, edges)."},
		{headstart.QueryStageGraph, "Per workflow type: which stage follows which, with what probability and after how long."},
		{headstart.QueryFeedback, "Per stage: how predictions compare with observations (MAPE, bias, interval coverage, refits)."},
		{headstart.QueryStatus, "Headline figures: observations, stages, runs tracked, checkpoint size."},
		{headstart.QueryInstances, "Per running workflow run: the stage it is in and which stage comes next, with what probability and when."},
	} {
		name, desc := q.name, q.desc
		var handler any
		switch name {
		case headstart.QueryPredictions:
			handler = func() ([]headstart.Prediction, error) { return st.predictions(), nil }
		case headstart.QueryProfiles:
			handler = func() ([]*forecasting.Profile, error) {
				var out []*forecasting.Profile
				for _, s := range st.profiles.Stages() {
					out = append(out, st.profiles.Get(s))
				}
				return out, nil
			}
		case headstart.QueryStageGraph:
			handler = func() (*forecasting.StageGraph, error) { return st.graph, nil }
		case headstart.QueryFeedback:
			handler = func() ([]headstart.Feedback, error) { return st.feedbackList(), nil }
		case headstart.QueryInstances:
			handler = func() ([]headstart.InstanceForecast, error) { return st.instanceForecasts(), nil }
		case headstart.QueryStatus:
			handler = func() (headstart.ForecasterStatus, error) {
				cp, err := st.checkpoint()
				if err != nil {
					return headstart.ForecasterStatus{}, err
				}
				return headstart.ForecasterStatus{Observed: st.observed, Rejected: st.rejected, Stages: len(st.current),
					Running: len(st.runs.ByID), CarriedBytes: len(in.Checkpoint), CheckpointBytes: len(cp), Batches: batches,
					Utilization: st.util, Shed: st.shed, ShedBatches: st.shedBatches, Backlog: st.backlog}, nil
			}
		}
		if err := workflow.SetQueryHandlerWithOptions(ctx, name, handler, workflow.QueryHandlerOptions{Description: desc}); err != nil {
			return fmt.Errorf("forecaster: register query %s: %w", name, err)
		}
	}

	signals := workflow.GetSignalChannel(ctx, headstart.ObservationsSignal)
	publish := func() {
		workflow.SetCurrentDetails(ctx, currentDetails(st))
		_ = workflow.UpsertMemo(ctx, map[string]any{
			"observed": st.observed, "shed": st.shed, "stages": len(st.current), "runs_tracked": len(st.runs.ByID),
		})
	}
	publish()
	take := func(b headstart.ObservationBatch) int {
		batch, err := b.All()
		if err != nil {
			logger.Warn("dropping an undecodable observation batch", "error", err)
			st.rejected++
		}
		st.observe(batch.Observations, workflow.Now(ctx))
		st.starts(batch.Starts, workflow.Now(ctx))
		batches++
		return batch.Len()
	}
	// Each workflow task takes in at most MaxItemsPerTask items and sheds
	// the oldest batches past MaxBacklogBatches; what is left waits for the
	// next task (bounded). Histories from before this change drain
	// everything at once, as they were recorded.
	// From version 2 a task that leaves a backlog publishes its details and
	// memo only every publishEvery tasks: they cost a command each and
	// encode every stage's prediction.
	ingestVersion := workflow.GetVersion(ctx, "bounded-ingest", workflow.DefaultVersion, 2)
	bounded := ingestVersion >= 1
	behind := 0 // tasks in a row that left a backlog
	shed := func(b headstart.ObservationBatch) {
		st.shedBatches++
		st.shed += int64(b.Items + len(b.Observations) + len(b.Starts))
	}
	// drain takes in what has arrived, within the task's budget, and
	// reports whether batches are left for the next task.
	drain := func() bool {
		defer st.refresh(workflow.Now(ctx))
		var b headstart.ObservationBatch
		if !bounded {
			for signals.ReceiveAsync(&b) {
				take(b)
			}
			return false
		}
		for n := min(signals.Len()-st.opts.MaxBacklogBatches, st.opts.MaxBacklogBatches); n > 0 && signals.ReceiveAsync(&b); n-- {
			shed(b)
		}
		for budget := st.opts.MaxItemsPerTask; budget > 0 && signals.ReceiveAsync(&b); {
			pass(ctx) // the deadlock detector times each batch, not the task
			budget -= take(b)
		}
		if n := signals.Len(); n > 0 {
			st.backlog = n
			return true
		}
		st.backlog = 0
		return false
	}
	// yield ends the workflow task between bounded chunks, waiting on Rest,
	// an activity that does nothing: the next task starts as soon as it
	// completes (a timer would wait for the server's timer tick), with the
	// batches that arrived meanwhile. Short tasks keep clear of the SDK's
	// deadlock detector (1 s without yielding), of the task timeout, and of
	// the server's bound on events buffered while a task runs (past it the
	// server fails the task).
	yieldCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: 100 * time.Millisecond, MaximumInterval: time.Second}})
	yield := func() error { return workflow.ExecuteActivity(yieldCtx, Rest).Get(ctx, nil) }
	// Heavier fitting (demand curves) runs in an activity every FitInterval
	// while observations arrive; its result is applied back here.
	fitCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute, HeartbeatTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	var fitter *activities.Fitter
	var reader *activities.PrometheusReader
	var fitting, reading workflow.Future
	fitDue := false
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
	sel.AddReceive(signals, func(c workflow.ReceiveChannel, _ bool) {
		var b headstart.ObservationBatch
		c.Receive(ctx, &b)
		take(b)
	})
	armFit := func() {
		sel.AddFuture(workflow.NewTimer(ctx, st.opts.FitInterval), func(workflow.Future) { fitDue = true })
	}
	armFit()
	for {
		sel.Select(ctx)
		if err := ctx.Err(); err != nil {
			return err // canceled
		}
		// Take what else has arrived before updating the details once.
		pending := drain()
		if fitDue && fitting == nil {
			fitDue = false
			armFit()
			if len(st.opts.Utilization) > 0 && reading == nil {
				reading = workflow.ExecuteActivity(fitCtx, reader.ReadUtilization, activities.UtilizationInput{Queries: st.opts.Utilization})
				sel.AddFuture(reading, func(f workflow.Future) {
					var res headstart.UtilizationResult
					if err := f.Get(ctx, &res); err != nil {
						logger.Warn("reading utilization failed", "error", err)
					} else {
						st.util = res
					}
					reading = nil
				})
			}
			if in, ok := st.fitInput(); ok {
				fitting = workflow.ExecuteActivity(fitCtx, fitter.Fit, in)
				sel.AddFuture(fitting, func(f workflow.Future) {
					var res activities.FitResult
					if err := f.Get(ctx, &res); err != nil {
						logger.Warn("demand fit failed; keeping the previous curves", "error", err)
					} else {
						st.applyFit(res, workflow.Now(ctx))
					}
					fitting = nil
				})
			}
		}
		if pending {
			behind++
		} else {
			behind = 0
		}
		if behind%publishEvery == 0 || ingestVersion < 2 {
			publish()
		}
		info := workflow.GetInfo(ctx)
		if info.GetContinueAsNewSuggested() || batches >= st.opts.MaxSignalsPerRun || info.GetCurrentHistorySize() >= st.opts.MaxHistoryBytes {
			break
		}
		if pending {
			if err := yield(); err != nil {
				return err
			}
		}
	}
	// Let a running fit and every handler finish, drain, then continue as new with the state.
	if err := workflow.Await(ctx, func() bool {
		return (fitting == nil || fitting.IsReady()) && (reading == nil || reading.IsReady())
	}); err != nil {
		return err
	}
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	// What arrived meanwhile is taken in within a few tasks; past those,
	// the rest is shed (counted) rather than carried unbounded.
	for i := 0; drain(); i++ {
		if i == maxDrainTasks {
			var b headstart.ObservationBatch
			for signals.ReceiveAsync(&b) {
				shed(b)
			}
			break
		}
		if err := yield(); err != nil {
			return err
		}
	}
	if fitting != nil {
		var res activities.FitResult
		if fitting.Get(ctx, &res) == nil {
			st.applyFit(res, workflow.Now(ctx))
		}
	}
	cp, err := st.checkpoint()
	if err != nil {
		return fmt.Errorf("forecaster: %w", err)
	}
	logger.Info("forecaster continues as new", "observed", st.observed, "stages", len(st.current), "checkpoint_bytes", len(cp))
	return workflow.NewContinueAsNewError(ctx, headstart.ForecasterWorkflowName, headstart.ForecasterInput{Options: st.opts, Checkpoint: cp})
}

// currentDetails renders the Markdown a person sees in the Web UI: the
// predictions table first.
//
//workflowcheck:ignore fmt formats strings and numbers here, deterministically
func currentDetails(st *forecasterState) string {
	var b strings.Builder
	preds := st.predictions()
	fmt.Fprintf(&b, "**Headstart forecaster** — %d observations, %d stages\n\n", st.observed, len(preds))
	if st.shed > 0 || st.shedBatches > 0 || st.backlog > 0 {
		fmt.Fprintf(&b, "Behind: %d batches wait; %d items in %d batches shed unread so far.\n\n", st.backlog, st.shed, st.shedBatches)
	}
	b.WriteString("| stage | next expected | CPU | memory (lower–upper) | duration | confidence | recent error |\n|---|---|---|---|---|---|---|\n")
	for i, p := range preds {
		if i == details.MaxRows {
			fmt.Fprintf(&b, "| … %d more (query `predictions`) | | | | | | |\n", len(preds)-details.MaxRows)
			break
		}
		next := "—"
		if len(p.Next) > 0 {
			next = fmt.Sprintf("%s (%.0f%%, ~%s)", details.Short(p.Next[0].Stage), 100*p.Next[0].Probability, p.Next[0].DelayP50.Round(time.Second))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s (%s–%s) | %s | %.2f | %.0f%% |\n",
			details.Short(p.Stage), next, resources.FormatQuantity(p.CPU.Target),
			resources.FormatBytes(p.Memory.Target), resources.FormatBytes(p.Memory.Lower), resources.FormatBytes(p.Memory.Upper),
			time.Duration(p.Duration.Target*float64(time.Second)).Round(time.Millisecond), p.Confidence, 100*p.RecentError)
	}
	return b.String()
}

// pass hands control to the workflow's dispatcher and takes it back within
// the same workflow task, with no command and no server round trip: the
// SDK's deadlock detector (1 s without yielding) times the work between
// two passes, not the whole task.
func pass(ctx workflow.Context) {
	c := workflow.NewChannel(ctx)
	workflow.Go(ctx, func(ctx workflow.Context) { c.Send(ctx, struct{}{}) })
	c.Receive(ctx, nil)
}
