package interceptors

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headstart-dev/headstart"
)

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
	// ExcludeActivityTypes are activity types the profiler leaves alone:
	// not measured, not reported, and never a later stage's predecessor.
	ExcludeActivityTypes []string
	// ProfileSessionActivities profiles the SDK's own session activities
	// (internalSessionCreationActivity, internalSessionCompletionActivity)
	// as stages too. If not set, they are excluded: they are the SDK's
	// bookkeeping, not a stage of the user's workflow.
	ProfileSessionActivities bool
}

// sessionActivityPrefix begins the names of the SDK's internal session activities.
const sessionActivityPrefix = "internalSession"

// excluded reports whether the profiler leaves an activity type alone.
func (p *Profiler) excluded(activityType string) bool {
	if !p.opts.ProfileSessionActivities && strings.HasPrefix(activityType, sessionActivityPrefix) {
		return true
	}
	return slices.Contains(p.opts.ExcludeActivityTypes, activityType)
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
		meter:   newMeter(newProcCounters(), opts.BufferSize, time.Now()),
		metrics: m,
		toSink:  make(chan delivery, opts.BufferSize),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go p.collect()
	go p.meter.readCPU(p.stop)
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
