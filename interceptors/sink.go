package interceptors

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/headstart-dev/headstart/forecasting"
)

// Sink receives the profiler's observations, one at a time, from a single
// goroutine of the profiler's own. It may block or fail: the profiler never
// lets that reach a user's activity (observations that find the queue full are
// dropped and counted, errors are counted, panics are recovered and counted).
type Sink interface {
	Observe(ctx context.Context, o forecasting.Observation) error
}

// SinkCloser is a Sink with buffered observations to flush when the profiler closes.
type SinkCloser interface {
	Sink
	Close(ctx context.Context) error
}

// MemorySink keeps the most recent observations in memory, in a ring. Safe
// for concurrent use.
type MemorySink struct {
	mu   sync.Mutex
	ring []forecasting.Observation
	next int  // where the next observation goes
	full bool // the ring has wrapped
}

// NewMemorySink keeps up to limit observations, dropping the oldest past it
// (limit ≤ 0: 10,000).
func NewMemorySink(limit int) *MemorySink {
	if limit <= 0 {
		limit = 10000
	}
	return &MemorySink{ring: make([]forecasting.Observation, 0, limit)}
}

// Observe implements Sink.
func (s *MemorySink) Observe(_ context.Context, o forecasting.Observation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.full && len(s.ring) < cap(s.ring) {
		s.ring = append(s.ring, o)
	} else {
		s.ring[s.next] = o
		s.full = true
	}
	s.next = (s.next + 1) % cap(s.ring)
	return nil
}

// Observations returns a copy of the kept observations, oldest first.
func (s *MemorySink) Observations() []forecasting.Observation {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.full {
		return append([]forecasting.Observation(nil), s.ring...)
	}
	return append(append([]forecasting.Observation(nil), s.ring[s.next:]...), s.ring[:s.next]...)
}

// BatchOptions configure a BatchingSink.
type BatchOptions struct {
	// Send delivers one batch, e.g. as a signal to the forecaster. Required.
	// A batch whose Send fails is dropped and counted; Send should retry
	// itself if it must.
	Send func(ctx context.Context, batch []forecasting.Observation) error
	// MaxBatch is the most observations in one batch. If not set, 500.
	MaxBatch int
	// FlushInterval is the longest an observation waits for its batch. If not set, 2 s.
	FlushInterval time.Duration
	// SendTimeout bounds one Send. If not set, 10 s.
	SendTimeout time.Duration
}

// ErrNoSend is returned by NewBatchingSink without BatchOptions.Send.
var ErrNoSend = errors.New("interceptors: BatchOptions.Send is required")

// BatchingSink groups observations into batches of up to MaxBatch, sent when
// full and at least every FlushInterval. Safe for concurrent use.
type BatchingSink struct {
	opts    BatchOptions
	mu      sync.Mutex
	batch   []forecasting.Observation
	sendMu  sync.Mutex // one Send at a time, in order
	stop    chan struct{}
	done    chan struct{}
	closeMu sync.Once
	stats   BatchStats
}

// BatchStats count what a BatchingSink did.
type BatchStats struct {
	Batches, Sent, Failed int64 // batches sent, observations in them, observations whose batch failed
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
	s := &BatchingSink{opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s, nil
}

// Observe implements Sink: it adds o to the batch and sends the batch when full.
func (s *BatchingSink) Observe(ctx context.Context, o forecasting.Observation) error {
	s.mu.Lock()
	s.batch = append(s.batch, o)
	var full []forecasting.Observation
	if len(s.batch) >= s.opts.MaxBatch {
		full, s.batch = s.batch, nil
	}
	s.mu.Unlock()
	if full != nil {
		return s.send(ctx, full)
	}
	return nil
}

// Flush sends what is batched now.
func (s *BatchingSink) Flush(ctx context.Context) error {
	s.mu.Lock()
	b := s.batch
	s.batch = nil
	s.mu.Unlock()
	if len(b) == 0 {
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

func (s *BatchingSink) send(ctx context.Context, b []forecasting.Observation) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.opts.SendTimeout)
	defer cancel()
	err := s.opts.Send(ctx, b)
	if err != nil {
		s.stats.Failed += int64(len(b))
		return err
	}
	s.stats.Batches++
	s.stats.Sent += int64(len(b))
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
