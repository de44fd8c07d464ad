package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/activities"
	"github.com/headstart-dev/headstart/controlplane/internal/details"
	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/resources"
)

// StageTarget names the shaper target that replicates a stage.
type StageTarget struct {
	Stage  string
	Target shapers.Target
	// Queue is the task queue the stage's replicas poll. While the stage has
	// replicas, the coordinator's routes send its activities there (see
	// interceptors.SyncRoutes). If not set, the stage is replicated but not routed: its
	// replicas poll the queue its activities are scheduled on.
	Queue string `json:",omitempty"`
	// Replication overrides Config.Replication for this stage.
	Replication *ReplicationOptions `json:",omitempty"`
}

// Mode is what the coordinator does with its decisions.
type Mode string

// The coordinator's modes.
const (
	// ModePrefetch reserves, holds and shapes: the product's default.
	ModePrefetch Mode = "prefetch"
	// ModeDryRun asks each shaper to validate its actions and report what
	// would change (shapers.Action.DryRun); nothing is reserved, held or
	// changed, and no stage is routed.
	ModeDryRun Mode = "dry-run"
	// ModeForecastOnly decides and shows its decisions and planned replicas,
	// and acts on none of them.
	ModeForecastOnly Mode = "forecast-only"
)

// ErrInvalidConfig is wrapped by Config.Validate's errors.
var ErrInvalidConfig = errors.New("invalid coordinator configuration")

// Config is what an operator configures of a running coordinator;
// the configure update (UpdateConfigure) replaces it as a whole.
type Config struct {
	// Mode of the coordinator. If not set, ModePrefetch.
	Mode Mode `json:",omitempty"`
	// LedgerWorkflowID of the pool prefetching reserves in.
	LedgerWorkflowID string
	// Pool the ledger holds.
	Pool string
	// Interval between decisions. If not set, 2 s.
	Interval time.Duration
	// Rule and Replication tune the decisions.
	Rule        Rule
	Replication ReplicationOptions
	// Replicate lists the stages replicated ahead of demand, and how.
	Replicate []StageTarget
	// Limits lists the stages whose limits are raised ahead of their tasks
	// and lowered after them, and how.
	Limits []StageLimits `json:",omitempty"`
	// HoldWith is the kind of the shaper (a shapers.Reserver) that turns each
	// reservation into held capacity — placeholder pods with the Kubernetes
	// shaper — released with it. If not set, reservations live in the ledger only.
	HoldWith string
	// Measure, when set, measures the pool every tick before deciding: its
	// capacity and what other work holds of it come from the platform
	// through the ledger's measure update, so a reservation never promises
	// room the platform does not have. If not set, the pool's capacity is
	// the configured one and nothing else is counted as in use.
	Measure *Measure `json:",omitempty"`
}

// Measure names the shaper (a shapers.CapacityReader) that measures the
// coordinator's pool, and the pool's machines.
type Measure struct {
	// With is the kind of that shaper: "deployment" for the Kubernetes
	// shaper (the nodes' allocatable minus other pods' requests).
	With string
	// Selector picks the pool's machines: a node label selector for
	// Kubernetes. If not set, every machine.
	Selector string `json:",omitempty"`
}

// Validate reports every setting no coordinator can run with: an error
// wrapping ErrInvalidConfig and one *FieldError per setting.
func (c Config) Validate() error {
	if err := c.Check(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// Check is Validate without the ErrInvalidConfig wrapper: the joined
// *headstart.FieldErrors, for a caller that reports them under its own
// name (controlplane.Plane.Validate).
func (c Config) Check() error {
	var fs headstart.FieldErrors
	switch c.Mode {
	case "", ModePrefetch, ModeDryRun, ModeForecastOnly:
	default:
		fs.Add("mode", "%q is none of %s, %s, %s", c.Mode, ModePrefetch, ModeDryRun, ModeForecastOnly)
	}
	if c.Pool == "" {
		fs.Add("pool", "not set")
	}
	if c.LedgerWorkflowID == "" {
		fs.Add("ledger_workflow_id", "not set")
	}
	if c.Interval < 0 {
		fs.Add("interval", "%v is negative", c.Interval)
	}
	if err := c.Rule.Validate(); err != nil {
		fs = append(fs, err)
	}
	fs.Under("replication", c.Replication.Validate())
	if c.Measure != nil && c.Measure.With == "" {
		fs.Add("measure.with", "not set")
	}
	seen := map[string]bool{}
	for i, r := range c.Replicate {
		at := fmt.Sprintf("replicate[%d]", i)
		switch {
		case r.Stage == "":
			fs.Add(at+".stage", "not set")
		case seen[r.Stage]:
			fs.Add(at+".stage", "%s is listed twice", r.Stage)
		}
		if r.Target.Kind == "" {
			fs.Add(at+".target.kind", "not set")
		}
		if r.Target.Name == "" {
			fs.Add(at+".target.name", "not set")
		}
		seen[r.Stage] = true
		if r.Replication != nil {
			fs.Under(at, r.Replication.Validate())
		}
	}
	limited := map[string]bool{}
	for i, l := range c.Limits {
		at := fmt.Sprintf("limits[%d]", i)
		l.check(&fs, at)
		if limited[l.Stage] && l.Stage != "" {
			fs.Add(at+".stage", "%s is listed twice", l.Stage)
		}
		limited[l.Stage] = true
	}
	return fs.Err()
}

func (c Config) equal(o Config) bool {
	if c.Mode != o.Mode || c.LedgerWorkflowID != o.LedgerWorkflowID || c.Pool != o.Pool || c.Interval != o.Interval ||
		c.Rule != o.Rule || !c.Replication.equal(o.Replication) || c.HoldWith != o.HoldWith || len(c.Replicate) != len(o.Replicate) ||
		(c.Measure == nil) != (o.Measure == nil) || (c.Measure != nil && *c.Measure != *o.Measure) {
		return false
	}
	if !slices.Equal(c.Limits, o.Limits) {
		return false
	}
	for i, r := range c.Replicate {
		q := o.Replicate[i]
		if r.Stage != q.Stage || r.Target != q.Target || r.Queue != q.Queue || (r.Replication == nil) != (q.Replication == nil) ||
			(r.Replication != nil && !r.Replication.equal(*q.Replication)) {
			return false
		}
	}
	return true
}

func (o ReplicationOptions) equal(p ReplicationOptions) bool {
	return slices.Equal(o.Levels, p.Levels) && o.PerReplica == p.PerReplica && o.ScaleDownAfter == p.ScaleDownAfter && o.ReleaseWhenIdle == p.ReleaseWhenIdle
}

func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModePrefetch
	}
	if c.Interval <= 0 {
		c.Interval = 2 * time.Second
	}
	return c
}

// Input starts (or continues) a coordinator.
type Input struct {
	// Fleet whose forecaster the coordinator follows. If not set, "default".
	Fleet string
	Config
	// MaxTicks before continuing as new. If not set, 1000.
	MaxTicks int
	// State carried by continue-as-new.
	State State
}

// State is what the coordinator carries between runs.
type State struct {
	Held  map[string]string      // stage → the key of its prefetch reservation
	Plans map[string]ReplicaPlan // stage → replicas planned
	// Retiring are the stages whose replicas stop once their route has
	// been withdrawn for RouteGrace, by stage.
	Retiring map[string]Retiring `json:",omitempty"`
	// Limited is each limited stage's limits as last applied.
	Limited map[string]Limited `json:",omitempty"`
	// Hosts are the hosts whose agents report to the coordinator, by name,
	// as each last reported.
	Hosts map[string]headstart.HostStatus `json:",omitempty"`
}

// Status is what the coordinator answers to headstart.QueryCoordinatorState:
// its configuration as in force, and what it holds.
type Status struct {
	Config Config
	State  State
}

// Retiring is a stage on its way to zero replicas: no longer replicated,
// or planned down to none.
type Retiring struct {
	Target shapers.Target
	Since  time.Time // when its route was withdrawn
	Reason string    // why its replicas stop
	// Queue its replicas poll, if routed: they stop once its backlog is
	// drained (or MaxDrain after Since), so that no task routed there
	// before the route went is stranded.
	Queue string `json:",omitempty"`
}

// HostTimeout is how long an action on a host's target waits for the
// host's agent to take it; then it fails and the next tick tries again.
const HostTimeout = 10 * time.Second

// MaxHosts bounds the hosts the coordinator keeps reports of; reports of
// hosts past it are dropped.
const MaxHosts = 10000

// RouteGrace is how long a stage's route is withdrawn before its replicas
// are stopped, so that workers syncing their routes (every second by
// default) no longer send it tasks there.
const RouteGrace = 5 * time.Second

// MaxDrain is how long a retiring stage's replicas keep serving the tasks
// still queued for them after its route went, before they are stopped
// whatever the backlog: a bound on what a backlog count that never reaches
// zero can hold.
const MaxDrain = 10 * time.Minute

// ReconcileEvery is how many ticks pass between re-applications of every
// replicated stage's plan, so that a target that lost its replicas (a
// restarted control worker, a deleted Deployment) gets them back.
const ReconcileEvery = 5

// quickTimeout bounds an attempt of the coordinator's activities that only
// query the forecaster or update the ledger.
const quickTimeout = 10 * time.Second

// Snapshot is what the coordinator sees on each tick.
type Snapshot struct {
	Capacity, Free resources.Vector
	// InUse is what other work holds of a measured pool, and Measured when
	// it was measured (zero: the capacity is configured).
	InUse    resources.Vector `json:",omitempty"`
	Measured time.Time        `json:",omitempty"`
	Upcoming []Upcoming
	// Peak is each stage's predicted peak of concurrent tasks.
	Peak map[string]float64
	// Running is how many runs are in each stage now.
	Running map[string]float64 `json:",omitempty"`
}

// SnapshotInput names what to look at.
type SnapshotInput struct {
	Fleet            string
	LedgerWorkflowID string
	// MinProbability of a run's next stage for it to count. If not set, 0.5.
	MinProbability float64
	// Horizon: a run counts towards a stage's peak when the stage is expected
	// to start within it (the shaper's actuation time plus the lead); runs
	// further off do not hold capacity yet. If not set, any time.
	Horizon time.Duration
}

// Activities are the coordinator's read-only activities: register them on
// the control worker (controlplane.Register does).
type Activities struct{ Client client.Client }

// Snapshot reads the forecaster's predictions and running instances and the
// pool's status, and turns them into upcoming stages: for each stage, the
// runs expected to start it next (weighted by probability), the earliest
// expected start, and their combined need.
func (a *Activities) Snapshot(ctx context.Context, in SnapshotInput) (Snapshot, error) {
	fid := headstart.ForecasterWorkflowID(in.Fleet)
	preds, err := activities.Query[[]headstart.Prediction](ctx, a.Client, fid, headstart.QueryPredictions)
	if err != nil {
		return Snapshot{}, err
	}
	inst, err := activities.Query[[]headstart.InstanceForecast](ctx, a.Client, fid, headstart.QueryInstances)
	if err != nil {
		return Snapshot{}, err
	}
	pool, err := activities.Query[headstart.PoolStatus](ctx, a.Client, in.LedgerWorkflowID, headstart.QueryPool)
	if err != nil {
		return Snapshot{}, err
	}
	return snapshotFrom(preds, inst, pool, in, time.Now()), nil
}

// ErrNoBacklogStats is returned by Backlog when the server does not report
// task queue statistics (servers before 1.25).
var ErrNoBacklogStats = errors.New("coordinator: the server reports no task queue statistics")

// Backlog is how many activity tasks wait in queue, as the server counts
// them (approximately), in the namespace of the workflow asking.
func (a *Activities) Backlog(ctx context.Context, queue string) (int64, error) {
	resp, err := a.Client.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
		Namespace:     activity.GetInfo(ctx).Namespace,
		TaskQueue:     &taskqueuepb.TaskQueue{Name: queue, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
		TaskQueueType: enumspb.TASK_QUEUE_TYPE_ACTIVITY,
		ReportStats:   true,
	})
	if err != nil {
		return 0, fmt.Errorf("describe task queue %s: %w", queue, err)
	}
	if resp.GetStats() == nil {
		return 0, ErrNoBacklogStats
	}
	return resp.GetStats().GetApproximateBacklogCount(), nil
}

// snapshotFrom aggregates running instances into upcoming stages. A stage's
// need and peak count tasks: each run contributes the stage's tasks per run
// (its fan-out). Its peak counts the runs expected within the horizon and
// those already in it (their tasks are queued or running). A run overdue
// in its stage by twice the stage's longest duration (plus 10 s; see
// longest) counts nowhere.
func snapshotFrom(preds []headstart.Prediction, inst []headstart.InstanceForecast, pool headstart.PoolStatus, in SnapshotInput, now time.Time) Snapshot {
	if in.MinProbability <= 0 {
		in.MinProbability = 0.5
	}
	byStage := map[string]headstart.Prediction{}
	for _, p := range preds {
		byStage[p.Stage] = p
	}
	tasks := func(stage string) float64 { return math.Max(byStage[stage].TasksPerRun, 1) }
	type agg struct {
		runs, maxP float64
		start      time.Time
	}
	up := map[string]*agg{}
	peak, running := map[string]float64{}, map[string]float64{}
	for _, f := range inst {
		// A run overdue in its stage by twice the stage's longest duration
		// is stale (its end was not seen: a lost batch, a terminated run):
		// it adds to no peak and no upcoming stage.
		if d := longest(byStage[f.Stage]); !f.Started.IsZero() && now.Sub(f.Started).Seconds() > 2*d+10 {
			continue
		}
		running[f.Stage]++
		if len(f.Next) > 0 {
			peak[f.Stage] += tasks(f.Stage)
		}
		for _, n := range f.Next {
			if n.Probability < in.MinProbability {
				continue
			}
			a := up[n.Stage]
			if a == nil {
				a = &agg{start: n.ExpectedAt}
				up[n.Stage] = a
			}
			a.runs += n.Probability
			a.maxP = math.Max(a.maxP, n.Probability)
			if n.ExpectedAt.Before(a.start) {
				a.start = n.ExpectedAt
			}
			if in.Horizon <= 0 || n.ExpectedAt.Sub(now) <= in.Horizon {
				peak[n.Stage] += n.Probability * tasks(n.Stage)
			}
		}
	}
	s := Snapshot{Capacity: pool.Capacity, Free: pool.Free, InUse: pool.InUse, Measured: pool.Measured, Peak: map[string]float64{}, Running: running}
	for stage, a := range up {
		p := byStage[stage]
		per := resources.Vector{}.With(resources.CPU, p.CPU.Target).With(resources.Memory, p.Memory.Target)
		n := math.Ceil(a.runs * tasks(stage))
		s.Upcoming = append(s.Upcoming, Upcoming{Stage: stage, Start: a.start, Confidence: a.maxP * p.Confidence, Need: per.ClampZero().Scale(n), Tasks: int(n)})
	}
	for stage, n := range peak {
		s.Peak[stage] = n
	}
	for _, p := range preds {
		if peakOf(p) > s.Peak[p.Stage] {
			s.Peak[p.Stage] = peakOf(p)
		}
	}
	sort.Slice(s.Upcoming, func(i, j int) bool { return s.Upcoming[i].Stage < s.Upcoming[j].Stage })
	return s
}

// longest is how long, in seconds, a run may take in p's stage: its
// longest predicted duration, or, if shorter, the longest 90th-percentile
// delay its runs have taken to start a next stage. What runs have shown
// bounds what a model's interval says, which a young or erratic stage
// widens far past anything seen.
func longest(p headstart.Prediction) float64 {
	d := p.Duration.Upper
	var moved float64
	for _, n := range p.Next {
		moved = max(moved, n.DelayP90.Seconds())
	}
	if moved > 0 && (d <= 0 || moved < d) {
		d = moved
	}
	return d
}

func peakOf(p headstart.Prediction) float64 {
	if p.Demand == nil {
		return 0
	}
	return p.Demand.PeakConcurrent
}

// Coordinator is the prefetch loop: every Interval it takes a snapshot of
// the forecast and the pool, applies the prefetch rule (Decide) to each
// upcoming stage and reserves what it says, releases reservations whose
// stage is no longer upcoming, and plans the replicas of the stages it
// replicates (PlanReplicas), shaping them when the plan changes and every
// ReconcileEvery ticks. Asked to rebalance (UpdateRebalance), it migrates a
// stage's replicas off a host; asked to configure (UpdateConfigure), it
// takes a new Config. Its routes (QueryRoutes) tell workers where
// replicated stages' activities go. Each action's activity carries the
// summary a person reads in the Web UI.
func Workflow(ctx workflow.Context, in Input) error {
	if in.Fleet == "" {
		in.Fleet = "default"
	}
	if in.MaxTicks <= 0 {
		in.MaxTicks = 1000
	}
	st := in.State
	if st.Held == nil {
		st.Held = map[string]string{}
	}
	if st.Plans == nil {
		st.Plans = map[string]ReplicaPlan{}
	}
	if st.Retiring == nil {
		st.Retiring = map[string]Retiring{}
	}
	if st.Limited == nil {
		st.Limited = map[string]Limited{}
	}
	if st.Hosts == nil {
		st.Hosts = map[string]headstart.HostStatus{}
	}
	// Hosts' agents report as they run; a report changes no decision by itself.
	heartbeats := workflow.GetSignalChannel(ctx, headstart.HostHeartbeatSignal)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var h headstart.HostStatus
			if !heartbeats.Receive(ctx, &h) {
				return
			}
			if _, known := st.Hosts[h.Host]; h.Host != "" && (known || len(st.Hosts) < MaxHosts) {
				st.Hosts[h.Host] = h
			}
		}
	})
	logger := workflow.GetLogger(ctx)
	var ctl *Activities
	var pf *activities.Prefetcher
	var last []Decision
	if err := workflow.SetQueryHandlerWithOptions(ctx, headstart.QueryDecisions, func() ([]Decision, error) { return last, nil },
		workflow.QueryHandlerOptions{Description: "The last tick's decision for each upcoming stage, with its reason."}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandlerWithOptions(ctx, headstart.QueryCoordinatorState, func() (Status, error) { return Status{Config: in.Config.withDefaults(), State: st}, nil },
		workflow.QueryHandlerOptions{Description: "Each stage's held reservation and planned replicas, and the stages on their way to none."}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandlerWithOptions(ctx, headstart.QueryRoutes, func() (map[string]string, error) { return routes(in.Config, st), nil },
		workflow.QueryHandlerOptions{Description: "Stage → the task queue of its replicas, for workers to route the stage's activities to."}); err != nil {
		return err
	}
	act := func(summary string) workflow.Context {
		return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute, Summary: summary})
	}
	// quick is for the activities that only ask the forecaster and the
	// ledger: a worker that dies running one delays the tick by 10 s, not a minute.
	quick := func(summary string) workflow.Context {
		return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: quickTimeout, Summary: summary})
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, headstart.UpdateRebalance,
		func(ctx workflow.Context, m shapers.Migration) (shapers.Moved, error) {
			var moved shapers.Moved
			err := workflow.ExecuteActivity(act(fmt.Sprintf("migrate %s off %s: %s", m.Target, m.From, m.Reason)), pf.Migrate, m).Get(ctx, &moved)
			return moved, err
		},
		workflow.UpdateHandlerOptions{
			Validator:   func(_ workflow.Context, m shapers.Migration) error { return m.Validate() },
			Description: "Move a stage's replicas off a hot host, through its shaper (e.g. evictions within disruption budgets).",
		}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, headstart.UpdateConfigure,
		func(ctx workflow.Context, c Config) (bool, error) {
			if c.equal(in.Config) {
				return false, nil
			}
			st = reconfigured(st, in.Config, c, workflow.Now(ctx))
			in.Config = c
			return true, nil
		},
		workflow.UpdateHandlerOptions{
			Validator:   func(_ workflow.Context, c Config) error { return c.Validate() },
			Description: "Replace the coordinator's configuration (mode, pool, rule, stages to replicate); completes with whether anything changed.",
		}); err != nil {
		return err
	}
	reconcile := workflow.GetVersion(ctx, "reconcile-replicas", workflow.DefaultVersion, 1) >= 1
	for tick := 0; tick < in.MaxTicks; tick++ {
		if err := workflow.Sleep(ctx, in.Config.withDefaults().Interval); err != nil {
			return err
		}
		cfg := in.Config.withDefaults() // as configured when the tick starts
		rule := cfg.Rule.withDefaults()
		if cfg.Measure != nil && workflow.GetVersion(ctx, "measure-pool", workflow.DefaultVersion, 1) >= 1 {
			m := activities.MeasureInput{Kind: cfg.Measure.With, Selector: cfg.Measure.Selector, LedgerWorkflowID: cfg.LedgerWorkflowID}
			// Not retried: the next tick measures again, and until then the
			// ledger keeps the last measurement.
			once := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Second,
				RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1}, Summary: fmt.Sprintf("measure pool %s through %s", cfg.Pool, cfg.Measure.With)})
			if err := workflow.ExecuteActivity(once, pf.Measure, m).Get(ctx, nil); err != nil {
				logger.Warn("pool not measured this tick: deciding with its last measurement", "pool", cfg.Pool, "error", err)
			}
		}
		var snap Snapshot
		if err := workflow.ExecuteActivity(quick("snapshot of forecast and pool"), ctl.Snapshot, SnapshotInput{Fleet: in.Fleet, LedgerWorkflowID: cfg.LedgerWorkflowID, Horizon: rule.ActuationTime + rule.Lead}).Get(ctx, &snap); err != nil {
			logger.Warn("no snapshot this tick: the replica plans stand", "error", err)
			// A target that lost its replicas (a restarted control worker)
			// gets them back even while the forecast cannot be read.
			if reconcile && tick%ReconcileEvery == ReconcileEvery-1 && cfg.Mode == ModePrefetch &&
				workflow.GetVersion(ctx, "reconcile-without-snapshot", workflow.DefaultVersion, 1) >= 1 {
				for _, r := range cfg.Replicate {
					n := st.Plans[r.Stage].Replicas
					if _, retiring := st.Retiring[r.Stage]; n == 0 || retiring {
						continue
					}
					reason := fmt.Sprintf("reconcile: %d planned; the forecast cannot be read (%v)", n, err)
					a := shapers.Action{Target: r.Target, Desired: shapers.Desired{Replicas: shapers.Int(n)}, Reason: reason}
					if err := workflow.ExecuteActivity(act(fmt.Sprintf("replicate %s ×%d: %s", r.Stage, n, reason)), pf.Shape, a).Get(ctx, nil); err != nil {
						logger.Warn("shape failed", "stage", r.Stage, "error", err)
					}
				}
			}
			continue
		}
		now := workflow.Now(ctx)
		free := snap.Free
		last = last[:0]
		upcoming := map[string]bool{}
		for _, u := range snap.Upcoming {
			upcoming[u.Stage] = true
			d := Decide(u, now, snap.Capacity, free, cfg.Rule)
			last = append(last, d)
			if d.Kind != DecideReserve && d.Kind != DecidePartial {
				continue
			}
			if _, held := st.Held[u.Stage]; held || cfg.Mode != ModePrefetch {
				continue
			}
			key := fmt.Sprintf("prefetch/%s/%d", u.Stage, u.Start.Unix())
			req := headstart.ReserveRequest{Key: key, Pool: cfg.Pool, Stage: u.Stage, Resources: d.Amount, TTL: 10 * time.Minute, Soft: true}
			var res headstart.ReserveResult
			if err := workflow.ExecuteActivity(quick(d.Summary), pf.Reserve, activities.ReserveInput{LedgerWorkflowID: cfg.LedgerWorkflowID, Request: req}).Get(ctx, &res); err != nil {
				logger.Warn("reserve failed", "stage", u.Stage, "error", err)
				continue
			}
			st.Held[u.Stage] = key
			free = free.Sub(d.Amount).ClampZero()
			if cfg.HoldWith != "" && !res.Reservation.Resources.IsZero() {
				h := shapers.Hold{Key: key, Stage: u.Stage, Replicas: max(u.Tasks, 1)}
				h.Resources = res.Reservation.Resources.Scale(1 / float64(h.Replicas))
				summary := fmt.Sprintf("hold %s for %s as %d × %s", human(res.Reservation.Resources), u.Stage, h.Replicas, human(h.Resources))
				if err := workflow.ExecuteActivity(act(summary), pf.Hold, activities.HoldInput{Kind: cfg.HoldWith, Hold: h}).Get(ctx, nil); err != nil {
					logger.Warn("hold failed; the reservation stays in the ledger", "stage", u.Stage, "error", err)
				}
			}
		}
		// Release what is no longer upcoming: the stage started, or its prediction lapsed.
		for _, stage := range sortedKeys(st.Held) {
			if upcoming[stage] {
				continue
			}
			key := st.Held[stage]
			if cfg.HoldWith != "" {
				if err := workflow.ExecuteActivity(act("release the hold "+key), pf.ReleaseHold,
					activities.ReleaseHoldInput{Kind: cfg.HoldWith, Key: key}).Get(ctx, nil); err != nil {
					logger.Warn("release of the hold failed", "stage", stage, "error", err)
					continue
				}
			}
			if err := workflow.ExecuteActivity(quick("release "+key+": "+stage+" is no longer upcoming"), pf.Release,
				activities.ReleaseInput{LedgerWorkflowID: cfg.LedgerWorkflowID, Key: key}).Get(ctx, nil); err != nil {
				logger.Warn("release failed", "stage", stage, "error", err)
				continue
			}
			delete(st.Held, stage)
		}
		again := reconcile && tick%ReconcileEvery == ReconcileEvery-1
		for _, r := range cfg.Replicate {
			opts := cfg.Replication
			if r.Replication != nil {
				opts = *r.Replication
			}
			prev := st.Plans[r.Stage]
			plan, reason := PlanReplicas(prev, snap.Peak[r.Stage], now, opts)
			if plan.Replicas == 0 && prev.Replicas > 0 && r.Queue != "" && cfg.Mode == ModePrefetch {
				// Withdraw the route now; its replicas stop RouteGrace later, below.
				if _, retiring := st.Retiring[r.Stage]; !retiring {
					st.Retiring[r.Stage] = Retiring{Target: r.Target, Since: now, Reason: reason, Queue: r.Queue}
				}
				continue
			}
			delete(st.Retiring, r.Stage)
			if plan.Replicas != prev.Replicas || (again && cfg.Mode == ModePrefetch) {
				if plan.Replicas == prev.Replicas {
					reason = fmt.Sprintf("reconcile: %s", reason)
				}
				a := shapers.Action{Target: r.Target, Desired: shapers.Desired{Replicas: shapers.Int(plan.Replicas)}, Reason: reason, DryRun: cfg.Mode == ModeDryRun}
				summary := fmt.Sprintf("replicate %s ×%d: %s", r.Stage, plan.Replicas, reason)
				if a.DryRun {
					summary = "dry run: " + summary
				}
				if cfg.Mode != ModeForecastOnly {
					if err := workflow.ExecuteActivity(act(summary), pf.Shape, a).Get(ctx, nil); err != nil {
						logger.Warn("shape failed", "stage", r.Stage, "error", err)
						continue
					}
				}
			}
			st.Plans[r.Stage] = plan
		}
		if len(cfg.Limits) > 0 && workflow.GetVersion(ctx, "stage-limits", workflow.DefaultVersion, 1) >= 1 {
			for _, l := range cfg.Limits {
				var d *Decision
				for i := range last {
					if last[i].Stage == l.Stage {
						d = &last[i]
					}
				}
				prev, applied := st.Limited[l.Stage]
				next, why := planLimits(l, prev, d, snap.Running[l.Stage], now)
				if next.Limits == prev.Limits && applied && !(again && cfg.Mode == ModePrefetch) {
					st.Limited[l.Stage] = next
					continue
				}
				if next.Limits.IsZero() {
					st.Limited[l.Stage] = next
					continue
				}
				if next.Limits == prev.Limits && applied {
					why = "reconcile: " + why
				}
				limits := next.Limits
				a := shapers.Action{Target: l.Target, Desired: shapers.Desired{Resources: &limits}, Reason: why, DryRun: cfg.Mode == ModeDryRun}
				verb := "lower"
				if next.Raised {
					verb = "raise"
				}
				summary := fmt.Sprintf("%s the limits of %s to %s: %s", verb, l.Target, human(limits), why)
				if a.DryRun {
					summary = "dry run: " + summary
				}
				if cfg.Mode != ModeForecastOnly {
					opts := workflow.ActivityOptions{StartToCloseTimeout: time.Minute, Summary: summary}
					if l.Target.Host != "" {
						// A host whose agent is down delays the tick by
						// HostTimeout, not for as long as it is down.
						opts.TaskQueue, opts.ScheduleToStartTimeout = headstart.HostQueue(l.Target.Host), HostTimeout
					}
					if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), pf.Shape, a).Get(ctx, nil); err != nil {
						logger.Warn("limits not applied; trying again next tick", "stage", l.Stage, "target", l.Target.String(), "error", err)
						continue
					}
				}
				st.Limited[l.Stage] = next
			}
		}
		// Retiring stages: stop their replicas once their route has been
		// withdrawn for RouteGrace and the tasks routed before are taken.
		for _, stage := range sortedKeys(st.Retiring) {
			r := st.Retiring[stage]
			if now.Sub(r.Since) < RouteGrace {
				continue
			}
			if cfg.Mode == ModePrefetch && r.Queue != "" && now.Sub(r.Since) < MaxDrain &&
				workflow.GetVersion(ctx, "drain-before-retire", workflow.DefaultVersion, 1) >= 1 {
				var backlog int64
				err := workflow.ExecuteActivity(quick("backlog of "+r.Queue), ctl.Backlog, r.Queue).Get(ctx, &backlog)
				switch {
				case err != nil:
					logger.Warn("backlog unknown: stopping the replicas without waiting for it", "stage", stage, "queue", r.Queue, "error", err)
				case backlog > 0:
					logger.Info("replicas keep serving their backlog before they stop", "stage", stage, "queue", r.Queue, "backlog", backlog)
					continue
				}
			}
			if cfg.Mode == ModePrefetch {
				a := shapers.Action{Target: r.Target, Desired: shapers.Desired{Replicas: shapers.Int(0)}, Reason: r.Reason}
				if err := workflow.ExecuteActivity(act(fmt.Sprintf("replicate %s ×0: %s", stage, a.Reason)), pf.Shape, a).Get(ctx, nil); err != nil {
					logger.Warn("shape failed", "stage", stage, "error", err)
					continue
				}
			}
			delete(st.Retiring, stage)
			if replicated(cfg, stage) {
				st.Plans[stage] = ReplicaPlan{}
			} else {
				delete(st.Plans, stage)
			}
		}
		workflow.SetCurrentDetails(ctx, coordinatorDetails(cfg, snap, last, st))
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			break
		}
	}
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	in.State = st
	return workflow.NewContinueAsNewError(ctx, headstart.CoordinatorWorkflowName, in)
}

// replicated reports whether cfg replicates stage.
func replicated(cfg Config, stage string) bool {
	for _, r := range cfg.Replicate {
		if r.Stage == stage {
			return true
		}
	}
	return false
}

// routes are the stages workers send to their replicas: those replicated
// with a queue, planned with replicas and not retiring, in prefetch mode.
func routes(cfg Config, st State) map[string]string {
	out := map[string]string{}
	if cfg.withDefaults().Mode != ModePrefetch {
		return out
	}
	for _, r := range cfg.Replicate {
		if _, retiring := st.Retiring[r.Stage]; r.Queue != "" && !retiring && st.Plans[r.Stage].Replicas > 0 {
			out[r.Stage] = r.Queue
		}
	}
	return out
}

// reconfigured is the state after the configuration changes from old to
// next at now: stages no longer replicated retire (their route goes at
// once, their replicas after RouteGrace), and a switch into prefetch mode
// forgets the plans made without acting, so the next tick applies them.
func reconfigured(st State, old, next Config, now time.Time) State {
	for _, r := range old.Replicate {
		if !replicated(next, r.Stage) && st.Plans[r.Stage].Replicas > 0 {
			st.Retiring[r.Stage] = Retiring{Target: r.Target, Since: now, Reason: r.Stage + " is no longer replicated", Queue: r.Queue}
		}
	}
	if next.withDefaults().Mode == ModePrefetch && old.withDefaults().Mode != ModePrefetch {
		for _, stage := range sortedKeys(st.Plans) {
			if _, retiring := st.Retiring[stage]; !retiring {
				delete(st.Plans, stage)
			}
		}
	}
	return st
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	//workflowcheck:ignore collected, then sorted
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// coordinatorDetails is the Markdown the Web UI shows: decisions first.
//
//workflowcheck:ignore fmt formats strings and numbers here, deterministically
func coordinatorDetails(cfg Config, snap Snapshot, ds []Decision, st State) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**Headstart coordinator** (%s)\n\n", cfg.Mode)
	fmt.Fprintf(&b, "Pool %s: capacity %s, free %s", cfg.Pool, human(snap.Capacity), human(snap.Free))
	if !snap.Measured.IsZero() {
		fmt.Fprintf(&b, "; other work holds %s (measured %s)", human(snap.InUse), snap.Measured.UTC().Format(time.TimeOnly))
	}
	b.WriteString("\n\n| stage | decision | amount | reason |\n|---|---|---|---|\n")
	for _, d := range ds {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", details.Short(d.Stage), d.Kind, human(d.Amount), d.Reason)
	}
	b.WriteString("\n| stage | held reservation | replicas |\n|---|---|---|\n")
	stages := map[string]bool{}
	for s := range st.Held { //workflowcheck:ignore collected, then sorted
		stages[s] = true
	}
	for s := range st.Plans { //workflowcheck:ignore collected, then sorted
		stages[s] = true
	}
	for _, s := range sortedKeys(stages) {
		fmt.Fprintf(&b, "| %s | %s | %d |\n", details.Short(s), st.Held[s], st.Plans[s].Replicas)
	}
	if len(cfg.Limits) > 0 {
		b.WriteString("\n| stage | target | limits | raised |\n|---|---|---|---|\n")
		for _, l := range cfg.Limits {
			lim := st.Limited[l.Stage]
			fmt.Fprintf(&b, "| %s | %s | %s | %t |\n", details.Short(l.Stage), l.Target, human(lim.Limits), lim.Raised)
		}
	}
	if len(st.Hosts) > 0 {
		b.WriteString("\n| host | capacity | in use | hot | shapes | reported |\n|---|---|---|---|---|---|\n")
		for _, name := range sortedKeys(st.Hosts) {
			h := st.Hosts[name]
			fmt.Fprintf(&b, "| %s | %s | %s | %t | %s | %s |\n", name, human(h.Capacity), human(h.Usage), h.Hot(HotShare),
				strings.Join(h.Shapes, ", "), h.At.UTC().Format(time.TimeOnly))
		}
	}
	return b.String()
}

// HotShare is the share of a host's CPU or memory in use past which the
// coordinator shows it as hot.
const HotShare = 0.8
