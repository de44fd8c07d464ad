package interceptors

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headstart-dev/headstart"
)

// profilerMetrics are the profiler's Prometheus metrics. The stage label is
// capped (see ProfilerOptions.MaxMetricStages); no label carries a workflow
// ID, an activity ID or payload content.
type profilerMetrics struct {
	cpu, memory, duration, scheduleToStart *prometheus.HistogramVec

	diskRead, diskWrite, diskOps, net, payloadIn, payloadOut *prometheus.CounterVec
	attempts, retries, errors                                *prometheus.CounterVec

	dropped    *prometheus.CounterVec
	sinkErrors *prometheus.CounterVec

	maxStages int
	stages    map[string]*stageMetrics // stage → its series; only the collector goroutine touches it
	byLabel   map[string]*stageMetrics // label value → its series
}

// stageMetrics are one stage label's series, resolved once.
type stageMetrics struct {
	label                                                    string
	cpu, memory, duration, scheduleToStart                   prometheus.Observer
	diskRead, diskWrite, diskOps, net, payloadIn, payloadOut prometheus.Counter
	attempts, retries                                        prometheus.Counter
	errors                                                   map[string]prometheus.Counter // by outcome class
}

func newProfilerMetrics(reg prometheus.Registerer, maxStages int) (*profilerMetrics, error) {
	seconds := prometheus.ExponentialBuckets(0.001, 4, 12) // 1 ms to about 70 min
	bytes := prometheus.ExponentialBuckets(1<<20, 4, 10)   // 1 MiB to 256 GiB
	hist := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "headstart", Subsystem: "activity", Name: name, Help: help, Buckets: buckets,
		}, []string{"stage"})
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "headstart", Subsystem: "activity", Name: name, Help: help,
		}, append([]string{"stage"}, labels...))
	}
	m := &profilerMetrics{
		cpu:             hist("cpu_seconds", "CPU seconds one activity attempt used (apportioned across concurrent attempts).", seconds),
		memory:          hist("peak_memory_bytes", "Peak memory one activity attempt added.", bytes),
		duration:        hist("duration_seconds", "Wall time of one activity attempt on the worker.", seconds),
		scheduleToStart: hist("schedule_to_start_seconds", "Time from scheduling an activity attempt to its start.", seconds),
		diskRead:        counter("disk_read_bytes_total", "Bytes activity attempts read from storage."),
		diskWrite:       counter("disk_write_bytes_total", "Bytes activity attempts wrote to storage."),
		diskOps:         counter("disk_ops_total", "Read and write calls of activity attempts."),
		net:             counter("network_bytes_total", "Network bytes received and sent during activity attempts."),
		payloadIn:       counter("payload_in_bytes_total", "Encoded input payload bytes of activity attempts."),
		payloadOut:      counter("payload_out_bytes_total", "Encoded result payload bytes of activity attempts."),
		attempts:        counter("attempts_total", "Activity attempts observed."),
		retries:         counter("retries_total", "Activity attempts that were retries (attempt ≥ 2)."),
		errors:          counter("errors_total", "Activity attempts that failed, by class.", "class"),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "headstart", Subsystem: "profiler", Name: "observations_dropped_total",
			Help: "Observations the profiler dropped rather than delay an activity, by reason.",
		}, []string{"reason"}),
		sinkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "headstart", Subsystem: "profiler", Name: "sink_errors_total",
			Help: "Sink calls that returned an error or panicked.",
		}, []string{"kind"}),
		maxStages: maxStages,
		stages:    map[string]*stageMetrics{},
		byLabel:   map[string]*stageMetrics{},
	}
	// The counters of trouble exist from the start, at zero: an alert on
	// them needs no first occurrence to have a series.
	for _, reason := range []string{"queue_full", "sink_backlog", "invalid"} {
		m.dropped.WithLabelValues(reason)
	}
	for _, kind := range []string{"error", "panic"} {
		m.sinkErrors.WithLabelValues(kind)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{
		m.cpu, m.memory, m.duration, m.scheduleToStart,
		m.diskRead, m.diskWrite, m.diskOps, m.net, m.payloadIn, m.payloadOut,
		m.attempts, m.retries, m.errors, m.dropped, m.sinkErrors,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// stage returns the series of a stage: its own for the first maxStages stages
// seen, those labelled headstart.OtherStage for the rest.
func (m *profilerMetrics) stage(stage string) *stageMetrics {
	if sm, ok := m.stages[stage]; ok {
		return sm
	}
	l := stage
	if len(m.byLabel) >= m.maxStages {
		l = headstart.OtherStage
	}
	sm := m.byLabel[l]
	if sm == nil {
		sm = &stageMetrics{
			label: l,
			cpu:   m.cpu.WithLabelValues(l), memory: m.memory.WithLabelValues(l),
			duration: m.duration.WithLabelValues(l), scheduleToStart: m.scheduleToStart.WithLabelValues(l),
			diskRead: m.diskRead.WithLabelValues(l), diskWrite: m.diskWrite.WithLabelValues(l),
			diskOps: m.diskOps.WithLabelValues(l), net: m.net.WithLabelValues(l),
			payloadIn: m.payloadIn.WithLabelValues(l), payloadOut: m.payloadOut.WithLabelValues(l),
			attempts: m.attempts.WithLabelValues(l), retries: m.retries.WithLabelValues(l),
			errors: map[string]prometheus.Counter{},
		}
		m.byLabel[l] = sm
	}
	if l == stage { // stages folded into "other" are not remembered one by one: there may be any number
		m.stages[stage] = sm
	}
	return sm
}

// observe records one observation. Called from the collector goroutine only.
func (m *profilerMetrics) observe(o headstart.Observation) {
	s := m.stage(o.Stage)
	s.cpu.Observe(o.CPUSeconds)
	s.memory.Observe(o.PeakMemoryBytes)
	s.duration.Observe(o.Wall.Seconds())
	s.scheduleToStart.Observe(o.ScheduleToStart.Seconds())
	s.diskRead.Add(o.DiskReadBytes)
	s.diskWrite.Add(o.DiskWriteBytes)
	s.diskOps.Add(o.DiskOps)
	s.net.Add(o.NetBytes)
	s.payloadIn.Add(float64(o.PayloadInBytes))
	s.payloadOut.Add(float64(o.PayloadOutBytes))
	s.attempts.Inc()
	if o.Attempt > 1 {
		s.retries.Inc()
	}
	if o.Outcome != headstart.OutcomeOK {
		c := s.errors[o.Outcome]
		if c == nil {
			c = m.errors.WithLabelValues(s.label, o.Outcome)
			s.errors[o.Outcome] = c
		}
		c.Inc()
	}
}
