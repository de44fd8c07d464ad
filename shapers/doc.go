// Package shapers defines the contract for changing real capacity — worker
// replicas on a task queue, a container's or VM's CPU and memory, cgroup
// limits, bandwidth and IOPS shares, placement — and a conformance suite every
// implementation passes. Each target lives in its own subpackage with its own
// client library; this root package imports only resources and the standard
// library.
package shapers
