package forecasting

import (
	"cmp"
	"slices"
	"sort"
	"time"

	"github.com/headstart-dev/headstart"
)

// Run is a running workflow run: the stage it last started.
type Run struct {
	WorkflowType string
	Stage        string
	Started      time.Time
	Seq          int64 // when it was last seen, in Runs.Seq
	// Tasks counts this run's first attempts per stage (its fan-out).
	Tasks map[string]int `json:",omitempty"`
}

// FanoutRuns is how many of the latest runs past a stage its tasks per run
// averages; MaxCountedStages bounds the stages one run counts tasks for
// (and so the size of a tracked run).
const (
	FanoutRuns       = 20
	MaxCountedStages = 64
)

// Runs tracks where running workflow runs are, up to Max of them: past it,
// the run seen least recently is forgotten. Deterministic: no clock, and
// nothing depends on map order.
type Runs struct {
	ByID map[string]*Run // run ID → where it is
	Seq  int64           // a counter of what was tracked, ordering the runs by recency
	Max  int
}

// NewRuns tracks at most max runs.
func NewRuns(max int) *Runs { return &Runs{ByID: map[string]*Run{}, Max: max} }

// Track records that o's run started o's stage. When the run moves on from
// another stage it last started, Track returns that stage and how long
// after it this one started: an edge of the stage graph. A start event and
// the observation of the same attempt record it once, and a late
// observation of an earlier stage does not move the run back.
func (r *Runs) Track(o headstart.Observation) (from string, delay time.Duration, moved bool) {
	if o.RunID == "" {
		return "", 0, false
	}
	r.Seq++
	in := r.ByID[o.RunID]
	if in != nil && in.Stage != o.Stage && !o.Started.Before(in.Started) {
		from, delay, moved = in.Stage, o.Started.Sub(in.Started), true
	}
	if in == nil {
		if r.Max > 0 && len(r.ByID) >= r.Max {
			r.evict()
		}
		in = &Run{}
		r.ByID[o.RunID] = in
	}
	if !o.Started.Before(in.Started) {
		in.WorkflowType, in.Stage, in.Started = o.WorkflowType, o.Stage, o.Started
	}
	in.Seq = r.Seq
	return from, delay, moved
}

// CountTask adds a first attempt to its run's tasks of the stage (a run
// counts at most MaxCountedStages stages). Untracked runs are not counted.
func (r *Runs) CountTask(o headstart.Observation) {
	in := r.ByID[o.RunID]
	if in == nil {
		return
	}
	if in.Tasks == nil {
		in.Tasks = map[string]int{}
	}
	if _, ok := in.Tasks[o.Stage]; !ok && len(in.Tasks) >= MaxCountedStages {
		return
	}
	in.Tasks[o.Stage]++
}

// TasksPerRun is each stage's mean tasks per run over the latest
// FanoutRuns runs that have moved past it (so that all their tasks have
// been seen).
func (r *Runs) TasksPerRun() map[string]float64 {
	type run struct {
		seq   int64
		tasks int
	}
	past := map[string][]run{}
	//workflowcheck:ignore collected per stage, then sorted by sequence
	for _, in := range r.ByID {
		//workflowcheck:ignore collected per stage, then sorted by sequence
		for stage, n := range in.Tasks {
			if stage != in.Stage {
				past[stage] = append(past[stage], run{in.Seq, n})
			}
		}
	}
	out := make(map[string]float64, len(past))
	//workflowcheck:ignore each stage's mean is independent of the others
	for stage, runs := range past {
		slices.SortFunc(runs, func(a, b run) int { return cmp.Compare(b.seq, a.seq) })
		runs = runs[:min(len(runs), FanoutRuns)]
		sum := 0
		for _, r := range runs {
			sum += r.tasks
		}
		out[stage] = float64(sum) / float64(len(runs))
	}
	return out
}

// IDs returns the tracked runs' IDs, sorted.
func (r *Runs) IDs() []string {
	ids := make([]string, 0, len(r.ByID))
	//workflowcheck:ignore collected, then sorted
	for id := range r.ByID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// evict forgets the run seen least recently.
func (r *Runs) evict() {
	var oldest string
	//workflowcheck:ignore the minimum, ties broken by ID, does not depend on order
	for id, in := range r.ByID {
		if oldest == "" || in.Seq < r.ByID[oldest].Seq || (in.Seq == r.ByID[oldest].Seq && id < oldest) {
			oldest = id
		}
	}
	delete(r.ByID, oldest)
}
