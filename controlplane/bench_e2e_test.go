package controlplane_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane"
	"github.com/headstart-dev/headstart/controlplane/coordinator"
	"github.com/headstart-dev/headstart/controlplane/samples/pipeline"
	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/workerpool"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/resources"
)

// The end-to-end benchmark's workload: the sample pipeline, its stages
// simulated by sleeps (so two cores do not limit the comparison), its
// Transform fan-out on a queue of its own served by a pool of stage workers
// that each take 5 s to start, under bursts of runs.
const (
	benchColdStart  = 5 * time.Second
	benchPerReplica = 4 // Transform tasks one stage worker runs at once
	benchShards     = 8 // Transform tasks per run
	benchStage      = "Pipeline/Transform"
)

// benchStabilization: neither the reactive scaler nor Headstart scales down
// until a lower count has sufficed this long: 5 s, or
// HEADSTART_BENCH_STABILIZATION (the HPA's default is 5 minutes, KEDA's
// cooldown to zero too).
var benchStabilization = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("HEADSTART_BENCH_STABILIZATION")); err == nil && d > 0 {
		return d
	}
	return 5 * time.Second
}()

var (
	benchStages = pipeline.Durations{Extract: 8 * time.Second, Transform: 3 * time.Second, Train: time.Second, Publish: 200 * time.Millisecond}
	// benchBursts: when each burst of runs starts, and how many runs.
	benchBursts = []struct {
		At   time.Duration
		Runs int
	}{{0, 3}, {22 * time.Second, 1}, {44 * time.Second, 4}, {70 * time.Second, 2}}
)

// policyRun is one policy's run of the workload.
type policyRun struct {
	c      client.Client
	pool   *workerpool.Shaper
	queue  string // Transform's queue, which the pool serves
	target shapers.Target
	fleet  string // the forecaster the workers report to (Headstart only)
	main   string // the pipeline's own queue
}

// scale sets the pool's replicas.
func (r *policyRun) scale(ctx context.Context, n int, why string) error {
	_, err := r.pool.Apply(ctx, shapers.Action{Target: r.target, Desired: shapers.Desired{Replicas: shapers.Int(n)}, Reason: why})
	return err
}

// settle waits until the pool has n replicas ready and no others.
func (r *policyRun) settle(ctx context.Context, n int) error {
	for {
		st, err := r.pool.Status(ctx, r.target)
		if err != nil {
			return err
		}
		if st.Converged && st.Ready == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pool did not settle at %d replicas: %w (%+v)", n, ctx.Err(), st)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runs starts n simulated pipeline runs and returns them.
func (r *policyRun) runs(ctx context.Context, prefix string, n int) ([]client.WorkflowRun, error) {
	var out []client.WorkflowRun
	for i := range n {
		sim := benchStages
		run, err := r.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fmt.Sprintf("%s-%s-%d-%d", r.main, prefix, i, time.Now().UnixNano()), TaskQueue: r.main},
			pipeline.Pipeline, pipeline.Input{ExtractMiB: 1, Shards: benchShards, TransformRounds: 1, TrainMiB: 1, Seed: uint64(i), Simulate: &sim, TransformQueue: r.queue})
		if err != nil {
			return nil, err
		}
		out = append(out, run)
	}
	return out, nil
}

// policy starts controlling a run's pool, returning once ready for the
// first burst, and a function that stops it.
type policy struct {
	name    string
	control func(ctx context.Context, b *testing.B, r *policyRun) (stop func())
}

// static: a fixed fleet sized for the mean load, warm before the first burst.
func staticFleet(ctx context.Context, b *testing.B, r *policyRun) func() {
	const replicas = 2
	if err := r.scale(ctx, replicas, "static fleet"); err != nil {
		b.Fatal(err)
	}
	if err := r.settle(ctx, replicas); err != nil {
		b.Fatal(err)
	}
	return func() {}
}

// reactive: KEDA's Temporal scaler and the HPA behind it — replicas =
// ceil(backlog / tasks per replica), the backlog read from the task queue's
// stats every 2 s (KEDA polls every 30 s by default), up at once, down only
// when the lower count has sufficed for the stabilization window (HPA's
// default is 5 minutes).
func reactiveScaler(ctx context.Context, b *testing.B, r *policyRun) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		type sample struct {
			at   time.Time
			want int
		}
		var window []sample
		current := 0
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			resp, err := r.c.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
				Namespace: "default", TaskQueue: &taskqueuepb.TaskQueue{Name: r.queue, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
				TaskQueueType: enumspb.TASK_QUEUE_TYPE_ACTIVITY, ReportStats: true,
			})
			if err == nil {
				backlog := resp.GetStats().GetApproximateBacklogCount()
				now := time.Now()
				window = append(window, sample{now, int(math.Ceil(float64(backlog) / benchPerReplica))})
				for len(window) > 0 && now.Sub(window[0].at) > benchStabilization {
					window = window[1:]
				}
				want := 0
				for _, s := range window {
					want = max(want, s.want)
				}
				if want != current {
					if err := r.scale(ctx, want, fmt.Sprintf("backlog %d", backlog)); err == nil {
						current = want
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// oracle: knows when every burst comes and how long the stages take, and has
// exactly the replicas Transform needs ready a second before its tasks
// arrive, until they are done.
func oracleFleet(began *time.Time) func(ctx context.Context, b *testing.B, r *policyRun) func() {
	return func(ctx context.Context, b *testing.B, r *policyRun) func() {
		want := func(t time.Duration) int {
			n := 0
			for _, bu := range benchBursts {
				arrive := bu.At + benchStages.Extract
				if t >= arrive-benchColdStart-time.Second && t < arrive+benchStages.Transform+time.Second {
					n += (bu.Runs*benchShards + benchPerReplica - 1) / benchPerReplica
				}
			}
			return n
		}
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			current := 0
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if began.IsZero() {
					continue
				}
				if n := want(time.Since(*began)); n != current {
					if err := r.scale(ctx, n, "the oracle knows"); err == nil {
						current = n
					}
				}
			}
		}()
		return func() { cancel(); <-done }
	}
}

// headstartCoordinator: the control worker, forecaster and coordinator. The
// forecaster first learns the pipeline from two warm-up bursts on a fixed
// fleet; then the pool goes to zero and the coordinator replicates
// Transform from its predictions, down after the same stabilization as the
// reactive scaler's — or at once when no Transform task is predicted within
// the horizon (ReleaseWhenIdle), which a reactive scaler cannot know.
func headstartCoordinator(ctx context.Context, b *testing.B, r *policyRun) func() {
	// The control worker polls the default task queue, where the workers' senders start the forecaster.
	opts := controlplane.Options{Fleet: r.fleet, Shapers: map[string]shapers.Shaper{workerpool.Kind: r.pool}}
	control, err := controlplane.NewWorker(r.c, opts)
	if err != nil {
		b.Fatal(err)
	}
	if err := control.Start(); err != nil {
		b.Fatal(err)
	}
	if err := r.scale(ctx, 2, "warm-up"); err != nil {
		b.Fatal(err)
	}
	for i := range 2 {
		runs, err := r.runs(ctx, fmt.Sprintf("warmup%d", i), 2)
		if err != nil {
			b.Fatal(err)
		}
		for _, run := range runs {
			if err := run.Get(ctx, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := r.scale(ctx, 0, "warm-up over"); err != nil {
		b.Fatal(err)
	}
	if err := r.settle(ctx, 0); err != nil {
		b.Fatal(err)
	}
	ledgerID := headstart.LedgerWorkflowID(r.fleet)
	if _, err := r.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: ledgerID, TaskQueue: headstart.TaskQueue}, headstart.LedgerWorkflowName,
		headstart.LedgerInput{Pool: r.fleet, Capacity: resources.Vector{}.With(resources.CPU, 64).With(resources.Memory, 256<<30)}); err != nil {
		b.Fatal(err)
	}
	if _, err := r.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: headstart.CoordinatorWorkflowID(r.fleet), TaskQueue: headstart.TaskQueue}, headstart.CoordinatorWorkflowName,
		coordinator.Input{Fleet: r.fleet, Config: coordinator.Config{LedgerWorkflowID: ledgerID, Pool: r.fleet, Interval: 500 * time.Millisecond,
			Rule:        coordinator.Rule{MinConfidence: 0.5, ActuationTime: benchColdStart},
			Replicate:   []coordinator.StageTarget{{Stage: benchStage, Target: r.target}},
			Replication: coordinator.ReplicationOptions{Levels: []int{0, 1, 2, 3, 4, 6, 8}, PerReplica: benchPerReplica, ScaleDownAfter: benchStabilization, ReleaseWhenIdle: true}}}); err != nil {
		b.Fatal(err)
	}
	return func() {
		_ = r.c.CancelWorkflow(context.Background(), headstart.CoordinatorWorkflowID(r.fleet), "")
		_ = r.c.CancelWorkflow(context.Background(), ledgerID, "")
		control.Stop()
	}
}

// policyResult is what one policy's run measured.
type policyResult struct {
	name          string
	waits         map[string][]time.Duration // activity type → schedule-to-start of each task
	timeline      string                     // replicas asked for, second by second
	workerSeconds float64                    // of Transform's pool, from the first burst to the last run's end
	makespan      time.Duration
}

func (p policyResult) quantile(stage string, q float64) time.Duration {
	w := slices.Clone(p.waits[stage])
	if len(w) == 0 {
		return 0
	}
	slices.Sort(w)
	return w[min(int(math.Ceil(q*float64(len(w))))-1, len(w)-1)]
}

// BenchmarkEndToEnd runs the workload under four policies, one after
// another, on one dev server: a static fleet, a reactive scaler in KEDA's
// manner, Headstart, and an oracle. It prints each stage's p50 and p95
// schedule-to-start, Transform's worker-seconds and the makespan per
// policy, and the ratios of Headstart's Transform p95 and worker-seconds to
// the reactive scaler's and of its p95 to the oracle's. Run it once:
// `make bench-e2e`.
func BenchmarkEndToEnd(b *testing.B) {
	srv := temporaltest.Shared(b)
	var oracleBegan time.Time
	policies := []policy{
		{"static", staticFleet},
		{"reactive", reactiveScaler},
		{"headstart", headstartCoordinator},
		{"oracle", oracleFleet(&oracleBegan)},
	}
	if only := os.Getenv("HEADSTART_BENCH_POLICIES"); only != "" { // e.g. "headstart,oracle", while tuning
		policies = slices.DeleteFunc(policies, func(p policy) bool { return !slices.Contains(strings.Split(only, ","), p.name) })
	}
	stamp := strconv.FormatInt(time.Now().Unix(), 36)
	var results []policyResult
	for _, p := range policies {
		began := &time.Time{}
		if p.name == "oracle" {
			began = &oracleBegan
		}
		results = append(results, runPolicy(b, srv, p, "bench-"+stamp+"-"+p.name, began))
	}

	fmt.Printf("\n%-10s %-20s %6s %10s %10s\n", "policy", "stage", "tasks", "p50", "p95")
	for _, r := range results {
		for _, stage := range []string{"Extract", "Transform", "Train", "Publish"} {
			fmt.Printf("%-10s %-20s %6d %10v %10v\n", r.name, "Pipeline/"+stage, len(r.waits[stage]),
				r.quantile(stage, 0.5).Round(time.Millisecond), r.quantile(stage, 0.95).Round(time.Millisecond))
		}
	}
	fmt.Printf("\n%-10s %15s %10s  %s\n", "policy", "worker-seconds", "makespan", "Transform replicas asked for, second by second")
	by := map[string]policyResult{}
	for _, r := range results {
		by[r.name] = r
		fmt.Printf("%-10s %15.1f %10v  %s\n", r.name, r.workerSeconds, r.makespan.Round(100*time.Millisecond), r.timeline)
	}
	hs, re, or := by["headstart"], by["reactive"], by["oracle"]
	if hs.name == "" || re.name == "" || or.name == "" {
		return // a subset of the policies: no ratios
	}
	p95 := func(r policyResult) float64 { return r.quantile("Transform", 0.95).Seconds() }
	fmt.Printf("\nratios on %s (the replicated stage), cold start %v, %d bursts, stabilization %v\n", benchStage, benchColdStart, len(benchBursts), benchStabilization)
	fmt.Printf("e2e p95_ratio_vs_reactive=%.3f worker_seconds_ratio_vs_reactive=%.3f p95_ratio_vs_oracle=%.3f\n",
		p95(hs)/p95(re), hs.workerSeconds/re.workerSeconds, p95(hs)/p95(or))
}

// runPolicy runs the bursts with one policy controlling Transform's pool.
func runPolicy(b *testing.B, srv *temporaltest.Server, p policy, name string, began *time.Time) policyResult {
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r := &policyRun{c: c, main: name, queue: name + "-transform"}
	r.target = shapers.Target{Kind: workerpool.Kind, Name: r.queue}
	if p.name == "headstart" {
		r.fleet = name
	}
	pool, err := workerpool.New(workerpool.Options{StartupDelay: benchColdStart, Concurrency: benchPerReplica, Output: replicaLog(),
		Command: func(queue string, concurrency int) *exec.Cmd {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "HEADSTART_REPLICA_QUEUE="+queue, "HEADSTART_REPLICA_ADDRESS="+srv.HostPort(),
				"HEADSTART_REPLICA_CONCURRENCY="+strconv.Itoa(concurrency), "HEADSTART_REPLICA_FLEET="+r.fleet)
			return cmd
		}})
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close(context.Background())
	r.pool = pool

	// The user's worker: the workflow and the other stages, always warm.
	wopts := sdkworker.Options{}
	if r.fleet != "" {
		prof, err := forecastingProfiler(c, controlplane.Options{Fleet: r.fleet})
		if err != nil {
			b.Fatal(err)
		}
		defer prof.Close(context.Background())
		wopts.Interceptors = []interceptor.WorkerInterceptor{prof}
	}
	w := sdkworker.New(c, r.main, wopts)
	w.RegisterWorkflow(pipeline.Pipeline)
	w.RegisterActivity(&pipeline.Activities{})
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	defer w.Stop()

	stop := p.control(ctx, b, r)
	defer stop()
	fmt.Fprintf(os.Stderr, "bench-e2e: %s: %d bursts\n", p.name, len(benchBursts))
	start := time.Now()
	costBefore := pool.WorkerSeconds(r.queue)
	*began = start
	sampled := make(chan string)
	sampling, endSampling := context.WithCancel(ctx)
	go func() { sampled <- timeline(sampling, pool, r.target) }()
	var runs []client.WorkflowRun
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, bu := range benchBursts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(start.Add(bu.At))):
			}
			rs, err := r.runs(ctx, fmt.Sprintf("burst%d", i), bu.Runs)
			if err != nil {
				b.Error(err)
				return
			}
			mu.Lock()
			runs = append(runs, rs...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, run := range runs {
		if err := run.Get(ctx, nil); err != nil {
			b.Fatal(err)
		}
	}
	res := policyResult{name: p.name, waits: map[string][]time.Duration{}, workerSeconds: pool.WorkerSeconds(r.queue) - costBefore}
	endSampling()
	res.timeline = <-sampled

	var last time.Time
	for _, run := range runs {
		h, err := temporaltest.History(ctx, c, run.GetID(), run.GetRunID())
		if err != nil {
			b.Fatal(err)
		}
		scheduled := map[int64]time.Time{}
		types := map[int64]string{}
		for _, e := range h.Events {
			if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
				scheduled[e.EventId], types[e.EventId] = e.EventTime.AsTime(), a.ActivityType.GetName()
			}
			if a := e.GetActivityTaskStartedEventAttributes(); a != nil {
				res.waits[types[a.ScheduledEventId]] = append(res.waits[types[a.ScheduledEventId]], e.EventTime.AsTime().Sub(scheduled[a.ScheduledEventId]))
			}
			if e.EventTime.AsTime().After(last) {
				last = e.EventTime.AsTime()
			}
		}
	}
	res.makespan = last.Sub(start)
	fmt.Fprintf(os.Stderr, "bench-e2e: %s: Transform p95 %v, %.1f worker-seconds\n", p.name, res.quantile("Transform", 0.95).Round(time.Millisecond), res.workerSeconds)
	return res
}

// timeline samples the replicas a pool is asked for once a second until ctx
// ends, one character per second (0-9, then a-z).
func timeline(ctx context.Context, pool *workerpool.Shaper, t shapers.Target) string {
	var b []byte
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return string(b)
		case <-tick.C:
		}
		st, err := pool.Status(ctx, t)
		if err != nil {
			return string(b)
		}
		b = append(b, strconv.FormatInt(int64(min(st.Replicas, 35)), 36)[0])
	}
}

// replicaLog is where the replicas write: stderr with -v, otherwise nowhere.
func replicaLog() io.Writer {
	if testing.Verbose() {
		return os.Stderr
	}
	return io.Discard
}
