package coordinator

import (
	"fmt"
	"time"

	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/resources"
)

// StageLimits is a stage whose workers' limits the coordinator raises
// ahead of its tasks and lowers after them, through the shaper of Target:
// a cgroup on a host that `headstart agent` shapes (Target.Host), say.
type StageLimits struct {
	Stage  string
	Target shapers.Target
	// Idle are the limits while the stage is neither upcoming nor running.
	Idle resources.Vector
	// Raised are the least limits while it is upcoming or running. CPU and
	// memory rise further to the predicted need of its upcoming tasks, with
	// the prefetch rule's margin. Only the kinds set in Idle or Raised are shaped.
	Raised resources.Vector
	// LowerAfter is how long the stage stays raised once it is neither
	// upcoming nor running. If not set, 30 s.
	LowerAfter time.Duration `json:",omitempty"`
}

// DefaultLowerAfter is StageLimits.LowerAfter's default.
const DefaultLowerAfter = 30 * time.Second

// Limited is a stage's limits as the coordinator last applied them.
type Limited struct {
	Limits resources.Vector
	Raised bool
	// Active is when the stage was last seen upcoming or running.
	Active time.Time
}

func (l StageLimits) check(fs fieldAdder, at string) {
	if l.Stage == "" {
		fs.Add(at+".stage", "not set")
	}
	if l.Target.Kind == "" {
		fs.Add(at+".target.kind", "not set")
	}
	if l.Target.Name == "" {
		fs.Add(at+".target.name", "not set")
	}
	if err := l.Idle.Validate(); err != nil {
		fs.Add(at+".idle", "%v", err)
	}
	if err := l.Raised.Validate(); err != nil {
		fs.Add(at+".raised", "%v", err)
	}
	if l.Idle.IsZero() && l.Raised.IsZero() {
		fs.Add(at, "neither idle nor raised limits are set: nothing to shape")
	}
	if l.LowerAfter < 0 {
		fs.Add(at+".lower_after", "%v is negative", l.LowerAfter)
	}
}

type fieldAdder interface {
	Add(field, format string, args ...any)
}

// planLimits is the limits stage l should have at now: raised while a
// decision reserves for it (d, nil if none) or its runs are in it
// (running), and for LowerAfter after; idle otherwise. It returns the
// limits, whether they are raised, when the stage was last active, and why.
func planLimits(l StageLimits, prev Limited, d *Decision, running float64, now time.Time) (Limited, string) {
	lowerAfter := l.LowerAfter
	if lowerAfter <= 0 {
		lowerAfter = DefaultLowerAfter
	}
	shaped := func(v resources.Vector) resources.Vector {
		var out resources.Vector
		for _, k := range resources.Kinds() {
			if l.Idle.Get(k) > 0 || l.Raised.Get(k) > 0 {
				out = out.With(k, v.Get(k))
			}
		}
		return out
	}
	next := Limited{Active: prev.Active}
	var why string
	switch {
	case d != nil && (d.Kind == DecideReserve || d.Kind == DecidePartial):
		next.Active, next.Raised = now, true
		next.Limits = shaped(l.Raised.Max(d.Amount))
		why = fmt.Sprintf("%s is upcoming: %s", l.Stage, d.Reason)
	case running > 0:
		next.Active, next.Raised = now, true
		next.Limits = prev.Limits
		if !prev.Raised {
			next.Limits = shaped(l.Raised)
		}
		why = fmt.Sprintf("%s is running (%.3g runs in it)", l.Stage, running)
	case prev.Raised && now.Sub(prev.Active) < lowerAfter:
		next.Raised, next.Limits = true, prev.Limits
		why = fmt.Sprintf("%s ended %s ago; lowered after %s", l.Stage, seconds(now.Sub(prev.Active)), seconds(lowerAfter))
	default:
		next.Limits = shaped(l.Idle)
		why = fmt.Sprintf("%s is neither upcoming nor running", l.Stage)
		if prev.Raised {
			why = fmt.Sprintf("%s has been idle for %s", l.Stage, seconds(now.Sub(prev.Active)))
		}
	}
	return next, why
}
