package interceptors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/workflow"
)

// Options configure New, the drop-in for a worker. The zero value profiles
// every activity, reports to the default fleet's forecaster on the
// "headstart" task queue, and routes replicated stages to their replicas.
type Options struct {
	// Fleet names the forecaster the observations go to and the
	// coordinator whose routes are followed. If not set, headstart.DefaultFleet.
	Fleet string
	// ControlTaskQueue is the task queue of Headstart's control worker. If
	// not set, headstart.TaskQueue ("headstart").
	ControlTaskQueue string
	// Namespace of the worker's client: the replicas' task queues are
	// looked up there. If not set, "default".
	Namespace string
	// StageName names the stage of an activity, for profiling and routing
	// alike. It must be deterministic: it also runs in workflow code. If
	// not set, DefaultStageName ("WorkflowType/ActivityType").
	StageName func(workflowType, activityType string) string
	// ExcludeActivityTypes are not profiled, not reported, and never a
	// stage's predecessor.
	ExcludeActivityTypes []string
	// ProfileSessionActivities profiles the SDK's session activities too
	// (see ProfilerOptions). If not set, they are left alone.
	ProfileSessionActivities bool
	// DisableReporting keeps the observations in this worker's metrics:
	// nothing is sent to the forecaster.
	DisableReporting bool
	// DisableRouting leaves every activity on the task queue its workflow
	// gives it, whatever the coordinator replicates.
	DisableRouting bool
	// RouteSyncInterval between reads of the coordinator's routes. If not
	// set, 1 s. Keep it well below the coordinator's RouteGrace (5 s).
	RouteSyncInterval time.Duration
	// MetricsAddress serves the metrics at http://MetricsAddress/metrics,
	// e.g. ":9464". If not set, they are not served.
	MetricsAddress string
	// Registerer receives the metrics. If not set, a registry of the
	// drop-in's own (served on MetricsAddress). With MetricsAddress, it must
	// also be a prometheus.Gatherer (a *prometheus.Registry is).
	Registerer prometheus.Registerer
	// Logger hears what goes wrong (failed sends, routes that cannot be
	// read), each kind at most once a minute. If not set, slog.Default().
	Logger *slog.Logger
	// Profiler tunes the profiler (sampling, buffers, payload measurement).
	// Its StageName, Sink, Registerer, ExcludeActivityTypes and
	// ProfileSessionActivities are set from the options above.
	Profiler ProfilerOptions
	// Batch tunes the batches sent to the forecaster (size, interval,
	// timeout). Its Send, OnError and Registerer are set by New.
	Batch BatchOptions
}

// ErrInvalidOptions is wrapped by Options.Validate's errors.
var ErrInvalidOptions = errors.New("interceptors: invalid options")

// Validate reports every option New cannot work with, joined, each
// wrapping ErrInvalidOptions.
func (o Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...))
	}
	if o.RouteSyncInterval < 0 {
		bad("RouteSyncInterval %v is negative", o.RouteSyncInterval)
	}
	if o.MetricsAddress != "" {
		if _, _, err := net.SplitHostPort(o.MetricsAddress); err != nil {
			bad("MetricsAddress %q is not host:port: %v", o.MetricsAddress, err)
		}
		if _, ok := o.Registerer.(prometheus.Gatherer); o.Registerer != nil && !ok {
			bad("MetricsAddress needs a Registerer that is also a prometheus.Gatherer to serve its metrics")
		}
	}
	for _, t := range o.ExcludeActivityTypes {
		if t == "" {
			bad("ExcludeActivityTypes has an empty activity type")
		}
	}
	return errors.Join(errs...)
}

// Interceptor is Headstart's drop-in for a worker: one value for
// worker.Options.Interceptors that profiles every activity, sends the
// observations to the forecaster in batches, and routes the activities of
// replicated stages to their replicas while the coordinator says so (its
// own goroutine follows the coordinator's routes). Close it when the
// worker stops. Nothing it does can fail or block a user's activity or
// workflow: a forecaster or coordinator that cannot be reached costs
// observations and routes, which are counted and logged.
type Interceptor struct {
	interceptor.WorkerInterceptorBase
	profiler *Profiler
	routing  interceptor.WorkerInterceptor // nil when routing is off
	router   *Router

	stopSync context.CancelFunc
	synced   chan struct{} // closed when the route sync has stopped
	metrics  *http.Server
	addr     net.Addr
	close    sync.Once
	closeErr error
}

var _ interceptor.WorkerInterceptor = (*Interceptor)(nil)

// New starts the drop-in for a worker connected with c. It fails only on
// invalid options, metrics that cannot be registered, or a MetricsAddress
// that cannot be listened on.
func New(c client.Client, opts Options) (*Interceptor, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Namespace == "" {
		opts.Namespace = client.DefaultNamespace
	}
	if opts.StageName == nil {
		opts.StageName = DefaultStageName
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	i := &Interceptor{router: NewRouter()}

	popts := opts.Profiler
	popts.StageName, popts.Registerer = opts.StageName, reg
	popts.ExcludeActivityTypes, popts.ProfileSessionActivities = opts.ExcludeActivityTypes, opts.ProfileSessionActivities
	if !opts.DisableReporting {
		sendFailed := everyMinute(opts.Logger)
		bopts := opts.Batch
		bopts.Send = ForecasterSender(c, SenderOptions{TaskQueue: opts.ControlTaskQueue, Fleet: opts.Fleet})
		bopts.Registerer = reg
		bopts.OnError = func(err error, items int) {
			sendFailed("headstart: observations lost: the forecaster cannot be reached", "items", items, "error", err)
		}
		sink, err := NewBatchingSink(bopts)
		if err != nil {
			return nil, err
		}
		popts.Sink = sink
	}
	p, err := NewProfiler(popts)
	if err != nil {
		if s, ok := popts.Sink.(SinkCloser); ok {
			_ = s.Close(context.Background())
		}
		return nil, err
	}
	i.profiler = p

	if opts.MetricsAddress != "" {
		if err := i.serveMetrics(opts.MetricsAddress, reg.(prometheus.Gatherer)); err != nil {
			_ = p.Close(context.Background())
			return nil, err
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	i.stopSync, i.synced = cancel, make(chan struct{})
	if opts.DisableRouting {
		close(i.synced)
		return i, nil
	}
	i.routing = NewRouting(i.router, RoutingOptions{StageName: opts.StageName})
	unreachable := everyMinute(opts.Logger)
	go func() {
		defer close(i.synced)
		SyncRoutes(ctx, c, i.router, RouteSyncOptions{
			Fleet: opts.Fleet, Namespace: opts.Namespace, Interval: opts.RouteSyncInterval,
			OnError: func(err error) {
				unreachable("headstart: no routes: the coordinator cannot be asked; activities stay on their own task queues", "error", err)
			},
		})
	}()
	return i, nil
}

func (i *Interceptor) serveMetrics(address string, g prometheus.Gatherer) error {
	l, err := net.Listen("tcp", address)
	if err != nil {
		return fmt.Errorf("serve metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	i.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	i.addr = l.Addr()
	go func() { _ = i.metrics.Serve(l) }()
	return nil
}

// MetricsAddr is the address the metrics are served on (useful with port
// 0), or nil when they are not served.
func (i *Interceptor) MetricsAddr() net.Addr { return i.addr }

// Profiler is the drop-in's profiler, for its Stats.
func (i *Interceptor) Profiler() *Profiler { return i.profiler }

// Router holds the routes the drop-in follows now.
func (i *Interceptor) Router() *Router { return i.router }

// InterceptActivity implements interceptor.WorkerInterceptor: the profiler measures each attempt.
func (i *Interceptor) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return i.profiler.InterceptActivity(ctx, next)
}

// InterceptWorkflow implements interceptor.WorkerInterceptor: routing
// picks a scheduled activity's task queue, then the profiler names its
// predecessor in its header.
func (i *Interceptor) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	if i.routing != nil {
		next = i.routing.InterceptWorkflow(ctx, next)
	}
	return i.profiler.InterceptWorkflow(ctx, next)
}

// Close stops following routes (clearing them), stops profiling, sends the
// observations already measured (until ctx is done) and stops serving
// metrics. Call it after the worker has stopped; a second Close returns the
// first one's result.
func (i *Interceptor) Close(ctx context.Context) error {
	i.close.Do(func() {
		i.stopSync()
		<-i.synced
		i.router.Clear()
		err := i.profiler.Close(ctx)
		if i.metrics != nil {
			err = errors.Join(err, i.metrics.Close())
		}
		i.closeErr = err
	})
	return i.closeErr
}

// everyMinute returns a logger of one kind of trouble that logs its first
// occurrence, then at most once a minute with the number left unsaid.
func everyMinute(l *slog.Logger) func(msg string, args ...any) {
	var mu sync.Mutex
	var last time.Time
	suppressed := 0
	return func(msg string, args ...any) {
		mu.Lock()
		now := time.Now()
		if !last.IsZero() && now.Sub(last) < time.Minute {
			suppressed++
			mu.Unlock()
			return
		}
		n := suppressed
		last, suppressed = now, 0
		mu.Unlock()
		if n > 0 {
			args = append(args, "since_last_log", n)
		}
		l.Warn(msg, args...)
	}
}
