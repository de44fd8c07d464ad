package forecasting

import (
	"fmt"

	"github.com/headstart-dev/headstart"
)

// Metric names one measured figure of an observation, in the order profiles keep them.
type Metric int

// The metrics a profile keeps moments and histograms of.
const (
	MetricDuration        Metric = iota // seconds, wall time
	MetricScheduleToStart               // seconds
	MetricCPU                           // CPU seconds
	MetricPeakMemory                    // bytes
	MetricDiskRead                      // bytes
	MetricDiskWrite                     // bytes
	MetricDiskOps                       // operations
	MetricNet                           // bytes
	MetricPayloadIn                     // bytes
	MetricPayloadOut                    // bytes
	NumMetrics
)

var metricNames = [NumMetrics]string{
	"duration_seconds", "schedule_to_start_seconds", "cpu_seconds", "peak_memory_bytes",
	"disk_read_bytes", "disk_write_bytes", "disk_ops", "net_bytes", "payload_in_bytes", "payload_out_bytes",
}

func (m Metric) String() string {
	if m < 0 || m >= NumMetrics {
		return fmt.Sprintf("Metric(%d)", int(m))
	}
	return metricNames[m]
}

// Of returns observation o's figure for metric m.
func (m Metric) Of(o headstart.Observation) float64 {
	switch m {
	case MetricDuration:
		return o.Wall.Seconds()
	case MetricScheduleToStart:
		return o.ScheduleToStart.Seconds()
	case MetricCPU:
		return o.CPUSeconds
	case MetricPeakMemory:
		return o.PeakMemoryBytes
	case MetricDiskRead:
		return o.DiskReadBytes
	case MetricDiskWrite:
		return o.DiskWriteBytes
	case MetricDiskOps:
		return o.DiskOps
	case MetricNet:
		return o.NetBytes
	case MetricPayloadIn:
		return float64(o.PayloadInBytes)
	case MetricPayloadOut:
		return float64(o.PayloadOutBytes)
	}
	return 0
}
