// Package config is the schema of the file `headstart worker --config`
// reads: the Temporal connection, the forecaster, the resource pools, the
// coordinator with the stages it replicates, and the shapers. Load reads and
// validates a file and reports every problem at once, each as
// `file:line: field.path: why`; nothing is started from a file with one.
// headstart.example.yaml at the repository's root documents every field.
package config

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/headstart-dev/headstart/controlplane/shapers/vsphere"
)

// File is a whole configuration file. Zero values take the documented defaults.
type File struct {
	// Temporal is the connection to the Temporal frontend.
	Temporal Temporal `yaml:"temporal"`
	// Fleet names the forecaster and coordinator (headstart-forecaster-<fleet>).
	// Default "default".
	Fleet string `yaml:"fleet"`
	// TaskQueue the control worker polls. Default "headstart".
	TaskQueue string `yaml:"task_queue"`
	// MetricsAddress serves the control worker's /metrics (host:port); empty: nowhere.
	MetricsAddress string `yaml:"metrics_address"`
	// MetricsInterval: how often the control worker reads its workflows'
	// state into its metrics (predictions, reservations, replicas,
	// decisions). Default 15s.
	MetricsInterval time.Duration `yaml:"metrics_interval"`
	// Forecaster's options, for a forecaster the control plane starts.
	Forecaster Forecaster `yaml:"forecaster"`
	// Pools are the resource pools, one ledger each.
	Pools []Pool `yaml:"pools"`
	// Coordinator prefetches and replicates; absent: forecasting only.
	Coordinator *Coordinator `yaml:"coordinator"`
	// Shapers change real capacity; a stage's target kind names one.
	Shapers Shapers `yaml:"shapers"`
	// Agent configures `headstart agent` on each host; the control worker ignores it.
	Agent Agent `yaml:"agent"`
}

// Temporal is the connection to the Temporal frontend, configured as
// Temporal's own tools are: a profile of Temporal's client configuration
// file (TOML), then the TEMPORAL_* environment variables (TEMPORAL_ADDRESS,
// TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_CLIENT_CERT_PATH, …),
// then the fields below where they are set, then the flags of `headstart
// worker`, each over the one before. See ClientOptions.
type Temporal struct {
	// Address of the frontend (host:port). If set nowhere, localhost:7233.
	Address string `yaml:"address"`
	// Namespace. If set nowhere, "default".
	Namespace string `yaml:"namespace"`
	// APIKey authenticates the client (Temporal Cloud); it turns TLS on.
	APIKey string `yaml:"api_key"`
	// TLS of the connection, e.g. mutual TLS to a self-hosted cluster.
	TLS *TLS `yaml:"tls"`
	// Profile of Temporal's client configuration file to start from. If not
	// set, TEMPORAL_PROFILE, else "default".
	Profile string `yaml:"profile"`
	// ConfigFile is Temporal's client configuration file. If not set,
	// TEMPORAL_CONFIG_FILE, else ~/.config/temporalio/temporal.toml when it exists.
	ConfigFile string `yaml:"config_file"`
	// ConnectTimeout bounds how long `headstart worker` keeps retrying a
	// server that is unreachable or too slow to answer when it starts (one
	// restarting, or not up yet); then it exits with the last error. An error
	// retrying cannot fix (TLS, credentials, an unknown namespace) ends it at
	// once. Default 2m.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

// TLS configures the connection's TLS. Files are PEM.
type TLS struct {
	// Cert and Key are the client's certificate and key, for mutual TLS.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// CA that signed the server's certificate. If not set, the system's roots.
	CA string `yaml:"ca"`
	// ServerName the server's certificate is checked against. If not set, the address's host.
	ServerName string `yaml:"server_name"`
	// Disabled turns TLS off, whatever the profile or an API key say.
	Disabled bool `yaml:"disabled"`
}

// Forecaster options; each zero value takes the forecaster's default.
type Forecaster struct {
	// PrometheusURL is the Prometheus HTTP API read for utilization.
	PrometheusURL string `yaml:"prometheus_url"`
	// Utilization names a PromQL query per resource (needs PrometheusURL).
	Utilization map[string]string `yaml:"utilization"`
	// MaxStages tracked (default 1000).
	MaxStages int `yaml:"max_stages"`
	// Quantile of memory predictions size for (default 0.99).
	Quantile float64 `yaml:"quantile"`
	// Window of recent tasks per stage (default 50).
	Window int `yaml:"window"`
	// FitInterval between demand-curve fits (default 1m).
	FitInterval time.Duration `yaml:"fit_interval"`
	// MaxItemsPerTask bounds what one workflow task takes in (default 8000).
	MaxItemsPerTask int `yaml:"max_items_per_task"`
	// MaxBacklogBatches waiting past which the oldest are shed (default 1000).
	MaxBacklogBatches int `yaml:"max_backlog_batches"`
}

// Pool is a resource pool and its capacity.
type Pool struct {
	// Name of the pool (the ledger is headstart-ledger-<name>). Required.
	Name string `yaml:"name"`
	// Capacity by resource kind (cpu, memory, disk_iops, disk_bytes,
	// net_bytes) as quantities: 8, 500m, 16Gi. At least one is required,
	// unless the pool is measured (then it is the capacity until the first
	// measurement).
	Capacity map[string]string `yaml:"capacity"`
	// Measure takes the pool's capacity from the platform instead, on every
	// coordinator tick: only the coordinator's pool can be measured.
	Measure *Measure `yaml:"measure"`
}

// Measure names how a pool is measured.
type Measure struct {
	// With is the shaper that measures: deployment (Kubernetes: the nodes'
	// allocatable minus the requests of pods that are not Headstart's
	// placeholders). Required.
	With string `yaml:"with"`
	// NodeSelector picks the pool's nodes (a Kubernetes label selector,
	// e.g. "headstart.dev/pool=batch"). If not set, every node.
	NodeSelector string `yaml:"node_selector"`
}

// Coordinator configures the prefetch loop.
type Coordinator struct {
	// Mode: prefetch (default), dry-run or forecast-only.
	Mode string `yaml:"mode"`
	// Pool reserved in; one of Pools. Required.
	Pool string `yaml:"pool"`
	// Interval between decisions (default 2s).
	Interval time.Duration `yaml:"interval"`
	// MinConfidence below which nothing is prefetched (default 0.8).
	MinConfidence float64 `yaml:"min_confidence"`
	// ActuationTime the shapers need to make capacity ready (default 5s).
	ActuationTime time.Duration `yaml:"actuation_time"`
	// Lead: extra time ahead of a predicted start (default 2s).
	Lead time.Duration `yaml:"lead"`
	// ProtectedShare of each pool never prefetched into (default 0.2).
	ProtectedShare float64 `yaml:"protected_share"`
	// MaxMargin over the need at the lowest confidence acted on (default 0.5).
	MaxMargin float64 `yaml:"max_margin"`
	// MinPartial: least share of a need worth reserving (default 0.5).
	MinPartial float64 `yaml:"min_partial"`
	// RetryAfter a delayed prefetch (default 5s).
	RetryAfter time.Duration `yaml:"retry_after"`
	// HoldWith: the target kind whose shaper holds reservations as real
	// capacity (deployment: placeholder pods). Empty: in the ledger only.
	HoldWith string `yaml:"hold_with"`
	// Replication: the defaults of every replicated stage.
	Replication Replication `yaml:"replication"`
	// Replicate lists the stages replicated ahead of demand.
	Replicate []Stage `yaml:"replicate"`
	// Limits lists the stages whose limits are raised ahead of their tasks
	// and lowered after them.
	Limits []StageLimits `yaml:"limits"`
}

// StageLimits is a stage whose workers' limits the coordinator raises ahead
// of its tasks and lowers after them: a cgroup on a host, shaped by that
// host's `headstart agent`.
type StageLimits struct {
	// Stage name, WorkflowType/ActivityType. Required.
	Stage string `yaml:"stage"`
	// Target whose limits change: kind cgroup, name the cgroup (as in
	// agent.workers), host the agent's host. Required.
	Target Target `yaml:"target"`
	// Idle limits, by resource kind (cpu, memory, disk_iops, disk_bytes) as
	// quantities, while the stage is neither upcoming nor running.
	Idle map[string]string `yaml:"idle"`
	// Raised limits while it is upcoming or running; CPU and memory rise
	// further to the predicted need of its upcoming tasks. Only the kinds
	// set in idle or raised are shaped; one of them is required.
	Raised map[string]string `yaml:"raised"`
	// LowerAfter: how long the stage stays raised after it ends (default 30s).
	LowerAfter time.Duration `yaml:"lower_after"`
}

// Replication shapes how many replicas a stage gets.
type Replication struct {
	// Levels of replicas, ascending (default 1, 2, 4, 8).
	Levels []int `yaml:"levels"`
	// PerReplica: tasks one replica runs before they contend (default 10).
	PerReplica int `yaml:"per_replica"`
	// ScaleDownAfter: how long a lower level must suffice (default 2m).
	ScaleDownAfter time.Duration `yaml:"scale_down_after"`
	// ReleaseWhenIdle scales to the lowest level at once when nothing is
	// predicted within the horizon.
	ReleaseWhenIdle bool `yaml:"release_when_idle"`
}

// Stage is a stage replicated ahead of demand.
type Stage struct {
	// Stage name, WorkflowType/ActivityType. Required.
	Stage string `yaml:"stage"`
	// Target the replicas are made by. Required.
	Target Target `yaml:"target"`
	// Queue the replicas poll, where workers route the stage's activities
	// while it has replicas. Default: the target's name for workerpool
	// targets (a worker pool is named by its queue); none otherwise.
	Queue string `yaml:"queue"`
	// Replication overrides the coordinator's, field by field.
	Replication `yaml:",inline"`
}

// Target names what a shaper changes.
type Target struct {
	// Kind: workerpool (shapers.workerpool) or deployment
	// (shapers.kubernetes). Required; its shaper must be configured.
	Kind string `yaml:"kind"`
	// Name: the task queue (workerpool), namespace/deployment (kubernetes)
	// or the cgroup (cgroup).
	Name string `yaml:"name"`
	// Host whose agent shapes the target: required for cgroup targets,
	// which live on one host; not set for the others.
	Host string `yaml:"host"`
}

// Agent configures `headstart agent`, the daemon on each host that shapes
// the host's cgroups and starts its stage workers in them.
type Agent struct {
	// Host names this host: its agent polls headstart-host-<host>, and
	// targets name it in target.host. Default: the hostname; the -host flag
	// overrides it.
	Host string `yaml:"host"`
	// Heartbeat: how often the agent reports the host's capacity and use
	// to the coordinator (default 15s, agent.DefaultHeartbeat).
	Heartbeat time.Duration `yaml:"heartbeat"`
	// StateDir keeps the shapers' desired states, so a restarted agent
	// reconciles to them. Default: $XDG_STATE_HOME/headstart/agent (~/.local/state/…).
	StateDir string `yaml:"state_dir"`
	// Cgroups configures the cgroup shaper (shapers/cgroups): CPU, memory, disk.
	Cgroups Cgroups `yaml:"cgroups"`
	// Bandwidth configures the bandwidth shaper (shapers/bandwidth); absent: off.
	Bandwidth *Bandwidth `yaml:"bandwidth"`
	// Workers are the stage workers the agent starts and keeps running,
	// each inside its cgroup from its first instruction.
	Workers []HostWorker `yaml:"workers"`
}

// Cgroups configures the cgroup shaper of an agent.
type Cgroups struct {
	// Root cgroup of every stage's (default "headstart").
	Root string `yaml:"root"`
	// Devices whose I/O disk limits apply to: major:minor, a block device,
	// or a path (the disk its file system is on). Default none: disk
	// limits are refused.
	Devices []string `yaml:"devices"`
	// MaxStep: a limit moves at most this factor per step (default 2).
	MaxStep float64 `yaml:"max_step"`
	// StepInterval between steps (default 1s).
	StepInterval time.Duration `yaml:"step_interval"`
	// DiskIOPSBudget is what the devices sustain, in IOPS, or "measure":
	// measured when the agent starts, on the first of Devices that is a
	// folder. With it set, a stage's disk_iops is its floor, and the other
	// stages share what the floors leave. Default "": disk_iops is each
	// stage's cap.
	DiskIOPSBudget string `yaml:"disk_iops_budget"`
}

// MeasureBudget is the disk_iops_budget measured when the agent starts.
const MeasureBudget = "measure"

// Bandwidth configures an agent's bandwidth shaper: htb classes per stage
// on one network device. Rates are bits/s with a unit (40Mbit, 1Gbit, 500kbit).
type Bandwidth struct {
	// Device whose traffic is shaped (e.g. eth0). Required.
	Device string `yaml:"device"`
	// Ceiling all of the device's traffic shares, each direction. Required.
	Ceiling string `yaml:"ceiling"`
	// Ingress shapes received traffic too, through an ifb device.
	Ingress bool `yaml:"ingress"`
	// IFB names that device (default "ifb-<device>").
	IFB string `yaml:"ifb"`
	// StepShare: a floor moves by at most this share of the ceiling per step (default 0.25).
	StepShare float64 `yaml:"step_share"`
	// StepInterval between steps (default 1s).
	StepInterval time.Duration `yaml:"step_interval"`
	// Stages are the classes, which targets of kind bandwidth name.
	Stages []BandwidthStage `yaml:"stages"`
}

// BandwidthStage tells a stage's traffic apart.
type BandwidthStage struct {
	Name string `yaml:"name"`
	// Ports of its TCP or UDP traffic, source or destination.
	Ports []uint16 `yaml:"ports"`
	// Peers: IPv4 addresses or CIDRs it talks to.
	Peers []string `yaml:"peers"`
	// Ceiling it may borrow up to (default the device's).
	Ceiling string `yaml:"ceiling"`
}

// ParseRate reads a rate in bits/s with a unit (kbit, Mbit, Gbit; "bit"
// alone is bits/s) and returns it in bytes/s.
func ParseRate(s string) (float64, error) {
	units := []struct {
		suffix string
		bits   float64
	}{{"Gbit", 1e9}, {"Mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
			if err != nil || v <= 0 || math.IsInf(v, 0) {
				break
			}
			return v * u.bits / 8, nil
		}
	}
	return 0, fmt.Errorf("%q is not a rate such as 40Mbit, 1Gbit or 500kbit", s)
}

// HostWorker is a stage worker an agent runs in a cgroup.
type HostWorker struct {
	// Cgroup the worker runs in, the name targets give. Required.
	Cgroup string `yaml:"cgroup"`
	// Command and its arguments: a Temporal worker of the stage. {address}
	// and {namespace} are replaced. Required.
	Command []string `yaml:"command"`
	// Env adds KEY=VALUE pairs to its environment.
	Env []string `yaml:"env"`
}

// Shapers configures the shapers; each is on when its section is present.
type Shapers struct {
	WorkerPool *WorkerPool `yaml:"workerpool"`
	Kubernetes *Kubernetes `yaml:"kubernetes"`
	VSphere    *VSphere    `yaml:"vsphere"`
}

// VSphere shapes VMware VMs through vCenter (target kind vsphere: a VM's
// name or inventory path): vCPUs, memory, disk IOPS limits, reservations,
// limits and shares, and vMotion when the coordinator rebalances.
type VSphere struct {
	// URL of vCenter's SDK, e.g. https://vcenter.example.com/sdk. Required.
	URL string `yaml:"url"`
	// User logs in; the password is read from the environment variable
	// PasswordEnv names (default VSPHERE_PASSWORD), never from the file.
	User        string `yaml:"user"`
	PasswordEnv string `yaml:"password_env"`
	// Insecure skips verifying vCenter's certificate.
	Insecure bool `yaml:"insecure"`
	// Datacenter holding the VMs (default: the only one).
	Datacenter string `yaml:"datacenter"`
	// MaxStep: CPU and memory move at most this factor per tick (default: at once).
	MaxStep float64 `yaml:"max_step"`
	// Reserve: the share of each VM's size reserved on its host (default 0).
	Reserve float64 `yaml:"reserve"`
	// Limit caps each VM at its size (default false).
	Limit bool `yaml:"limit"`
	// Shares level of CPU, memory and disks: low, normal, high (default normal).
	Shares string `yaml:"shares"`
}

// DefaultPasswordEnv is shapers.vsphere.password_env's default.
const DefaultPasswordEnv = "VSPHERE_PASSWORD"

// Options are the vSphere shaper's options, with the password from the environment.
func (v VSphere) Options() vsphere.Options {
	env := v.PasswordEnv
	if env == "" {
		env = DefaultPasswordEnv
	}
	return vsphere.Options{URL: v.URL, User: v.User, Password: os.Getenv(env), Insecure: v.Insecure, Datacenter: v.Datacenter,
		MaxStep: v.MaxStep, Reserve: v.Reserve, Limit: v.Limit, Shares: v.Shares}
}

// WorkerPool runs a stage's replicas as child processes of the control worker.
type WorkerPool struct {
	// Command runs one replica: a Temporal worker polling the stage's queue
	// until SIGTERM. In its arguments, {queue}, {concurrency}, {address}
	// and {namespace} are replaced. Required; the program must exist.
	Command []string `yaml:"command"`
	// Env adds KEY=VALUE pairs to the replicas' environment.
	Env []string `yaml:"env"`
	// Concurrency of each replica (default 10).
	Concurrency int `yaml:"concurrency"`
	// StartupDelay before a replica starts, standing in for a cold start (default none).
	StartupDelay time.Duration `yaml:"startup_delay"`
	// StopTimeout for a stopping replica before it is killed (default 10s).
	StopTimeout time.Duration `yaml:"stop_timeout"`
	// StateDir records the running replicas, so that a control worker
	// restarted after a crash adopts them instead of starting more; they
	// keep serving meanwhile. Default: $XDG_STATE_HOME/headstart/workerpool/<fleet>
	// (~/.local/state/… when XDG_STATE_HOME is not set).
	StateDir string `yaml:"state_dir"`
}

// StateDirFor is the folder the replicas of fleet are recorded in: StateDir,
// or its default.
func (w WorkerPool) StateDirFor(fleet string) (string, error) {
	if w.StateDir != "" {
		return w.StateDir, nil
	}
	return stateHome("shapers.workerpool.state_dir", "workerpool", fleet)
}

// stateHome is the default of the state folder setting names:
// $XDG_STATE_HOME/headstart/elem… (~/.local/state/… without XDG_STATE_HOME).
func stateHome(setting string, elem ...string) (string, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("%s is not set and there is no home folder for its default: %w", setting, err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(append([]string{base, "headstart"}, elem...)...), nil
}

// Kubernetes shapes Deployments and holds reservations as placeholder pods.
type Kubernetes struct {
	// Kubeconfig file; empty: the pod's ServiceAccount (in-cluster).
	Kubeconfig string `yaml:"kubeconfig"`
	// PlaceholderNamespace for placeholder pods (default "default").
	PlaceholderNamespace string `yaml:"placeholder_namespace"`
}

// Defaults.
const (
	DefaultFleet     = "default"
	DefaultTaskQueue = "headstart"
	// DefaultConnectTimeout is temporal.connect_timeout's default.
	DefaultConnectTimeout = 2 * time.Minute
)

// withDefaults fills the connection's and names' defaults; the rest take
// theirs where they are used.
func (f File) withDefaults() File {
	if f.Fleet == "" {
		f.Fleet = DefaultFleet
	}
	if f.TaskQueue == "" {
		f.TaskQueue = DefaultTaskQueue
	}
	if f.Temporal.ConnectTimeout == 0 {
		f.Temporal.ConnectTimeout = DefaultConnectTimeout
	}
	if c := f.Coordinator; c != nil {
		cc := *c
		cc.Replicate = append([]Stage(nil), c.Replicate...)
		for i, s := range cc.Replicate {
			if s.Queue == "" && s.Target.Kind == KindWorkerPool {
				cc.Replicate[i].Queue = s.Target.Name
			}
		}
		f.Coordinator = &cc
	}
	return f
}

// The target kinds, one per shaper.
const (
	KindWorkerPool = "workerpool" // shapers.workerpool
	KindDeployment = "deployment" // shapers.kubernetes
	KindCgroup     = "cgroup"     // shapers.cgroups, through the host's agent
	KindBandwidth  = "bandwidth"  // shapers.bandwidth, through the host's agent
	KindVSphere    = "vsphere"    // shapers.vsphere
)
