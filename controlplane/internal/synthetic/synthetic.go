// Package synthetic makes observation batches for tests that need a
// forecaster with predictions without running a workload.
package synthetic

import (
	"fmt"
	"time"

	"github.com/headstart-dev/headstart"
)

// RunsThrough is n finished runs of workflow type W through W/extract then
// W/train, ten seconds apart, the last an hour before now, and the start of
// W/extract by one more run ("live") at now: W/train comes next for it.
func RunsThrough(n int, now time.Time) headstart.Batch {
	var b headstart.Batch
	for r := range n {
		at := now.Add(-time.Hour + time.Duration(r)*time.Minute)
		for i, stage := range []string{"extract", "train"} {
			start := at.Add(time.Duration(i) * 10 * time.Second)
			b.Observations = append(b.Observations, headstart.Observation{
				Stage: "W/" + stage, WorkflowType: "W", ActivityType: stage, RunID: fmt.Sprintf("run-%d", r), Attempt: 1,
				Scheduled: start, Started: start, Wall: 5 * time.Second, CPUSeconds: 4, PeakMemoryBytes: float64((100 + 100*i) << 20),
				Outcome: headstart.OutcomeOK,
			})
		}
	}
	b.Starts = append(b.Starts, headstart.StageStart{Stage: "W/extract", WorkflowType: "W", ActivityType: "extract", RunID: "live", Attempt: 1, Scheduled: now, Started: now})
	return b
}
