// Package activities holds Headstart's prefetch activities — reserve, shape,
// release and fit — as thin, idempotent adapters between the control-plane
// workflows and the shapers and models they drive.
package activities
