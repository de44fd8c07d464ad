package benchprofiler_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/interceptors"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/internal/testproc"
)

// BenchmarkActivityLatencyWhateverTheControlPlane measures what a profiled
// worker's activities take, through Headstart's drop-in (profiling,
// batching to the forecaster, routing), on a real dev server, while the
// control plane is healthy, dead (no control worker at all), and slowed
// ten-fold (its control worker limited to a tenth of a core by a cgroup),
// against the same worker without the drop-in. Latency is the time from
// the outermost activity interceptor into the activity and back: what the
// drop-in adds to each attempt. `make bench-latency` runs it once and prints
//
//	latency p99_none_ms=… p99_healthy_ms=… p99_dead_ms=… p99_slowed_ms=… dropped_dead=… dropped_slowed=…
func BenchmarkActivityLatencyWhateverTheControlPlane(b *testing.B) {
	srv := temporaltest.Shared(b)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	bin := b.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin+"/", "./cmd/headstart")
	build.Dir = filepath.Join(temporaltest.RepoRoot(), "controlplane")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}

	type result struct {
		name    string
		lat     []time.Duration
		dropped int64
	}
	var results []result
	for i, cond := range []string{"none", "healthy", "dead", "slowed"} {
		fleet := fmt.Sprintf("latency-%d-%d", time.Now().UnixNano(), i)
		var stop func()
		switch cond {
		case "healthy":
			stop = startControl(ctx, b, srv.Client(), bin, srv.HostPort(), fleet, "")
		case "slowed":
			stop = startControl(ctx, b, srv.Client(), bin, srv.HostPort(), fleet, "10000") // 10 ms of CPU per 100 ms
		}
		lat, dropped := measureLatency(ctx, b, srv.Client(), fleet, cond != "none")
		if stop != nil {
			stop()
		}
		results = append(results, result{cond, lat, dropped})
	}
	b.StopTimer()
	p99 := map[string]float64{}
	dropped := map[string]int64{}
	for _, r := range results {
		slices.Sort(r.lat)
		q := func(p float64) time.Duration { return r.lat[int(p*float64(len(r.lat)-1))] }
		fmt.Printf("%-8s %d attempts: p50 %v p99 %v max %v; observations dropped %d\n", r.name, len(r.lat), q(0.5), q(0.99), r.lat[len(r.lat)-1], r.dropped)
		p99[r.name] = float64(q(0.99).Microseconds()) / 1000
		dropped[r.name] = r.dropped
	}
	fmt.Printf("latency p99_none_ms=%.3f p99_healthy_ms=%.3f p99_dead_ms=%.3f p99_slowed_ms=%.3f rise_dead_ms=%.3f rise_slowed_ms=%.3f dropped_dead=%d dropped_slowed=%d\n",
		p99["none"], p99["healthy"], p99["dead"], p99["slowed"], p99["dead"]-p99["none"], p99["slowed"]-p99["none"], dropped["dead"], dropped["slowed"])
}

// startControl starts `headstart worker` for fleet; with quota it runs in
// a cgroup v1 CPU controller limited to quota µs per 100 ms. It returns a
// function that stops it and removes the cgroup.
func startControl(ctx context.Context, b *testing.B, c client.Client, bin, address, fleet, quota string) func() {
	config := filepath.Join(bin, fleet+".yaml")
	yaml := fmt.Sprintf("fleet: %s\npools:\n  - name: %s\n    capacity: {cpu: 4, memory: 8Gi}\ncoordinator:\n  pool: %s\n", fleet, fleet, fleet)
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	p, err := testproc.Start("headstart worker", filepath.Join(bin, "headstart"), "worker", "-config", config, "-address", address)
	if err != nil {
		b.Fatal(err)
	}
	cg := ""
	if quota != "" {
		cg = filepath.Join("/sys/fs/cgroup/cpu", fmt.Sprintf("headstart-bench-%d", os.Getpid()))
		err := os.Mkdir(cg, 0o755)
		for _, w := range []struct{ file, value string }{
			{"cpu.cfs_period_us", "100000"}, {"cpu.cfs_quota_us", quota}, {"cgroup.procs", strconv.Itoa(p.Pid())},
		} {
			if err == nil {
				err = os.WriteFile(filepath.Join(cg, w.file), []byte(w.value), 0o644)
			}
		}
		if err != nil {
			p.Stop(10 * time.Second)
			b.Fatalf("cgroup %s (needs root and cgroup v1's cpu controller): %v", cg, err)
		}
	}
	// Ready once the forecaster answers.
	for ctx.Err() == nil {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.QueryWorkflow(qctx, headstart.ForecasterWorkflowID(fleet), "", headstart.QueryStatus)
		cancel()
		if err == nil {
			break
		}
		if e := p.Exited(); e != nil {
			b.Fatalf("%v\n%s", e, p.Log.Tail(4096))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return func() {
		p.Stop(30 * time.Second)
		if cg != "" {
			_ = os.Remove(cg)
		}
	}
}

// measureLatency runs 40 workflows of 50 sequential activities on a worker
// (with the drop-in for fleet, if dropIn) and returns each attempt's
// latency through the interceptor chain, and the observations the drop-in
// dropped.
func measureLatency(ctx context.Context, b *testing.B, c client.Client, fleet string, dropIn bool) ([]time.Duration, int64) {
	queue := "latency-" + fleet
	clock := &latencyClock{}
	ics := []interceptor.WorkerInterceptor{clock}
	var hs *interceptors.Interceptor
	if dropIn {
		var err error
		hs, err = interceptors.New(c, interceptors.Options{Fleet: fleet})
		if err != nil {
			b.Fatal(err)
		}
		ics = append(ics, hs)
	}
	w := worker.New(c, queue, worker.Options{Interceptors: ics})
	w.RegisterWorkflowWithOptions(chain, workflow.RegisterOptions{Name: "Chain"})
	w.RegisterActivityWithOptions(work, activity.RegisterOptions{Name: "Work"})
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	var runs []client.WorkflowRun
	for i := range 40 {
		r, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fmt.Sprintf("%s-%d", queue, i), TaskQueue: queue}, "Chain", 50)
		if err != nil {
			b.Fatal(err)
		}
		runs = append(runs, r)
	}
	for _, r := range runs {
		if err := r.Get(ctx, nil); err != nil {
			b.Fatal(err)
		}
	}
	var dropped int64
	if hs != nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_ = hs.Close(cctx)
		cancel()
		dropped = hs.Profiler().Stats().Dropped()
	}
	return clock.all(), dropped
}

func chain(ctx workflow.Context, n int) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	for i := range n {
		if err := workflow.ExecuteActivity(ctx, "Work", i).Get(ctx, nil); err != nil {
			return err
		}
	}
	return nil
}

// work is a small activity: about 50 µs of hashing-like arithmetic.
func work(_ context.Context, i int) (int, error) {
	x := uint64(i) + 1
	for range 20000 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return int(x & 0xff), nil
}

// latencyClock is the outermost activity interceptor: it times each
// attempt through the rest of the chain.
type latencyClock struct {
	interceptor.WorkerInterceptorBase
	mu  sync.Mutex
	lat []time.Duration
}

func (l *latencyClock) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &timedActivity{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}, clock: l}
}

func (l *latencyClock) all() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lat)
}

type timedActivity struct {
	interceptor.ActivityInboundInterceptorBase
	clock *latencyClock
}

func (t *timedActivity) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	start := time.Now()
	res, err := t.Next.ExecuteActivity(ctx, in)
	d := time.Since(start)
	t.clock.mu.Lock()
	t.clock.lat = append(t.clock.lat, d)
	t.clock.mu.Unlock()
	return res, err
}
