package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/shapers"
)

// Prefetcher holds the prefetch activities: reserve and release capacity in a
// pool's ledger, and shape capacity through a shaper. Each is idempotent —
// a retried reserve holds once (the ledger keys it), a retried release or
// shape changes nothing more — so the coordinator may retry them freely.
type Prefetcher struct {
	// Client reaches the ledgers.
	Client client.Client
	// Shapers by target kind.
	Shapers map[string]shapers.Shaper
}

// ReserveInput names a pool's ledger workflow and the request for it.
type ReserveInput struct {
	LedgerWorkflowID string
	Request          headstart.ReserveRequest
}

// ReleaseInput names a pool's ledger workflow and the reservation to give back.
type ReleaseInput struct {
	LedgerWorkflowID string
	Key              string
}

// Reserve asks the pool's ledger to hold capacity. The ledger's typed errors
// (InsufficientCapacity, InvalidReservation, …) come back as they are, not retried.
func (p *Prefetcher) Reserve(ctx context.Context, in ReserveInput) (headstart.ReserveResult, error) {
	var res headstart.ReserveResult
	err := p.update(ctx, in.LedgerWorkflowID, headstart.UpdateReserve, in.Request, &res)
	return res, err
}

// Release gives a reservation back; it reports false when it was not held.
func (p *Prefetcher) Release(ctx context.Context, in ReleaseInput) (bool, error) {
	var released bool
	err := p.update(ctx, in.LedgerWorkflowID, headstart.UpdateRelease, headstart.ReleaseRequest{Key: in.Key}, &released)
	return released, err
}

func (p *Prefetcher) update(ctx context.Context, id, name string, arg, result any) error {
	return Update(ctx, p.Client, id, name, arg, result)
}

// Update runs the update name with arg on the workflow id, waits for it to
// complete and decodes its result into result. Errors name the update and
// the workflow, and wrap the client's.
func Update(ctx context.Context, c client.Client, id, name string, arg, result any) error {
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: name, Args: []any{arg}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return fmt.Errorf("%s on %s: %w", name, id, err)
	}
	if err := h.Get(ctx, result); err != nil {
		return fmt.Errorf("%s on %s: %w", name, id, err)
	}
	return nil
}

// Query runs the query name on the workflow id (its current run) and
// decodes its answer. Errors name the query and the workflow, and wrap the
// client's.
func Query[T any](ctx context.Context, c client.Client, id, name string) (T, error) {
	var out T
	v, err := c.QueryWorkflow(ctx, id, "", name)
	if err != nil {
		return out, fmt.Errorf("query %s of %s: %w", name, id, err)
	}
	if err := v.Get(&out); err != nil {
		return out, fmt.Errorf("decode %s of %s: %w", name, id, err)
	}
	return out, nil
}

// Shape applies an action through the shaper of its target's kind. Invalid
// actions and unknown kinds fail without retries (types InvalidAction and
// UnknownTarget).
func (p *Prefetcher) Shape(ctx context.Context, a shapers.Action) (shapers.Status, error) {
	s, err := p.shaper(a.Target.Kind)
	if err != nil {
		return shapers.Status{}, err
	}
	st, err := s.Apply(ctx, a)
	return st, shapeError(err)
}

// HoldInput names the shaper kind (a shapers.Reserver) that holds capacity
// for a reservation, and the hold.
type HoldInput struct {
	Kind string
	Hold shapers.Hold
}

// ReleaseHoldInput names the shaper kind and the hold to release.
type ReleaseHoldInput struct {
	Kind string
	Key  string
}

// Hold turns a reservation into held capacity (e.g. placeholder pods)
// through the shaper of the kind, when it is a shapers.Reserver
// (otherwise type Unsupported). Holding a key again changes nothing.
func (p *Prefetcher) Hold(ctx context.Context, in HoldInput) error {
	r, err := capability[shapers.Reserver](p, in.Kind, "hold capacity")
	if err != nil {
		return err
	}
	return shapeError(r.Hold(ctx, in.Hold))
}

// ReleaseHold gives held capacity back; releasing a key not held changes nothing.
func (p *Prefetcher) ReleaseHold(ctx context.Context, in ReleaseHoldInput) error {
	r, err := capability[shapers.Reserver](p, in.Kind, "hold capacity")
	if err != nil {
		return err
	}
	return shapeError(r.Release(ctx, in.Key))
}

// Migrate moves a target's replicas off a host through the shaper of its
// kind, when that shaper is a shapers.Migrator (otherwise type Unsupported).
func (p *Prefetcher) Migrate(ctx context.Context, m shapers.Migration) (shapers.Moved, error) {
	mg, err := capability[shapers.Migrator](p, m.Target.Kind, "migrate")
	if err != nil {
		return shapers.Moved{}, err
	}
	moved, err := mg.Migrate(ctx, m)
	return moved, shapeError(err)
}

// MeasureInput names the shaper kind (a shapers.CapacityReader) that can
// tell a pool's capacity, its selector of the pool's machines, and the
// pool's ledger the measurement goes to.
type MeasureInput struct {
	Kind, Selector   string
	LedgerWorkflowID string
}

// MeasureResult is what a measurement found and what the ledger reclaimed for it.
type MeasureResult struct {
	Capacity  shapers.Capacity
	Reclaimed []string
	At        time.Time
}

// Measure reads a pool's real capacity through the shaper of the kind
// (type Unsupported if it cannot tell) and gives it to the pool's ledger
// (its measure update), which reclaims soft reservations that no longer fit.
func (p *Prefetcher) Measure(ctx context.Context, in MeasureInput) (MeasureResult, error) {
	r, err := capability[shapers.CapacityReader](p, in.Kind, "measure a pool")
	if err != nil {
		return MeasureResult{}, err
	}
	c, err := r.Capacity(ctx, in.Selector)
	if err != nil {
		return MeasureResult{}, shapeError(err)
	}
	out := MeasureResult{Capacity: c, At: time.Now()}
	m := headstart.Measurement{Capacity: c.Total, InUse: c.InUse, At: out.At, Source: fmt.Sprintf("%s (%d)", c.Source, c.Machines)}
	if err := p.update(ctx, in.LedgerWorkflowID, headstart.UpdateMeasure, m, &out.Reclaimed); err != nil {
		return out, err
	}
	return out, nil
}

// shaper returns the shaper of a target kind (type UnknownTarget if none).
func (p *Prefetcher) shaper(kind string) (shapers.Shaper, error) {
	s, ok := p.Shapers[kind]
	if !ok {
		return nil, shapeError(fmt.Errorf("%w: no shaper for %s targets", shapers.ErrUnknownTarget, kind))
	}
	return s, nil
}

// capability returns the shaper of a kind as an optional capability C
// (type Unsupported if it lacks it).
func capability[C any](p *Prefetcher, kind, what string) (C, error) {
	var none C
	s, err := p.shaper(kind)
	if err != nil {
		return none, err
	}
	c, ok := s.(C)
	if !ok {
		return none, shapeError(fmt.Errorf("%w: %s shapers cannot %s", shapers.ErrUnsupported, kind, what))
	}
	return c, nil
}

func shapeError(err error) error {
	if err == nil {
		return nil
	}
	for _, e := range []struct {
		err  error
		name string
	}{{shapers.ErrInvalidAction, "InvalidAction"}, {shapers.ErrUnknownTarget, "UnknownTarget"}, {shapers.ErrUnsupported, "Unsupported"}} {
		if errors.Is(err, e.err) {
			return temporal.NewNonRetryableApplicationError(err.Error(), e.name, err)
		}
	}
	return err
}
