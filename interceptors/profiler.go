package interceptors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
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
	"google.golang.org/protobuf/proto"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headstart-dev/headstart"
)

// PredecessorHeader is the activity header that carries the stage scheduled
// before an activity in its workflow run.
const PredecessorHeader = "headstart-predecessor"

// ProfilerOptions configure a Profiler. The zero value measures every
// activity into the profiler's metrics only.
type ProfilerOptions struct {
	// Sink receives every observation. If not set, observations only update
	// the profiler's metrics.
	Sink Sink
	// Registerer receives the profiler's Prometheus metrics. If not set, no
	// metrics are registered. The global default registry is never used.
	Registerer prometheus.Registerer
	// StageName names the stage of an activity. It must be deterministic: it
	// also runs in workflow code. If not set, "WorkflowType/ActivityType".
	StageName func(workflowType, activityType string) string
	// DataConverter measures payload sizes: the encoded size of an attempt's
	// arguments and result (the Data of each payload), encoded again by the
	// profiler's goroutine after the attempt. Set it to the client's converter
	// when that is not the SDK's default. If not set, the SDK's default.
	DataConverter converter.DataConverter
	// SampleInterval between reads of the disk and network counters; an
	// attempt's observation is completed at the first tick after it ends. If
	// not set, 50 ms.
	SampleInterval time.Duration
	// BufferSize bounds the attempts awaiting the next sample tick, and
	// again the observations queued for the sink; past it observations are
	// dropped and counted. If not set, 4096.
	BufferSize int
	// MaxMetricStages caps the distinct stage label values; later stages share
	// the label "other". If not set, 100.
	MaxMetricStages int
}

// Profiler is the drop-in worker interceptor that measures every activity
// attempt. Add it to worker.Options.Interceptors; call Close when the worker
// stops. Safe for concurrent use.
type Profiler struct {
	interceptor.WorkerInterceptorBase
	opts    ProfilerOptions
	meter   *meter
	metrics *profilerMetrics

	toSink  chan delivery // a tick's starts and observations, to the sink goroutine
	queued  atomic.Int64  // observations and starts in toSink
	stop    chan struct{}
	stopped chan struct{} // closed when the collector has flushed and exited
	sinkWG  sync.WaitGroup
	once    sync.Once

	stageNames sync.Map     // stageKey → string
	headers    sync.Map     // stage → *commonpb.Payload
	cached     atomic.Int64 // entries added to the two caches

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
	m, err := newProfilerMetrics(opts.Registerer, opts.MaxMetricStages)
	if err != nil {
		return nil, fmt.Errorf("register profiler metrics: %w", err)
	}
	p := &Profiler{
		opts:    opts,
		meter:   newMeter(opts.BufferSize, time.Now()),
		metrics: m,
		toSink:  make(chan delivery, opts.BufferSize),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go p.collect()
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

// Close stops measuring, turns the attempts already measured into
// observations, waits until the sink has them (or ctx ends), and closes the
// sink if it is a SinkCloser. Activities that finish after Close are not measured.
func (p *Profiler) Close(ctx context.Context) error {
	p.once.Do(func() { close(p.stop) })
	done := make(chan struct{})
	go func() { <-p.stopped; p.sinkWG.Wait(); close(done) }()
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

func (p *Profiler) closed() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// collect ticks every SampleInterval: it completes the attempts that ended
// since the last tick, counts them in the metrics, and queues them
// for the sink. On Close it ticks once more and closes the sink queue.
func (p *Profiler) collect() {
	defer close(p.stopped)
	defer close(p.toSink)
	t := time.NewTicker(p.opts.SampleInterval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			p.collectOnce()
			return
		case <-t.C:
			p.collectOnce()
		}
	}
}

// delivery is one tick's work for the sink: the attempts that ended, then
// those that started (an attempt that did both within the tick is in both).
type delivery struct {
	obs    []headstart.Observation
	starts []headstart.StageStart
}

func (d delivery) size() int { return len(d.obs) + len(d.starts) }

func (p *Profiler) collectOnce() {
	var d delivery
	begun, ended := p.meter.tick(time.Now())
	for _, s := range ended {
		if o, ok := p.aggregateOne(s); ok && p.opts.Sink != nil {
			d.obs = append(d.obs, o)
		}
	}
	if _, ok := p.opts.Sink.(StartSink); ok {
		for _, s := range begun {
			if r, isRecord := s.payload.(*record); isRecord {
				d.starts = append(d.starts, p.start(r))
			}
		}
	}
	if d.size() == 0 {
		return
	}
	// One hand-over per tick, bounded by BufferSize items in flight.
	if p.queued.Load()+int64(d.size()) <= int64(p.opts.BufferSize) {
		select {
		case p.toSink <- d:
			p.queued.Add(int64(d.size()))
			return
		default:
		}
	}
	p.droppedBacklog.Add(int64(d.size()))
	p.metrics.dropped.WithLabelValues("sink_backlog").Add(float64(d.size()))
}

// start is the start event of an attempt.
func (p *Profiler) start(r *record) headstart.StageStart {
	i := r.info
	return headstart.StageStart{
		Stage: p.stageName(i.WorkflowType.Name, i.ActivityType.Name), WorkflowType: i.WorkflowType.Name, ActivityType: i.ActivityType.Name,
		WorkflowID: i.WorkflowExecution.ID, RunID: i.WorkflowExecution.RunID, Attempt: i.Attempt,
		Scheduled: i.ScheduledTime, Started: i.StartedTime,
	}
}

// aggregateOne completes an attempt's observation and counts it in the metrics.
func (p *Profiler) aggregateOne(s *meterSpan) (o headstart.Observation, ok bool) {
	defer p.recoverInternal()
	r, isRecord := s.payload.(*record)
	if !isRecord {
		return o, false
	}
	o = p.observation(r)
	if err := o.Validate(); err != nil {
		p.invalid.Add(1)
		p.metrics.dropped.WithLabelValues("invalid").Inc()
		return o, false
	}
	p.observed.Add(1)
	p.metrics.observe(o)
	return o, true
}

// deliver calls the sink, one item at a time, isolating its failures.
func (p *Profiler) deliver() {
	for d := range p.toSink {
		for _, o := range d.obs {
			p.deliverOne(o)
			p.queued.Add(-1)
		}
		for _, s := range d.starts {
			p.deliverStart(s)
			p.queued.Add(-1)
		}
	}
}

func (p *Profiler) deliverStart(s headstart.StageStart) {
	defer func() {
		if r := recover(); r != nil {
			p.sinkPanics.Add(1)
			p.metrics.sinkErrors.WithLabelValues("panic").Inc()
		}
	}()
	if err := p.opts.Sink.(StartSink).ObserveStart(context.Background(), s); err != nil {
		p.sinkErrs.Add(1)
		p.metrics.sinkErrors.WithLabelValues("error").Inc()
	}
}

func (p *Profiler) deliverOne(o headstart.Observation) {
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
	return withOutbound(next, func(out interceptor.WorkflowOutboundInterceptor) interceptor.WorkflowOutboundInterceptor {
		return &workflowOutbound{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: out}, p: p}
	})
}

// outboundInstaller is a workflow inbound interceptor whose only work is to
// put an outbound interceptor, made per workflow run, into the chain.
type outboundInstaller struct {
	interceptor.WorkflowInboundInterceptorBase
	wrap func(interceptor.WorkflowOutboundInterceptor) interceptor.WorkflowOutboundInterceptor
}

func withOutbound(next interceptor.WorkflowInboundInterceptor, wrap func(interceptor.WorkflowOutboundInterceptor) interceptor.WorkflowOutboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &outboundInstaller{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, wrap: wrap}
}

func (i *outboundInstaller) Init(outbound interceptor.WorkflowOutboundInterceptor) error {
	return i.Next.Init(i.wrap(outbound))
}

type activityInbound struct {
	interceptor.ActivityInboundInterceptorBase
	p *Profiler
}

// record is what the activity's path keeps of an attempt; the collector
// turns it into an observation after the attempt.
type record struct {
	span     meterSpan
	info     activity.Info
	pred     string
	args     []any
	result   any
	err      error
	panicked bool
	wall     time.Duration

	mu       sync.Mutex
	children usage   // exact usage of child processes reported with RecordChild
	childRSS float64 // their largest peak RSS
}

type attemptKey struct{}

func (a *activityInbound) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (result any, err error) {
	r, start := a.p.begin(ctx, in.Args)
	if r != nil {
		ctx = context.WithValue(ctx, attemptKey{}, r)
	}
	panicked := true
	defer func() {
		if r != nil {
			now := time.Now()
			r.result, r.err, r.panicked, r.wall = result, err, panicked, now.Sub(start)
			a.p.finish(r, now)
		}
	}()
	result, err = a.Next.ExecuteActivity(ctx, in)
	panicked = false
	return result, err
}

func (p *Profiler) begin(ctx context.Context, args []any) (r *record, start time.Time) {
	defer p.recoverInternal()
	if p.closed() {
		return nil, start
	}
	start = time.Now()
	r = &record{args: args, info: activity.GetInfo(ctx), pred: predecessorFromHeader(interceptor.Header(ctx))}
	r.span.payload = r // before the meter publishes the span to the collector
	p.meter.begin(&r.span, start)
	return r, start
}

// finish is the end of an attempt on the activity's path: it stops the
// meter and leaves the rest (payload sizes, classification, aggregation) to
// the collector.
func (p *Profiler) finish(r *record, now time.Time) {
	defer p.recoverInternal()
	if !p.meter.end(&r.span, now) {
		p.droppedFull.Add(1)
		p.metrics.dropped.WithLabelValues("queue_full").Inc()
	}
}

// observation builds the observation of a completed attempt. Its args and
// result are encoded here, after the attempt, to measure payload sizes.
func (p *Profiler) observation(r *record) headstart.Observation {
	s := &r.span
	r.mu.Lock()
	u := s.used.add(r.children)
	peak := max(s.peakHeap-s.startHeap, 0) + r.childRSS
	r.mu.Unlock()
	info := r.info
	o := headstart.Observation{
		Stage:           p.stageName(info.WorkflowType.Name, info.ActivityType.Name),
		WorkflowType:    info.WorkflowType.Name,
		ActivityType:    info.ActivityType.Name,
		TaskQueue:       info.TaskQueue,
		WorkflowID:      info.WorkflowExecution.ID,
		RunID:           info.WorkflowExecution.RunID,
		Predecessor:     r.pred,
		Attempt:         info.Attempt,
		Scheduled:       info.ScheduledTime,
		Started:         info.StartedTime,
		ScheduleToStart: max(info.StartedTime.Sub(info.ScheduledTime), 0),
		Wall:            r.wall,
		CPUSeconds:      u.cpu,
		PeakMemoryBytes: peak,
		AllocBytes:      u.alloc,
		DiskReadBytes:   u.diskRead,
		DiskWriteBytes:  u.diskWrite,
		DiskOps:         u.diskOps,
		NetBytes:        u.net,
		PayloadInBytes:  p.payloadBytes(r.args...),
	}
	if r.result != nil && r.err == nil {
		o.PayloadOutBytes = p.payloadBytes(r.result)
	}
	o.Outcome, o.ErrorType = classify(r.err, r.panicked)
	return o
}

// payloadBytes is the size of the values' encoded payload data.
func (p *Profiler) payloadBytes(values ...any) int64 {
	var n int64
	for _, v := range values {
		n += payloadSize(p.opts.DataConverter, v)
	}
	return n
}

var defaultConverter = converter.GetDefaultDataConverter()

// payloadSize is the length of the Data of v's payload under dc. For the
// SDK's default converter and a value its JSON converter encodes, it counts
// the JSON encoding without keeping it; otherwise it encodes with dc.
func payloadSize(dc converter.DataConverter, v any) int64 {
	if dc == defaultConverter {
		switch v.(type) {
		case nil, []byte, proto.Message, *commonpb.Payloads, *commonpb.Payload:
		default:
			var c countingWriter
			if err := json.NewEncoder(&c).Encode(v); err == nil {
				return c.n - 1 // Encode ends with a newline; json.Marshal does not
			}
		}
	}
	pl, err := dc.ToPayload(v)
	if err != nil {
		return 0
	}
	return int64(len(pl.GetData()))
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(b []byte) (int, error) { c.n += int64(len(b)); return len(b), nil }

// classify returns the outcome class of an attempt and, for application errors, their type.
func classify(err error, panicked bool) (outcome, errorType string) {
	if panicked {
		return headstart.OutcomePanic, ""
	}
	if err == nil || errors.Is(err, activity.ErrResultPending) {
		return headstart.OutcomeOK, ""
	}
	var appErr *temporal.ApplicationError
	var timeoutErr *temporal.TimeoutError
	var panicErr *temporal.PanicError
	switch {
	case errors.As(err, &panicErr):
		return headstart.OutcomePanic, ""
	case errors.As(err, &appErr):
		return headstart.OutcomeApplication, appErr.Type()
	case errors.As(err, &timeoutErr) || errors.Is(err, context.DeadlineExceeded):
		return headstart.OutcomeTimeout, ""
	case temporal.IsCanceledError(err) || errors.Is(err, context.Canceled):
		return headstart.OutcomeCanceled, ""
	}
	return headstart.OutcomeOther, ""
}

// RecordChild adds the resource use of a finished child process to the
// activity attempt running in ctx. Call it after cmd.Wait() with
// cmd.ProcessState. Outside a profiled activity it does nothing.
//
// CPU (user+system) and block I/O (512-byte blocks in and out) are exact: the
// child's own rusage, including its waited-for descendants. Peak memory is the
// child's peak RSS when it exceeds the worker's own high-water mark, and is not
// counted otherwise: Linux records the spawning process's high-water mark into
// the child's at exec (Go spawns with a shared address space), so a smaller
// figure cannot be told apart from the worker's own.
func RecordChild(ctx context.Context, ps *os.ProcessState) {
	at, _ := ctx.Value(attemptKey{}).(*record)
	if at == nil || ps == nil {
		return
	}
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok || ru == nil {
		return
	}
	rss := float64(ru.Maxrss) * 1024 // Linux reports KiB
	if rss <= selfHighWaterMark() {
		rss = 0
	}
	at.mu.Lock()
	defer at.mu.Unlock()
	at.children = at.children.add(usage{
		cpu:       tvSeconds(ru.Utime) + tvSeconds(ru.Stime),
		diskRead:  float64(ru.Inblock) * 512,
		diskWrite: float64(ru.Oublock) * 512,
		diskOps:   float64(ru.Inblock + ru.Oublock),
	})
	at.childRSS = max(at.childRSS, rss)
}

// selfHighWaterMark is this process's peak RSS in bytes (VmHWM), or +Inf when unknown.
func selfHighWaterMark() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return math.Inf(1)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return math.Inf(1)
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
	stage := w.p.stageName(workflow.GetInfo(ctx).WorkflowType.Name, activityType)
	// Activities of one stage scheduled back to back (a fan-out) share the
	// predecessor of the first.
	pred := w.last
	if stage == w.last {
		pred = w.lastPred
	}
	w.last, w.lastPred = stage, pred
	if h := interceptor.WorkflowHeader(ctx); h != nil && pred != "" {
		h[PredecessorHeader] = w.p.predecessorPayload(pred)
	}
	return w.Next.ExecuteActivity(ctx, activityType, args...)
}

// maxCachedStages bounds the caches of stage names and header payloads.
const maxCachedStages = 4096

type stageKey struct{ workflowType, activityType string }

// stageName is opts.StageName, cached.
func (p *Profiler) stageName(workflowType, activityType string) string {
	k := stageKey{workflowType, activityType}
	if s, ok := p.stageNames.Load(k); ok {
		return s.(string)
	}
	s := p.opts.StageName(workflowType, activityType)
	if p.cached.Add(1) <= maxCachedStages {
		p.stageNames.Store(k, s)
	}
	return s
}

// predecessorPayload returns the header payload naming a stage, cached. The
// SDK only reads header payloads, so one may be shared.
func (p *Profiler) predecessorPayload(stage string) *commonpb.Payload {
	if pl, ok := p.headers.Load(stage); ok {
		return pl.(*commonpb.Payload)
	}
	pl := &commonpb.Payload{
		Metadata: map[string][]byte{converter.MetadataEncoding: []byte(converter.MetadataEncodingBinary)},
		Data:     []byte(stage),
	}
	if p.cached.Add(1) <= maxCachedStages {
		p.headers.Store(stage, pl)
	}
	return pl
}

func predecessorFromHeader(h map[string]*commonpb.Payload) string {
	if pl := h[PredecessorHeader]; pl != nil && string(pl.GetMetadata()[converter.MetadataEncoding]) == converter.MetadataEncodingBinary {
		return string(pl.GetData())
	}
	return ""
}
