package interceptors

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"

	"github.com/headstart-dev/headstart"
)

// InterceptActivity implements interceptor.WorkerInterceptor.
func (p *Profiler) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &activityInbound{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}, p: p}
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

func (p *Profiler) begin(ctx context.Context, args []any) (r *record, start time.Time) {
	defer p.recoverInternal()
	if p.closed() {
		return nil, start
	}
	info := activity.GetInfo(ctx)
	if p.excluded(info.ActivityType.Name) {
		return nil, start
	}
	start = time.Now()
	r = &record{args: args, info: info, pred: predecessorFromHeader(interceptor.Header(ctx))}
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
	peak := s.peakMemory() + r.childRSS
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
