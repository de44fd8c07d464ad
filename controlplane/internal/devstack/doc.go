// Package devstack holds the end-to-end test of `make run` (scripts/run.sh):
// the dev server with its Web UI, the sample worker and the starter.
package devstack
