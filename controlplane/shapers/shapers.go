// Package shapers defines the contract for changing real capacity — worker
// replicas on a task queue, a container's or VM's CPU and memory, cgroup
// limits, bandwidth and IOPS shares, placement — and shapertest holds the
// conformance suite every implementation passes. Each target lives in its own
// subpackage with its own client library; this root package imports only
// resources and the standard library.
package shapers

import (
	"context"
	"errors"
	"fmt"

	"github.com/headstart-dev/headstart/resources"
)

// Target names what a shaper changes, e.g. {Kind: "workerpool", Name: "pipeline-train"}.
type Target struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Host is the machine whose agent (`headstart agent`) shapes the
	// target, for targets local to one host (a cgroup); empty for those the
	// control worker's shapers reach (a Deployment, a worker pool).
	Host string `json:"host,omitempty"`
}

func (t Target) String() string {
	if t.Host != "" {
		return t.Kind + "/" + t.Name + "@" + t.Host
	}
	return t.Kind + "/" + t.Name
}

// Desired is the state an action asks for; nil fields are left as they are.
type Desired struct {
	// Replicas of the target (worker processes, pods).
	Replicas *int `json:"replicas,omitempty"`
	// Resources of each replica.
	Resources *resources.Vector `json:"resources,omitempty"`
	// Concurrency of each replica (activities it runs at once).
	Concurrency *int `json:"concurrency,omitempty"`
}

// Action asks a shaper to bring a target to a desired state.
type Action struct {
	Target  Target  `json:"target"`
	Desired Desired `json:"desired"`
	// Reason says why, for people reading logs and the Web UI.
	Reason string `json:"reason"`
	// DryRun validates the action and reports what would change without changing anything.
	DryRun bool `json:"dry_run,omitempty"`
}

// Validate rejects an action no shaper can apply.
func (a Action) Validate() error {
	switch {
	case a.Target.Kind == "" || a.Target.Name == "":
		return fmt.Errorf("%w: target %q has no kind or name", ErrInvalidAction, a.Target)
	case a.Reason == "":
		return fmt.Errorf("%w: %s: no reason given", ErrInvalidAction, a.Target)
	case a.Desired.Replicas != nil && *a.Desired.Replicas < 0:
		return fmt.Errorf("%w: %s: %d replicas", ErrInvalidAction, a.Target, *a.Desired.Replicas)
	case a.Desired.Concurrency != nil && *a.Desired.Concurrency < 1:
		return fmt.Errorf("%w: %s: concurrency %d", ErrInvalidAction, a.Target, *a.Desired.Concurrency)
	}
	if a.Desired.Resources != nil {
		if err := a.Desired.Resources.Validate(); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInvalidAction, a.Target, err)
		}
	}
	return nil
}

// Status is a target's observed state.
type Status struct {
	Target Target `json:"target"`
	// Replicas asked for, and those ready to work.
	Replicas int `json:"replicas"`
	Ready    int `json:"ready"`
	// Resources and Concurrency of each replica, where the shaper manages them.
	Resources   resources.Vector `json:"resources"`
	Concurrency int              `json:"concurrency,omitempty"`
	// Converged is true when the observed state is the desired one.
	Converged bool   `json:"converged"`
	Message   string `json:"message,omitempty"`
}

// Shaper changes real capacity for one kind of target. Implementations are
// safe for concurrent use, and Apply is idempotent and level-based: applying
// the same action twice leaves the same state; Apply returns once the change
// is requested, and Status reports when it has taken effect.
type Shaper interface {
	Status(ctx context.Context, t Target) (Status, error)
	Apply(ctx context.Context, a Action) (Status, error)
}

// Closer is a shaper holding resources (processes, connections) to release.
type Closer interface {
	Close(ctx context.Context) error
}

// Errors shapers return; test for them with errors.Is.
var (
	ErrInvalidAction = errors.New("invalid shaping action")
	ErrUnknownTarget = errors.New("unknown shaping target")
	ErrUnsupported   = errors.New("not supported by this shaper")
)

// Int returns a pointer to n, for Desired fields.
func Int(n int) *int { return &n }

// Migration asks a shaper to move a target's replicas off a host (a node, a
// hypervisor) that is running hot; where they go is the platform's choice.
type Migration struct {
	Target Target `json:"target"`
	// From is the host the replicas leave.
	From string `json:"from"`
	// Reason says why, for people reading logs and the Web UI.
	Reason string `json:"reason"`
	// DryRun validates the migration and reports what would move without moving anything.
	DryRun bool `json:"dry_run,omitempty"`
}

// Validate rejects a migration no shaper can carry out.
func (m Migration) Validate() error {
	switch {
	case m.Target.Kind == "" || m.Target.Name == "":
		return fmt.Errorf("%w: target %q has no kind or name", ErrInvalidAction, m.Target)
	case m.From == "":
		return fmt.Errorf("%w: %s: no host to move off", ErrInvalidAction, m.Target)
	case m.Reason == "":
		return fmt.Errorf("%w: %s: no reason given", ErrInvalidAction, m.Target)
	}
	return nil
}

// Moved is what a migration did.
type Moved struct {
	// Moved names the replicas asked to move (evicted, migrating).
	Moved []string `json:"moved"`
	// Blocked names the replicas that may not move now (a disruption
	// budget); migrating again later moves them.
	Blocked []string `json:"blocked,omitempty"`
	Message string   `json:"message,omitempty"`
}

// Migrator is a shaper that moves replicas between hosts. Migrate is
// level-based: replicas already off the host are not touched again.
type Migrator interface {
	Migrate(ctx context.Context, m Migration) (Moved, error)
}

// Hold asks a shaper to keep capacity for a predicted stage — soft: real
// work may take it — until it is released.
type Hold struct {
	// Key names the hold idempotently: the ledger reservation's key.
	Key   string `json:"key"`
	Stage string `json:"stage"`
	// Resources of each of Replicas units held (pods, slots).
	Resources resources.Vector `json:"resources"`
	Replicas  int              `json:"replicas"`
}

// Validate rejects a hold no shaper can keep.
func (h Hold) Validate() error {
	switch {
	case h.Key == "" || h.Stage == "":
		return fmt.Errorf("%w: hold %q for stage %q: no key or stage", ErrInvalidAction, h.Key, h.Stage)
	case h.Replicas < 1:
		return fmt.Errorf("%w: hold %s: %d replicas", ErrInvalidAction, h.Key, h.Replicas)
	case h.Resources.IsZero():
		return fmt.Errorf("%w: hold %s: no resources", ErrInvalidAction, h.Key)
	}
	if err := h.Resources.Validate(); err != nil {
		return fmt.Errorf("%w: hold %s: %w", ErrInvalidAction, h.Key, err)
	}
	return nil
}

// Reserver is a shaper that holds capacity for predicted stages. Both
// calls are idempotent: holding a key again, or releasing one not held,
// changes nothing.
type Reserver interface {
	Hold(ctx context.Context, h Hold) error
	Release(ctx context.Context, key string) error
}

// Capacity is what a pool of machines offers and what work that is not
// Headstart's takes of it, as the platform tells.
type Capacity struct {
	// Total the machines offer (Kubernetes: the allocatable of the Ready,
	// schedulable nodes).
	Total resources.Vector
	// InUse by other work (Kubernetes: the requests of the pods bound to
	// those nodes and not finished, Headstart's placeholders excluded).
	InUse resources.Vector
	// Held by Headstart's own placeholders, for the record: neither in
	// InUse nor subtracted from Total.
	Held resources.Vector
	// Machines counted, and what was measured, for a person.
	Machines int
	Source   string
}

// CapacityReader is a shaper that can tell a pool's real capacity. The
// selector picks the pool's machines in the platform's terms (Kubernetes: a
// node label selector; empty: every node).
type CapacityReader interface {
	Capacity(ctx context.Context, selector string) (Capacity, error)
}
