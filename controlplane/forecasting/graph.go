package forecasting

import (
	"sort"
	"time"
)

// StageGraph is, per workflow type, which stage follows which, how often,
// and after how long (from one stage's start to the next's). Deterministic;
// not safe for concurrent use.
type StageGraph struct {
	HalfLife  time.Duration                        `json:"half_life"`
	Workflows map[string]map[string]*stageOutgoing `json:"workflows"` // workflow type → from stage → edges
}

type stageOutgoing struct {
	Total int64                 `json:"total"`
	To    map[string]*graphEdge `json:"to"`
}

type graphEdge struct {
	Count int64              `json:"count"`
	Delay *DecayingHistogram `json:"delay"` // seconds
}

// Transition is one possible next stage.
type Transition struct {
	Stage       string
	Probability float64
	// DelayP50 and DelayP90 are quantiles of the time from the current
	// stage's start to this one's.
	DelayP50, DelayP90 time.Duration
	Count              int64
}

// NewStageGraph returns an empty graph whose delay histograms have the given
// half-life (if not set, 24 h).
func NewStageGraph(halfLife time.Duration) *StageGraph {
	if halfLife <= 0 {
		halfLife = 24 * time.Hour
	}
	return &StageGraph{HalfLife: halfLife, Workflows: map[string]map[string]*stageOutgoing{}}
}

// Observe records that stage to started delay after stage from in one run of workflowType.
func (g *StageGraph) Observe(workflowType, from, to string, delay time.Duration, now time.Time) {
	wf := g.Workflows[workflowType]
	if wf == nil {
		wf = map[string]*stageOutgoing{}
		g.Workflows[workflowType] = wf
	}
	out := wf[from]
	if out == nil {
		out = &stageOutgoing{To: map[string]*graphEdge{}}
		wf[from] = out
	}
	e := out.To[to]
	if e == nil {
		e = &graphEdge{Delay: NewDecayingHistogram(HistogramOptions{HalfLife: g.HalfLife})}
		out.To[to] = e
	}
	out.Total++
	e.Count++
	e.Delay.Add(max(delay.Seconds(), 0), 1, now)
}

// Next returns what follows stage in workflowType, most likely first (ties by name).
func (g *StageGraph) Next(workflowType, stage string) []Transition {
	out := g.Workflows[workflowType][stage]
	if out == nil || out.Total == 0 {
		return nil
	}
	ts := make([]Transition, 0, len(out.To))
	//workflowcheck:ignore collected, then sorted
	for to, e := range out.To {
		ts = append(ts, Transition{
			Stage:       to,
			Probability: float64(e.Count) / float64(out.Total),
			DelayP50:    time.Duration(e.Delay.Quantile(0.5) * float64(time.Second)),
			DelayP90:    time.Duration(e.Delay.Quantile(0.9) * float64(time.Second)),
			Count:       e.Count,
		})
	}
	sort.Slice(ts, func(i, j int) bool {
		if ts[i].Probability != ts[j].Probability {
			return ts[i].Probability > ts[j].Probability
		}
		return ts[i].Stage < ts[j].Stage
	})
	return ts
}
