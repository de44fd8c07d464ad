package forecaster

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"time"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/activities"
	"github.com/headstart-dev/headstart/controlplane/forecasting"
	"github.com/headstart-dev/headstart/resources"
)

// forecasterState is everything the forecaster keeps. Its methods are
// deterministic: no clock, no randomness, no map iteration that reaches the
// outside unsorted.
type forecasterState struct {
	opts      headstart.ForecasterOptions
	sizer     *forecasting.Headstart
	profiles  *forecasting.ProfileSet
	graph     *forecasting.StageGraph
	feedback  map[string]*headstart.Feedback
	current   map[string]forecasting.Sizing         // the prediction in force per stage
	past      map[string][]forecasting.DatedSizing  // each stage's recent predictions, oldest first
	workflows map[string]string                     // stage → workflow type
	runs      *forecasting.Runs                     // where each running workflow run is
	arrivals  map[string]*forecasting.ArrivalSeries // stage → first attempts per bucket
	demand    map[string]headstart.DemandSummary    // stage → its last fitted demand
	util      headstart.UtilizationResult           // the last system-wide utilization read
	observed  int64
	rejected  int64
	// shed and shedBatches count what was dropped unread for being too far
	// behind; backlog is how many batches wait now.
	shed, shedBatches int64
	backlog           int
	// touchedLast holds the last observation of each stage observed since
	// the last refresh, in order of first appearance; touched indexes it.
	// Not checkpointed: every workflow task ends with a refresh.
	touched     map[string]int
	touchedLast []headstart.Observation
}

func newForecasterState(opts headstart.ForecasterOptions) *forecasterState {
	opts = opts.WithDefaults()
	return &forecasterState{
		opts:      opts,
		sizer:     forecasting.NewHeadstart(forecasting.HeadstartOptions{Quantile: opts.Quantile, Window: opts.Window, MaxStages: opts.MaxStages}),
		profiles:  forecasting.NewProfileSet(forecasting.ProfileOptions{MaxStages: opts.MaxStages}),
		graph:     forecasting.NewStageGraph(0),
		feedback:  map[string]*headstart.Feedback{},
		current:   map[string]forecasting.Sizing{},
		past:      map[string][]forecasting.DatedSizing{},
		workflows: map[string]string{},
		runs:      forecasting.NewRuns(opts.MaxRunningInstances),
		arrivals:  map[string]*forecasting.ArrivalSeries{},
		demand:    map[string]headstart.DemandSummary{},
		touched:   map[string]int{},
	}
}

func taskOf(o headstart.Observation) forecasting.Task {
	return forecasting.Task{Stage: o.Stage, WorkflowType: o.WorkflowType, InputBytes: float64(o.PayloadInBytes), Submit: o.Scheduled}
}

func usageOf(o headstart.Observation) forecasting.Usage {
	u := forecasting.Usage{PeakMemory: o.PeakMemoryBytes, Runtime: o.Wall}
	if o.Wall > 0 {
		secs := o.Wall.Seconds()
		u.Rates = u.Rates.With(resources.CPU, o.CPUSeconds/secs).
			With(resources.DiskBytes, (o.DiskReadBytes+o.DiskWriteBytes)/secs).
			With(resources.NetBytes, o.NetBytes/secs)
	}
	return u
}

// ingest folds a batch in at time now and renews the predictions of the
// stages in it (observe, then refresh).
func (s *forecasterState) ingest(batch []headstart.Observation, now time.Time) {
	s.observe(batch, now)
	s.refresh(now)
}

// observe folds a batch in at time now. Invalid observations are counted
// and skipped. Each observation is scored against the prediction in force
// (renewed by refresh, once per workflow task).
func (s *forecasterState) observe(batch []headstart.Observation, now time.Time) {
	for _, o := range batch {
		if err := o.Validate(); err != nil {
			s.rejected++
			continue
		}
		s.observed++
		s.score(o)
		s.profiles.Add(o, now)
		if o.Outcome == headstart.OutcomeOK || o.PeakMemoryBytes > 0 {
			s.sizer.Observe(taskOf(o), usageOf(o), now)
		}
		s.workflows[o.Stage] = o.WorkflowType
		s.track(o, now)
		if o.Attempt == 1 && s.profiles.Get(o.Stage) != nil { // a stage within the caps
			s.runs.CountTask(o)
			at := o.Scheduled
			if at.IsZero() {
				at = o.Started
			}
			a := s.arrivals[o.Stage]
			if a == nil {
				a = &forecasting.ArrivalSeries{}
				s.arrivals[o.Stage] = a
			}
			a.Add(at.UnixNano()/int64(s.opts.DemandBucket), s.opts.DemandBuckets)
		}
		if i, ok := s.touched[o.Stage]; ok {
			s.touchedLast[i] = o
		} else {
			s.touched[o.Stage] = len(s.touchedLast)
			s.touchedLast = append(s.touchedLast, o)
		}
	}
}

// refresh renews the prediction in force of each stage observed since the
// last refresh (sizing costs as much as observing, so it is done once per
// stage per workflow task, not per observation), then bounds the state.
func (s *forecasterState) refresh(now time.Time) {
	for _, o := range s.touchedLast {
		z := s.sizer.Size(forecasting.Task{Stage: o.Stage, WorkflowType: o.WorkflowType, InputBytes: float64(o.PayloadInBytes)})
		s.current[o.Stage] = z
		s.past[o.Stage] = forecasting.AppendDated(s.past[o.Stage], forecasting.Dated(now, z))
	}
	clear(s.touched)
	s.touchedLast = s.touchedLast[:0]
	s.bound()
}

// bound keeps the per-stage state within MaxStages: past it, the stages
// the sizer has forgotten (the least recently observed) leave every
// per-stage map too, however many distinct stages arrive.
func (s *forecasterState) bound() {
	if len(s.current) <= s.opts.MaxStages && len(s.workflows) <= 2*s.opts.MaxStages {
		return
	}
	//workflowcheck:ignore deleting a set of keys: the result does not depend on the order
	for stage := range s.current {
		if !s.sizer.Knows(stage) {
			delete(s.current, stage)
			delete(s.past, stage)
			delete(s.feedback, stage)
			delete(s.demand, stage)
		}
	}
	//workflowcheck:ignore deleting a set of keys: the result does not depend on the order
	for stage := range s.workflows {
		if _, ok := s.current[stage]; !ok && s.profiles.Get(stage) == nil {
			delete(s.workflows, stage)
		}
	}
}

// starts records where runs are from their stages' start events.
func (s *forecasterState) starts(ss []headstart.StageStart, now time.Time) {
	for _, st := range ss {
		if st.Stage == "" || st.Attempt < 1 {
			s.rejected++
			continue
		}
		s.workflows[st.Stage] = st.WorkflowType
		s.track(headstart.Observation{Stage: st.Stage, WorkflowType: st.WorkflowType, RunID: st.RunID, Started: st.Started}, now)
	}
	s.bound()
}

// score compares an observation with the prediction in force for its
// stage when it was scheduled, and refits a stage that has drifted.
func (s *forecasterState) score(o headstart.Observation) {
	p, ok := forecasting.SizingAt(s.past[o.Stage], o.Scheduled)
	if !ok || o.PeakMemoryBytes <= 0 || p.Median <= 0 {
		return // no model prediction yet, or nothing to score
	}
	f := s.feedback[o.Stage]
	if f == nil {
		f = &headstart.Feedback{Stage: o.Stage}
		s.feedback[o.Stage] = f
	}
	if forecasting.Score(f, o, p, s.opts.DriftThreshold) {
		s.sizer.Forget(o.Stage)
	}
}

// track records where o's run is, and the stage graph's edge from the
// stage the run started before.
func (s *forecasterState) track(o headstart.Observation, now time.Time) {
	if from, delay, moved := s.runs.Track(o); moved {
		s.graph.Observe(o.WorkflowType, from, o.Stage, delay, now)
	}
}

// predictions returns every stage's prediction, sorted by stage.
func (s *forecasterState) predictions() []headstart.Prediction {
	stages := make([]string, 0, len(s.current))
	//workflowcheck:ignore collected, then sorted
	for st := range s.current {
		stages = append(stages, st)
	}
	sort.Strings(stages)
	out := make([]headstart.Prediction, 0, len(stages))
	perRun := s.runs.TasksPerRun()
	for _, st := range stages {
		z := s.current[st]
		p := headstart.Prediction{
			Stage: st, WorkflowType: s.workflows[st],
			Memory:     headstart.Bounds{Target: z.Memory.Target, Lower: z.Memory.Lower, Upper: z.Memory.Upper},
			Duration:   headstart.Bounds{Target: z.Runtime.Target, Lower: z.Runtime.Lower, Upper: z.Runtime.Upper},
			CPU:        headstart.Bounds{Target: z.Resources[resources.CPU].Target, Lower: z.Resources[resources.CPU].Lower, Upper: z.Resources[resources.CPU].Upper},
			Confidence: z.Memory.Confidence,
		}
		if f := s.feedback[st]; f != nil {
			p.RecentError = f.MAPE
		}
		if pr := s.profiles.Get(st); pr != nil {
			p.Observed = pr.Count
		}
		p.TasksPerRun = max(perRun[st], 1)
		if d, ok := s.demand[st]; ok {
			p.Demand = &d
		}
		for _, t := range s.graph.Next(s.workflows[st], st) {
			p.Next = append(p.Next, headstart.NextStage{Stage: t.Stage, Probability: t.Probability, DelayP50: t.DelayP50, DelayP90: t.DelayP90})
		}
		out = append(out, p)
	}
	return out
}

// instanceForecasts returns the tracked runs that have a next stage, sorted by run ID.
func (s *forecasterState) instanceForecasts() []headstart.InstanceForecast {
	ids := s.runs.IDs()
	var out []headstart.InstanceForecast
	for _, id := range ids {
		in := s.runs.ByID[id]
		next := s.graph.Next(in.WorkflowType, in.Stage)
		if len(next) == 0 {
			continue // its last stage: the run is finishing
		}
		f := headstart.InstanceForecast{RunID: id, WorkflowType: in.WorkflowType, Stage: in.Stage, Started: in.Started}
		for _, n := range next {
			f.Next = append(f.Next, headstart.NextInstanceStage{Stage: n.Stage, Probability: n.Probability, ExpectedAt: in.Started.Add(n.DelayP50)})
		}
		out = append(out, f)
	}
	return out
}

// feedbackList returns every stage's feedback, sorted by stage.
func (s *forecasterState) feedbackList() []headstart.Feedback {
	out := make([]headstart.Feedback, 0, len(s.feedback))
	//workflowcheck:ignore collected, then sorted
	for _, f := range s.feedback {
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Stage < out[j].Stage })
	return out
}

// checkpointData is what continue-as-new carries.
type checkpointData struct {
	Opts      headstart.ForecasterOptions
	Sizer     []byte
	Profiles  *forecasting.ProfileSet
	Graph     *forecasting.StageGraph
	Feedback  map[string]*headstart.Feedback
	Current   map[string]forecasting.Sizing
	Past      map[string][]forecasting.DatedSizing
	Workflows map[string]string
	Instances map[string]*forecasting.Run
	Arrivals  map[string]*forecasting.ArrivalSeries
	Demand    map[string]headstart.DemandSummary
	Util      headstart.UtilizationResult
	Seq       int64
	Observed  int64
	Rejected  int64
	// Shed and ShedBatches: dropped unread for being too far behind.
	Shed, ShedBatches int64 `json:",omitempty"`
}

// check rejects a checkpoint whose entries are missing: state that would
// fail later, far from where it came in.
func (d checkpointData) check() error {
	for k, f := range d.Feedback {
		if f == nil {
			return fmt.Errorf("feedback of %q is empty", k)
		}
	}
	for k, r := range d.Instances {
		if r == nil {
			return fmt.Errorf("run %q is empty", k)
		}
	}
	for k, a := range d.Arrivals {
		if a == nil {
			return fmt.Errorf("arrivals of %q are empty", k)
		}
	}
	return nil
}

// checkpoint serialises the state as gzipped JSON (which sorts map keys, so
// the bytes are deterministic; the sizer writes its stages sorted).
//
//workflowcheck:ignore deterministic, see above
func (s *forecasterState) checkpoint() ([]byte, error) {
	sz, err := s.sizer.Checkpoint()
	if err != nil {
		return nil, err
	}
	d := checkpointData{Opts: s.opts, Sizer: sz, Profiles: s.profiles, Graph: s.graph, Feedback: s.feedback, Current: s.current, Past: s.past,
		Workflows: s.workflows, Instances: s.runs.ByID, Arrivals: s.arrivals, Demand: s.demand, Util: s.util, Seq: s.runs.Seq, Observed: s.observed, Rejected: s.rejected,
		Shed: s.shed, ShedBatches: s.shedBatches}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(d); err != nil {
		return nil, fmt.Errorf("forecaster checkpoint: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// restoreState rebuilds the state from a checkpoint.
//
//workflowcheck:ignore decoding a given checkpoint is deterministic
func restoreState(b []byte) (*forecasterState, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("restore forecaster: %w: %v", forecasting.ErrCheckpoint, err)
	}
	var d checkpointData
	if err := json.NewDecoder(io.LimitReader(zr, 512<<20)).Decode(&d); err != nil {
		return nil, fmt.Errorf("restore forecaster: %w: %v", forecasting.ErrCheckpoint, err)
	}
	if err := d.check(); err != nil {
		return nil, fmt.Errorf("restore forecaster: %w: %v", forecasting.ErrCheckpoint, err)
	}
	sizer, err := forecasting.RestoreHeadstart(d.Sizer)
	if err != nil {
		return nil, fmt.Errorf("restore forecaster: %w", err)
	}
	s := newForecasterState(d.Opts)
	s.sizer = sizer
	if d.Profiles != nil {
		s.profiles = d.Profiles
	}
	if d.Graph != nil {
		s.graph = d.Graph
	}
	// Maps decoded from the checkpoint are the state's own from here on.
	adopt(&s.feedback, d.Feedback)
	adopt(&s.current, d.Current)
	adopt(&s.past, d.Past)
	adopt(&s.workflows, d.Workflows)
	adopt(&s.runs.ByID, d.Instances)
	adopt(&s.arrivals, d.Arrivals)
	adopt(&s.demand, d.Demand)
	s.runs.Seq, s.observed, s.rejected, s.util = d.Seq, d.Observed, d.Rejected, d.Util
	s.shed, s.shedBatches = d.Shed, d.ShedBatches
	return s, nil
}

// minFitBuckets is how much history a stage needs before its demand is fitted.
const minFitBuckets = 12

// fitInput picks the busiest stages with enough history, and the feedback to export.
func (s *forecasterState) fitInput() (activities.FitInput, bool) {
	type cand struct {
		stage string
		total float64
	}
	var cands []cand
	//workflowcheck:ignore collected, then sorted
	for stage, a := range s.arrivals {
		if len(a.Counts) < minFitBuckets {
			continue
		}
		cands = append(cands, cand{stage, a.Total()})
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].total != cands[j].total {
			return cands[i].total > cands[j].total
		}
		return cands[i].stage < cands[j].stage
	})
	if len(cands) > s.opts.FitStages {
		cands = cands[:s.opts.FitStages]
	}
	var in activities.FitInput
	for _, c := range cands {
		z := s.current[c.stage]
		per := resources.Vector{}.With(resources.CPU, z.Resources[resources.CPU].Target).With(resources.Memory, z.Memory.Target)
		in.Stages = append(in.Stages, activities.StageSeries{
			Stage: c.stage, Arrivals: append([]float64(nil), s.arrivals[c.stage].Counts...), Bucket: s.opts.DemandBucket,
			Runtime: time.Duration(z.Runtime.Target * float64(time.Second)), PerTask: per.ClampZero(),
		})
	}
	for _, f := range s.feedbackList() {
		in.Feedback = append(in.Feedback, activities.StageFeedback{Stage: f.Stage, MAPE: f.MAPE, Bias: f.Bias, Coverage: f.Coverage(), RuntimeMAPE: f.RuntimeMAPE, Refits: f.Refits})
	}
	return in, len(in.Stages) > 0 || len(in.Feedback) > 0
}

// applyFit keeps each fitted stage's demand summary.
func (s *forecasterState) applyFit(res activities.FitResult, now time.Time) {
	for _, d := range res.Demand {
		if d.Err != "" || len(d.Points) == 0 {
			continue
		}
		sum := headstart.DemandSummary{Horizon: d.Points[len(d.Points)-1].Offset, NextArrivals: d.Points[0].Arrivals, Weights: d.Weights, FittedAt: now}
		for _, p := range d.Points {
			sum.PeakConcurrent = math.Max(sum.PeakConcurrent, p.Concurrent)
			sum.PeakCPU = math.Max(sum.PeakCPU, p.Demand.Get(resources.CPU))
			sum.PeakMemory = math.Max(sum.PeakMemory, p.Demand.Get(resources.Memory))
		}
		s.demand[d.Stage] = sum
	}
}

// adopt makes a decoded map the state's own, keeping the empty one when none was decoded.
func adopt[M ~map[K]V, K comparable, V any](dst *M, decoded M) {
	if decoded != nil {
		*dst = decoded
	}
}
