package worker

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/headstart-dev/headstart/activities"
	"github.com/headstart-dev/headstart/forecasting"
	"github.com/headstart-dev/headstart/resources"
)

// ForecasterOptions configure the forecaster. Zero values take the defaults.
type ForecasterOptions struct {
	// MaxStages bounds the stages tracked. Past it, the sizer forgets the
	// stage observed least recently and profiles fold new stages into one
	// named "other". If not set, 1000.
	MaxStages int
	// Quantile of memory the predictions size for. If not set, 0.99.
	Quantile float64
	// Window of recent tasks per stage the sizer keeps. If not set, 50.
	Window int
	// DriftThreshold is the recent under-prediction (signed percentage
	// error, positive when tasks use more) of a stage's median memory
	// prediction past which the stage is refitted from its latest tasks only.
	// If not set, 0.3 (a stage whose memory doubles errs by 0.5).
	DriftThreshold float64
	// MaxRunningInstances bounds the workflow runs tracked for "what comes
	// next"; the least recently seen is forgotten past it. If not set, 1000.
	MaxRunningInstances int
	// MaxSignalsPerRun continues the forecaster as new after this many
	// batches even if the server has not suggested it. If not set, 2000.
	MaxSignalsPerRun int
	// MaxHistoryBytes continues the forecaster as new once its history is
	// this large (the server refuses histories past 50 MiB). If not set, 8 MiB.
	MaxHistoryBytes int
	// FitInterval between demand-curve fits. If not set, 1 minute.
	FitInterval time.Duration
	// DemandBucket is the width of the arrival series' buckets. If not set, 1 minute.
	DemandBucket time.Duration
	// DemandBuckets is how many buckets of arrivals each stage keeps. If not set, 60.
	DemandBuckets int
	// FitStages is how many of the busiest stages are fitted each time. If not set, 20.
	FitStages int
	// Utilization names a PromQL query per resource for system-wide
	// utilization, read every FitInterval as one more input (the control
	// worker needs Options.PrometheusURL). If not set, none is read.
	Utilization map[string]string
}

func (o ForecasterOptions) withDefaults() ForecasterOptions {
	if o.MaxStages <= 0 {
		o.MaxStages = 1000
	}
	if o.Quantile <= 0 || o.Quantile >= 1 {
		o.Quantile = 0.99
	}
	if o.Window <= 0 {
		o.Window = 50
	}
	if o.DriftThreshold <= 0 {
		o.DriftThreshold = 0.3
	}
	if o.MaxRunningInstances <= 0 {
		o.MaxRunningInstances = 1000
	}
	if o.MaxSignalsPerRun <= 0 {
		o.MaxSignalsPerRun = 2000
	}
	if o.MaxHistoryBytes <= 0 {
		o.MaxHistoryBytes = 8 << 20
	}
	if o.FitInterval <= 0 {
		o.FitInterval = time.Minute
	}
	if o.DemandBucket <= 0 {
		o.DemandBucket = time.Minute
	}
	if o.DemandBuckets <= 0 {
		o.DemandBuckets = 60
	}
	if o.FitStages <= 0 {
		o.FitStages = 20
	}
	return o
}

// Prediction is what the forecaster expects of a stage's next task.
type Prediction struct {
	Stage        string  `json:"stage"`
	WorkflowType string  `json:"workflow_type"`
	CPU          Bounds  `json:"cpu_cores"`
	Memory       Bounds  `json:"memory_bytes"`
	Duration     Bounds  `json:"duration_seconds"`
	Confidence   float64 `json:"confidence"`
	// RecentError is the mean absolute percentage error of the stage's last
	// memory predictions (exponentially weighted).
	RecentError float64 `json:"recent_error"`
	Observed    int64   `json:"observed"`
	// TasksPerRun is how many tasks of the stage a run starts (its fan-out),
	// over the latest runs past the stage; 1 until known.
	TasksPerRun float64 `json:"tasks_per_run"`
	// Next lists the stages expected after this one, most likely first.
	Next []NextStage `json:"next,omitempty"`
	// Demand is the stage's fitted demand over the coming horizon, once fitted.
	Demand *DemandSummary `json:"demand,omitempty"`
}

// Bounds is a target with lower and upper bounds.
type Bounds struct {
	Target float64 `json:"target"`
	Lower  float64 `json:"lower"`
	Upper  float64 `json:"upper"`
}

// NextStage is a likely successor, with when it starts after this stage starts.
type NextStage struct {
	Stage       string        `json:"stage"`
	Probability float64       `json:"probability"`
	DelayP50    time.Duration `json:"delay_p50"`
	DelayP90    time.Duration `json:"delay_p90"`
}

// Feedback is how one stage's predictions compare with what happened.
type Feedback struct {
	Stage string `json:"stage"`
	// Scored observations, and those whose memory fell inside [lower, upper].
	Scored, Inside int64
	// MAPE and Bias are exponentially weighted: absolute and signed
	// percentage error of the median memory estimate ((actual − predicted) / actual).
	MAPE, Bias float64
	// RuntimeMAPE likewise for duration.
	RuntimeMAPE float64
	Refits      int64
}

// Coverage is the share of scored observations inside the interval.
func (f Feedback) Coverage() float64 {
	if f.Scored == 0 {
		return 0
	}
	return float64(f.Inside) / float64(f.Scored)
}

// instance is a running workflow run: the stage it last started.
type instance struct {
	WorkflowType string
	Stage        string
	Started      time.Time
	Seq          int64
	// Tasks counts this run's first attempts per stage (its fan-out).
	Tasks map[string]int `json:",omitempty"`
}

// fanoutRuns is how many of the latest runs past a stage its tasks per run
// averages; maxCountedStages bounds the stages one run counts tasks for
// (and so the size of a tracked run).
const (
	fanoutRuns       = 20
	maxCountedStages = 64
)

// forecasterState is everything the forecaster keeps. Its methods are
// deterministic: no clock, no randomness, no map iteration that reaches the
// outside unsorted.
type forecasterState struct {
	opts      ForecasterOptions
	sizer     *forecasting.Headstart
	profiles  *forecasting.ProfileSet
	graph     *forecasting.StageGraph
	feedback  map[string]*Feedback
	current   map[string]forecasting.Sizing // the prediction in force per stage
	past      map[string][]datedSizing      // each stage's recent predictions, oldest first
	workflows map[string]string             // stage → workflow type
	instances map[string]*instance          // run ID → where it is
	arrivals  map[string]*arrivalSeries     // stage → first attempts per bucket
	demand    map[string]DemandSummary      // stage → its last fitted demand
	util      activities.UtilizationResult  // the last system-wide utilization read
	seq       int64
	observed  int64
	rejected  int64
}

func newForecasterState(opts ForecasterOptions) *forecasterState {
	opts = opts.withDefaults()
	return &forecasterState{
		opts:      opts,
		sizer:     forecasting.NewHeadstart(forecasting.HeadstartOptions{Quantile: opts.Quantile, Window: opts.Window, MaxStages: opts.MaxStages}),
		profiles:  forecasting.NewProfileSet(forecasting.ProfileOptions{MaxStages: opts.MaxStages}),
		graph:     forecasting.NewStageGraph(0),
		feedback:  map[string]*Feedback{},
		current:   map[string]forecasting.Sizing{},
		past:      map[string][]datedSizing{},
		workflows: map[string]string{},
		instances: map[string]*instance{},
		arrivals:  map[string]*arrivalSeries{},
		demand:    map[string]DemandSummary{},
	}
}

// feedbackWeight is the weight of the newest error in a stage's feedback.
const feedbackWeight = 0.2

func taskOf(o forecasting.Observation) forecasting.Task {
	return forecasting.Task{Stage: o.Stage, WorkflowType: o.WorkflowType, InputBytes: float64(o.PayloadInBytes), Submit: o.Scheduled}
}

func usageOf(o forecasting.Observation) forecasting.Usage {
	u := forecasting.Usage{PeakMemory: o.PeakMemoryBytes, Runtime: o.Wall}
	if o.Wall > 0 {
		secs := o.Wall.Seconds()
		u.Rates = u.Rates.With(resources.CPU, o.CPUSeconds/secs).
			With(resources.DiskBytes, (o.DiskReadBytes+o.DiskWriteBytes)/secs).
			With(resources.NetBytes, o.NetBytes/secs)
	}
	return u
}

// ingest folds a batch in at time now. Invalid observations are counted and
// skipped. Each observation is scored against the prediction in force when
// the batch arrived; the predictions of the stages in the batch are then renewed.
func (s *forecasterState) ingest(batch []forecasting.Observation, now time.Time) {
	var touched []forecasting.Observation // the last observation of each stage, in order of first appearance
	index := map[string]int{}
	for _, o := range batch {
		if err := o.Validate(); err != nil {
			s.rejected++
			continue
		}
		s.observed++
		s.score(o)
		s.profiles.Add(o, now)
		if o.Outcome == forecasting.OutcomeOK || o.PeakMemoryBytes > 0 {
			s.sizer.Observe(taskOf(o), usageOf(o), now)
		}
		s.workflows[o.Stage] = o.WorkflowType
		s.track(o, now)
		if o.Attempt == 1 && s.profiles.Get(o.Stage) != nil { // a stage within the caps
			s.countTask(o)
			at := o.Scheduled
			if at.IsZero() {
				at = o.Started
			}
			a := s.arrivals[o.Stage]
			if a == nil {
				a = &arrivalSeries{}
				s.arrivals[o.Stage] = a
			}
			a.add(at.UnixNano()/int64(s.opts.DemandBucket), s.opts.DemandBuckets)
		}
		if i, ok := index[o.Stage]; ok {
			touched[i] = o
		} else {
			index[o.Stage] = len(touched)
			touched = append(touched, o)
		}
	}
	for _, o := range touched {
		z := s.sizer.Size(forecasting.Task{Stage: o.Stage, WorkflowType: o.WorkflowType, InputBytes: float64(o.PayloadInBytes)})
		s.current[o.Stage] = z
		s.past[o.Stage] = appendDated(s.past[o.Stage], dated(now, z))
	}
}

// score compares an observation with the prediction in force for its stage.
func (s *forecasterState) score(o forecasting.Observation) {
	p, ok := s.predictionAt(o.Stage, o.Scheduled)
	if !ok || o.PeakMemoryBytes <= 0 || p.Median <= 0 {
		return // no model prediction yet
	}
	f := s.feedback[o.Stage]
	if f == nil {
		f = &Feedback{Stage: o.Stage}
		s.feedback[o.Stage] = f
	}
	// Errors are of the median estimate, not of the target, which sits
	// above it by design; both sides floored at 1 MiB, as the sizer does.
	actual := math.Max(o.PeakMemoryBytes, 1<<20)
	err := (actual - math.Max(p.Median, 1<<20)) / actual
	rtErr := 0.0
	if p.Runtime > 0 && o.Wall > 0 {
		rtErr = math.Abs(o.Wall.Seconds()-p.Runtime) / o.Wall.Seconds()
	}
	if f.Scored == 0 {
		f.MAPE, f.Bias, f.RuntimeMAPE = math.Abs(err), err, rtErr
	} else {
		f.MAPE += feedbackWeight * (math.Abs(err) - f.MAPE)
		f.Bias += feedbackWeight * (err - f.Bias)
		f.RuntimeMAPE += feedbackWeight * (rtErr - f.RuntimeMAPE)
	}
	f.Scored++
	if o.PeakMemoryBytes >= p.Low && o.PeakMemoryBytes <= p.High {
		f.Inside++
	}
	// A stage that has come to need more than predicted (its bias drifts
	// past the threshold) is refitted at once from its newest tasks: what it
	// did before the change no longer applies. A noisy stage errs both ways
	// and keeps a small bias; one that needs less is left to its window.
	if f.Scored >= 3 && f.Bias > s.opts.DriftThreshold {
		s.sizer.Forget(o.Stage)
		f.Refits++
		f.MAPE = 0
		f.Scored = 0
		f.Inside = 0
	}
}

// datedSizing is what feedback needs of a prediction, and when it came into force.
type datedSizing struct {
	At                time.Time
	Median, Low, High float64 // memory
	Runtime           float64 // seconds; 0 when not predicted
}

func dated(at time.Time, z forecasting.Sizing) datedSizing {
	d := datedSizing{At: at, Median: z.Memory.Median, Low: z.Memory.Lower, High: z.Memory.Upper}
	if z.HasRuntime {
		d.Runtime = z.Runtime.Target
	}
	return d
}

// maxPastPredictions bounds the predictions kept per stage for scoring.
const maxPastPredictions = 8

func appendDated(ps []datedSizing, p datedSizing) []datedSizing {
	ps = append(ps, p)
	if len(ps) > maxPastPredictions {
		ps = append([]datedSizing(nil), ps[len(ps)-maxPastPredictions:]...)
	}
	return ps
}

// predictionAt is the stage's prediction in force when a task was scheduled:
// the newest made at or before then, else the oldest kept.
func (s *forecasterState) predictionAt(stage string, scheduled time.Time) (datedSizing, bool) {
	ps := s.past[stage]
	if len(ps) == 0 {
		return datedSizing{}, false
	}
	for i := len(ps) - 1; i >= 0; i-- {
		if !ps[i].At.After(scheduled) {
			return ps[i], true
		}
	}
	return ps[0], true
}

// starts records where runs are from their stages' start events.
func (s *forecasterState) starts(ss []forecasting.StageStart, now time.Time) {
	for _, st := range ss {
		if st.Stage == "" || st.Attempt < 1 {
			s.rejected++
			continue
		}
		s.workflows[st.Stage] = st.WorkflowType
		s.track(forecasting.Observation{Stage: st.Stage, WorkflowType: st.WorkflowType, RunID: st.RunID, Started: st.Started}, now)
	}
}

// track records where a workflow run is (the stage it last started), and
// the edge from the stage before; a start event and the observation of the
// same attempt record it once.
func (s *forecasterState) track(o forecasting.Observation, now time.Time) {
	if o.RunID == "" {
		return
	}
	s.seq++
	in := s.instances[o.RunID]
	if in != nil && in.Stage != o.Stage && !o.Started.Before(in.Started) {
		s.graph.Observe(o.WorkflowType, in.Stage, o.Stage, o.Started.Sub(in.Started), now)
	}
	if in == nil {
		if len(s.instances) >= s.opts.MaxRunningInstances {
			s.evictInstance()
		}
		in = &instance{}
		s.instances[o.RunID] = in
	}
	if !o.Started.Before(in.Started) { // a late observation of an earlier stage does not move the run back
		in.WorkflowType, in.Stage, in.Started = o.WorkflowType, o.Stage, o.Started
	}
	in.Seq = s.seq
}

// countTask adds a first attempt to its run's tasks of the stage.
func (s *forecasterState) countTask(o forecasting.Observation) {
	in := s.instances[o.RunID]
	if in == nil {
		return
	}
	if in.Tasks == nil {
		in.Tasks = map[string]int{}
	}
	if _, ok := in.Tasks[o.Stage]; !ok && len(in.Tasks) >= maxCountedStages {
		return
	}
	in.Tasks[o.Stage]++
}

// tasksPerRun is each stage's mean tasks per run over the latest
// fanoutRuns runs that have moved past it (so that all their tasks have
// been seen).
func (s *forecasterState) tasksPerRun() map[string]float64 {
	type run struct {
		seq   int64
		tasks int
	}
	past := map[string][]run{}
	//workflowcheck:ignore collected per stage, then sorted by sequence
	for _, in := range s.instances {
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
		runs = runs[:min(len(runs), fanoutRuns)]
		sum := 0
		for _, r := range runs {
			sum += r.tasks
		}
		out[stage] = float64(sum) / float64(len(runs))
	}
	return out
}

func (s *forecasterState) evictInstance() {
	var oldest string
	//workflowcheck:ignore the minimum, ties broken by ID, does not depend on order
	for id, in := range s.instances {
		if oldest == "" || in.Seq < s.instances[oldest].Seq || (in.Seq == s.instances[oldest].Seq && id < oldest) {
			oldest = id
		}
	}
	delete(s.instances, oldest)
}

// predictions returns every stage's prediction, sorted by stage.
func (s *forecasterState) predictions() []Prediction {
	stages := make([]string, 0, len(s.current))
	//workflowcheck:ignore collected, then sorted
	for st := range s.current {
		stages = append(stages, st)
	}
	sort.Strings(stages)
	out := make([]Prediction, 0, len(stages))
	perRun := s.tasksPerRun()
	for _, st := range stages {
		z := s.current[st]
		p := Prediction{
			Stage: st, WorkflowType: s.workflows[st],
			Memory:     Bounds{z.Memory.Target, z.Memory.Lower, z.Memory.Upper},
			Duration:   Bounds{z.Runtime.Target, z.Runtime.Lower, z.Runtime.Upper},
			CPU:        Bounds{z.Resources[resources.CPU].Target, z.Resources[resources.CPU].Lower, z.Resources[resources.CPU].Upper},
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
			p.Next = append(p.Next, NextStage{Stage: t.Stage, Probability: t.Probability, DelayP50: t.DelayP50, DelayP90: t.DelayP90})
		}
		out = append(out, p)
	}
	return out
}

// InstanceForecast is where a running workflow run is and what it will run next.
type InstanceForecast struct {
	RunID        string    `json:"run_id"`
	WorkflowType string    `json:"workflow_type"`
	Stage        string    `json:"stage"` // the last stage it started
	Started      time.Time `json:"started"`
	// Next are the likely next stages with their expected start (Started + the median delay).
	Next []NextInstanceStage `json:"next"`
}

// NextInstanceStage is one likely next stage of a run.
type NextInstanceStage struct {
	Stage       string    `json:"stage"`
	Probability float64   `json:"probability"`
	ExpectedAt  time.Time `json:"expected_at"`
}

// instanceForecasts returns the tracked runs that have a next stage, sorted by run ID.
func (s *forecasterState) instanceForecasts() []InstanceForecast {
	ids := make([]string, 0, len(s.instances))
	//workflowcheck:ignore collected, then sorted
	for id := range s.instances {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var out []InstanceForecast
	for _, id := range ids {
		in := s.instances[id]
		next := s.graph.Next(in.WorkflowType, in.Stage)
		if len(next) == 0 {
			continue // its last stage: the run is finishing
		}
		f := InstanceForecast{RunID: id, WorkflowType: in.WorkflowType, Stage: in.Stage, Started: in.Started}
		for _, n := range next {
			f.Next = append(f.Next, NextInstanceStage{Stage: n.Stage, Probability: n.Probability, ExpectedAt: in.Started.Add(n.DelayP50)})
		}
		out = append(out, f)
	}
	return out
}

// feedbackList returns every stage's feedback, sorted by stage.
func (s *forecasterState) feedbackList() []Feedback {
	out := make([]Feedback, 0, len(s.feedback))
	//workflowcheck:ignore collected, then sorted
	for _, f := range s.feedback {
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Stage < out[j].Stage })
	return out
}

// checkpointData is what continue-as-new carries.
type checkpointData struct {
	Opts      ForecasterOptions
	Sizer     []byte
	Profiles  *forecasting.ProfileSet
	Graph     *forecasting.StageGraph
	Feedback  map[string]*Feedback
	Current   map[string]forecasting.Sizing
	Past      map[string][]datedSizing
	Workflows map[string]string
	Instances map[string]*instance
	Arrivals  map[string]*arrivalSeries
	Demand    map[string]DemandSummary
	Util      activities.UtilizationResult
	Seq       int64
	Observed  int64
	Rejected  int64
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
		Workflows: s.workflows, Instances: s.instances, Arrivals: s.arrivals, Demand: s.demand, Util: s.util, Seq: s.seq, Observed: s.observed, Rejected: s.rejected}
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
		return nil, fmt.Errorf("restore forecaster: %w", err)
	}
	var d checkpointData
	if err := json.NewDecoder(io.LimitReader(zr, 512<<20)).Decode(&d); err != nil {
		return nil, fmt.Errorf("restore forecaster: %w", err)
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
	adopt(&s.instances, d.Instances)
	adopt(&s.arrivals, d.Arrivals)
	adopt(&s.demand, d.Demand)
	s.seq, s.observed, s.rejected, s.util = d.Seq, d.Observed, d.Rejected, d.Util
	return s, nil
}

// arrivalSeries counts a stage's first attempts per bucket of scheduled time.
type arrivalSeries struct {
	Last   int64     // bucket index of the newest count
	Counts []float64 // oldest first, ending at Last
}

func (a *arrivalSeries) add(bucket int64, window int) {
	switch {
	case len(a.Counts) == 0:
		a.Last, a.Counts = bucket, []float64{0}
	case bucket > a.Last:
		gap := bucket - a.Last
		if gap >= int64(window) {
			a.Counts = a.Counts[:0]
			gap = 1
		}
		for range gap {
			a.Counts = append(a.Counts, 0)
		}
		a.Last = bucket
		if len(a.Counts) > window {
			a.Counts = append([]float64(nil), a.Counts[len(a.Counts)-window:]...)
		}
	case a.Last-bucket >= int64(len(a.Counts)):
		return // older than the window
	}
	a.Counts[len(a.Counts)-1-int(a.Last-bucket)]++
}

// DemandSummary is a stage's fitted demand over the horizon.
type DemandSummary struct {
	Horizon        time.Duration      `json:"horizon"`
	NextArrivals   float64            `json:"next_arrivals"`   // in the next bucket
	PeakConcurrent float64            `json:"peak_concurrent"` // tasks running at once, at most
	PeakCPU        float64            `json:"peak_cpu"`        // cores
	PeakMemory     float64            `json:"peak_memory"`     // bytes
	Weights        map[string]float64 `json:"model_weights"`
	FittedAt       time.Time          `json:"fitted_at"`
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
		var t float64
		for _, c := range a.Counts {
			t += c
		}
		cands = append(cands, cand{stage, t})
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
		sum := DemandSummary{Horizon: d.Points[len(d.Points)-1].Offset, NextArrivals: d.Points[0].Arrivals, Weights: d.Weights, FittedAt: now}
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
