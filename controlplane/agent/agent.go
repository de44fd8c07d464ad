// Package agent is the host agent's assembly: what `headstart agent` runs
// on each bare-metal host. An Agent is a Temporal worker on the host's own
// task queue (headstart.HostQueue), so the coordinator's shape activities
// reach the right machine through Temporal's matching, with no other
// protocol, port or credential. It applies them to the host's cgroups
// (shapers/cgroups) and network (shapers/bandwidth), runs the host's stage workers inside their cgroups
// and keeps them running, and signals the host's capacity and use to the
// fleet's coordinator every heartbeat.
//
//	a, err := agent.New(agent.Options{Host: "node-1", Coordinator: headstart.CoordinatorWorkflowID(fleet), ...})
//	w := a.NewWorker(c) // start it (again, with a fresh one, if the server is not up yet)
//	a.Run(ctx, c)       // stage workers and heartbeats until ctx ends
//	w.Stop(); a.Close(ctx)
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/activities"
	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/bandwidth"
	"github.com/headstart-dev/headstart/controlplane/shapers/cgroups"
)

// DefaultHeartbeat is Options.Heartbeat's default.
const DefaultHeartbeat = 15 * time.Second

// Options configure an Agent.
type Options struct {
	// Host names this host: the agent polls headstart.HostQueue(Host), and
	// the coordinator's targets name it. Required.
	Host string
	// Coordinator is the workflow ID of the fleet's coordinator, which the
	// heartbeats signal (headstart.CoordinatorWorkflowID). Required.
	Coordinator string
	// Heartbeat: how often the host's capacity and use are reported
	// (default DefaultHeartbeat).
	Heartbeat time.Duration
	// StateDir keeps the shapers' desired states (in cgroups/ and
	// bandwidth/), so a restarted agent reconciles to them; "" keeps them
	// in memory only. It overrides the shapers' own StateDir.
	StateDir string
	// Cgroups configures the cgroup shaper (CPU, memory, disk); its Log
	// defaults to Log.
	Cgroups cgroups.Options
	// MeasureDiskIOPS sets Cgroups.DiskIOPSBudget to what New measures
	// (cgroups.MeasureIOPS) on the first of Cgroups.Devices that is a folder.
	MeasureDiskIOPS bool
	// Bandwidth configures the bandwidth shaper; nil: the agent does not
	// shape the host's network. Its Log defaults to Log.
	Bandwidth *bandwidth.Options
	// Workers are the stage workers the agent runs, each in its cgroup.
	Workers []Worker
	// Address and Namespace of the Temporal server replace {address} and
	// {namespace} in the workers' commands.
	Address, Namespace string
	// Log receives what the agent does (default: discarded).
	Log io.Writer
}

// Worker is a stage worker an agent runs and keeps running in a cgroup.
type Worker struct {
	// Cgroup the worker runs in, from its first instruction. Required.
	Cgroup string
	// Command and its arguments; {address} and {namespace} are replaced. Required.
	Command []string
	// Env adds KEY=VALUE pairs to its environment.
	Env []string
}

// name is a host's or a cgroup's name: one path element, no separators.
var name = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Validate reports every option the agent cannot run with.
func (o Options) Validate() error {
	var errs []error
	if !name.MatchString(o.Host) {
		errs = append(errs, fmt.Errorf("host %q: want letters, digits, '.', '_' and '-'", o.Host))
	}
	if o.Coordinator == "" {
		errs = append(errs, errors.New("coordinator: not set"))
	}
	if o.Heartbeat < 0 {
		errs = append(errs, fmt.Errorf("heartbeat %v is negative", o.Heartbeat))
	}
	if err := o.Cgroups.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.MeasureDiskIOPS && o.measureDir() == "" {
		errs = append(errs, errors.New("measure disk IOPS: none of the cgroup devices is a folder to measure in"))
	}
	if o.Bandwidth != nil {
		if err := o.Bandwidth.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	for i, w := range o.Workers {
		if !name.MatchString(w.Cgroup) || w.Cgroup == "." || w.Cgroup == ".." {
			errs = append(errs, fmt.Errorf("workers[%d]: cgroup %q: want letters, digits, '.', '_' and '-'", i, w.Cgroup))
		}
		if len(w.Command) == 0 || w.Command[0] == "" {
			errs = append(errs, fmt.Errorf("workers[%d]: no command", i))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

// measureDir is the first cgroup device that is a folder, or "".
func (o Options) measureDir() string {
	for _, d := range o.Cgroups.Devices {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d
		}
	}
	return ""
}

// Agent is one host's agent.
type Agent struct {
	o         Options
	cgroup    *cgroups.Shaper
	bandwidth *bandwidth.Shaper // nil when not configured
}

// New checks o and opens the host's cgroups (the agent needs root, or a
// cgroup delegated to its user).
func New(o Options) (*Agent, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.Cgroups.Log == nil {
		o.Cgroups.Log = o.Log
	}
	if o.StateDir != "" {
		o.Cgroups.StateDir = filepath.Join(o.StateDir, "cgroups")
	}
	if o.MeasureDiskIOPS {
		dir := o.measureDir()
		iops, err := cgroups.MeasureIOPS(context.Background(), dir, 0)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		o.Cgroups.DiskIOPSBudget = math.Floor(iops)
		fmt.Fprintf(o.Log, "headstart agent: the disk under %s sustains %.0f IOPS: the budget of disk IOPS floors\n", dir, o.Cgroups.DiskIOPSBudget)
	}
	cg, err := cgroups.New(o.Cgroups)
	if err != nil {
		return nil, fmt.Errorf("agent: %w (the agent shapes cgroups: run it as root, or with a cgroup delegated to its user)", err)
	}
	a := &Agent{o: o, cgroup: cg}
	if o.Bandwidth != nil {
		bw := *o.Bandwidth
		if bw.Log == nil {
			bw.Log = o.Log
		}
		if o.StateDir != "" {
			bw.StateDir = filepath.Join(o.StateDir, "bandwidth")
		}
		if a.bandwidth, err = bandwidth.New(bw); err != nil {
			cg.Close(context.Background())
			return nil, fmt.Errorf("agent: %w (the agent shapes traffic through netlink: it needs CAP_NET_ADMIN)", err)
		}
	}
	return a, nil
}

// Queue is the host's task queue, which the agent polls.
func (a *Agent) Queue() string { return headstart.HostQueue(a.o.Host) }

// Cgroups is the agent's cgroup shaper.
func (a *Agent) Cgroups() *cgroups.Shaper { return a.cgroup }

// NewWorker builds a Temporal worker of the host's queue that applies the
// coordinator's shape activities ("Shape") with the host's shapers. It is
// not started: start it, and build a fresh one to try again, since an SDK
// worker starts once.
func (a *Agent) NewWorker(c client.Client) sdkworker.Worker {
	shape := &activities.Prefetcher{Shapers: a.shapers()}
	w := sdkworker.New(c, a.Queue(), sdkworker.Options{})
	w.RegisterActivityWithOptions(shape.Shape, activity.RegisterOptions{Name: "Shape"})
	return w
}

// shapers are the host's shapers by the kind of target each serves.
func (a *Agent) shapers() map[string]shapers.Shaper {
	m := map[string]shapers.Shaper{cgroups.Kind: a.cgroup}
	if a.bandwidth != nil {
		m[bandwidth.Kind] = a.bandwidth
	}
	return m
}

// Shapes are the kinds of target the agent shapes, sorted.
func (a *Agent) Shapes() []string { return slices.Sorted(maps.Keys(a.shapers())) }

// Run runs the host's stage workers and reports the host to the
// coordinator until ctx ends, then stops the workers and returns.
func (a *Agent) Run(ctx context.Context, c client.Client) {
	var workers sync.WaitGroup
	replace := strings.NewReplacer("{address}", a.o.Address, "{namespace}", a.o.Namespace)
	for _, w := range a.o.Workers {
		args := make([]string, len(w.Command))
		for i, arg := range w.Command {
			args[i] = replace.Replace(arg)
		}
		workers.Go(func() { a.supervise(ctx, w.Cgroup, args, w.Env) })
	}
	a.report(ctx, c)
	workers.Wait()
}

// Close stops the shapers' stepping; the limits stay as they are.
func (a *Agent) Close(ctx context.Context) error {
	err := a.cgroup.Close(ctx)
	if a.bandwidth != nil {
		err = errors.Join(err, a.bandwidth.Close(ctx))
	}
	return err
}
