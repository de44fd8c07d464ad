package coordinator

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/activities"
	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/resources"
)

// TestCoordinatorReservesReleasesAndReplicates: a stage predicted to start
// soon is reserved for (once), replicated for its predicted peak, and its
// reservation released when it is no longer upcoming.
func TestCoordinatorReservesReleasesAndReplicates(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: headstart.CoordinatorWorkflowName})
	var ctl *Activities
	var pf *activities.Prefetcher

	var mu sync.Mutex
	ticks := 0
	env.OnActivity(ctl.Snapshot, mock.Anything, mock.Anything).Return(func(ctx context.Context, _ SnapshotInput) (Snapshot, error) {
		mu.Lock()
		defer mu.Unlock()
		ticks++
		s := Snapshot{Capacity: vec(16, 64), Free: vec(16, 64), Peak: map[string]float64{"W/train": 25}}
		if ticks <= 3 { // train is coming for three ticks, then it has started
			s.Upcoming = []Upcoming{{Stage: "W/train", Start: env.Now().Add(4 * time.Second), Confidence: 0.95, Need: vec(4, 8)}}
		}
		return s, nil
	})
	var reserved []activities.ReserveInput
	env.OnActivity(pf.Reserve, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.ReserveInput) (headstart.ReserveResult, error) {
		mu.Lock()
		defer mu.Unlock()
		reserved = append(reserved, in)
		return headstart.ReserveResult{Reservation: headstart.Reservation{Key: in.Request.Key}}, nil
	})
	var released []string
	env.OnActivity(pf.Release, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.ReleaseInput) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		released = append(released, in.Key)
		return true, nil
	})
	var shaped []shapers.Action
	env.OnActivity(pf.Shape, mock.Anything, mock.Anything).Return(func(ctx context.Context, a shapers.Action) (shapers.Status, error) {
		mu.Lock()
		defer mu.Unlock()
		shaped = append(shaped, a)
		return shapers.Status{Target: a.Target, Replicas: *a.Desired.Replicas}, nil
	})

	env.ExecuteWorkflow(headstart.CoordinatorWorkflowName, Input{
		Fleet: "f", MaxTicks: 6, Config: Config{LedgerWorkflowID: "ledger", Pool: "p", Interval: time.Second,
			Replicate: []StageTarget{{Stage: "W/train", Target: shapers.Target{Kind: "workerpool", Name: "train-replicas"}}}},
	})
	require.ErrorContains(t, env.GetWorkflowError(), "continue as new", "after MaxTicks it continues as new")

	require.Len(t, reserved, 1, "reserved once while upcoming, not every tick")
	r := reserved[0]
	require.Equal(t, "ledger", r.LedgerWorkflowID)
	require.Equal(t, "W/train", r.Request.Stage)
	require.True(t, r.Request.Soft)
	require.InDelta(t, 4*1.125, r.Request.Resources.Get(0), 1e-9, "confidence 0.95: a quarter of the 50% margin")
	require.Equal(t, []string{r.Request.Key}, released, "released once train was no longer upcoming")
	require.Len(t, shaped, 2, "replicas planned once for a peak of 25 tasks, and re-applied once by the reconcile of tick %d", ReconcileEvery)
	for _, a := range shaped {
		require.Equal(t, 4, *a.Desired.Replicas)
		require.Equal(t, "train-replicas", a.Target.Name)
	}
	require.Contains(t, shaped[1].Reason, "reconcile")
}

func TestSnapshotAggregatesRunsIntoUpcomingStages(t *testing.T) {
	at := t0.Add(time.Minute)
	preds := []headstart.Prediction{{Stage: "W/train", Confidence: 0.9, CPU: headstart.Bounds{Target: 2}, Memory: headstart.Bounds{Target: 1 << 30}}}
	inst := []headstart.InstanceForecast{
		{RunID: "a", Next: []headstart.NextInstanceStage{{Stage: "W/train", Probability: 1, ExpectedAt: at.Add(time.Second)}}},
		{RunID: "b", Next: []headstart.NextInstanceStage{{Stage: "W/train", Probability: 0.8, ExpectedAt: at}}},
		{RunID: "c", Next: []headstart.NextInstanceStage{{Stage: "W/train", Probability: 0.2, ExpectedAt: at}}}, // unlikely: ignored
	}
	s := snapshotFrom(preds, inst, headstart.PoolStatus{Capacity: vec(8, 32), Free: vec(6, 30)}, SnapshotInput{}, at)
	require.Len(t, s.Upcoming, 1)
	u := s.Upcoming[0]
	require.Equal(t, at, u.Start, "the earliest expected start")
	require.InDelta(t, 0.9, u.Confidence, 1e-9)
	require.Equal(t, vec(4, 2), u.Need, "two runs (1.8 rounded up) × 2 CPU / 1 GiB")
	require.InDelta(t, 1.8, s.Peak["W/train"], 1e-9)
	require.Equal(t, vec(6, 30), s.Free)
}

// TestSnapshotCountsTasksWithinTheHorizonAndInTheStage: a fan-out stage's
// peak counts its tasks per run — for runs expected within the horizon and
// for runs already in it, until they are long overdue — and its need too.
func TestSnapshotCountsTasksWithinTheHorizonAndInTheStage(t *testing.T) {
	now := t0.Add(time.Minute)
	preds := []headstart.Prediction{
		{Stage: "W/extract", Duration: headstart.Bounds{Upper: 8}},
		{Stage: "W/transform", Confidence: 0.9, CPU: headstart.Bounds{Target: 1}, Duration: headstart.Bounds{Target: 2, Upper: 3}, TasksPerRun: 8},
	}
	next := func(at time.Time) []headstart.NextInstanceStage {
		return []headstart.NextInstanceStage{{Stage: "W/transform", Probability: 1, ExpectedAt: at}}
	}
	inst := []headstart.InstanceForecast{
		{RunID: "soon", Stage: "W/extract", Started: now.Add(-5 * time.Second), Next: next(now.Add(3 * time.Second))},
		{RunID: "later", Stage: "W/extract", Started: now, Next: next(now.Add(8 * time.Second))},
		{RunID: "in", Stage: "W/transform", Started: now.Add(-2 * time.Second), Next: []headstart.NextInstanceStage{{Stage: "W/train", Probability: 1, ExpectedAt: now}}},
		{RunID: "stuck", Stage: "W/transform", Started: now.Add(-time.Minute), Next: []headstart.NextInstanceStage{{Stage: "W/train", Probability: 1, ExpectedAt: now}}},
	}
	s := snapshotFrom(preds, inst, headstart.PoolStatus{Capacity: vec(64, 64), Free: vec(64, 64)}, SnapshotInput{Horizon: 6 * time.Second}, now)
	require.InDelta(t, 16, s.Peak["W/transform"], 1e-9, "8 tasks of the run due in 3 s and 8 of the run in the stage; not the run due in 8 s, nor the one stuck for a minute")
	for _, u := range s.Upcoming {
		if u.Stage == "W/transform" {
			require.Equal(t, vec(16, 0), u.Need, "both runs expected, 8 tasks × 1 CPU each")
		}
		if u.Stage == "W/train" {
			require.Equal(t, 1, u.Tasks, "train is upcoming for the run in transform, not for the one stuck there (its end was never seen)")
		}
	}
}

// TestSnapshotCountsARunStaleByWhatRunsHaveShown: a stage whose duration
// interval is wide (a young or erratic model) does not keep a run whose end
// was never seen counted for hours: once it is overdue by twice the longest
// delay runs have taken to move on from the stage, it counts nowhere.
func TestSnapshotCountsARunStaleByWhatRunsHaveShown(t *testing.T) {
	now := t0.Add(time.Hour)
	preds := []headstart.Prediction{{Stage: "W/transform", Duration: headstart.Bounds{Target: 0.2, Upper: 1e30},
		Next: []headstart.NextStage{{Stage: "W/train", Probability: 1, DelayP50: 300 * time.Millisecond, DelayP90: 2 * time.Second}}}}
	run := func(id string, ago time.Duration) headstart.InstanceForecast {
		return headstart.InstanceForecast{RunID: id, Stage: "W/transform", Started: now.Add(-ago),
			Next: []headstart.NextInstanceStage{{Stage: "W/train", Probability: 1, ExpectedAt: now.Add(-ago + 300*time.Millisecond)}}}
	}
	inst := []headstart.InstanceForecast{run("moving on", 5*time.Second), run("lost", 5*time.Minute)}
	s := snapshotFrom(preds, inst, headstart.PoolStatus{Capacity: vec(8, 8), Free: vec(8, 8)}, SnapshotInput{}, now)
	require.Len(t, s.Upcoming, 1)
	require.Equal(t, 1, s.Upcoming[0].Tasks, "train is upcoming for the run 5 s in transform (within 2 × 2 s + 10 s), not for the one 5 minutes in")
}

// TestCoordinatorRebalancesWhenAsked: a rebalance update migrates the
// stage's replicas off the host through the Migrate activity and completes
// with what moved; one without a host is rejected before anything runs.
func TestCoordinatorRebalancesWhenAsked(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: headstart.CoordinatorWorkflowName})
	var ctl *Activities
	var pf *activities.Prefetcher
	env.OnActivity(ctl.Snapshot, mock.Anything, mock.Anything).Return(Snapshot{Capacity: vec(8, 8), Free: vec(8, 8)}, nil)
	var migrations []shapers.Migration
	env.OnActivity(pf.Migrate, mock.Anything, mock.Anything).Return(func(ctx context.Context, m shapers.Migration) (shapers.Moved, error) {
		migrations = append(migrations, m)
		return shapers.Moved{Moved: []string{"train-1"}, Blocked: []string{"train-2"}}, nil
	})
	target := shapers.Target{Kind: "deployment", Name: "stages/train"}
	var moved shapers.Moved
	var movedErr, rejected error
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(headstart.UpdateRebalance, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { movedErr = err },
			OnComplete: func(v any, err error) { moved, movedErr = v.(shapers.Moved), err },
		}, shapers.Migration{Target: target, From: "node-7", Reason: "node-7 at 95% CPU"})
		env.UpdateWorkflow(headstart.UpdateRebalance, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { rejected = err }, OnComplete: func(any, error) {},
		}, shapers.Migration{Target: target, Reason: "no host"})
	}, 1500*time.Millisecond)
	env.ExecuteWorkflow(headstart.CoordinatorWorkflowName, Input{Fleet: "f", Config: Config{LedgerWorkflowID: "ledger", Pool: "p", Interval: time.Second}, MaxTicks: 4})
	require.ErrorContains(t, env.GetWorkflowError(), "continue as new")

	require.NoError(t, movedErr)
	require.Equal(t, []string{"train-1"}, moved.Moved)
	require.Equal(t, []string{"train-2"}, moved.Blocked)
	require.Len(t, migrations, 1, "the rejected update ran nothing")
	require.Equal(t, "node-7", migrations[0].From)
	require.ErrorIs(t, rejected, shapers.ErrInvalidAction)
}

// TestCoordinatorHoldsWhatItReserves: with HoldWith, each reservation is
// also held by that shaper — one unit per predicted task — and the hold is
// released before the reservation.
func TestCoordinatorHoldsWhatItReserves(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: headstart.CoordinatorWorkflowName})
	var ctl *Activities
	var pf *activities.Prefetcher
	var mu sync.Mutex
	var calls []string
	record := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, s)
	}
	ticks := 0
	env.OnActivity(ctl.Snapshot, mock.Anything, mock.Anything).Return(func(ctx context.Context, _ SnapshotInput) (Snapshot, error) {
		ticks++
		s := Snapshot{Capacity: vec(16, 64), Free: vec(16, 64)}
		if ticks <= 3 {
			s.Upcoming = []Upcoming{{Stage: "W/train", Start: env.Now().Add(4 * time.Second), Confidence: 1, Need: vec(4, 8), Tasks: 4}}
		}
		return s, nil
	})
	env.OnActivity(pf.Reserve, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.ReserveInput) (headstart.ReserveResult, error) {
		record("reserve " + in.Request.Key)
		return headstart.ReserveResult{Reservation: headstart.Reservation{Key: in.Request.Key, Resources: in.Request.Resources}}, nil
	})
	var held shapers.Hold
	env.OnActivity(pf.Hold, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.HoldInput) error {
		record("hold " + in.Hold.Key + " with " + in.Kind)
		held = in.Hold
		return nil
	})
	env.OnActivity(pf.ReleaseHold, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.ReleaseHoldInput) error {
		record("release hold " + in.Key)
		return nil
	})
	env.OnActivity(pf.Release, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.ReleaseInput) (bool, error) {
		record("release " + in.Key)
		return true, nil
	})
	env.ExecuteWorkflow(headstart.CoordinatorWorkflowName, Input{Fleet: "f", Config: Config{LedgerWorkflowID: "ledger", Pool: "p", Interval: time.Second, HoldWith: "deployment"}, MaxTicks: 6})
	require.ErrorContains(t, env.GetWorkflowError(), "continue as new")

	require.Len(t, calls, 4, "%v", calls)
	key := held.Key
	require.Equal(t, []string{"reserve " + key, "hold " + key + " with deployment", "release hold " + key, "release " + key}, calls)
	require.Equal(t, 4, held.Replicas, "one placeholder per predicted task")
	require.Equal(t, vec(1, 2), held.Resources, "each a quarter of the reservation (4 CPU / 8 GiB at confidence 1)")
	require.Equal(t, "W/train", held.Stage)
}

// coordinatorRecorder mocks the coordinator's activities: a snapshot in
// which train is upcoming with a peak of 25 tasks, and records what the
// coordinator reserves and shapes.
type coordinatorRecorder struct {
	mu       sync.Mutex
	reserved []activities.ReserveInput
	shaped   []shapers.Action
	shapedAt []time.Time
}

func (r *coordinatorRecorder) register(env *testsuite.TestWorkflowEnvironment) {
	var ctl *Activities
	var pf *activities.Prefetcher
	env.OnActivity(ctl.Snapshot, mock.Anything, mock.Anything).Return(func(ctx context.Context, _ SnapshotInput) (Snapshot, error) {
		return Snapshot{Capacity: vec(16, 64), Free: vec(16, 64), Peak: map[string]float64{"W/train": 25},
			Upcoming: []Upcoming{{Stage: "W/train", Start: env.Now().Add(4 * time.Second), Confidence: 0.95, Need: vec(4, 8)}}}, nil
	}).Maybe()
	env.OnActivity(pf.Reserve, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.ReserveInput) (headstart.ReserveResult, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.reserved = append(r.reserved, in)
		return headstart.ReserveResult{Reservation: headstart.Reservation{Key: in.Request.Key}}, nil
	}).Maybe()
	env.OnActivity(pf.Release, mock.Anything, mock.Anything).Return(true, nil).Maybe()
	env.OnActivity(ctl.Backlog, mock.Anything, mock.Anything).Return(int64(0), nil).Maybe()
	env.OnActivity(pf.Shape, mock.Anything, mock.Anything).Return(func(ctx context.Context, a shapers.Action) (shapers.Status, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.shaped = append(r.shaped, a)
		r.shapedAt = append(r.shapedAt, env.Now())
		return shapers.Status{Target: a.Target, Replicas: *a.Desired.Replicas}, nil
	}).Maybe()
}

func trainConfig(mode Mode) Config {
	return Config{Mode: mode, LedgerWorkflowID: "ledger", Pool: "p", Interval: time.Second,
		Replicate: []StageTarget{{Stage: "W/train", Target: shapers.Target{Kind: "workerpool", Name: "train-replicas"}, Queue: "train-replicas"}}}
}

func queryRoutes(t *testing.T, env *testsuite.TestWorkflowEnvironment) map[string]string {
	t.Helper()
	v, err := env.QueryWorkflow(headstart.QueryRoutes)
	require.NoError(t, err)
	var routes map[string]string
	require.NoError(t, v.Get(&routes))
	return routes
}

// TestCoordinatorModes: in dry-run mode, every shaping action is marked
// DryRun and nothing is reserved or routed; in forecast-only mode the
// coordinator decides and acts on nothing; in prefetch mode it reserves,
// shapes for real and routes the stage to its replicas.
func TestCoordinatorModes(t *testing.T) {
	for _, tc := range []struct {
		mode             Mode
		reserves, shapes bool
		routed           bool
	}{
		{ModePrefetch, true, true, true},
		{ModeDryRun, false, true, false},
		{ModeForecastOnly, false, false, false},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			env := newEnv(t)
			env.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: headstart.CoordinatorWorkflowName})
			var rec coordinatorRecorder
			rec.register(env)
			var routes map[string]string
			var decisions []Decision
			env.RegisterDelayedCallback(func() {
				routes = queryRoutes(t, env)
				v, err := env.QueryWorkflow(headstart.QueryDecisions)
				require.NoError(t, err)
				require.NoError(t, v.Get(&decisions))
			}, 2500*time.Millisecond)
			env.ExecuteWorkflow(headstart.CoordinatorWorkflowName, Input{Fleet: "f", MaxTicks: 3, Config: trainConfig(tc.mode)})
			require.ErrorContains(t, env.GetWorkflowError(), "continue as new")

			require.Len(t, decisions, 1, "decisions are made in every mode")
			require.Equal(t, DecideReserve, decisions[0].Kind)
			require.Equal(t, tc.reserves, len(rec.reserved) > 0, "reserved: %v", rec.reserved)
			require.Equal(t, tc.shapes, len(rec.shaped) > 0, "shaped: %v", rec.shaped)
			for _, a := range rec.shaped {
				require.Equal(t, tc.mode == ModeDryRun, a.DryRun, "%s", a.Reason)
			}
			if tc.routed {
				require.Equal(t, map[string]string{"W/train": "train-replicas"}, routes)
			} else {
				require.Empty(t, routes)
			}
		})
	}
}

// TestCoordinatorIsReconfiguredByUpdate: an invalid configuration is
// rejected by the validator and changes nothing; the same configuration
// reports no change; one that stops replicating a stage withdraws its route
// at once and stops its replicas only RouteGrace later.
func TestCoordinatorIsReconfiguredByUpdate(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: headstart.CoordinatorWorkflowName})
	var rec coordinatorRecorder
	rec.register(env)
	cfg := trainConfig(ModePrefetch)
	type result struct {
		changed, done bool
		err           error
	}
	update := func(c Config, r *result) {
		env.UpdateWorkflow(headstart.UpdateConfigure, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(e error) { r.err, r.done = e, true },
			OnComplete: func(v any, e error) {
				r.err, r.done = e, true
				if e == nil {
					r.changed = v.(bool)
				}
			},
		}, c)
	}
	var invalid, same, removed result
	var routesBefore, routesAfter map[string]string
	var shapedAtRemoval int
	var removedAt time.Time
	env.RegisterDelayedCallback(func() {
		routesBefore = queryRoutes(t, env)
		bad := cfg
		bad.Rule.ProtectedShare = 1.5
		update(bad, &invalid)
		update(cfg, &same)
		without := cfg
		without.Replicate = nil
		rec.mu.Lock()
		shapedAtRemoval = len(rec.shaped)
		rec.mu.Unlock()
		removedAt = env.Now()
		update(without, &removed)
	}, 2500*time.Millisecond)
	env.RegisterDelayedCallback(func() { routesAfter = queryRoutes(t, env) }, 2600*time.Millisecond)
	env.ExecuteWorkflow(headstart.CoordinatorWorkflowName, Input{Fleet: "f", MaxTicks: 12, Config: cfg})
	require.ErrorContains(t, env.GetWorkflowError(), "continue as new")

	require.True(t, invalid.done && same.done && removed.done)
	require.ErrorIs(t, invalid.err, ErrInvalidConfig)
	var fe *headstart.FieldError
	require.ErrorAs(t, invalid.err, &fe)
	require.Equal(t, "protected_share", fe.Field)
	require.NoError(t, same.err)
	require.False(t, same.changed, "the same configuration changes nothing")
	require.NoError(t, removed.err)
	require.True(t, removed.changed)
	require.Equal(t, map[string]string{"W/train": "train-replicas"}, routesBefore)
	require.Empty(t, routesAfter, "the route goes as soon as the stage is no longer replicated")

	require.Len(t, rec.shaped, shapedAtRemoval+1, "after the removal, one action: %v", rec.shaped)
	last := rec.shaped[len(rec.shaped)-1]
	require.Equal(t, 0, *last.Desired.Replicas, "its replicas are stopped: %s", last.Reason)
	require.Contains(t, last.Reason, "no longer replicated")
	require.GreaterOrEqual(t, rec.shapedAt[len(rec.shapedAt)-1].Sub(removedAt), RouteGrace, "only once the route has been gone for RouteGrace")
}

// TestCoordinatorWithdrawsARouteBeforeScalingToZero: when a routed stage's
// plan drops to zero replicas, its route goes at once and its replicas are
// stopped only RouteGrace later, so that no worker sends it a task then.
func TestCoordinatorWithdrawsARouteBeforeScalingToZero(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: headstart.CoordinatorWorkflowName})
	var ctl *Activities
	var pf *activities.Prefetcher
	var mu sync.Mutex
	busy := true
	env.OnActivity(ctl.Snapshot, mock.Anything, mock.Anything).Return(func(ctx context.Context, _ SnapshotInput) (Snapshot, error) {
		mu.Lock()
		defer mu.Unlock()
		s := Snapshot{Capacity: vec(16, 64), Free: vec(16, 64), Peak: map[string]float64{}}
		if busy {
			s.Peak["W/train"] = 15
		}
		return s, nil
	})
	var shaped []shapers.Action
	var shapedAt []time.Time
	env.OnActivity(pf.Shape, mock.Anything, mock.Anything).Return(func(ctx context.Context, a shapers.Action) (shapers.Status, error) {
		mu.Lock()
		defer mu.Unlock()
		shaped, shapedAt = append(shaped, a), append(shapedAt, env.Now())
		return shapers.Status{Target: a.Target, Replicas: *a.Desired.Replicas}, nil
	})
	env.OnActivity(ctl.Backlog, mock.Anything, "train-replicas").Return(int64(0), nil)
	cfg := trainConfig(ModePrefetch)
	cfg.Replication = ReplicationOptions{Levels: []int{0, 1, 2}, ReleaseWhenIdle: true}
	var routesBusy, routesIdle map[string]string
	var idleAt time.Time
	env.RegisterDelayedCallback(func() {
		routesBusy = queryRoutes(t, env)
		mu.Lock()
		busy = false
		mu.Unlock()
	}, 2500*time.Millisecond)
	env.RegisterDelayedCallback(func() {
		routesIdle = queryRoutes(t, env)
		idleAt = env.Now() // the tick at 3 s saw the stage idle and withdrew its route
	}, 3500*time.Millisecond)
	env.ExecuteWorkflow(headstart.CoordinatorWorkflowName, Input{Fleet: "f", MaxTicks: 12, Config: cfg})
	require.ErrorContains(t, env.GetWorkflowError(), "continue as new")

	require.Equal(t, map[string]string{"W/train": "train-replicas"}, routesBusy)
	require.Empty(t, routesIdle, "the route goes as soon as no replica is planned")
	var zeroAt time.Time
	for i, a := range shaped {
		if *a.Desired.Replicas == 0 {
			zeroAt = shapedAt[i]
			break
		}
		require.Equal(t, 2, *a.Desired.Replicas, "%s", a.Reason)
	}
	require.False(t, zeroAt.IsZero(), "the replicas are stopped: %v", shaped)
	require.GreaterOrEqual(t, zeroAt.Sub(idleAt.Add(-500*time.Millisecond)), RouteGrace, "RouteGrace after the route went")
}

// TestCoordinatorStopsRetiringReplicasOnceTheirBacklogIsTaken: replicas
// whose route went keep serving the tasks routed to them before, until
// their queue's backlog is empty, or at most MaxDrain when it never empties.
func TestCoordinatorStopsRetiringReplicasOnceTheirBacklogIsTaken(t *testing.T) {
	for _, tc := range []struct {
		name    string
		drained time.Duration // after the route went; 0: never
		want    time.Duration // the replicas stop this long after the route went, or later
	}{
		{"drained", 20 * time.Second, 20 * time.Second},
		{"never drained", 0, MaxDrain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			env.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: headstart.CoordinatorWorkflowName})
			var ctl *Activities
			var pf *activities.Prefetcher
			var mu sync.Mutex
			var idleAt time.Time
			env.OnActivity(ctl.Snapshot, mock.Anything, mock.Anything).Return(func(ctx context.Context, _ SnapshotInput) (Snapshot, error) {
				s := Snapshot{Capacity: vec(16, 64), Free: vec(16, 64), Peak: map[string]float64{}}
				if env.Now().Before(t0.Add(3 * time.Second)) {
					s.Peak["W/train"] = 15
				}
				return s, nil
			})
			var backlogAsked int
			env.OnActivity(ctl.Backlog, mock.Anything, "train-replicas").Return(func(ctx context.Context, _ string) (int64, error) {
				mu.Lock()
				defer mu.Unlock()
				backlogAsked++
				if idleAt.IsZero() || tc.drained == 0 || env.Now().Sub(idleAt) < tc.drained {
					return 4, nil
				}
				return 0, nil
			})
			var zeroAt time.Time
			env.OnActivity(pf.Shape, mock.Anything, mock.Anything).Return(func(ctx context.Context, a shapers.Action) (shapers.Status, error) {
				mu.Lock()
				defer mu.Unlock()
				if *a.Desired.Replicas == 0 && zeroAt.IsZero() {
					zeroAt = env.Now()
				}
				return shapers.Status{Target: a.Target, Replicas: *a.Desired.Replicas}, nil
			})
			env.RegisterDelayedCallback(func() {
				if len(queryRoutes(t, env)) == 0 {
					mu.Lock()
					idleAt = env.Now().Add(-500 * time.Millisecond) // the tick at 3 s withdrew the route
					mu.Unlock()
				}
			}, 3500*time.Millisecond)
			cfg := trainConfig(ModePrefetch)
			cfg.Replication = ReplicationOptions{Levels: []int{0, 1, 2}, ReleaseWhenIdle: true}
			env.SetStartTime(t0)
			env.ExecuteWorkflow(headstart.CoordinatorWorkflowName, Input{Fleet: "f", MaxTicks: int((MaxDrain + time.Minute) / time.Second), Config: cfg})
			require.ErrorContains(t, env.GetWorkflowError(), "continue as new")

			require.False(t, idleAt.IsZero(), "the route went when the stage turned idle")
			require.False(t, zeroAt.IsZero(), "the replicas are stopped in the end")
			waited := zeroAt.Sub(idleAt)
			require.GreaterOrEqual(t, waited, tc.want, "not while tasks wait for them")
			require.Less(t, waited, tc.want+5*time.Second, "but as soon as none does (or MaxDrain ends the wait)")
			require.Greater(t, backlogAsked, 1)
		})
	}
}

// newEnv is a test workflow environment for the coordinator; tests mock
// its activities.
func newEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	env := s.NewTestWorkflowEnvironment()
	env.SetTestTimeout(time.Minute)
	return env
}

func vec(cpu, memGiB float64) resources.Vector {
	return resources.Vector{}.With(resources.CPU, cpu).With(resources.Memory, memGiB*(1<<30))
}

var t0 = time.Unix(0, 0)

// TestCoordinatorMeasuresItsPoolBeforeEachDecision: with Measure set, each
// tick measures the pool (through the ledger's measure update) before the
// snapshot it decides on, so decisions see what other work leaves: here
// other work holds 7 of 8 CPU, and the upcoming stage is delayed, with
// the reason; a failed measurement leaves the tick to decide on the last one.
func TestCoordinatorMeasuresItsPoolBeforeEachDecision(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: headstart.CoordinatorWorkflowName})
	var ctl *Activities
	var pf *activities.Prefetcher
	var mu sync.Mutex
	var calls []string
	var measured []activities.MeasureInput
	env.OnActivity(pf.Measure, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.MeasureInput) (activities.MeasureResult, error) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, "measure")
		measured = append(measured, in)
		if len(measured) == 2 {
			return activities.MeasureResult{}, errors.New("the API server is away")
		}
		return activities.MeasureResult{}, nil
	})
	env.OnActivity(ctl.Snapshot, mock.Anything, mock.Anything).Return(func(ctx context.Context, _ SnapshotInput) (Snapshot, error) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, "snapshot")
		return Snapshot{Capacity: vec(8, 32), Free: vec(1, 24), InUse: vec(7, 8), Measured: env.Now(),
			Upcoming: []Upcoming{{Stage: "W/train", Start: env.Now().Add(time.Second), Confidence: 0.95, Need: vec(2, 4)}}}, nil
	})
	var decisions []Decision
	env.RegisterDelayedCallback(func() { decisions = query[[]Decision](t, env, headstart.QueryDecisions) }, 5*time.Second) // after the tick whose measurement failed
	cfg := Config{LedgerWorkflowID: "ledger", Pool: "p", Interval: 2 * time.Second, Measure: &Measure{With: "deployment", Selector: "pool=p"}}
	env.ExecuteWorkflow(headstart.CoordinatorWorkflowName, Input{Fleet: "f", MaxTicks: 3, Config: cfg})
	require.ErrorContains(t, env.GetWorkflowError(), "continue as new")

	require.Equal(t, []string{"measure", "snapshot", "measure", "snapshot", "measure", "snapshot"}, calls, "every tick measures, then decides")
	require.Equal(t, activities.MeasureInput{Kind: "deployment", Selector: "pool=p", LedgerWorkflowID: "ledger"}, measured[0])
	require.Len(t, decisions, 1)
	require.Equal(t, DecideDelay, decisions[0].Kind, "1 CPU free of 8, 20%% protected: no room for 2 CPU")
	require.Contains(t, decisions[0].Reason, "too little room")
}

func query[T any](t *testing.T, env *testsuite.TestWorkflowEnvironment, name string) T {
	t.Helper()
	v, err := env.QueryWorkflow(name)
	require.NoError(t, err)
	var out T
	require.NoError(t, v.Get(&out))
	return out
}
