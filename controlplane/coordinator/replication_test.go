package coordinator

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPlanReplicasScalesUpAtOnceAndDownWithHysteresis(t *testing.T) {
	opts := ReplicationOptions{Levels: []int{1, 2, 4, 8}, PerReplica: 10, ScaleDownAfter: 2 * time.Minute}
	now := t0
	steps := []struct {
		after time.Duration
		peak  float64
		want  int
	}{
		{0, 5, 1},                 // one replica runs 10
		{time.Second, 25, 4},      // 25 tasks: 3 would do, the next level is 4
		{time.Second, 80, 8},      // up again at once
		{time.Second, 500, 8},     // capped at the top level
		{time.Second, 15, 8},      // 2 would do: hold
		{time.Minute, 15, 8},      // still holding
		{61 * time.Second, 15, 2}, // two minutes of sufficing: down
		{time.Second, 0, 2},       // a lull starts the clock again
		{time.Second, 12, 2},      // and a return to need resets it
	}
	plan := ReplicaPlan{}
	for i, s := range steps {
		now = now.Add(s.after)
		var reason string
		plan, reason = PlanReplicas(plan, s.peak, now, opts)
		require.Equal(t, s.want, plan.Replicas, "step %d (peak %.0f): %s", i, s.peak, reason)
	}
	require.True(t, plan.LowSince.IsZero(), "needing the current level clears the scale-down clock")
}

// TestPlanReplicasReleasesIdleStagesAtOnceWhenAsked: with ReleaseWhenIdle, a
// stage with no task predicted goes to its lowest level at once; a lower
// but non-zero need still waits out the hysteresis.
func TestPlanReplicasReleasesIdleStagesAtOnceWhenAsked(t *testing.T) {
	opts := ReplicationOptions{Levels: []int{0, 1, 2, 4}, PerReplica: 4, ScaleDownAfter: time.Minute, ReleaseWhenIdle: true}
	plan, _ := PlanReplicas(ReplicaPlan{}, 16, t0, opts)
	require.Equal(t, 4, plan.Replicas)
	plan, _ = PlanReplicas(plan, 3, t0.Add(time.Second), opts)
	require.Equal(t, 4, plan.Replicas, "1 would do: hold")
	plan, reason := PlanReplicas(plan, 0, t0.Add(2*time.Second), opts)
	require.Equal(t, 0, plan.Replicas, reason)
	require.Contains(t, reason, "releasing 4 idle replicas")

	opts.ReleaseWhenIdle = false
	plan, _ = PlanReplicas(ReplicaPlan{Replicas: 4}, 0, t0, opts)
	require.Equal(t, 4, plan.Replicas, "without it, the hysteresis holds")
}
