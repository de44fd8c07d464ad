package headstart

import (
	"errors"
	"fmt"
	"time"

	"github.com/headstart-dev/headstart/resources"
)

// The ledger's workflow type, updates and queries.
const (
	LedgerWorkflowName = "HeadstartLedger"
	UpdateReserve      = "reserve"      // a ReserveRequest; completes with a ReserveResult
	UpdateRelease      = "release"      // a ReleaseRequest; completes with whether the key was held
	UpdateSetCapacity  = "set-capacity" // a resources.Vector; completes with the soft reservations reclaimed
	UpdateMeasure      = "measure"      // a Measurement; completes with the soft reservations reclaimed
	QueryReservations  = "reservations" // []Reservation
	QueryPool          = "pool"         // PoolStatus
)

// Errors a ledger returns; test for them with errors.Is. Across a Temporal
// update they arrive as application errors of the types below. Releasing a
// key that is not held is not an error.
var (
	ErrInvalidReservation   = errors.New("invalid reservation request")
	ErrInsufficientCapacity = errors.New("insufficient capacity")
	ErrUnknownPool          = errors.New("unknown resource pool")
	ErrCapacityBelowHard    = errors.New("capacity below hard reservations")
)

// The application error types the ledger's errors cross an update with, so
// that callers (and retry policies) can match them.
const (
	ErrorTypeInvalidReservation   = "InvalidReservation"
	ErrorTypeInsufficientCapacity = "InsufficientCapacity"
	ErrorTypeUnknownPool          = "UnknownPool"
	ErrorTypeCapacityBelowHard    = "CapacityBelowHard"
	ErrorTypeLedger               = "LedgerError" // any other
)

// MaxReservationTTL bounds a reservation's time to live.
const MaxReservationTTL = 24 * time.Hour

// Reservation is capacity held for a stage in a pool.
type Reservation struct {
	Key       string           `json:"key"` // idempotency key: one reservation per key
	Pool      string           `json:"pool"`
	Stage     string           `json:"stage"`
	Resources resources.Vector `json:"resources"`
	// Soft reservations are reclaimed when a hard request needs the room;
	// hard ones are never reclaimed.
	Soft     bool      `json:"soft"`
	Priority int       `json:"priority"` // higher is more important
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`
}

// ReserveRequest asks a ledger to hold capacity.
type ReserveRequest struct {
	Key       string
	Pool      string
	Stage     string
	Resources resources.Vector
	TTL       time.Duration
	Priority  int
	Soft      bool
}

// Validate rejects a malformed request before anything is written.
func (r ReserveRequest) Validate(pool string) error {
	switch {
	case r.Pool != pool:
		return fmt.Errorf("%w: %q (this ledger holds %q)", ErrUnknownPool, r.Pool, pool)
	case r.Key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidReservation)
	case r.Stage == "":
		return fmt.Errorf("%w: empty stage", ErrInvalidReservation)
	case r.TTL <= 0 || r.TTL > MaxReservationTTL:
		return fmt.Errorf("%w: ttl %v, want (0, %v]", ErrInvalidReservation, r.TTL, MaxReservationTTL)
	case r.Resources.IsZero():
		return fmt.Errorf("%w: no resources", ErrInvalidReservation)
	}
	if err := r.Resources.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidReservation, err)
	}
	return nil
}

// ReserveResult says what a reservation request did.
type ReserveResult struct {
	Reservation Reservation `json:"reservation"`
	// Existing is true when the key was already reserved: nothing changed.
	Existing bool `json:"existing"`
	// Reclaimed lists the soft reservations taken back to make room.
	Reclaimed []string `json:"reclaimed,omitempty"`
}

// ReleaseRequest gives back a reservation.
type ReleaseRequest struct{ Key string }

// LedgerWorkflowID is the ledger's workflow ID for a resource pool.
func LedgerWorkflowID(pool string) string { return "headstart-ledger-" + pool }

// LedgerInput starts (or continues) a pool's ledger.
type LedgerInput struct {
	Pool     string
	Capacity resources.Vector
	// Reservations carried by continue-as-new.
	Reservations []Reservation
	// Measurement carried by continue-as-new: the last one, if the pool is measured.
	Measurement *Measurement `json:",omitempty"`
}

// Measurement is a pool's capacity as the infrastructure tells it (the
// ledger's measure update): what its machines offer, and what work that is
// not Headstart's takes of it. Reservations take only the rest.
type Measurement struct {
	// Capacity the pool's machines offer (Kubernetes: the allocatable of
	// its Ready, schedulable nodes).
	Capacity resources.Vector
	// InUse is what other work holds of it (Kubernetes: the requests of
	// the pods bound to those nodes, Headstart's placeholders excluded).
	InUse resources.Vector
	// At is when it was measured; Source says what was measured, for a person.
	At     time.Time
	Source string `json:",omitempty"`
}

// PoolStatus is a pool's capacity and what is held.
type PoolStatus struct {
	Pool               string
	Capacity           resources.Vector
	Hard, Soft, Free   resources.Vector
	Reservations       int
	Reclaims, Expiries int64
	// InUse is what other work holds of a measured pool's capacity; Free
	// leaves it out. Measured is when (zero: the capacity is configured),
	// and Source what was measured.
	InUse    resources.Vector `json:",omitempty"`
	Measured time.Time        `json:",omitempty"`
	Source   string           `json:",omitempty"`
}
