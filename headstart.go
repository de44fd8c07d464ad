// Package headstart is the wire API between Temporal workers and
// Headstart's control plane: the names and IDs of the control workflows,
// the types their signals, queries and updates carry (observations and
// their batches, predictions, reservations, pool status), the errors they
// return and the application error types those cross the wire as.
//
// It imports the standard library and package resources only, so every
// other package can share its types: the drop-in interceptors a user's
// worker imports (which hold the sender), the pure models in forecasting,
// and the control plane's workflows, one package each (forecaster, ledger,
// coordinator), assembled by controlplane.
package headstart

// TaskQueue is the control plane's task queue.
const TaskQueue = "headstart"

// DefaultFleet names the forecaster and coordinator when no fleet is given.
const DefaultFleet = "default"
