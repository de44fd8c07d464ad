package forecaster_test

import (
	"context"

	"fmt"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"golang.org/x/sync/errgroup"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane"
	"github.com/headstart-dev/headstart/controlplane/forecaster"
	"github.com/headstart-dev/headstart/interceptors"
	"github.com/headstart-dev/headstart/internal/temporaltest"
)

// BenchmarkForecasterOnDevServer sends 100,000 observations across 1,000
// stages, in batches of 500 from 4 senders (as 4 profiled workers would), to
// a forecaster on a real dev server and
// measures how fast it takes them in, how large its checkpoint is, and how
// its history stays within limits by continuing as new. Run it once:
// `make bench-forecaster`.
func BenchmarkForecasterOnDevServer(b *testing.B) {
	const total, stages, batchSize = 100000, 1000, 500
	srv := temporaltest.Shared(b)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	opts := controlplane.Options{Fleet: fmt.Sprintf("load-%d", time.Now().UnixNano()), TaskQueue: "headstart-load"}
	w, err := controlplane.NewWorker(c, opts)
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	send := interceptors.ForecasterSender(c, interceptors.SenderOptions{TaskQueue: opts.TaskQueue, Fleet: opts.Fleet, Forecaster: opts.Forecaster})
	id := headstart.ForecasterWorkflowID(opts.Fleet)

	batches := make(chan int, total/batchSize)
	for first := 0; first < total; first += batchSize {
		batches <- first
	}
	close(batches)
	b.ResetTimer()
	start := time.Now()
	var g errgroup.Group
	for range 4 {
		g.Go(func() error {
			for first := range batches {
				if err := send(ctx, headstart.Batch{Observations: forecaster.LoadBatch(first, batchSize, stages)}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	sent := time.Since(start)
	// Wait on the memo the forecaster publishes (Describe costs the worker
	// nothing), then query the status once.
	for {
		observed, shed, err := memoCounts(ctx, c, id)
		if err == nil && observed+shed >= total {
			break
		}
		if ctx.Err() != nil {
			b.Fatalf("forecaster took in %d and shed %d of %d observations before the deadline", observed, shed, total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	var status headstart.ForecasterStatus
	if v, err := c.QueryWorkflow(ctx, id, "", headstart.QueryStatus); err != nil || v.Get(&status) != nil {
		b.Fatalf("query status: %v", err)
	}

	// The history stays bounded: the current run's, after any continue-as-new.
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		b.Fatal(err)
	}
	info := desc.GetWorkflowExecutionInfo()
	fmt.Printf("sent %d observations in %d batches in %v; all taken in after %v\n", total, total/batchSize, sent.Round(time.Millisecond), elapsed.Round(time.Millisecond))
	fmt.Printf("current run: continued as new %v; history %d events, %d bytes (continue-as-new at 8 MiB; server limits 51,200 events, 50 MiB)\n",
		info.GetFirstRunId() != desc.GetWorkflowExecutionInfo().GetExecution().GetRunId(), info.GetHistoryLength(), info.GetHistorySizeBytes())
	if info.GetHistorySizeBytes() > 16<<20 {
		b.Errorf("history %d bytes: the forecaster did not continue as new in time", info.GetHistorySizeBytes())
	}
	fmt.Printf("checkpoint now: %d bytes; carried into the current run: %d bytes\n", status.CheckpointBytes, status.CarriedBytes)
	failed, err := failedTasks(ctx, c, id)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("forecaster ingest_obs_per_s=%.0f taken_in=%d shed=%d failed_tasks=%d checkpoint_bytes=%d stages=%d\n",
		float64(status.Observed)/elapsed.Seconds(), status.Observed, status.Shed, failed, status.CheckpointBytes, status.Stages)
	if failed > 0 {
		b.Errorf("%d workflow tasks of the forecaster failed or timed out", failed)
	}
}

// failedTasks counts the failed and timed-out workflow tasks of every run of a workflow.
func failedTasks(ctx context.Context, c client.Client, id string) (int, error) {
	n := 0
	for runID := ""; ; {
		iter := c.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		first := ""
		for iter.HasNext() {
			e, err := iter.Next()
			if err != nil {
				return n, err
			}
			switch e.GetEventType() {
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED:
				n++
				a := e.GetWorkflowTaskFailedEventAttributes()
				fmt.Printf("workflow task failed: %s: %s\n", a.GetCause(), a.GetFailure().GetMessage())
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
				n++
				fmt.Printf("workflow task timed out: %s\n", e.GetWorkflowTaskTimedOutEventAttributes().GetTimeoutType())
			case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
				first = e.GetWorkflowExecutionStartedEventAttributes().GetContinuedExecutionRunId()
			}
		}
		if first == "" {
			return n, nil
		}
		runID = first
	}
}

// memoCounts reads the observations taken in and shed from the forecaster's memo.
func memoCounts(ctx context.Context, c client.Client, id string) (observed, shed int64, err error) {
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return 0, 0, err
	}
	fields := desc.GetWorkflowExecutionInfo().GetMemo().GetFields()
	dc := converter.GetDefaultDataConverter()
	if p, ok := fields["observed"]; ok {
		if err := dc.FromPayload(p, &observed); err != nil {
			return 0, 0, err
		}
	}
	if p, ok := fields["shed"]; ok {
		if err := dc.FromPayload(p, &shed); err != nil {
			return 0, 0, err
		}
	}
	return observed, shed, nil
}
