package forecaster

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/headstart-dev/headstart"
)

// TestExtremeObservationsKeepEveryAnswerEncodable: observations at the
// edges of what a profiler can report (a nanosecond's wall time with
// gigabytes moved, exabytes of memory, zeros) never make a prediction,
// the status or the checkpoint infinite or NaN, which JSON cannot carry:
// one such value would fail every query of the predictions, and the
// coordinator with them.
func TestExtremeObservationsKeepEveryAnswerEncodable(t *testing.T) {
	st := newForecasterState(headstart.ForecasterOptions{})
	st.ingest(pipelineBatch(0, 20, 1e9), t0)
	extremes := []headstart.Observation{
		{Wall: time.Nanosecond, CPUSeconds: 1e9, DiskReadBytes: 1e18, DiskWriteBytes: 1e18, NetBytes: 1e18, PeakMemoryBytes: 1e18},
		{Wall: time.Nanosecond, CPUSeconds: 1e-9, PeakMemoryBytes: 1},
		{Wall: math.MaxInt64, CPUSeconds: 1e18, PeakMemoryBytes: math.MaxFloat64 / 2},
		{Wall: 1, PeakMemoryBytes: 1e-300},
	}
	for i := range 40 {
		b := pipelineBatch(20+i, 1, 1e9)
		for j := range b {
			e := extremes[(i+j)%len(extremes)]
			b[j].Wall, b[j].CPUSeconds, b[j].PeakMemoryBytes = e.Wall, e.CPUSeconds, e.PeakMemoryBytes
			b[j].DiskReadBytes, b[j].DiskWriteBytes, b[j].NetBytes = e.DiskReadBytes, e.DiskWriteBytes, e.NetBytes
			b[j].PayloadInBytes = int64(i%3) * 1e15
		}
		st.ingest(b, t0.Add(time.Duration(i)*time.Minute))
		for name, v := range map[string]any{"predictions": st.predictions(), "profiles": st.profiles, "feedback": st.feedbackList(), "instances": st.instanceForecasts()} {
			if _, err := json.Marshal(v); err != nil {
				t.Fatalf("after %d extreme batches, the %s do not encode: %v", i+1, name, err)
			}
		}
		if _, err := st.checkpoint(); err != nil {
			t.Fatalf("after %d extreme batches, no checkpoint: %v", i+1, err)
		}
	}
}
