package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	sdkpb "go.temporal.io/api/sdk/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/sdk/client"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/activities"
	"github.com/headstart-dev/headstart/controlplane/coordinator"
	"github.com/headstart-dev/headstart/controlplane/samples/pipeline"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/internal/testproc"
)

var (
	kills       = flag.Int("chaos.kills", 3, "how many times the control worker is killed with SIGKILL")
	restarts    = flag.Int("chaos.restarts", 1, "how many times the dev server is restarted")
	targetKills = flag.Int("chaos.target-kills", 1, "how many times a replica (the worker-pool shaper's target) is killed with SIGKILL")
	seed        = flag.Uint64("chaos.seed", 0, "random seed of the disruptions' order and timing; 0 picks one")
)

// The sample's configuration: Transform's replicas poll this queue, at most
// this many at a time (its largest level).
const (
	replicaQueue = "pipeline-transform"
	maxReplicas  = 2
	fleet        = headstart.DefaultFleet
	pool         = "local"
	// excessGrace is how long more replicas than planned may run: a
	// stopping one takes up to the sample worker's stop timeout (10 s) to
	// finish its activities and exit; the rest is margin for a busy machine.
	excessGrace = 25 * time.Second
	// staleBound is the most stale_after_s may be: the forecaster's
	// activities on a killed worker time out within 10 s, the coordinator's
	// tick is 1 s; the rest is margin for a busy machine.
	staleBound = 90 * time.Second
	// lostAfter is how long a key the coordinator holds may be missing
	// from the ledger: a release done at the ledger whose activity's
	// worker died is retried after the attempt's 10 s timeout, and the
	// server may be restarting meanwhile.
	lostAfter = 40 * time.Second
	// settleWithin is how long after the last run closed the coordinator
	// may still hold a reservation: a run whose end the forecaster missed
	// (its batch was in flight when a control worker died) counts as
	// upcoming until it is overdue by twice its stage's longest predicted
	// duration plus 10 s, and chaos stretches those durations. It is half
	// the reservations' 10-minute TTL.
	settleWithin = 5 * time.Minute
)

// TestChaosLosesNothingAndNeverFailsUserWork runs the chain through the
// disruptions the flags ask for, then checks the counts the package doc
// defines.
func TestChaosLosesNothingAndNeverFailsUserWork(t *testing.T) {
	s := *seed
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("chaos seed %d (rerun with -chaos.seed %d)", s, s)
	rng := rand.New(rand.NewPCG(s, s>>1))
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()

	r := newRun(t, ctx)
	r.startServer()
	r.buildAndStart()
	r.waitFor(3*time.Minute, "the chain to replicate Transform", func() bool { return len(r.replicaProcs()) > 0 })

	events := slices.Repeat([]string{"kill"}, *kills)
	events = append(events, slices.Repeat([]string{"restart"}, *restarts)...)
	events = append(events, slices.Repeat([]string{"target"}, *targetKills)...)
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	var lastDisruption time.Time
	var observedBefore int64
	for i, e := range events {
		pause(ctx, time.Duration(3000+rng.IntN(6000))*time.Millisecond)
		if o, ok := r.observed(); ok {
			observedBefore = o
		}
		switch e {
		case "kill":
			r.killControl(time.Duration(rng.IntN(2000)) * time.Millisecond)
		case "restart":
			r.restartServer()
		case "target":
			r.killReplica()
		}
		lastDisruption = time.Now()
		t.Logf("%d/%d: %s done", i+1, len(events), e)
	}
	stale := r.waitFresh(observedBefore, lastDisruption)
	r.stopStarting()
	r.waitRunsClosed(5 * time.Minute)
	r.settle()
	r.stopMonitor()
	failures := r.userFailures()
	r.checkNoLeaks()

	fmt.Printf("chaos kills=%d restarts=%d lost_reservations=%d double_actions=%d user_failures=%d stale_after_s=%.1f target_kills=%d runs=%d seed=%d\n",
		*kills, *restarts, r.lost+r.leaked, r.double, failures, stale.Seconds(), *targetKills, len(r.started()), s)
	if r.lost+r.leaked > 0 {
		t.Errorf("%d reservations lost and %d held past their expiry", r.lost, r.leaked)
	}
	if r.double > 0 {
		t.Errorf("%d shaper actions took effect twice (replicas beyond the plan)", r.double)
	}
	if failures > 0 {
		t.Errorf("%d user failures", failures)
	}
	if stale > staleBound {
		t.Errorf("predictions fresh %v after the last disruption, want within %v", stale, staleBound)
	}
}

// run is the chain under test and what the monitor has counted.
type run struct {
	t        *testing.T
	ctx      context.Context
	dir, bin string
	srvOpts  temporaltest.Options
	srv      *temporaltest.Server
	c        client.Client
	apiKey   string

	mu       sync.Mutex
	control  *testproc.Proc
	logs     []*testproc.Log   // every control worker's, and the sample worker's
	runs     []string          // workflow IDs started
	expected map[string]string // "workflowID/activityID" → the disruption its attempts were exposed to
	// what the monitor counted
	lost, leaked, double int
	missingSince         map[string]time.Time // held key → when first seen missing from the ledger
	counted              map[string]bool      // what is already counted, by kind/key
	excessSince          time.Time            // since when more than maxReplicas replicas run

	stopStart, stopMon context.CancelFunc
	startDone, monDone chan struct{}
	workerMetrics      string
	controlMetrics     string // the current control worker's /metrics
}

func newRun(t *testing.T, ctx context.Context) *run {
	dir := t.TempDir()
	port := testproc.FreePort(t)
	return &run{
		t: t, ctx: ctx, dir: dir, bin: filepath.Join(dir, "bin"),
		srvOpts:  temporaltest.Options{HostPort: fmt.Sprintf("127.0.0.1:%d", port), DBFilename: filepath.Join(dir, "temporal.db")},
		apiKey:   fmt.Sprintf("hs-chaos-secret-%x", rand.Uint64()),
		expected: map[string]string{}, missingSince: map[string]time.Time{}, counted: map[string]bool{},
	}
}

func (r *run) startServer() {
	srv, err := temporaltest.Start(r.ctx, r.srvOpts)
	if err != nil {
		r.t.Fatal(err)
	}
	r.srv = srv
	if r.c == nil {
		// The test's own client outlives the server's restarts.
		c, err := client.DialContext(r.ctx, client.Options{HostPort: r.srvOpts.HostPort})
		if err != nil {
			r.t.Fatal(err)
		}
		r.c = c
		r.t.Cleanup(c.Close)
		r.t.Cleanup(func() {
			if err := r.srv.Stop(); err != nil {
				r.t.Log(err)
			}
		})
	}
}

// restartServer stops the dev server and starts it again on the same file.
// The activities in flight meanwhile are the run's doing: a worker's
// heartbeats and results cannot reach a stopped server, and a task the
// server handed a poll as it stopped is retried after its heartbeat
// timeout (server 1.29 does not complete polls on shutdown).
func (r *run) restartServer() {
	all := func(*workflowpb.PendingActivityInfo) bool { return true }
	r.expose("in flight when the dev server stopped", all)
	stopped := time.Now()
	if err := r.srv.Stop(); err != nil {
		r.t.Fatalf("stop the dev server: %v", err)
	}
	r.startServer()
	// Scheduled or started before the server stopped, and not seen above.
	r.expose("in flight when the dev server stopped", func(a *workflowpb.PendingActivityInfo) bool {
		return a.GetScheduledTime().AsTime().Before(stopped) || (a.GetLastStartedTime() != nil && a.GetLastStartedTime().AsTime().Before(stopped))
	})
}

// buildAndStart builds the binaries, starts the control worker and the
// sample worker, then the pipelines and the monitor.
func (r *run) buildAndStart() {
	build := exec.CommandContext(r.ctx, "go", "build", "-o", r.bin+"/", "./cmd/headstart", "./samples/pipeline/worker")
	build.Dir = filepath.Join(temporaltest.RepoRoot(), "controlplane")
	if out, err := build.CombinedOutput(); err != nil {
		r.t.Fatalf("go build: %v\n%s", err, out)
	}
	// The control worker reads these (Temporal's client configuration); an
	// API key is sent in the clear to the dev server, which ignores it.
	r.t.Setenv("HEADSTART_BIN", r.bin)
	r.t.Setenv("TEMPORAL_API_KEY", r.apiKey)
	r.t.Setenv("TEMPORAL_TLS", "false")
	r.t.Setenv("XDG_STATE_HOME", filepath.Join(r.dir, "state")) // where the control worker records its replicas
	r.startControl()
	metrics := testproc.FreePort(r.t)
	w, err := testproc.Start("sample worker", filepath.Join(r.bin, "worker"), "-address", r.srvOpts.HostPort, "-metrics-address", fmt.Sprintf("127.0.0.1:%d", metrics))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { w.Stop(30 * time.Second) })
	r.workerMetrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics)
	r.mu.Lock()
	r.logs = append(r.logs, w.Log)
	r.mu.Unlock()

	var startCtx, monCtx context.Context
	startCtx, r.stopStart = context.WithCancel(r.ctx)
	monCtx, r.stopMon = context.WithCancel(r.ctx)
	r.startDone, r.monDone = make(chan struct{}), make(chan struct{})
	go r.startPipelines(startCtx)
	go r.monitor(monCtx)
	r.t.Cleanup(func() { r.stopStarting(); r.stopMonitor() })
}

func (r *run) startControl() {
	config := filepath.Join(temporaltest.RepoRoot(), "controlplane", "samples", "pipeline", "headstart.yaml")
	metrics := testproc.FreePort(r.t)
	p, err := testproc.Start("headstart worker", filepath.Join(r.bin, "headstart"), "worker", "-config", config,
		"-address", r.srvOpts.HostPort, "-metrics-address", fmt.Sprintf("127.0.0.1:%d", metrics))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { p.Stop(30 * time.Second) })
	r.mu.Lock()
	r.control = p
	r.logs = append(r.logs, p.Log)
	r.controlMetrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics)
	r.mu.Unlock()
}

// killControl kills the control worker with SIGKILL and starts another
// after down.
func (r *run) killControl(down time.Duration) {
	r.mu.Lock()
	old := r.control
	r.mu.Unlock()
	if err := old.Exited(); err != nil {
		r.t.Errorf("the control worker exited by itself: %v\n%s", err, old.Log.Tail(6000))
	} else if err := syscall.Kill(old.Pid(), syscall.SIGKILL); err != nil {
		r.t.Fatalf("kill the control worker: %v", err)
	}
	r.waitFor(30*time.Second, "the killed control worker to exit", func() bool { return old.Exited() != nil })
	pause(r.ctx, down)
	r.startControl()
}

// killReplica kills one of the current replicas with SIGKILL and notes
// the activities it was running: their retries are the run's doing, not
// Headstart's. Noted after the kill, so none can start there in between.
func (r *run) killReplica() {
	var victim int
	r.waitFor(2*time.Minute, "a replica to kill", func() bool {
		for pid := range r.replicaProcs() {
			victim = pid
			return true
		}
		return false
	})
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		r.t.Fatalf("kill replica %d: %v", victim, err)
	}
	identity := fmt.Sprintf("%d@", victim)
	r.expose(fmt.Sprintf("ran by replica %d, which the run killed", victim), func(a *workflowpb.PendingActivityInfo) bool {
		return strings.HasPrefix(a.GetLastWorkerIdentity(), identity)
	})
}

// expose notes the pending activities of the started pipelines that match
// as hit by one of the run's own disruptions (why): their retries are not
// user failures.
func (r *run) expose(why string, match func(*workflowpb.PendingActivityInfo) bool) {
	for _, id := range r.started() {
		ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		d, err := r.c.DescribeWorkflowExecution(ctx, id, "")
		cancel()
		if err != nil {
			continue // a closed run has nothing pending
		}
		for _, a := range d.GetPendingActivities() {
			key := id + "/" + a.GetActivityId()
			r.mu.Lock()
			if _, seen := r.expected[key]; !seen && match(a) {
				r.expected[key] = why
			}
			r.mu.Unlock()
		}
	}
}

// replicaProcs maps every live replica process of the run's worker binary
// polling replicaQueue, whoever its parent (a killed control worker's are
// adopted by the next), to its parent's PID.
func (r *run) replicaProcs() map[int]int {
	out := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	exe := filepath.Join(r.bin, "worker")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if args[0] != exe || !slices.Contains(args, replicaQueue) {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces, so read after the last ')'.
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) < 2 || fields[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		out[pid] = ppid
	}
	return out
}

// startPipelines starts a pipeline every 1–2 s until ctx is done,
// retrying a start through the server's restarts.
func (r *run) startPipelines(ctx context.Context) {
	defer close(r.startDone)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; ctx.Err() == nil; i++ {
		id := fmt.Sprintf("chaos-%d", i)
		in := pipeline.Input{ExtractMiB: 1 + rng.IntN(4), Shards: 4 + rng.IntN(6), TransformRounds: 20 + rng.IntN(60), TrainMiB: 8 + rng.IntN(24), Seed: rng.Uint64()}
		for ctx.Err() == nil {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := r.c.ExecuteWorkflow(sctx, client.StartWorkflowOptions{ID: id, TaskQueue: pipeline.TaskQueue}, pipeline.Pipeline, in)
			cancel()
			var started *serviceerror.WorkflowExecutionAlreadyStarted
			if err == nil || errors.As(err, &started) {
				r.mu.Lock()
				r.runs = append(r.runs, id)
				r.mu.Unlock()
				break
			}
			pause(ctx, 500*time.Millisecond)
		}
		pause(ctx, time.Duration(1000+rng.IntN(1000))*time.Millisecond)
	}
}

func (r *run) started() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.runs)
}

func (r *run) stopStarting() {
	if r.stopStart != nil {
		r.stopStart()
		<-r.startDone
	}
}

func (r *run) stopMonitor() {
	if r.stopMon != nil {
		r.stopMon()
		<-r.monDone
	}
}

// monitor samples the replicas, the ledger and the coordinator four times
// a second and counts what the package doc defines.
func (r *run) monitor(ctx context.Context) {
	defer close(r.monDone)
	for ctx.Err() == nil {
		r.sampleReplicas()
		r.sampleReservations(ctx)
		pause(ctx, 250*time.Millisecond)
	}
}

func (r *run) sampleReplicas() {
	procs := r.replicaProcs()
	r.mu.Lock()
	defer r.mu.Unlock()
	// A replica the shaper stops takes up to its stop timeout to exit, and
	// may overlap a new one: only an excess that outlasts that counts.
	if len(procs) <= maxReplicas {
		r.excessSince = time.Time{}
		return
	}
	if r.excessSince.IsZero() {
		r.excessSince = time.Now()
	}
	if time.Since(r.excessSince) > excessGrace {
		pids := slices.Sorted(maps.Keys(procs))
		for _, pid := range pids[maxReplicas:] {
			if k := fmt.Sprint("extra/", pid); !r.counted[k] {
				r.counted[k] = true
				r.double++
				r.t.Logf("double action: replicas %v for %v, at most %d planned", pids, excessGrace, maxReplicas)
			}
		}
	}
}

// sampleReservations compares what the coordinator holds with what the
// ledger holds. A held key missing from the ledger for lostAfter is lost;
// a reservation held 10 s past its expiry leaked.
func (r *run) sampleReservations(ctx context.Context) {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	held, err := activities.Query[coordinator.Status](qctx, r.c, headstart.CoordinatorWorkflowID(fleet), headstart.QueryCoordinatorState)
	if err != nil {
		return
	}
	reservations, err := activities.Query[[]headstart.Reservation](qctx, r.c, headstart.LedgerWorkflowID(pool), headstart.QueryReservations)
	if err != nil {
		return
	}
	now := time.Now()
	inLedger := map[string]bool{}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, res := range reservations {
		inLedger[res.Key] = true
		if now.Sub(res.Expires) > 10*time.Second && !r.counted["leak/"+res.Key] {
			r.counted["leak/"+res.Key] = true
			r.leaked++
			r.t.Logf("leaked: %s held %v past its expiry", res.Key, now.Sub(res.Expires).Round(time.Second))
		}
	}
	for stage, key := range held.State.Held {
		if inLedger[key] {
			delete(r.missingSince, key)
			continue
		}
		since, ok := r.missingSince[key]
		if !ok {
			r.missingSince[key] = now
			continue
		}
		if now.Sub(since) > lostAfter && !r.counted["lost/"+key] {
			r.counted["lost/"+key] = true
			r.lost++
			r.t.Logf("lost: the coordinator holds %s for %s; the ledger has not had it for %v", key, stage, now.Sub(since).Round(time.Second))
		}
	}
}

// settle waits, once no pipeline runs, for the coordinator to release
// what it holds and the ledger to hold nothing. Past settleWithin, every
// reservation the ledger holds that the coordinator does not (before and
// after reading the ledger) is leaked: nobody would release it before its
// expiry. One the coordinator still holds is reported with its decisions.
func (r *run) settle() {
	coord := headstart.CoordinatorWorkflowID(fleet)
	var before, after coordinator.Status
	var reservations []headstart.Reservation
	var decisions []coordinator.Decision
	deadline := time.Now().Add(settleWithin)
	for {
		ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		var errs [4]error
		before, errs[0] = activities.Query[coordinator.Status](ctx, r.c, coord, headstart.QueryCoordinatorState)
		reservations, errs[1] = activities.Query[[]headstart.Reservation](ctx, r.c, headstart.LedgerWorkflowID(pool), headstart.QueryReservations)
		after, errs[2] = activities.Query[coordinator.Status](ctx, r.c, coord, headstart.QueryCoordinatorState)
		decisions, errs[3] = activities.Query[[]coordinator.Decision](ctx, r.c, coord, headstart.QueryDecisions)
		err := errors.Join(errs[:]...)
		cancel()
		if err == nil && len(reservations) == 0 && len(after.State.Held) == 0 {
			return
		}
		if time.Now().After(deadline) && err == nil {
			break
		}
		if time.Now().After(deadline.Add(time.Minute)) {
			r.t.Fatalf("the coordinator or the ledger does not answer: %v", err)
		}
		pause(r.ctx, 250*time.Millisecond)
	}
	held := map[string]bool{}
	for _, k := range before.State.Held {
		held[k] = true
	}
	for _, k := range after.State.Held {
		held[k] = true
	}
	r.mu.Lock()
	for _, res := range reservations {
		if !held[res.Key] && !r.counted["leak/"+res.Key] {
			r.counted["leak/"+res.Key] = true
			r.leaked++
			r.t.Logf("leaked: %s is still held in the ledger, and not by the coordinator, %v after every run closed", res.Key, settleWithin)
		}
	}
	r.mu.Unlock()
	if len(after.State.Held) > 0 {
		r.t.Errorf("the coordinator still holds %v %v after every run closed; its decisions: %+v", after.State.Held, settleWithin, decisions)
		r.describe(coord)
		r.describe(headstart.LedgerWorkflowID(pool))
	}
}

// observed is the forecaster's count of observations taken in, if it answers.
func (r *run) observed() (int64, bool) {
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	s, err := activities.Query[headstart.ForecasterStatus](ctx, r.c, headstart.ForecasterWorkflowID(fleet), headstart.QueryStatus)
	if err != nil {
		return 0, false
	}
	return s.Observed, true
}

// waitFresh waits until the forecaster answers with predictions and has
// taken in observations past before, and returns how long after since.
func (r *run) waitFresh(before int64, since time.Time) time.Duration {
	r.waitFor(5*time.Minute, "fresh predictions after the last disruption", func() bool {
		o, ok := r.observed()
		if !ok || o <= before {
			return false
		}
		ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		defer cancel()
		preds, err := activities.Query[[]headstart.Prediction](ctx, r.c, headstart.ForecasterWorkflowID(fleet), headstart.QueryPredictions)
		return err == nil && len(preds) > 0
	})
	return time.Since(since)
}

func (r *run) waitRunsClosed(d time.Duration) {
	r.waitFor(d, "every pipeline to close", func() bool {
		for _, id := range r.started() {
			desc, err := r.c.DescribeWorkflowExecution(r.ctx, id, "")
			if err != nil || desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				return false
			}
		}
		return true
	})
}

// userFailures counts the pipelines that did not complete and the activity
// attempts retried, but for those a killed replica ran.
func (r *run) userFailures() int {
	n := 0
	for _, id := range r.started() {
		desc, err := r.c.DescribeWorkflowExecution(r.ctx, id, "")
		if err != nil {
			r.t.Fatalf("describe %s: %v", id, err)
		}
		if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
			n++
			r.t.Logf("user failure: %s is %s", id, st)
		}
		scheduled := map[int64]string{} // event ID → activity ID
		iter := r.c.GetWorkflowHistory(r.ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for iter.HasNext() {
			e, err := iter.Next()
			if err != nil {
				r.t.Fatalf("history of %s: %v", id, err)
			}
			switch e.GetEventType() {
			case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
				scheduled[e.GetEventId()] = e.GetActivityTaskScheduledEventAttributes().GetActivityId()
			case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
				a := e.GetActivityTaskStartedEventAttributes()
				key := id + "/" + scheduled[a.GetScheduledEventId()]
				r.mu.Lock()
				why, expected := r.expected[key]
				r.mu.Unlock()
				switch {
				case a.GetAttempt() > 1 && expected:
					r.t.Logf("%s ran %d times, %s; the last failure: %s", key, a.GetAttempt(), why, a.GetLastFailure().GetMessage())
				case a.GetAttempt() > 1:
					n += int(a.GetAttempt()) - 1
					r.t.Logf("user failure: %s ran %d times; the last failure: %s", key, a.GetAttempt(), a.GetLastFailure().GetMessage())
				}
			case enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED, enumspb.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
				n++
				r.t.Logf("user failure: an activity of %s failed for good", id)
			}
		}
		r.collectCanaries(id, desc.GetWorkflowExecutionInfo().GetStatus())
	}
	return n
}

// collectCanaries notes a completed pipeline's digests: payload content
// that must appear in no log, metric or detail of Headstart's.
func (r *run) collectCanaries(id string, status enumspb.WorkflowExecutionStatus) {
	if status != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		return
	}
	var rep pipeline.Report
	if err := r.c.GetWorkflow(r.ctx, id, "").Get(r.ctx, &rep); err != nil {
		r.t.Fatalf("result of %s: %v", id, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range append([]string{rep.Digest}, rep.ShardDigests...) {
		r.counted["canary/"+d] = true
	}
}

// checkNoLeaks greps the control workers' and the sample worker's logs,
// both /metrics and the control plane's Web UI details and memos for the
// canaries: the API key and every digest.
func (r *run) checkNoLeaks() {
	var texts []string
	r.mu.Lock()
	for _, l := range r.logs {
		texts = append(texts, l.Tail(1<<20))
	}
	metricsURLs := []string{r.workerMetrics, r.controlMetrics}
	canaries := []string{r.apiKey}
	for k := range r.counted {
		if d, ok := strings.CutPrefix(k, "canary/"); ok {
			canaries = append(canaries, d)
		}
	}
	r.mu.Unlock()
	for _, u := range metricsURLs {
		resp, err := http.Get(u)
		if err != nil {
			r.t.Errorf("scrape %s: %v", u, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		texts = append(texts, string(b))
	}
	for _, id := range []string{headstart.ForecasterWorkflowID(fleet), headstart.CoordinatorWorkflowID(fleet), headstart.LedgerWorkflowID(pool)} {
		desc, err := r.c.DescribeWorkflowExecution(r.ctx, id, "")
		if err != nil {
			r.t.Fatalf("describe %s: %v", id, err)
		}
		texts = append(texts, desc.String())
		v, err := r.c.QueryWorkflow(r.ctx, id, "", "__temporal_workflow_metadata")
		if err != nil {
			r.t.Fatalf("metadata of %s: %v", id, err)
		}
		var md sdkpb.WorkflowMetadata
		if err := v.Get(&md); err != nil {
			r.t.Fatal(err)
		}
		texts = append(texts, md.GetCurrentDetails(), md.String())
	}
	if len(canaries) < 2 {
		r.t.Fatalf("no pipeline completed: nothing to look for")
	}
	for _, text := range texts {
		for _, c := range canaries {
			if strings.Contains(text, c) {
				i := strings.Index(text, c)
				r.t.Errorf("%q appears in Headstart's output: …%s…", c, text[max(0, i-200):min(len(text), i+len(c)+50)])
			}
		}
	}
	r.t.Logf("looked for %d canaries in %d logs, metrics and details", len(canaries), len(texts))
}

func (r *run) waitFor(d time.Duration, what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) || r.ctx.Err() != nil {
			r.diagnose()
			r.t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		pause(r.ctx, 100*time.Millisecond)
	}
}

// diagnose logs what the coordinator decided and holds, and the newest
// lines of the control worker's log.
func (r *run) diagnose() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	coord := headstart.CoordinatorWorkflowID(fleet)
	st, err := activities.Query[coordinator.Status](ctx, r.c, coord, headstart.QueryCoordinatorState)
	r.t.Logf("coordinator state: %v %+v", err, st.State)
	decisions, err := activities.Query[[]coordinator.Decision](ctx, r.c, coord, headstart.QueryDecisions)
	r.t.Logf("coordinator decisions: %v %+v", err, decisions)
	r.mu.Lock()
	log := r.control.Log.Tail(8192)
	r.mu.Unlock()
	r.t.Logf("replicas: %v; the control worker's log:\n%s", r.replicaProcs(), log)
}

// describe logs a workflow's pending activities and workflow task, and
// the newest lines of the control worker's log.
func (r *run) describe(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := r.c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		r.t.Logf("describe %s: %v", id, err)
		return
	}
	info := d.GetWorkflowExecutionInfo()
	r.t.Logf("%s: run %s is %s, %d events, started %v, closed %v", id, info.GetExecution().GetRunId(), info.GetStatus(),
		info.GetHistoryLength(), info.GetStartTime().AsTime(), info.GetCloseTime().AsTime())
	for _, a := range d.GetPendingActivities() {
		r.t.Logf("%s: pending activity %s (%s) attempt %d, state %s, last failure %q", id, a.GetActivityId(), a.GetActivityType().GetName(), a.GetAttempt(), a.GetState(), a.GetLastFailure().GetMessage())
	}
	if t := d.GetPendingWorkflowTask(); t != nil {
		r.t.Logf("%s: pending workflow task, attempt %d, state %s", id, t.GetAttempt(), t.GetState())
	}
	// Where the run is: its newest events.
	var last []string
	iter := r.c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		e, err := iter.Next()
		if err != nil {
			r.t.Logf("history of %s: %v", id, err)
			break
		}
		last = append(last, fmt.Sprintf("%d %s %s", e.GetEventId(), e.GetEventTime().AsTime().Format(time.TimeOnly), e.GetEventType()))
		if len(last) > 12 {
			last = last[1:]
		}
	}
	r.t.Logf("%s: newest events (it is %s now):\n%s", id, time.Now().Format(time.TimeOnly), strings.Join(last, "\n"))
	r.mu.Lock()
	log := r.control.Log.Tail(6000)
	r.mu.Unlock()
	r.t.Logf("the control worker's log:\n%s", log)
}

// pause waits d or until ctx is done: the disruptions' schedule, not a
// wait for a condition.
func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
