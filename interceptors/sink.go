package interceptors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headstart-dev/headstart"
)

// Sink receives the profiler's observations, one at a time, from a single
// goroutine of the profiler's own. It may block or fail: the profiler never
// lets that reach a user's activity (observations that find the queue full are
// dropped and counted, errors are counted, panics are recovered and counted).
type Sink interface {
	Observe(ctx context.Context, o headstart.Observation) error
}

// StartSink is a Sink that also hears when attempts start (within one sample
// interval), so a consumer knows where workflow runs are before their
// observations arrive. An attempt that ends within the sample interval it
// started in is reported by its observation alone.
type StartSink interface {
	Sink
	ObserveStart(ctx context.Context, s headstart.StageStart) error
}

// SinkCloser is a Sink with buffered observations to flush when the profiler closes.
type SinkCloser interface {
	Sink
	Close(ctx context.Context) error
}

// MemorySink keeps the most recent observations, and the most recent start
// events, in memory. Safe for concurrent use.
type MemorySink struct {
	mu     sync.Mutex
	obs    ring[headstart.Observation]
	starts ring[headstart.StageStart]
}

var _ StartSink = (*MemorySink)(nil)

// NewMemorySink keeps up to limit observations and limit start events,
// dropping the oldest past it (limit ≤ 0: 10,000).
func NewMemorySink(limit int) *MemorySink {
	if limit <= 0 {
		limit = 10000
	}
	return &MemorySink{obs: newRing[headstart.Observation](limit), starts: newRing[headstart.StageStart](limit)}
}

// Observe implements Sink.
func (s *MemorySink) Observe(_ context.Context, o headstart.Observation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.obs.add(o)
	return nil
}

// ObserveStart implements StartSink.
func (s *MemorySink) ObserveStart(_ context.Context, st headstart.StageStart) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.starts.add(st)
	return nil
}

// Observations returns a copy of the kept observations, oldest first.
func (s *MemorySink) Observations() []headstart.Observation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.obs.all()
}

// Starts returns a copy of the kept start events, oldest first.
func (s *MemorySink) Starts() []headstart.StageStart {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts.all()
}

// ring keeps the newest cap(items) values.
type ring[T any] struct {
	items []T
	next  int  // where the next value goes
	full  bool // the ring has wrapped
}

func newRing[T any](n int) ring[T] { return ring[T]{items: make([]T, 0, n)} }

func (r *ring[T]) add(v T) {
	if !r.full && len(r.items) < cap(r.items) {
		r.items = append(r.items, v)
	} else {
		r.items[r.next] = v
		r.full = true
	}
	r.next = (r.next + 1) % cap(r.items)
}

// all returns the values, oldest first.
func (r *ring[T]) all() []T {
	if !r.full {
		return append([]T(nil), r.items...)
	}
	return append(append([]T(nil), r.items[r.next:]...), r.items[:r.next]...)
}

// BatchOptions configure a BatchingSink.
type BatchOptions struct {
	// Send delivers one batch, e.g. as a signal to the forecaster. Required.
	// A batch whose Send fails is dropped and counted; Send should retry
	// itself if it must.
	Send func(ctx context.Context, batch headstart.Batch) error
	// MaxBatch is the most observations and start events in one batch. If not set, 500.
	MaxBatch int
	// FlushInterval is the longest an observation waits for its batch. If not set, 2 s.
	FlushInterval time.Duration
	// SendTimeout bounds one Send. If not set, 10 s.
	SendTimeout time.Duration
	// OnError hears every failed Send, with the number of items the batch
	// lost, whether the batch was full or flushed by the timer. It must not
	// block. If not set, failures are only counted.
	OnError func(err error, items int)
	// Registerer receives the sink's metrics: batches and items sent and
	// failed (headstart_batch_*), all at zero from the start. If not set,
	// none are registered.
	Registerer prometheus.Registerer
}

// batchMetrics count a BatchingSink's sends.
type batchMetrics struct {
	sent, failed, itemsSent, itemsFailed prometheus.Counter
}

func newBatchMetrics(reg prometheus.Registerer) (*batchMetrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "headstart", Subsystem: "batch", Name: name, Help: help})
	}
	m := &batchMetrics{
		sent:        counter("sends_total", "Batches of observations sent to the forecaster."),
		failed:      counter("send_failures_total", "Batches whose send failed; their items are lost."),
		itemsSent:   counter("items_sent_total", "Observations and start events sent."),
		itemsFailed: counter("items_failed_total", "Observations and start events lost with a failed batch."),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.sent, m.failed, m.itemsSent, m.itemsFailed} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register batch metrics: %w", err)
			}
		}
	}
	return m, nil
}

// ErrNoSend is returned by NewBatchingSink without BatchOptions.Send.
var ErrNoSend = errors.New("interceptors: BatchOptions.Send is required")

// BatchingSink groups observations into batches of up to MaxBatch, sent when
// full and at least every FlushInterval. Safe for concurrent use.
type BatchingSink struct {
	opts    BatchOptions
	mu      sync.Mutex
	batch   headstart.Batch
	sendMu  sync.Mutex // one Send at a time, in order
	stop    chan struct{}
	done    chan struct{}
	closeMu sync.Once
	stats   BatchStats
	metrics *batchMetrics
}

var _ StartSink = (*BatchingSink)(nil)

// BatchStats count what a BatchingSink did.
type BatchStats struct {
	Batches, Sent, Failed int64 // batches sent, items in them, items whose batch failed
}

// NewBatchingSink starts a batching sink; Close flushes and stops it.
func NewBatchingSink(opts BatchOptions) (*BatchingSink, error) {
	if opts.Send == nil {
		return nil, ErrNoSend
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 500
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 2 * time.Second
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 10 * time.Second
	}
	m, err := newBatchMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s := &BatchingSink{opts: opts, stop: make(chan struct{}), done: make(chan struct{}), metrics: m}
	go s.loop()
	return s, nil
}

// Observe implements Sink: it adds o to the batch and sends the batch when full.
func (s *BatchingSink) Observe(ctx context.Context, o headstart.Observation) error {
	return s.add(ctx, func(b *headstart.Batch) { b.Observations = append(b.Observations, o) })
}

// ObserveStart implements StartSink: start events travel in the same batches.
func (s *BatchingSink) ObserveStart(ctx context.Context, st headstart.StageStart) error {
	return s.add(ctx, func(b *headstart.Batch) { b.Starts = append(b.Starts, st) })
}

func (s *BatchingSink) add(ctx context.Context, put func(*headstart.Batch)) error {
	s.mu.Lock()
	put(&s.batch)
	var full headstart.Batch
	if s.batch.Len() >= s.opts.MaxBatch {
		full, s.batch = s.batch, headstart.Batch{}
	}
	s.mu.Unlock()
	if full.Len() > 0 {
		return s.send(ctx, full)
	}
	return nil
}

// Flush sends what is batched now.
func (s *BatchingSink) Flush(ctx context.Context) error {
	s.mu.Lock()
	b := s.batch
	s.batch = headstart.Batch{}
	s.mu.Unlock()
	if b.Len() == 0 {
		return nil
	}
	return s.send(ctx, b)
}

// Stats returns what the sink has done so far.
func (s *BatchingSink) Stats() BatchStats {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.stats
}

// Close stops the flush timer and sends what is left.
func (s *BatchingSink) Close(ctx context.Context) error {
	s.closeMu.Do(func() { close(s.stop) })
	<-s.done
	return s.Flush(ctx)
}

func (s *BatchingSink) send(ctx context.Context, b headstart.Batch) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.opts.SendTimeout)
	defer cancel()
	err := s.opts.Send(ctx, b)
	if err != nil {
		s.stats.Failed += int64(b.Len())
		s.metrics.failed.Inc()
		s.metrics.itemsFailed.Add(float64(b.Len()))
		if s.opts.OnError != nil {
			s.opts.OnError(err, b.Len())
		}
		return err
	}
	s.stats.Batches++
	s.stats.Sent += int64(b.Len())
	s.metrics.sent.Inc()
	s.metrics.itemsSent.Add(float64(b.Len()))
	return nil
}

func (s *BatchingSink) loop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			_ = s.Flush(context.Background())
		}
	}
}
