package forecasting

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/headstart-dev/headstart"
)

func started(run, stage string, at time.Duration) headstart.Observation {
	return headstart.Observation{RunID: run, WorkflowType: "W", Stage: stage, Started: t0.Add(at)}
}

// TestRunsTrackWhereEachRunIs: a run moving on from one stage to the next
// yields the edge between them with its delay; the same stage again, a
// late observation of an earlier stage, or an observation without a run
// yields none and does not move the run back.
func TestRunsTrackWhereEachRunIs(t *testing.T) {
	type edge struct {
		from  string
		delay time.Duration
		moved bool
	}
	r := NewRuns(0)
	for _, tt := range []struct {
		obs  headstart.Observation
		want edge
	}{
		{started("r1", "W/a", 0), edge{}},
		{started("r1", "W/a", time.Second), edge{}},
		{started("r1", "W/b", 5*time.Second), edge{"W/a", 4 * time.Second, true}},
		{started("r1", "W/a", 2*time.Second), edge{}},
		{started("", "W/c", 9*time.Second), edge{}},
	} {
		from, delay, moved := r.Track(tt.obs)
		require.Equal(t, tt.want, edge{from, delay, moved}, "%s of %q at %v", tt.obs.Stage, tt.obs.RunID, tt.obs.Started.Sub(t0))
	}
	require.Equal(t, "W/b", r.ByID["r1"].Stage)
	require.Len(t, r.ByID, 1)
}

func TestRunsForgetTheLeastRecentlySeenPastMax(t *testing.T) {
	r := NewRuns(2)
	r.Track(started("r1", "W/a", 0))
	r.Track(started("r2", "W/a", 0))
	r.Track(started("r1", "W/b", time.Second)) // r2 is now the least recent
	r.Track(started("r3", "W/a", 2*time.Second))
	require.Equal(t, []string{"r1", "r3"}, r.IDs())
}

// TestTasksPerRunCountsRunsPastTheStage: a stage's tasks per run average
// the runs that have moved past it; a run still in the stage is not done
// starting its tasks.
func TestTasksPerRunCountsRunsPastTheStage(t *testing.T) {
	r := NewRuns(0)
	for run, shards := range map[string]int{"r1": 4, "r2": 2, "r3": 100} {
		r.Track(started(run, "W/fan", 0))
		for range shards {
			r.CountTask(started(run, "W/fan", 0))
		}
		if run != "r3" {
			r.Track(started(run, "W/after", time.Second))
		}
	}
	r.CountTask(started("untracked", "W/fan", 0))
	require.Equal(t, map[string]float64{"W/fan": 3}, r.TasksPerRun())
}
