// Package controlplane assembles Headstart's control plane: the control
// worker that runs the forecaster, ledger and coordinator workflows and
// their activities (Register, NewWorker), and Plane, which starts those
// workflows from a configuration, or attaches to them where they run.
// `headstart worker` and a Go program that embeds the control plane use
// the same Register.
package controlplane
