// Package interceptors holds the drop-in Temporal worker interceptor: it
// profiles every activity attempt into an observation of its stage (wall time,
// schedule-to-start, CPU, memory, disk and network bytes, payload sizes,
// attempt and error class, predecessor stage), keeps per-stage profiles,
// batches observations to a sink without ever blocking or failing the user's
// activity, and routes replicated stages to their own task queues.
package interceptors
