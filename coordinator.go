package headstart

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
