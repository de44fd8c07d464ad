package forecaster

import (
	"fmt"
	"testing"
	"time"

	"github.com/headstart-dev/headstart"
)

// TestHostileCardinalityStaysBounded: 100,000 distinct activity types, each
// in its own workflow run, leave the forecaster's state within its caps
// (MaxStages stages, MaxRunningInstances runs) and its checkpoint small.
func TestHostileCardinalityStaysBounded(t *testing.T) {
	st := newForecasterState(headstart.ForecasterOptions{MaxStages: 100, MaxRunningInstances: 100})
	const n = 100000
	batch := make([]headstart.Observation, 0, 1000)
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		batch = append(batch, headstart.Observation{
			Stage: fmt.Sprintf("W/a%d", i), WorkflowType: "W", ActivityType: fmt.Sprintf("a%d", i), RunID: fmt.Sprintf("run-%d", i),
			Attempt: 1, Scheduled: at, Started: at, Wall: time.Second, PeakMemoryBytes: 1e8, Outcome: headstart.OutcomeOK,
		})
		if len(batch) == cap(batch) {
			st.ingest(batch, at)
			batch = batch[:0]
		}
	}
	cp, err := st.checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int{"current": len(st.current), "past": len(st.past), "workflows": len(st.workflows), "feedback": len(st.feedback),
		"arrivals": len(st.arrivals), "demand": len(st.demand), "runs": len(st.runs.ByID), "profiles": len(st.profiles.Stages())}
	t.Logf("after %d distinct stages and runs: %v; checkpoint %d bytes", n, sizes, len(cp))
	for name, size := range sizes {
		limit := 101 // the cap, and "other"
		if name == "workflows" {
			limit = 2 * 100 // the sizer's stages and the profiles' (first come), which may differ
		}
		if size > limit {
			t.Errorf("%s holds %d entries, more than the caps allow (%d)", name, size, limit)
		}
	}
	if len(cp) > 256<<10 {
		t.Errorf("checkpoint %d bytes", len(cp))
	}
}
