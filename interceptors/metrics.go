package interceptors

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headstart-dev/headstart/forecasting"
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
	labels    map[string]string // stage → its label value; only the aggregator goroutine touches it
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
		labels:    map[string]string{},
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

// stageLabel returns the label value for a stage: itself for the first
// maxStages stages seen, forecasting.OtherStage for the rest.
func (m *profilerMetrics) stageLabel(stage string) string {
	if l, ok := m.labels[stage]; ok {
		return l
	}
	l := stage
	if len(m.labels) >= m.maxStages {
		l = forecasting.OtherStage
	}
	m.labels[stage] = l
	return l
}

// observe records one observation. Called from the aggregator goroutine only.
func (m *profilerMetrics) observe(o forecasting.Observation) {
	s := m.stageLabel(o.Stage)
	m.cpu.WithLabelValues(s).Observe(o.CPUSeconds)
	m.memory.WithLabelValues(s).Observe(o.PeakMemoryBytes)
	m.duration.WithLabelValues(s).Observe(o.Wall.Seconds())
	m.scheduleToStart.WithLabelValues(s).Observe(o.ScheduleToStart.Seconds())
	m.diskRead.WithLabelValues(s).Add(o.DiskReadBytes)
	m.diskWrite.WithLabelValues(s).Add(o.DiskWriteBytes)
	m.diskOps.WithLabelValues(s).Add(o.DiskOps)
	m.net.WithLabelValues(s).Add(o.NetBytes)
	m.payloadIn.WithLabelValues(s).Add(float64(o.PayloadInBytes))
	m.payloadOut.WithLabelValues(s).Add(float64(o.PayloadOutBytes))
	m.attempts.WithLabelValues(s).Inc()
	if o.Attempt > 1 {
		m.retries.WithLabelValues(s).Inc()
	}
	if o.Outcome != forecasting.OutcomeOK {
		m.errors.WithLabelValues(s, o.Outcome).Inc()
	}
}
