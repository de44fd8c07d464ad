package forecasting

import (
	"sort"
	"time"

	"github.com/headstart-dev/headstart"
)

// OtherStage collects whatever overflows a cap on stages or edges.
const OtherStage = headstart.OtherStage

// ProfileOptions shape the profiles of a ProfileSet.
type ProfileOptions struct {
	// HalfLife of every quantile histogram. If not set, 24 h.
	HalfLife time.Duration
	// MaxEdges caps the predecessors and successors kept per stage; the rest
	// are counted under OtherStage. If not set, 32.
	MaxEdges int
	// MaxStages caps the stages a ProfileSet keeps; observations of further
	// stages are folded into one profile named OtherStage. If not set, 1000.
	MaxStages int
}

func (o ProfileOptions) withDefaults() ProfileOptions {
	if o.HalfLife <= 0 {
		o.HalfLife = 24 * time.Hour
	}
	if o.MaxEdges <= 0 {
		o.MaxEdges = 32
	}
	if o.MaxStages <= 0 {
		o.MaxStages = 1000
	}
	return o
}

// Edge counts how often a neighbouring stage came before or after.
type Edge struct {
	Stage string `json:"stage"`
	Count int64  `json:"count"`
}

// Profile is a stage's running aggregate: counts, error and retry rates,
// moments and decaying quantile histograms of each metric, payload volumes,
// and the stages seen before and after it.
type Profile struct {
	Stage    string    `json:"stage"`
	Count    int64     `json:"count"`   // attempts observed
	Errors   int64     `json:"errors"`  // attempts that did not end ok
	Retries  int64     `json:"retries"` // attempts numbered 2 or higher
	Timeouts int64     `json:"timeouts"`
	Panics   int64     `json:"panics"`
	LastSeen time.Time `json:"last_seen"`

	Moments    [NumMetrics]Moments            `json:"moments"`
	Histograms [NumMetrics]*DecayingHistogram `json:"histograms"`

	PayloadInTotal  int64 `json:"payload_in_total"`
	PayloadOutTotal int64 `json:"payload_out_total"`

	Predecessors []Edge `json:"predecessors,omitempty"` // sorted by stage
	Successors   []Edge `json:"successors,omitempty"`   // sorted by stage
}

// NewProfile returns an empty profile of stage.
func NewProfile(stage string, opts ProfileOptions) *Profile {
	opts = opts.withDefaults()
	p := &Profile{Stage: stage}
	for m := range p.Histograms {
		p.Histograms[m] = NewDecayingHistogram(HistogramOptions{HalfLife: opts.HalfLife})
	}
	return p
}

// Add folds in one observed attempt, at time t. maxEdges caps the predecessors kept.
func (p *Profile) Add(o headstart.Observation, t time.Time, maxEdges int) {
	p.Count++
	if o.Outcome != headstart.OutcomeOK {
		p.Errors++
	}
	switch o.Outcome {
	case headstart.OutcomeTimeout:
		p.Timeouts++
	case headstart.OutcomePanic:
		p.Panics++
	}
	if o.Attempt > 1 {
		p.Retries++
	}
	if t.After(p.LastSeen) {
		p.LastSeen = t
	}
	for m := Metric(0); m < NumMetrics; m++ {
		x := m.Of(o)
		p.Moments[m].Add(x)
		p.Histograms[m].Add(x, 1, t)
	}
	p.PayloadInTotal += o.PayloadInBytes
	p.PayloadOutTotal += o.PayloadOutBytes
	if o.Predecessor != "" {
		p.Predecessors = addEdge(p.Predecessors, o.Predecessor, 1, maxEdges)
	}
}

// ErrorRate is the share of attempts that did not end ok.
func (p *Profile) ErrorRate() float64 { return ratio(p.Errors, p.Count) }

// RetryRate is the share of attempts that were retries.
func (p *Profile) RetryRate() float64 { return ratio(p.Retries, p.Count) }

// Quantile returns quantile q of metric m's decayed distribution.
func (p *Profile) Quantile(m Metric, q float64) float64 { return p.Histograms[m].Quantile(q) }

// Clone returns a deep copy.
func (p *Profile) Clone() *Profile {
	c := *p
	for m := range c.Histograms {
		c.Histograms[m] = p.Histograms[m].Clone()
	}
	c.Predecessors = append([]Edge(nil), p.Predecessors...)
	c.Successors = append([]Edge(nil), p.Successors...)
	return &c
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// addEdge adds n to stage's count in the sorted edges, folding a new stage
// into OtherStage when max edges are already kept.
func addEdge(edges []Edge, stage string, n int64, max int) []Edge {
	i := sort.Search(len(edges), func(i int) bool { return edges[i].Stage >= stage })
	if i < len(edges) && edges[i].Stage == stage {
		edges[i].Count += n
		return edges
	}
	if len(edges) >= max && stage != OtherStage {
		return addEdge(edges, OtherStage, n, max+1)
	}
	edges = append(edges, Edge{})
	copy(edges[i+1:], edges[i:])
	edges[i] = Edge{Stage: stage, Count: n}
	return edges
}

// ProfileSet keeps the profiles of many stages, bounded by MaxStages. Not safe
// for concurrent use; deterministic, so workflow code may use it.
type ProfileSet struct {
	Opts     ProfileOptions      `json:"opts"`
	Profiles map[string]*Profile `json:"profiles"`
}

// NewProfileSet returns an empty set.
func NewProfileSet(opts ProfileOptions) *ProfileSet {
	return &ProfileSet{Opts: opts.withDefaults(), Profiles: map[string]*Profile{}}
}

// Add folds an observation into its stage's profile (OtherStage past the cap)
// and counts the stage as a successor of its predecessor. It returns the name
// of the profile it went into.
func (s *ProfileSet) Add(o headstart.Observation, t time.Time) string {
	name := s.admit(o.Stage)
	p := s.Profiles[name]
	if p == nil {
		p = NewProfile(name, s.Opts)
		s.Profiles[name] = p
	}
	p.Add(o, t, s.Opts.MaxEdges)
	if o.Predecessor != "" {
		if pred := s.Profiles[o.Predecessor]; pred != nil {
			pred.Successors = addEdge(pred.Successors, name, 1, s.Opts.MaxEdges)
		}
	}
	return name
}

// admit returns the profile name a stage is kept under.
func (s *ProfileSet) admit(stage string) string {
	if _, ok := s.Profiles[stage]; ok || len(s.Profiles) < s.Opts.MaxStages-1 || stage == OtherStage {
		return stage
	}
	return OtherStage
}

// Get returns the stage's profile, or nil.
func (s *ProfileSet) Get(stage string) *Profile { return s.Profiles[stage] }

// Stages returns the profiled stages, sorted.
func (s *ProfileSet) Stages() []string {
	names := make([]string, 0, len(s.Profiles))
	//workflowcheck:ignore collected, then sorted
	for n := range s.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
