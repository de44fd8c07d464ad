package controlplane

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/activities"
	"github.com/headstart-dev/headstart/controlplane/coordinator"
	"github.com/headstart-dev/headstart/resources"
)

// Pool is a resource pool the control plane keeps a ledger for.
type Pool struct {
	Name     string
	Capacity resources.Vector
	// Measured pools take their capacity from measurements (the
	// coordinator's Measure): Capacity only starts a new ledger, and Start
	// leaves a running one's capacity as last measured.
	Measured bool
}

// Plane is what `headstart worker --config` runs besides the control
// worker itself: the fleet's forecaster, one ledger per pool and, when set,
// the coordinator.
type Plane struct {
	// Options name the fleet and the control task queue, and hold the
	// forecaster's options for a forecaster this start creates.
	Options Options
	// Pools to keep a ledger for.
	Pools []Pool
	// Coordinator's configuration; nil runs none.
	Coordinator *coordinator.Config
}

// ErrInvalid is wrapped by Plane.Validate's errors.
var ErrInvalid = errors.New("invalid control plane")

// Validate reports every problem before anything is started: an error
// wrapping ErrInvalid and one *FieldError per problem, named
// as the configuration file names the field.
func (p Plane) Validate() error {
	var fs headstart.FieldErrors
	seen := map[string]bool{}
	named := true // every pool has a usable name, so the coordinator's can be looked up
	for i, pool := range p.Pools {
		at := fmt.Sprintf("pools[%d]", i)
		switch {
		case pool.Name == "":
			fs.Add(at+".name", "not set")
		case seen[pool.Name]:
			fs.Add(at+".name", "%s is listed twice", pool.Name)
		case strings.ContainsAny(pool.Name, " \t\n/"):
			// It is part of the ledger's workflow ID, and of its Web UI address.
			fs.Add(at+".name", "%q has a space or a slash", pool.Name)
		}
		named = named && pool.Name != "" && !strings.ContainsAny(pool.Name, " \t\n/")
		seen[pool.Name] = true
		if err := pool.Capacity.Validate(); err != nil {
			fs.Add(at+".capacity", "%v", err)
		}
	}
	if c := p.Coordinator; c != nil {
		fs.Under("coordinator", c.Check())
		if c.Pool != "" && named && !seen[c.Pool] {
			fs.Add("coordinator.pool", "%q is not among the pools (%s)", c.Pool, strings.Join(slices.Sorted(maps.Keys(seen)), ", "))
		}
	}
	if err := fs.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// Started says what Start did with one workflow.
type Started struct {
	WorkflowID, RunID string
	// Attached is true when the workflow was already running.
	Attached bool
	// Changed is true when a running workflow's configuration was updated.
	Changed bool
}

func (s Started) String() string {
	switch {
	case !s.Attached:
		return "started " + s.WorkflowID
	case s.Changed:
		return "attached to " + s.WorkflowID + " and updated its configuration"
	}
	return "attached to " + s.WorkflowID
}

// Start starts the control plane's workflows, or attaches to them where
// they run: a second Start, or a restart, makes no twins (each is started
// with the conflict policy USE_EXISTING, so two racing starters get one
// workflow). A running ledger whose capacity differs gets set-capacity, and
// a running coordinator gets the configure update; both are validated by
// the workflow before anything changes. The configuration is validated
// first, so an invalid one starts nothing.
func (p Plane) Start(ctx context.Context, c client.Client) ([]Started, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	o := p.Options.withDefaults()
	var out []Started
	fid := headstart.ForecasterWorkflowID(o.Fleet)
	s, err := startOrAttach(ctx, c, fid, o.TaskQueue, headstart.ForecasterWorkflowName, headstart.ForecasterInput{Options: o.Forecaster})
	if err != nil {
		return out, err
	}
	out = append(out, s)
	for _, pool := range p.Pools {
		id := headstart.LedgerWorkflowID(pool.Name)
		s, err := startOrAttach(ctx, c, id, o.TaskQueue, headstart.LedgerWorkflowName, headstart.LedgerInput{Pool: pool.Name, Capacity: pool.Capacity})
		if err != nil {
			return out, err
		}
		if s.Attached && !pool.Measured {
			if s.Changed, err = setCapacity(ctx, c, id, pool.Capacity); err != nil {
				return out, err
			}
		}
		out = append(out, s)
	}
	if p.Coordinator != nil {
		cfg := *p.Coordinator
		id := headstart.CoordinatorWorkflowID(o.Fleet)
		s, err := startOrAttach(ctx, c, id, o.TaskQueue, headstart.CoordinatorWorkflowName, coordinator.Input{Fleet: o.Fleet, Config: cfg})
		if err != nil {
			return out, err
		}
		if s.Attached {
			if err := activities.Update(ctx, c, id, headstart.UpdateConfigure, cfg, &s.Changed); err != nil {
				return out, err
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// startOrAttach starts a workflow unless one with its ID is running.
func startOrAttach(ctx context.Context, c client.Client, id, queue, workflowType string, input any) (Started, error) {
	d, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return Started{WorkflowID: id, RunID: d.GetWorkflowExecutionInfo().GetExecution().GetRunId(), Attached: true}, nil
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: id, TaskQueue: queue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, workflowType, input)
	if err != nil {
		return Started{}, fmt.Errorf("start %s: %w", id, err)
	}
	return Started{WorkflowID: id, RunID: run.GetRunID()}, nil
}

// setCapacity sets a running ledger's capacity when it differs.
func setCapacity(ctx context.Context, c client.Client, id string, capacity resources.Vector) (bool, error) {
	var pool headstart.PoolStatus
	err := untilAnswered(ctx, func() (err error) {
		pool, err = activities.Query[headstart.PoolStatus](ctx, c, id, headstart.QueryPool)
		return err
	})
	if err != nil {
		return false, err
	}
	if pool.Capacity == capacity {
		return false, nil
	}
	var reclaimed []string
	if err := activities.Update(ctx, c, id, headstart.UpdateSetCapacity, capacity, &reclaimed); err != nil {
		return false, err
	}
	return true, nil
}

// untilAnswered runs query until it succeeds, fails for a reason waiting
// does not cure, or ctx ends. A query fails at once while the workflow's
// worker has no poller connected, or times out while it reconnects — this
// very process, after the server restarted — which a moment cures.
func untilAnswered(ctx context.Context, query func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := query()
		var precondition *serviceerror.FailedPrecondition
		var unavailable *serviceerror.Unavailable
		var timedOut *serviceerror.DeadlineExceeded
		transient := errors.As(err, &precondition) || errors.As(err, &unavailable) || errors.As(err, &timedOut) ||
			(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) // an attempt's own deadline
		if err == nil || !transient {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
