package config

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"go.temporal.io/sdk/client"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane"
	"github.com/headstart-dev/headstart/controlplane/agent"
	"github.com/headstart-dev/headstart/controlplane/coordinator"
	"github.com/headstart-dev/headstart/controlplane/shapers/bandwidth"
	"github.com/headstart-dev/headstart/controlplane/shapers/cgroups"
	"github.com/headstart-dev/headstart/resources"
)

// Options are the control worker's options the file sets.
func (f *File) Options() controlplane.Options {
	return controlplane.Options{
		TaskQueue: f.TaskQueue,
		Fleet:     f.Fleet,
		Forecaster: headstart.ForecasterOptions{
			MaxStages: f.Forecaster.MaxStages, Quantile: f.Forecaster.Quantile, Window: f.Forecaster.Window,
			FitInterval: f.Forecaster.FitInterval, Utilization: f.Forecaster.Utilization,
			MaxItemsPerTask: f.Forecaster.MaxItemsPerTask, MaxBacklogBatches: f.Forecaster.MaxBacklogBatches,
		},
		PrometheusURL: f.Forecaster.PrometheusURL,
	}
}

// Plane is what the file asks the control plane to run. Call it on a
// File that Load returned: its quantities are known to parse.
func (f *File) Plane() controlplane.Plane {
	cp := controlplane.Plane{Options: f.Options()}
	for _, p := range f.Pools {
		cp.Pools = append(cp.Pools, controlplane.Pool{Name: p.Name, Capacity: vector(p.Capacity), Measured: p.Measure != nil})
	}
	if f.Coordinator != nil {
		c := f.coordinatorConfig()
		cp.Coordinator = &c
	}
	return cp
}

func (f *File) coordinatorConfig() coordinator.Config {
	c := f.Coordinator
	out := coordinator.Config{
		Mode: coordinator.Mode(c.Mode), Pool: c.Pool, LedgerWorkflowID: headstart.LedgerWorkflowID(c.Pool), Interval: c.Interval,
		Rule: coordinator.Rule{
			MinConfidence: c.MinConfidence, ActuationTime: c.ActuationTime, Lead: c.Lead, ProtectedShare: c.ProtectedShare,
			MaxMargin: c.MaxMargin, MinPartial: c.MinPartial, RetryAfter: c.RetryAfter,
		},
		Replication: c.Replication.options(),
		HoldWith:    c.HoldWith,
	}
	for _, p := range f.Pools {
		if p.Name == c.Pool && p.Measure != nil && p.Measure.With != "" { // not set is reported at the pool
			out.Measure = &coordinator.Measure{With: p.Measure.With, Selector: p.Measure.NodeSelector}
		}
	}
	for _, s := range c.Replicate {
		st := coordinator.StageTarget{Stage: s.Stage, Queue: s.Queue}
		st.Target.Kind, st.Target.Name = s.Target.Kind, s.Target.Name
		if s.Replication.set() {
			r := c.Replication.merged(s.Replication).options()
			st.Replication = &r
		}
		out.Replicate = append(out.Replicate, st)
	}
	for _, l := range c.Limits {
		sl := coordinator.StageLimits{Stage: l.Stage, Idle: vector(l.Idle), Raised: vector(l.Raised), LowerAfter: l.LowerAfter}
		sl.Target.Kind, sl.Target.Name, sl.Target.Host = l.Target.Kind, l.Target.Name, l.Target.Host
		out.Limits = append(out.Limits, sl)
	}
	return out
}

// vector is quantities by kind name that Load has checked.
func vector(q map[string]string) resources.Vector {
	var v resources.Vector
	for k, s := range q {
		kind, _ := resources.ParseKind(k)
		x, _ := resources.ParseQuantity(s)
		v = v.With(kind, x)
	}
	return v
}

func (r Replication) set() bool {
	return len(r.Levels) > 0 || r.PerReplica != 0 || r.ScaleDownAfter != 0 || r.ReleaseWhenIdle
}

// merged is r with the fields o sets.
func (r Replication) merged(o Replication) Replication {
	if len(o.Levels) > 0 {
		r.Levels = o.Levels
	}
	if o.PerReplica != 0 {
		r.PerReplica = o.PerReplica
	}
	if o.ScaleDownAfter != 0 {
		r.ScaleDownAfter = o.ScaleDownAfter
	}
	r.ReleaseWhenIdle = r.ReleaseWhenIdle || o.ReleaseWhenIdle
	return r
}

func (r Replication) options() coordinator.ReplicationOptions {
	return coordinator.ReplicationOptions{Levels: r.Levels, PerReplica: r.PerReplica, ScaleDownAfter: r.ScaleDownAfter, ReleaseWhenIdle: r.ReleaseWhenIdle}
}

// ReplicaCommand is the worker-pool shaper's command for one replica
// polling queue with the given concurrency: the configured command with
// its placeholders replaced, and the configured environment added.
func (w *WorkerPool) ReplicaCommand(t Temporal, queue string, concurrency int) *exec.Cmd {
	r := strings.NewReplacer("{queue}", queue, "{concurrency}", strconv.Itoa(concurrency),
		"{address}", t.Address, "{namespace}", t.Namespace)
	args := make([]string, len(w.Command))
	for i, a := range w.Command {
		args[i] = r.Replace(a)
	}
	cmd := exec.Command(args[0], args[1:]...)
	if len(w.Env) > 0 {
		cmd.Env = append(cmd.Environ(), w.Env...)
	}
	return cmd
}

// String is the file's connection and names, for a log line.
func (f *File) String() string {
	return fmt.Sprintf("fleet %q on task queue %q, Temporal %s namespace %q", f.Fleet, f.TaskQueue, f.Temporal.Address, f.Temporal.Namespace)
}

// AgentOptions are the options of `headstart agent` on this host: the
// agent section, connected through c to the fleet's coordinator. The host
// is agent.host, else the hostname; the state folder agent.state_dir, else
// its default.
func (f *File) AgentOptions(c client.Options) (agent.Options, error) {
	o := f.Agent.options()
	o.Coordinator = headstart.CoordinatorWorkflowID(f.Fleet)
	o.Address, o.Namespace = c.HostPort, c.Namespace
	if o.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return o, fmt.Errorf("agent.host is not set and the hostname cannot be read: %w", err)
		}
		o.Host = h
	}
	if o.StateDir == "" {
		dir, err := stateHome("agent.state_dir", "agent")
		if err != nil {
			return o, err
		}
		o.StateDir = dir
	}
	return o, o.Validate()
}

// options maps the section onto the agent's options, as written; rates
// that do not parse are 0 (Load reports them).
func (a Agent) options() agent.Options {
	c := a.Cgroups
	o := agent.Options{Host: a.Host, Heartbeat: a.Heartbeat, StateDir: a.StateDir,
		Cgroups: cgroups.Options{Root: c.Root, Devices: c.Devices, MaxStep: c.MaxStep, StepInterval: c.StepInterval}}
	if c.DiskIOPSBudget == MeasureBudget {
		o.MeasureDiskIOPS = true
	} else if c.DiskIOPSBudget != "" {
		o.Cgroups.DiskIOPSBudget, _ = strconv.ParseFloat(c.DiskIOPSBudget, 64) // Load reports one that does not parse
	}
	if b := a.Bandwidth; b != nil {
		ceiling, _ := ParseRate(b.Ceiling)
		bw := &bandwidth.Options{Device: b.Device, Ceiling: ceiling, Ingress: b.Ingress, IFB: b.IFB, StepShare: b.StepShare, StepInterval: b.StepInterval}
		for _, st := range b.Stages {
			var ceil float64
			if st.Ceiling != "" {
				ceil, _ = ParseRate(st.Ceiling)
			}
			bw.Stages = append(bw.Stages, bandwidth.Stage{Name: st.Name, Ports: st.Ports, Peers: st.Peers, Ceiling: ceil})
		}
		o.Bandwidth = bw
	}
	for _, w := range a.Workers {
		o.Workers = append(o.Workers, agent.Worker{Cgroup: w.Cgroup, Command: w.Command, Env: w.Env})
	}
	return o
}
