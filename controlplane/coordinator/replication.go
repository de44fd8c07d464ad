package coordinator

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/headstart-dev/headstart"
)

// ReplicationOptions shape how many replicas a stage gets. Zero values take the defaults.
type ReplicationOptions struct {
	// Levels of replicas to choose from, ascending. If not set, 1, 2, 4, 8.
	Levels []int
	// PerReplica is how many of the stage's tasks one replica runs at once
	// before tasks contend: the contention threshold. If not set, 10.
	PerReplica int
	// ScaleDownAfter is how long a lower level must suffice before scaling
	// down (hysteresis). If not set, 2 minutes.
	ScaleDownAfter time.Duration
	// ReleaseWhenIdle scales a stage to its lowest level at once, without
	// the hysteresis, when no task is predicted in it or arriving within the
	// horizon (actuation time plus lead): any later need is seen in time to
	// start replicas again, so an idle replica kept longer costs more than a
	// new one. Suits stages that upstream stages announce; off by default.
	ReleaseWhenIdle bool
}

// Validate reports every option out of its range, each a *FieldError
// (joined with errors.Join); zero values are valid (they take the defaults).
func (o ReplicationOptions) Validate() error {
	var fs headstart.FieldErrors
	for i, l := range o.Levels {
		if l < 0 {
			fs.Add(fmt.Sprintf("levels[%d]", i), "%d replicas is below 0", l)
		}
		if i > 0 && l <= o.Levels[i-1] {
			fs.Add("levels", "%v do not ascend", o.Levels)
			break
		}
	}
	if o.PerReplica < 0 {
		fs.Add("per_replica", "%d is below 0", o.PerReplica)
	}
	if o.ScaleDownAfter < 0 {
		fs.Add("scale_down_after", "%v is negative", o.ScaleDownAfter)
	}
	return fs.Err()
}

func (o ReplicationOptions) withDefaults() ReplicationOptions {
	if len(o.Levels) == 0 {
		o.Levels = []int{1, 2, 4, 8}
	}
	o.Levels = append([]int(nil), o.Levels...)
	sort.Ints(o.Levels)
	if o.PerReplica <= 0 {
		o.PerReplica = 10
	}
	if o.ScaleDownAfter <= 0 {
		o.ScaleDownAfter = 2 * time.Minute
	}
	return o
}

// ReplicaPlan is a stage's replication state between decisions.
type ReplicaPlan struct {
	Replicas int
	// LowSince is when a lower level first sufficed (zero while none does).
	LowSince time.Time
}

// PlanReplicas picks the replicas for a stage from its predicted peak of
// concurrent tasks: the smallest level whose replicas run them all without
// contention. It scales up at once and down only after the lower level has
// sufficed for ScaleDownAfter. Deterministic.
func PlanReplicas(prev ReplicaPlan, peakConcurrent float64, now time.Time, opts ReplicationOptions) (ReplicaPlan, string) {
	opts = opts.withDefaults()
	need := opts.Levels[len(opts.Levels)-1]
	for _, l := range opts.Levels {
		if float64(l*opts.PerReplica) >= math.Ceil(peakConcurrent) {
			need = l
			break
		}
	}
	switch {
	case opts.ReleaseWhenIdle && peakConcurrent <= 0 && need < prev.Replicas:
		return ReplicaPlan{Replicas: need}, fmt.Sprintf("no task predicted within the horizon: releasing %d idle replicas", prev.Replicas-need)
	case need > prev.Replicas:
		return ReplicaPlan{Replicas: need}, fmt.Sprintf("predicted %.1f concurrent tasks need %d replicas of %d", peakConcurrent, need, opts.PerReplica)
	case need == prev.Replicas:
		return ReplicaPlan{Replicas: need}, fmt.Sprintf("%d replicas suffice for %.1f concurrent tasks", need, peakConcurrent)
	case prev.LowSince.IsZero():
		return ReplicaPlan{Replicas: prev.Replicas, LowSince: now}, fmt.Sprintf("%d would suffice; holding %d for %v", need, prev.Replicas, opts.ScaleDownAfter)
	case now.Sub(prev.LowSince) >= opts.ScaleDownAfter:
		return ReplicaPlan{Replicas: need}, fmt.Sprintf("%d have sufficed for %v: scaling down from %d", need, now.Sub(prev.LowSince).Round(time.Second), prev.Replicas)
	}
	return prev, fmt.Sprintf("%d would suffice; holding %d", need, prev.Replicas)
}
