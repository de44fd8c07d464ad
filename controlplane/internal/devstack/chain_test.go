package devstack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/internal/testproc"
)

// TestTheBinaryRunsTheWholeChainFromItsConfig uses only the binaries and
// the sample's configuration file, as `make run` does: a dev server,
// `headstart worker --config samples/pipeline/headstart.yaml`, the sample's
// worker and its starter. Transform's tasks are scheduled on its replicas'
// queue (the sample's worker routes there only while replicas poll it) and
// started by a replica that the control worker runs. Restarted mid-run, the
// control worker attaches to the running forecaster, ledger and coordinator
// (same runs, no twins), and the chain carries on: observations keep
// arriving, a new reservation is made and Transform runs on the new
// process's replicas.
func TestTheBinaryRunsTheWholeChainFromItsConfig(t *testing.T) {
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	bin := buildBinaries(t, ctx, "./cmd/headstart", "./samples/pipeline/worker", "./samples/pipeline/starter")
	t.Setenv("HEADSTART_BIN", bin) // the sample's configuration runs replicas from here
	config := filepath.Join(temporaltest.RepoRoot(), "controlplane", "samples", "pipeline", "headstart.yaml")
	control := func() *testproc.Proc {
		p, err := testproc.Start("headstart worker", filepath.Join(bin, "headstart"), "worker", "-config", config, "-address", srv.HostPort())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Stop(30 * time.Second) })
		return p
	}
	ids := []string{headstart.ForecasterWorkflowID("default"), headstart.LedgerWorkflowID("local"), headstart.CoordinatorWorkflowID("default")}
	t.Cleanup(func() { // the next test on this server starts its own
		for _, id := range ids {
			_ = c.TerminateWorkflow(context.Background(), id, "", "test over")
		}
	})
	began := time.Now()
	first := control()
	waitFor(t, time.Minute, "the control worker to start its workflows", func() bool {
		return strings.Count(first.Log.Tail(1<<20), "started headstart-") == 3 || first.Exited() != nil
	})
	if err := first.Exited(); err != nil {
		t.Fatalf("%v\n%s", err, first.Log.Tail(4096))
	}
	for _, p := range []struct{ name, bin string }{
		{"sample worker", "worker"}, {"starter", "starter"},
	} {
		args := []string{"-address", srv.HostPort()}
		if p.bin == "worker" {
			args = append(args, "-metrics-address=")
		} else {
			args = append(args, "-rate", "90", "-scale", "0.25", "-seed", "1")
		}
		proc, err := testproc.Start(p.name, filepath.Join(bin, p.bin), args...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { proc.Stop(30 * time.Second) })
	}

	onReplica := transformOnReplicas(ctx, t, c, first, began)
	t.Logf("before the restart: %s", onReplica)

	runs := map[string]string{}
	for _, id := range ids {
		d, err := c.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			t.Fatal(err)
		}
		runs[id] = d.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	}
	observed := func() int64 {
		v, err := c.QueryWorkflow(ctx, ids[0], "", "status")
		if err != nil {
			return -1
		}
		var s headstart.ForecasterStatus
		if v.Get(&s) != nil {
			return -1
		}
		return s.Observed
	}
	before := observed()

	first.Stop(30 * time.Second)
	restarted := time.Now()
	second := control()
	waitFor(t, time.Minute, "the restarted control worker to attach", func() bool {
		return strings.Count(second.Log.Tail(1<<20), "attached to headstart-") == 3 || second.Exited() != nil
	})
	if err := second.Exited(); err != nil {
		t.Fatalf("%v\n%s", err, second.Log.Tail(4096))
	}
	for _, id := range ids {
		d, err := c.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			t.Fatal(err)
		}
		if run := d.GetWorkflowExecutionInfo().GetExecution().GetRunId(); run != runs[id] {
			t.Errorf("%s: run %s after the restart, %s before", id, run, runs[id])
		}
		resp, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
			Query: fmt.Sprintf("WorkflowId = '%s' AND ExecutionStatus = 'Running'", id)})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetCount() > 1 {
			t.Errorf("%s: %d running executions", id, resp.GetCount())
		}
	}
	onReplica = transformOnReplicas(ctx, t, c, second, restarted)
	t.Logf("after the restart: %s", onReplica)
	waitFor(t, time.Minute, "observations to keep arriving", func() bool { return observed() > before })
	waitFor(t, 2*time.Minute, "a reservation after the restart", func() bool {
		return reservedSince(ctx, c, ids[2], restarted)
	})
}

// transformOnReplicas waits for a completed pipeline whose Transform was
// scheduled after since on the replicas' queue and started by a child
// process of control, and describes it.
func transformOnReplicas(ctx context.Context, t *testing.T, c client.Client, control *testproc.Proc, since time.Time) string {
	t.Helper()
	var found string
	seen := map[string]bool{}
	waitFor(t, 3*time.Minute, "Transform to run on the control worker's replicas", func() bool {
		if err := control.Exited(); err != nil {
			t.Fatalf("%v\n%s", err, control.Log.Tail(4096))
		}
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf("WorkflowType = 'Pipeline' AND ExecutionStatus = 'Completed' AND StartTime > '%s'", since.UTC().Format(time.RFC3339Nano))})
		if err != nil {
			return false
		}
		for _, e := range resp.GetExecutions() {
			id, run := e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId()
			if seen[run] {
				continue
			}
			seen[run] = true
			h, err := temporaltest.History(ctx, c, id, run)
			if err != nil {
				continue
			}
			queues := map[int64]string{}
			for _, ev := range h.Events {
				if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.ActivityType.GetName() == "Transform" {
					queues[ev.EventId] = a.TaskQueue.GetName()
				}
				if a := ev.GetActivityTaskStartedEventAttributes(); a != nil && queues[a.ScheduledEventId] == "pipeline-transform" {
					if ppid := parentOf(a.Identity); ppid == control.Pid() {
						found = fmt.Sprintf("%s: Transform on pipeline-transform, started by %s, a child of the control worker (pid %d)", id, a.Identity, ppid)
						return true
					}
				}
			}
		}
		return false
	})
	return found
}

// parentOf is the parent PID of the process named by an SDK worker
// identity ("pid@host@"), or -1.
func parentOf(identity string) int {
	pid, _, _ := strings.Cut(identity, "@")
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return -1
	}
	// pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(fields) < 2 {
		return -1
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return -1
	}
	return ppid
}

// reservedSince reports whether the coordinator completed a Reserve
// activity scheduled after since.
func reservedSince(ctx context.Context, c client.Client, id string, since time.Time) bool {
	h, err := temporaltest.History(ctx, c, id, "")
	if err != nil {
		return false
	}
	reserves := map[int64]bool{}
	for _, e := range h.Events {
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil && a.ActivityType.GetName() == "Reserve" && e.EventTime.AsTime().After(since) {
			reserves[e.EventId] = true
		}
		if a := e.GetActivityTaskCompletedEventAttributes(); a != nil && reserves[a.ScheduledEventId] {
			return true
		}
	}
	return false
}

func TestMain(m *testing.M) { os.Exit(temporaltest.Main(m)) }
