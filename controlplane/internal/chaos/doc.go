// Package chaos holds the chaos run of the whole chain, as an operator runs
// it: a file-backed dev server, `headstart worker` with the pipeline
// sample's configuration (prefetching on, Transform replicated), the
// sample's profiled worker, and pipelines started at a steady rate, while
// the control worker is killed with SIGKILL, the dev server is restarted
// and replicas die. `make chaos` runs it at full strength (20 kills, 5
// restarts; the flags choose; `go test` alone, 3 and 1). It ends with the line
//
//	chaos kills=K restarts=R lost_reservations=L double_actions=D user_failures=U stale_after_s=S …
//
// and fails unless L, D and U are 0. The counts are of real effects:
//
//   - lost_reservations: a reservation the coordinator holds that the
//     ledger no longer has, or one the ledger still holds past its expiry;
//   - double_actions: replica processes beyond the largest level planned,
//     for longer than a stopping replica takes to exit (a restarted control
//     worker adopts the replicas of the one killed; it must not start more);
//   - user_failures: pipelines that did not complete, and activity
//     attempts retried for any reason but the run's own disruptions of user
//     work: a replica it killed, or a dev server it stopped while the
//     activity was in flight (each such retry is logged with its cause);
//   - stale_after_s: seconds from the end of the last disruption until the
//     forecaster answers with predictions and has taken in new observations.
//
// After the run, no log line, metric or Web UI detail of Headstart may
// carry a payload (the pipelines' digests and seeds) or the API key the
// control worker was given.
package chaos
