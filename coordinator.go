package headstart

import (
	"time"

	"github.com/headstart-dev/headstart/resources"
)

// CoordinatorWorkflowName is the coordinator's workflow type.
const CoordinatorWorkflowName = "HeadstartCoordinator"

// UpdateRebalance asks the coordinator to move a stage's replicas off a hot
// host (a shapers.Migration); it completes with what moved (shapers.Moved).
const UpdateRebalance = "rebalance"

// CoordinatorWorkflowID is the coordinator's workflow ID for a fleet.
func CoordinatorWorkflowID(fleet string) string { return "headstart-coordinator-" + fleet }

// UpdateConfigure replaces a running coordinator's configuration
// (coordinator.Config); its
// validator rejects an invalid one before anything changes. It completes
// with whether anything changed.
const UpdateConfigure = "configure"

// QueryDecisions answers the coordinator's last decision for each upcoming
// stage, with its reason ([]coordinator.Decision); QueryCoordinatorState
// its configuration and what it holds: each stage's reservation, planned
// replicas and the stages on their way to none (coordinator.Status).
const (
	QueryDecisions        = "decisions"
	QueryCoordinatorState = "state"
)

// QueryRoutes answers the routes the coordinator asks workers to follow:
// stage → the task queue of its replicas, for the stages it replicates
// with a queue while they have replicas (see Routes and
// interceptors.SyncRoutes).
const QueryRoutes = "routes"

// HostQueue is the task queue of `headstart agent` on host: the
// coordinator's actions on that host's targets (shapers.Target.Host) are
// activities there, so Temporal's matching carries them to the right machine.
func HostQueue(host string) string { return "headstart-host-" + host }

// HostHeartbeatSignal carries a HostStatus from a host's agent to its
// fleet's coordinator, every heartbeat interval.
const HostHeartbeatSignal = "host-heartbeat"

// HostStatus is what a host's agent reports of it.
type HostStatus struct {
	Host  string `json:"host"`
	Queue string `json:"queue"`
	// Capacity is what the host has: CPU cores and memory bytes.
	Capacity resources.Vector `json:"capacity"`
	// Usage is what it used over the last interval: CPU cores busy and memory bytes.
	Usage resources.Vector `json:"usage"`
	// Shapes lists the target kinds its agent shapes, e.g. "cgroup".
	Shapes []string `json:"shapes"`
	// At is when it was measured, by the agent's clock.
	At time.Time `json:"at"`
}

// Hot reports whether the host uses more than share of its CPU or memory.
func (h HostStatus) Hot(share float64) bool {
	for _, k := range []resources.Kind{resources.CPU, resources.Memory} {
		if c := h.Capacity.Get(k); c > 0 && h.Usage.Get(k) > share*c {
			return true
		}
	}
	return false
}
