package ledger

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/internal/details"
	"github.com/headstart-dev/headstart/resources"
)

// maxLedgerUpdatesRun bounds the updates one run takes before it continues as new.
const maxLedgerUpdatesRun = 5000

// ledgerErrorType is the application error type a ledger error crosses an
// update with, so callers (and retry policies) can match it.
func ledgerErrorType(err error) string {
	for _, e := range []struct {
		err  error
		name string
	}{
		{headstart.ErrInvalidReservation, headstart.ErrorTypeInvalidReservation},
		{headstart.ErrInsufficientCapacity, headstart.ErrorTypeInsufficientCapacity},
		{headstart.ErrUnknownPool, headstart.ErrorTypeUnknownPool},
		{headstart.ErrCapacityBelowHard, headstart.ErrorTypeCapacityBelowHard},
	} {
		if errors.Is(err, e.err) {
			return e.name
		}
	}
	return headstart.ErrorTypeLedger
}

func ledgerError(err error) error {
	if err == nil {
		return nil
	}
	return temporal.NewNonRetryableApplicationError(err.Error(), ledgerErrorType(err), err)
}

// Ledger is a resource pool's long-running workflow: its capacity and the
// reservations held in it. Updates reserve, release and change capacity,
// each validated before anything is written; expired reservations release
// themselves; the invariant that neither hard reservations nor all
// reservations exceed capacity holds after every operation.
func Workflow(ctx workflow.Context, in headstart.LedgerInput) error {
	if in.Pool == "" {
		return temporal.NewNonRetryableApplicationError("ledger needs a pool name", ledgerErrorType(headstart.ErrUnknownPool), headstart.ErrUnknownPool)
	}
	if err := in.Capacity.Validate(); err != nil {
		return ledgerError(fmt.Errorf("%w: capacity: %w", headstart.ErrInvalidReservation, err))
	}
	l := &ledgerState{Pool: in.Pool, Capacity: in.Capacity, Reservations: in.Reservations, Measured: in.Measurement}
	updates := 0
	changed := workflow.NewChannel(ctx)
	publish := func() {
		workflow.SetCurrentDetails(ctx, ledgerDetails(l))
	}
	notify := func() {
		updates++
		publish()
		changed.SendAsync(struct{}{})
	}

	if err := workflow.SetUpdateHandlerWithOptions(ctx, headstart.UpdateReserve,
		func(ctx workflow.Context, r headstart.ReserveRequest) (headstart.ReserveResult, error) {
			res, err := l.reserve(r, workflow.Now(ctx))
			if err == nil && !res.Existing {
				notify()
			}
			return res, ledgerError(err)
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, r headstart.ReserveRequest) error {
			return ledgerError(r.Validate(l.Pool))
		}, Description: "Hold capacity for a stage (idempotent by key); hard requests reclaim soft reservations."},
	); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, headstart.UpdateRelease,
		func(ctx workflow.Context, r headstart.ReleaseRequest) (bool, error) {
			released := l.release(r.Key, workflow.Now(ctx))
			if released {
				notify()
			}
			return released, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, r headstart.ReleaseRequest) error {
			if r.Key == "" {
				return ledgerError(fmt.Errorf("%w: empty key", headstart.ErrInvalidReservation))
			}
			return nil
		}, Description: "Give back a reservation; releasing one not held reports false."},
	); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, headstart.UpdateSetCapacity,
		func(ctx workflow.Context, c resources.Vector) ([]string, error) {
			reclaimed, err := l.setCapacity(c, workflow.Now(ctx))
			if err == nil {
				notify()
			}
			return reclaimed, ledgerError(err)
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, c resources.Vector) error {
			if err := c.Validate(); err != nil {
				return ledgerError(fmt.Errorf("%w: capacity: %w", headstart.ErrInvalidReservation, err))
			}
			return nil
		}, Description: "Change the pool's capacity; soft reservations that no longer fit are reclaimed."},
	); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, headstart.UpdateMeasure,
		func(ctx workflow.Context, m headstart.Measurement) ([]string, error) {
			reclaimed, err := l.measure(m, workflow.Now(ctx))
			if err == nil {
				notify()
			}
			return reclaimed, ledgerError(err)
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, m headstart.Measurement) error {
			return ledgerError(validMeasurement(m))
		}, Description: "Take a measurement of the pool: its capacity and what other work holds of it; soft reservations that no longer fit are reclaimed."},
	); err != nil {
		return err
	}
	if err := workflow.SetQueryHandlerWithOptions(ctx, headstart.QueryReservations, func() ([]headstart.Reservation, error) {
		return l.Reservations, nil
	}, workflow.QueryHandlerOptions{Description: "The reservations held, by key."}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandlerWithOptions(ctx, headstart.QueryPool, func() (headstart.PoolStatus, error) {
		return l.status(), nil
	}, workflow.QueryHandlerOptions{Description: "Capacity, hard, soft and free resources, reclaims and expiries."}); err != nil {
		return err
	}
	publish()

	for {
		// Sleep until the next expiry or the next change, whichever is first.
		next := l.nextExpiry()
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(changed, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
		sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
		if !next.IsZero() {
			sel.AddFuture(workflow.NewTimer(ctx, max(next.Sub(workflow.Now(ctx)), time.Millisecond)), func(workflow.Future) {})
		}
		sel.Select(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		if len(l.expire(workflow.Now(ctx))) > 0 {
			publish()
		}
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() || updates >= maxLedgerUpdatesRun {
			break
		}
	}
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	return workflow.NewContinueAsNewError(ctx, headstart.LedgerWorkflowName, headstart.LedgerInput{Pool: l.Pool, Capacity: l.Capacity, Reservations: l.Reservations, Measurement: l.Measured})
}

func (l *ledgerState) status() headstart.PoolStatus {
	hard, soft := l.used()
	st := headstart.PoolStatus{Pool: l.Pool, Capacity: l.Capacity, Hard: hard, Soft: soft, Free: l.Free(),
		Reservations: len(l.Reservations), Reclaims: l.Reclaims, Expiries: l.Expiries}
	if m := l.Measured; m != nil {
		st.InUse, st.Measured, st.Source = m.InUse, m.At, m.Source
	}
	return st
}

// ledgerDetails is the Markdown the Web UI shows: the pool, then the reservations.
//
//workflowcheck:ignore fmt formats strings and numbers here, deterministically
func ledgerDetails(l *ledgerState) string {
	st := l.status()
	var b strings.Builder
	fmt.Fprintf(&b, "**Pool %s** — capacity %v; hard %v; soft %v; free %v\n\n", st.Pool, st.Capacity, st.Hard, st.Soft, st.Free)
	if !st.Measured.IsZero() {
		fmt.Fprintf(&b, "Measured %s from %s: other work holds %v.\n\n", st.Measured.UTC().Format(time.RFC3339), st.Source, st.InUse)
	}
	b.WriteString("| key | stage | resources | kind | priority | expires |\n|---|---|---|---|---|---|\n")
	for i, r := range l.Reservations {
		if i == details.MaxRows {
			fmt.Fprintf(&b, "| … %d more (query `reservations`) | | | | | |\n", len(l.Reservations)-details.MaxRows)
			break
		}
		kind := "hard"
		if r.Soft {
			kind = "soft"
		}
		fmt.Fprintf(&b, "| %s | %s | %v | %s | %d | %s |\n", r.Key, details.Short(r.Stage), r.Resources, kind, r.Priority, r.Expires.UTC().Format(time.RFC3339))
	}
	return b.String()
}
