package interceptors

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headstart-dev/headstart/forecasting"
)

// PredecessorHeader is the activity header that carries the stage scheduled
// before an activity in its workflow run.
const PredecessorHeader = "headstart-predecessor"

// ProfilerOptions configure a Profiler. The zero value profiles every activity
// into in-worker profiles only.
type ProfilerOptions struct {
	// Sink receives every observation. If not set, observations only update
	// the profiler's own profiles and metrics.
	Sink Sink
	// Registerer receives the profiler's Prometheus metrics. If not set, no
	// metrics are registered. The global default registry is never used.
	Registerer prometheus.Registerer
	// StageName names the stage of an activity. It must be deterministic: it
	// also runs in workflow code. If not set, "WorkflowType/ActivityType".
	StageName func(workflowType, activityType string) string
	// DataConverter measures payload sizes: the encoded size of an attempt's
	// arguments and result (the Data of each payload). Set it to the client's
	// converter when that is not the SDK's default. If not set, the SDK's default.
	DataConverter converter.DataConverter
	// SampleInterval between reads of the process counters while activities
	// run. If not set, 50 ms.
	SampleInterval time.Duration
	// BufferSize bounds the observations queued for aggregation, and again
	// those queued for the sink; past it observations are dropped and counted.
	// If not set, 4096.
	BufferSize int
	// MaxMetricStages caps the distinct stage label values; later stages share
	// the label "other". If not set, 100.
	MaxMetricStages int
	// Profiles shape the in-worker profiles (half-life, caps).
	Profiles forecasting.ProfileOptions
	// Now is the clock for profile timestamps. If not set, time.Now.
	Now func() time.Time
}

// Profiler is the drop-in worker interceptor that measures every activity
// attempt. Add it to worker.Options.Interceptors; call Close when the worker
// stops. Safe for concurrent use.
type Profiler struct {
	interceptor.WorkerInterceptorBase
	opts    ProfilerOptions
	meter   *meter
	metrics *profilerMetrics

	closeMu sync.RWMutex // held for reading while enqueuing, for writing while closing
	closed  bool
	queue   chan forecasting.Observation // to the aggregator
	toSink  chan forecasting.Observation // to the sink goroutine
	stop    chan struct{}
	wg      sync.WaitGroup
	sinkWG  sync.WaitGroup

	mu       sync.Mutex // guards profiles
	profiles *forecasting.ProfileSet

	observed, delivered                  atomic.Int64
	droppedFull, droppedBacklog, invalid atomic.Int64
	sinkErrs, sinkPanics, internalPanics atomic.Int64
}

var _ interceptor.WorkerInterceptor = (*Profiler)(nil)

// NewProfiler starts a profiler. It fails only when its metrics cannot be
// registered (for example, registered twice on one registry).
func NewProfiler(opts ProfilerOptions) (*Profiler, error) {
	if opts.StageName == nil {
		opts.StageName = DefaultStageName
	}
	if opts.DataConverter == nil {
		opts.DataConverter = converter.GetDefaultDataConverter()
	}
	if opts.SampleInterval <= 0 {
		opts.SampleInterval = 50 * time.Millisecond
	}
	if opts.BufferSize <= 0 {
		opts.BufferSize = 4096
	}
	if opts.MaxMetricStages <= 0 {
		opts.MaxMetricStages = 100
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m, err := newProfilerMetrics(opts.Registerer, opts.MaxMetricStages)
	if err != nil {
		return nil, fmt.Errorf("register profiler metrics: %w", err)
	}
	p := &Profiler{
		opts:     opts,
		meter:    newMeter(),
		metrics:  m,
		queue:    make(chan forecasting.Observation, opts.BufferSize),
		toSink:   make(chan forecasting.Observation, opts.BufferSize),
		stop:     make(chan struct{}),
		profiles: forecasting.NewProfileSet(opts.Profiles),
	}
	p.wg.Add(2)
	go func() { defer p.wg.Done(); p.meter.run(opts.SampleInterval, p.stop) }()
	go func() { defer p.wg.Done(); p.aggregate() }()
	if opts.Sink != nil {
		p.sinkWG.Add(1)
		go func() { defer p.sinkWG.Done(); p.deliver() }()
	}
	return p, nil
}

// DefaultStageName is "WorkflowType/ActivityType".
func DefaultStageName(workflowType, activityType string) string {
	return workflowType + "/" + activityType
}

// Stats count what the profiler did.
type Stats struct {
	Observed       int64 // attempts measured and queued
	Delivered      int64 // observations handed to the sink without error
	DroppedFull    int64 // dropped because the aggregation queue was full
	DroppedBacklog int64 // dropped because the sink fell behind
	Invalid        int64 // rejected by Observation.Validate
	SinkErrors     int64 // sink calls that returned an error
	SinkPanics     int64 // sink calls that panicked
	InternalPanics int64 // the profiler's own panics, recovered
}

// Dropped is every observation that did not reach the sink for lack of room.
func (s Stats) Dropped() int64 { return s.DroppedFull + s.DroppedBacklog }

// Stats returns the counts so far.
func (p *Profiler) Stats() Stats {
	return Stats{
		Observed: p.observed.Load(), Delivered: p.delivered.Load(),
		DroppedFull: p.droppedFull.Load(), DroppedBacklog: p.droppedBacklog.Load(), Invalid: p.invalid.Load(),
		SinkErrors: p.sinkErrs.Load(), SinkPanics: p.sinkPanics.Load(), InternalPanics: p.internalPanics.Load(),
	}
}

// Profiles returns a copy of every stage's profile, sorted by stage.
func (p *Profiler) Profiles() []*forecasting.Profile {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*forecasting.Profile
	for _, s := range p.profiles.Stages() {
		out = append(out, p.profiles.Get(s).Clone())
	}
	return out
}

// Profile returns a copy of one stage's profile.
func (p *Profiler) Profile(stage string) (*forecasting.Profile, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := p.profiles.Get(stage)
	if pr == nil {
		return nil, false
	}
	return pr.Clone(), true
}

// Close stops measuring, waits until queued observations are aggregated and
// handed to the sink (or ctx ends), and closes the sink if it is a SinkCloser.
// Activities that finish after Close are not measured.
func (p *Profiler) Close(ctx context.Context) error {
	p.closeMu.Lock()
	if p.closed {
		p.closeMu.Unlock()
		return nil
	}
	p.closed = true
	close(p.queue)
	close(p.stop)
	p.closeMu.Unlock()

	done := make(chan struct{})
	go func() { p.wg.Wait(); close(p.toSink); p.sinkWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("close profiler: %w", ctx.Err())
	}
	p.meter.close()
	if c, ok := p.opts.Sink.(SinkCloser); ok {
		if err := c.Close(ctx); err != nil {
			return fmt.Errorf("close profiler sink: %w", err)
		}
	}
	return nil
}

// enqueue hands an observation to the aggregator without ever blocking.
func (p *Profiler) enqueue(o forecasting.Observation) {
	p.closeMu.RLock()
	defer p.closeMu.RUnlock()
	if p.closed {
		return
	}
	select {
	case p.queue <- o:
		p.observed.Add(1)
	default:
		p.droppedFull.Add(1)
		p.metrics.dropped.WithLabelValues("queue_full").Inc()
	}
}

// aggregate folds observations into profiles and metrics and forwards them to the sink.
func (p *Profiler) aggregate() {
	for o := range p.queue {
		p.aggregateOne(o)
	}
}

func (p *Profiler) aggregateOne(o forecasting.Observation) {
	defer p.recoverInternal()
	if err := o.Validate(); err != nil {
		p.invalid.Add(1)
		p.metrics.dropped.WithLabelValues("invalid").Inc()
		return
	}
	p.mu.Lock()
	p.profiles.Add(o, p.opts.Now())
	p.mu.Unlock()
	p.metrics.observe(o)
	if p.opts.Sink == nil {
		return
	}
	select {
	case p.toSink <- o:
	default:
		p.droppedBacklog.Add(1)
		p.metrics.dropped.WithLabelValues("sink_backlog").Inc()
	}
}

// deliver calls the sink, one observation at a time, isolating its failures.
func (p *Profiler) deliver() {
	for o := range p.toSink {
		p.deliverOne(o)
	}
}

func (p *Profiler) deliverOne(o forecasting.Observation) {
	defer func() {
		if r := recover(); r != nil {
			p.sinkPanics.Add(1)
			p.metrics.sinkErrors.WithLabelValues("panic").Inc()
		}
	}()
	if err := p.opts.Sink.Observe(context.Background(), o); err != nil {
		p.sinkErrs.Add(1)
		p.metrics.sinkErrors.WithLabelValues("error").Inc()
		return
	}
	p.delivered.Add(1)
}

// recoverInternal keeps a bug in the profiler from reaching user code.
func (p *Profiler) recoverInternal() {
	if r := recover(); r != nil {
		p.internalPanics.Add(1)
	}
}

// InterceptActivity implements interceptor.WorkerInterceptor.
func (p *Profiler) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &activityInbound{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}, p: p}
}

// InterceptWorkflow implements interceptor.WorkerInterceptor: it carries the
// predecessor stage to each activity in its header.
func (p *Profiler) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &workflowInbound{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, p: p}
}

type activityInbound struct {
	interceptor.ActivityInboundInterceptorBase
	p *Profiler
}

// attempt is one activity attempt being measured.
type attempt struct {
	span     *meterSpan
	start    time.Time
	children usage   // exact usage of child processes reported with RecordChild
	childRSS float64 // their largest peak RSS
	mu       sync.Mutex
}

type attemptKey struct{}

func (a *activityInbound) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (result any, err error) {
	at := a.p.begin()
	if at != nil {
		ctx = context.WithValue(ctx, attemptKey{}, at)
	}
	panicked := true
	defer func() {
		if at != nil {
			a.p.finish(ctx, at, in.Args, result, err, panicked)
		}
	}()
	result, err = a.Next.ExecuteActivity(ctx, in)
	panicked = false
	return result, err
}

func (p *Profiler) begin() (at *attempt) {
	defer p.recoverInternal()
	return &attempt{span: p.meter.begin(), start: time.Now()}
}

func (p *Profiler) finish(ctx context.Context, at *attempt, args []any, result any, err error, panicked bool) {
	defer p.recoverInternal()
	wall := time.Since(at.start)
	u, heapRise := p.meter.end(at.span)
	at.mu.Lock()
	u = u.add(at.children)
	peak := heapRise + at.childRSS
	at.mu.Unlock()

	info := activity.GetInfo(ctx)
	o := forecasting.Observation{
		Stage:           p.opts.StageName(info.WorkflowType.Name, info.ActivityType.Name),
		WorkflowType:    info.WorkflowType.Name,
		ActivityType:    info.ActivityType.Name,
		TaskQueue:       info.TaskQueue,
		Predecessor:     predecessorFromHeader(interceptor.Header(ctx)),
		Attempt:         info.Attempt,
		Scheduled:       info.ScheduledTime,
		Started:         info.StartedTime,
		ScheduleToStart: max(info.StartedTime.Sub(info.ScheduledTime), 0),
		Wall:            wall,
		CPUSeconds:      u.cpu,
		PeakMemoryBytes: peak,
		AllocBytes:      u.alloc,
		DiskReadBytes:   u.diskRead,
		DiskWriteBytes:  u.diskWrite,
		DiskOps:         u.diskOps,
		NetBytes:        u.net,
		PayloadInBytes:  p.payloadBytes(args...),
	}
	if result != nil && err == nil {
		o.PayloadOutBytes = p.payloadBytes(result)
	}
	o.Outcome, o.ErrorType = classify(err, panicked)
	p.enqueue(o)
}

// payloadBytes is the size of the values' encoded payload data.
func (p *Profiler) payloadBytes(values ...any) int64 {
	if len(values) == 0 {
		return 0
	}
	payloads, err := p.opts.DataConverter.ToPayloads(values...)
	if err != nil {
		return 0
	}
	var n int64
	for _, pl := range payloads.GetPayloads() {
		n += int64(len(pl.GetData()))
	}
	return n
}

// classify returns the outcome class of an attempt and, for application errors, their type.
func classify(err error, panicked bool) (outcome, errorType string) {
	var appErr *temporal.ApplicationError
	var timeoutErr *temporal.TimeoutError
	var panicErr *temporal.PanicError
	switch {
	case panicked || errors.As(err, &panicErr):
		return forecasting.OutcomePanic, ""
	case err == nil:
		return forecasting.OutcomeOK, ""
	case errors.As(err, &appErr):
		return forecasting.OutcomeApplication, appErr.Type()
	case errors.As(err, &timeoutErr) || errors.Is(err, context.DeadlineExceeded):
		return forecasting.OutcomeTimeout, ""
	case temporal.IsCanceledError(err) || errors.Is(err, context.Canceled):
		return forecasting.OutcomeCanceled, ""
	case errors.Is(err, activity.ErrResultPending):
		return forecasting.OutcomeOK, ""
	}
	return forecasting.OutcomeOther, ""
}

// RecordChild adds the exact resource use of a finished child process to the
// activity attempt running in ctx: CPU (user+system), peak RSS (added to the
// attempt's peak memory), and block I/O (512-byte blocks in and out). Call it
// after cmd.Wait() with cmd.ProcessState. Outside a profiled activity it does
// nothing.
func RecordChild(ctx context.Context, ps *os.ProcessState) {
	at, _ := ctx.Value(attemptKey{}).(*attempt)
	if at == nil || ps == nil {
		return
	}
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok || ru == nil {
		return
	}
	at.mu.Lock()
	defer at.mu.Unlock()
	at.children = at.children.add(usage{
		cpu:       tvSeconds(ru.Utime) + tvSeconds(ru.Stime),
		diskRead:  float64(ru.Inblock) * 512,
		diskWrite: float64(ru.Oublock) * 512,
		diskOps:   float64(ru.Inblock + ru.Oublock),
	})
	at.childRSS = max(at.childRSS, float64(ru.Maxrss)*1024) // Linux reports KiB
}

type workflowInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	p *Profiler
}

func (w *workflowInbound) Init(outbound interceptor.WorkflowOutboundInterceptor) error {
	return w.Next.Init(&workflowOutbound{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: outbound}, p: w.p})
}

// workflowOutbound tracks, per workflow run, which stage was scheduled last.
// Activities are scheduled in the same order on replay, so the headers it
// writes are deterministic.
type workflowOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	p        *Profiler
	last     string // stage of the last activity scheduled
	lastPred string // the predecessor given to it
}

func (w *workflowOutbound) ExecuteActivity(ctx workflow.Context, activityType string, args ...any) workflow.Future {
	stage := w.p.opts.StageName(workflow.GetInfo(ctx).WorkflowType.Name, activityType)
	// Activities of one stage scheduled back to back (a fan-out) share the
	// predecessor of the first.
	pred := w.last
	if stage == w.last {
		pred = w.lastPred
	}
	w.last, w.lastPred = stage, pred
	if h := interceptor.WorkflowHeader(ctx); h != nil && pred != "" {
		h[PredecessorHeader] = &commonpb.Payload{
			Metadata: map[string][]byte{converter.MetadataEncoding: []byte(converter.MetadataEncodingBinary)},
			Data:     []byte(pred),
		}
	}
	return w.Next.ExecuteActivity(ctx, activityType, args...)
}

func predecessorFromHeader(h map[string]*commonpb.Payload) string {
	if pl := h[PredecessorHeader]; pl != nil && string(pl.GetMetadata()[converter.MetadataEncoding]) == converter.MetadataEncodingBinary {
		return string(pl.GetData())
	}
	return ""
}
