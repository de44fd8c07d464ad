package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane"
	"github.com/headstart-dev/headstart/resources"
)

// validate reports every problem of a file whose defaults are filled.
func (p *parser) validate(f *File) {
	if f.Temporal.Address != "" {
		p.hostPort("temporal.address", f.Temporal.Address)
	}
	p.readable("temporal.config_file", f.Temporal.ConfigFile)
	if f.Temporal.ConnectTimeout < 0 {
		p.at("temporal.connect_timeout", "%v is negative", f.Temporal.ConnectTimeout)
	}
	if t := f.Temporal.TLS; t != nil {
		if (t.Cert == "") != (t.Key == "") {
			p.at("temporal.tls", "cert and key go together: give both for mutual TLS, or neither")
		}
		p.readable("temporal.tls.cert", t.Cert)
		p.readable("temporal.tls.key", t.Key)
		p.readable("temporal.tls.ca", t.CA)
	}
	if f.MetricsInterval < 0 {
		p.at("metrics_interval", "%v is negative", f.MetricsInterval)
	}
	if f.MetricsAddress != "" {
		p.hostPort("metrics_address", f.MetricsAddress)
	}
	p.forecaster(f.Forecaster)
	p.agent(f.Agent)
	// Pool names, the coordinator's settings and its pool: the control plane's own rules.
	p.fieldErrors(f.Plane().Validate())
	for i, pool := range f.Pools {
		at := fmt.Sprintf("pools[%d]", i)
		if len(pool.Capacity) == 0 && pool.Measure == nil {
			p.at(at+".capacity", "not set: give at least one of %s, or measure the pool", kindList())
		}
		if m := pool.Measure; m != nil {
			switch m.With {
			case "":
				p.at(at+".measure.with", "not set: %s", KindDeployment)
			case KindDeployment:
				if f.Shapers.Kubernetes == nil {
					p.at(at+".measure.with", "deployment needs shapers.kubernetes")
				}
			default:
				p.at(at+".measure.with", "%q cannot measure a pool; only %s can", m.With, KindDeployment)
			}
			if _, err := labels.Parse(m.NodeSelector); err != nil {
				p.at(at+".measure.node_selector", "%q is not a label selector: %v", m.NodeSelector, err)
			}
			if c := f.Coordinator; c == nil || c.Pool != pool.Name {
				p.at(at+".measure", "only the coordinator's pool is measured (on each of its ticks)")
			}
		}
		p.quantities(at+".capacity", pool.Capacity)
	}
	if c := f.Coordinator; c != nil {
		for i, s := range c.Replicate {
			at := fmt.Sprintf("coordinator.replicate[%d].target", i)
			switch s.Target.Kind {
			case "":
			case KindWorkerPool:
				if f.Shapers.WorkerPool == nil {
					p.at(at+".kind", "workerpool targets need shapers.workerpool")
				}
			case KindDeployment:
				if f.Shapers.Kubernetes == nil {
					p.at(at+".kind", "deployment targets need shapers.kubernetes")
				}
				if ns, name, ok := strings.Cut(s.Target.Name, "/"); s.Target.Name != "" && (!ok || ns == "" || name == "") {
					p.at(at+".name", "%q is not namespace/deployment", s.Target.Name)
				}
			default:
				p.at(at+".kind", "%q is none of %s, %s", s.Target.Kind, KindWorkerPool, KindDeployment)
			}
		}
		for i, l := range c.Limits {
			at := fmt.Sprintf("coordinator.limits[%d]", i)
			switch l.Target.Kind {
			case "":
			case KindCgroup, KindBandwidth:
				if l.Target.Host == "" {
					p.at(at+".target.host", "not set: a %s is on one host, whose agent shapes it", l.Target.Kind)
				}
			case KindVSphere:
				if l.Target.Host != "" {
					p.at(at+".target.host", "set: a VM is shaped through vCenter by the control worker, not by a host's agent")
				}
				if f.Shapers.VSphere == nil {
					p.at(at+".target.kind", "vsphere: there is no shapers.vsphere section")
				}
			default:
				p.at(at+".target.kind", "%q cannot be limited; only %s, %s and %s can", l.Target.Kind, KindCgroup, KindBandwidth, KindVSphere)
			}
			p.quantities(at+".idle", l.Idle)
			p.quantities(at+".raised", l.Raised)
			if l.LowerAfter < 0 {
				p.at(at+".lower_after", "%v is negative", l.LowerAfter)
			}
		}
		switch c.HoldWith {
		case "":
		case KindDeployment:
			if f.Shapers.Kubernetes == nil {
				p.at("coordinator.hold_with", "deployment needs shapers.kubernetes")
			}
		default:
			p.at("coordinator.hold_with", "%q cannot hold reservations; only %s can", c.HoldWith, KindDeployment)
		}
	}
	if w := f.Shapers.WorkerPool; w != nil {
		if len(w.Command) == 0 || w.Command[0] == "" {
			p.at("shapers.workerpool.command", "not set: the program and arguments that run one replica")
		} else if _, err := exec.LookPath(w.Command[0]); err != nil {
			p.at("shapers.workerpool.command[0]", "%s", errors.Unwrap(err))
		}
		for i, e := range w.Env {
			if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
				p.at(fmt.Sprintf("shapers.workerpool.env[%d]", i), "%q is not KEY=VALUE", e)
			}
		}
		if w.Concurrency < 0 {
			p.at("shapers.workerpool.concurrency", "%d is below 0", w.Concurrency)
		}
		if w.StartupDelay < 0 {
			p.at("shapers.workerpool.startup_delay", "%v is negative", w.StartupDelay)
		}
		if w.StopTimeout < 0 {
			p.at("shapers.workerpool.stop_timeout", "%v is negative", w.StopTimeout)
		}
	}
	if v := f.Shapers.VSphere; v != nil {
		if err := v.Options().Validate(); err != nil {
			p.at("shapers.vsphere", "%v", strings.TrimPrefix(err.Error(), "vsphere: "))
		}
	}
	if k := f.Shapers.Kubernetes; k != nil && k.Kubeconfig != "" {
		if _, err := os.Stat(k.Kubeconfig); err != nil {
			p.at("shapers.kubernetes.kubeconfig", "%v", err)
		}
	}
}

// quantities reports the kinds and quantities of q that do not parse.
func (p *parser) quantities(at string, q map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if _, err := resources.ParseKind(k); err != nil {
			p.at(at+"."+k, "not a resource kind; one of %s", kindList())
			continue
		}
		if _, err := resources.ParseQuantity(q[k]); err != nil {
			p.at(at+"."+k, "%q is not a quantity such as 8, 500m or 16Gi", q[k])
		}
	}
}

// agent reports what `headstart agent` cannot run with.
func (p *parser) agent(a Agent) {
	if a.Host != "" && !hostName.MatchString(a.Host) {
		p.at("agent.host", "%q: want letters, digits, '.', '_' and '-'", a.Host)
	}
	if a.Heartbeat < 0 {
		p.at("agent.heartbeat", "%v is negative", a.Heartbeat)
	}
	o := a.options()
	if b := a.Cgroups.DiskIOPSBudget; b != "" && b != MeasureBudget {
		if v, err := strconv.ParseFloat(b, 64); err != nil || !(v > 0) || math.IsInf(v, 0) {
			p.at("agent.cgroups.disk_iops_budget", "%q: want a number of IOPS above 0, or %q", b, MeasureBudget)
		}
	}
	if o.MeasureDiskIOPS && !slices.ContainsFunc(a.Cgroups.Devices, isDir) {
		p.at("agent.cgroups.disk_iops_budget", "%s: none of agent.cgroups.devices is a folder to measure in", MeasureBudget)
	}
	if err := o.Cgroups.Validate(); err != nil {
		p.at("agent.cgroups", "%v", strings.TrimPrefix(err.Error(), "cgroups: "))
	}
	if b := a.Bandwidth; b != nil {
		_, err := ParseRate(b.Ceiling)
		bad := err != nil
		if bad {
			p.at("agent.bandwidth.ceiling", "%v", err)
		}
		for i, st := range b.Stages {
			if _, err := ParseRate(st.Ceiling); st.Ceiling != "" && err != nil {
				p.at(fmt.Sprintf("agent.bandwidth.stages[%d].ceiling", i), "%v", err)
				bad = true
			}
		}
		if err := o.Bandwidth.Validate(); err != nil && !bad {
			p.at("agent.bandwidth", "%v", strings.TrimPrefix(err.Error(), "bandwidth: "))
		}
	}
	for i, w := range a.Workers {
		at := fmt.Sprintf("agent.workers[%d]", i)
		if w.Cgroup == "" {
			p.at(at+".cgroup", "not set")
		} else if !hostName.MatchString(w.Cgroup) || w.Cgroup == "." || w.Cgroup == ".." {
			p.at(at+".cgroup", "%q: want letters, digits, '.', '_' and '-'", w.Cgroup)
		}
		if len(w.Command) == 0 || w.Command[0] == "" {
			p.at(at+".command", "not set: the program and arguments of the stage's worker")
		} else if _, err := exec.LookPath(w.Command[0]); err != nil {
			p.at(at+".command[0]", "%s", errors.Unwrap(err))
		}
		for j, e := range w.Env {
			if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
				p.at(fmt.Sprintf("%s.env[%d]", at, j), "%q is not KEY=VALUE", e)
			}
		}
	}
}

var hostName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// readable reports a file that is named but cannot be read.
func (p *parser) readable(path, file string) {
	if file == "" {
		return
	}
	if f, err := os.Open(file); err != nil {
		p.at(path, "%v", err)
	} else {
		_ = f.Close()
	}
}

func (p *parser) forecaster(fc Forecaster) {
	if fc.PrometheusURL != "" {
		u, err := url.Parse(fc.PrometheusURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.at("forecaster.prometheus_url", "%q is not an http:// or https:// URL", fc.PrometheusURL)
		}
	}
	if len(fc.Utilization) > 0 && fc.PrometheusURL == "" {
		p.at("forecaster.utilization", "needs forecaster.prometheus_url")
	}
	for _, k := range slices.Sorted(maps.Keys(fc.Utilization)) {
		if _, err := resources.ParseKind(k); err != nil {
			p.at("forecaster.utilization."+k, "not a resource kind; one of %s", kindList())
		}
	}
	if fc.MaxStages < 0 {
		p.at("forecaster.max_stages", "%d is below 0", fc.MaxStages)
	}
	if fc.Quantile < 0 || fc.Quantile >= 1 {
		p.at("forecaster.quantile", "%v is outside (0, 1)", fc.Quantile)
	}
	if fc.Window < 0 {
		p.at("forecaster.window", "%d is below 0", fc.Window)
	}
	if fc.FitInterval < 0 {
		p.at("forecaster.fit_interval", "%v is negative", fc.FitInterval)
	}
	if fc.MaxItemsPerTask < 0 {
		p.at("forecaster.max_items_per_task", "%d is below 0", fc.MaxItemsPerTask)
	}
	if fc.MaxBacklogBatches < 0 {
		p.at("forecaster.max_backlog_batches", "%d is below 0", fc.MaxBacklogBatches)
	}
}

func (p *parser) hostPort(path, v string) {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		p.at(path, "%q is not host:port", v)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.at(path, "%q has no port number", v)
	}
}

// fieldErrors reports the worker package's FieldErrors in err (one, or
// joined), each at its field's line.
func (p *parser) fieldErrors(err error) {
	switch e := err.(type) {
	case nil:
	case interface{ Unwrap() []error }:
		for _, e := range e.Unwrap() {
			if e != controlplane.ErrInvalid {
				p.fieldErrors(e)
			}
		}
	case *headstart.FieldError:
		if e.Field != "coordinator.ledger_workflow_id" { // derived from the pool
			p.at(e.Field, "%s", e.Reason)
		}
	default:
		p.at("", "%v", err)
	}
}

func kindList() string {
	names := make([]string, 0, resources.NumKinds)
	for _, k := range resources.Kinds() {
		names = append(names, k.String())
	}
	return strings.Join(names, ", ")
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}
