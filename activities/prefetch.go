package activities

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/headstart-dev/headstart/shapers"
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
	Request          ReserveRequest
}

// ReleaseInput names a pool's ledger workflow and the reservation to give back.
type ReleaseInput struct {
	LedgerWorkflowID string
	Key              string
}

// Reserve asks the pool's ledger to hold capacity. The ledger's typed errors
// (InsufficientCapacity, InvalidReservation, …) come back as they are, not retried.
func (p *Prefetcher) Reserve(ctx context.Context, in ReserveInput) (ReserveResult, error) {
	var res ReserveResult
	err := p.update(ctx, in.LedgerWorkflowID, UpdateReserve, in.Request, &res)
	return res, err
}

// Release gives a reservation back; it reports false when it was not held.
func (p *Prefetcher) Release(ctx context.Context, in ReleaseInput) (bool, error) {
	var released bool
	err := p.update(ctx, in.LedgerWorkflowID, UpdateRelease, ReleaseRequest{Key: in.Key}, &released)
	return released, err
}

func (p *Prefetcher) update(ctx context.Context, id, name string, arg, result any) error {
	h, err := p.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
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

// Shape applies an action through the shaper of its target's kind. Invalid
// actions and unknown kinds fail without retries (types InvalidAction and
// UnknownTarget).
func (p *Prefetcher) Shape(ctx context.Context, a shapers.Action) (shapers.Status, error) {
	s, ok := p.Shapers[a.Target.Kind]
	if !ok {
		return shapers.Status{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("no shaper for %s targets (%s)", a.Target.Kind, a.Target), "UnknownTarget", shapers.ErrUnknownTarget)
	}
	st, err := s.Apply(ctx, a)
	if err != nil {
		return st, shapeError(err)
	}
	return st, nil
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
	r, err := p.reserver(in.Kind)
	if err != nil {
		return err
	}
	return shapeError(r.Hold(ctx, in.Hold))
}

// ReleaseHold gives held capacity back; releasing a key not held changes nothing.
func (p *Prefetcher) ReleaseHold(ctx context.Context, in ReleaseHoldInput) error {
	r, err := p.reserver(in.Kind)
	if err != nil {
		return err
	}
	return shapeError(r.Release(ctx, in.Key))
}

func (p *Prefetcher) reserver(kind string) (shapers.Reserver, error) {
	s, ok := p.Shapers[kind]
	if !ok {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("no shaper for %s targets", kind), "UnknownTarget", shapers.ErrUnknownTarget)
	}
	r, ok := s.(shapers.Reserver)
	if !ok {
		return nil, shapeError(fmt.Errorf("%w: %s shapers cannot hold capacity", shapers.ErrUnsupported, kind))
	}
	return r, nil
}

// Migrate moves a target's replicas off a host through the shaper of its
// kind, when that shaper is a shapers.Migrator (otherwise type Unsupported).
func (p *Prefetcher) Migrate(ctx context.Context, m shapers.Migration) (shapers.Moved, error) {
	s, ok := p.Shapers[m.Target.Kind]
	if !ok {
		return shapers.Moved{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("no shaper for %s targets (%s)", m.Target.Kind, m.Target), "UnknownTarget", shapers.ErrUnknownTarget)
	}
	mg, ok := s.(shapers.Migrator)
	if !ok {
		return shapers.Moved{}, shapeError(fmt.Errorf("%w: %s targets cannot migrate", shapers.ErrUnsupported, m.Target.Kind))
	}
	moved, err := mg.Migrate(ctx, m)
	if err != nil {
		return moved, shapeError(err)
	}
	return moved, nil
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
