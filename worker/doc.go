// Package worker is Headstart's control plane: the forecaster, ledger and
// coordinator workflows, their registration on the control task queue, and
// the options to embed them in a Go program. Nothing else in the module
// imports it.
package worker
