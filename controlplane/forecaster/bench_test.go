package forecaster

import (
	"fmt"
	"testing"
	"time"

	"github.com/headstart-dev/headstart"
)

// loadBatch makes n observations spread over stages stages, deterministic.
func loadBatch(first, n, stages int) []headstart.Observation {
	b := make([]headstart.Observation, n)
	for i := range b {
		k := first + i
		s := k % stages
		b[i] = headstart.Observation{
			Stage: fmt.Sprintf("Load%d/Activity%d", s%10, s), WorkflowType: fmt.Sprintf("Load%d", s%10), ActivityType: fmt.Sprintf("Activity%d", s),
			RunID: fmt.Sprintf("run-%d", k/stages), Attempt: 1, Outcome: headstart.OutcomeOK,
			Scheduled: t0.Add(time.Duration(k) * time.Millisecond), Started: t0.Add(time.Duration(k) * time.Millisecond),
			Wall: time.Duration(100+k%50) * time.Millisecond, CPUSeconds: 0.05, PeakMemoryBytes: float64(1e8 + (k%97)*1e6), PayloadInBytes: int64(1000 + k%500),
		}
	}
	return b
}

// BenchmarkIngest is the forecaster's ingest cost per observation in
// workflow code, without a server (see BenchmarkForecasterOnDevServer for the real thing).
func BenchmarkIngest(b *testing.B) {
	st := newForecasterState(headstart.ForecasterOptions{})
	st.ingest(loadBatch(0, 50000, 1000), t0) // warm: every stage has a full window
	batch := loadBatch(50000, 500, 1000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st.ingest(batch, t0)
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "obs/s")
}
