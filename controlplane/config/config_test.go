package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane"
	"github.com/headstart-dev/headstart/controlplane/config"
	"github.com/headstart-dev/headstart/controlplane/coordinator"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/resources"
)

// TestTheExampleFileIsValid: headstart.example.yaml, which documents every
// field, loads (its workerpool command found on PATH) and says what it says.
func TestTheExampleFileIsValid(t *testing.T) {
	bin := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bin, "worker"), []byte("#!/bin/sh\n"), 0o755))
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	f, err := config.Load(filepath.Join(temporaltest.RepoRoot(), "headstart.example.yaml"))
	require.NoError(t, err)
	cp := f.Plane()
	require.Equal(t, []controlplane.Pool{{Name: "local", Capacity: resources.Vector{}.With(resources.CPU, 8).With(resources.Memory, 16<<30)}}, cp.Pools)
	c := cp.Coordinator
	require.NotNil(t, c)
	require.NoError(t, c.Validate())
	require.Equal(t, coordinator.ModePrefetch, c.Mode)
	require.Equal(t, headstart.LedgerWorkflowID("local"), c.LedgerWorkflowID)
	require.Equal(t, 0.2, c.Rule.ProtectedShare)
	require.Len(t, c.Replicate, 1)
	s := c.Replicate[0]
	require.Equal(t, "pipeline-transform", s.Queue)
	require.Equal(t, []int{1, 2}, s.Replication.Levels, "the stage's own levels")
	require.Equal(t, 10, s.Replication.PerReplica, "the coordinator's other replication settings")
	cmd := f.Shapers.WorkerPool.ReplicaCommand(f.Temporal, "pipeline-transform", 4)
	require.Equal(t, filepath.Join(bin, "worker"), cmd.Path, "found on PATH")
	require.Equal(t, []string{"worker", "-task-queue", "pipeline-transform", "-address", "localhost:7233", "-namespace", "default"}, cmd.Args)
}

// TestTheKubernetesConfigMapIsValid: the headstart.yaml that
// deploy/kubernetes mounts into the worker loads and replicates the example
// stage's Deployment, with the pool measured from the nodes and reservations
// held as placeholder pods.
func TestTheKubernetesConfigMapIsValid(t *testing.T) {
	path := filepath.Join(temporaltest.RepoRoot(), "deploy", "kubernetes", "headstart-config.yaml")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var cm struct {
		Kind string            `yaml:"kind"`
		Data map[string]string `yaml:"data"`
	}
	require.NoError(t, yaml.Unmarshal(b, &cm))
	require.Equal(t, "ConfigMap", cm.Kind)
	f, err := config.Parse(path+": headstart.yaml", []byte(cm.Data["headstart.yaml"]))
	require.NoError(t, err)
	require.NotNil(t, f.Shapers.Kubernetes)
	require.Equal(t, "temporal-frontend.temporal:7233", f.Temporal.Address)
	c := f.Plane().Coordinator
	require.NotNil(t, c)
	require.NoError(t, c.Validate())
	require.Len(t, c.Replicate, 1)
	require.Equal(t, "Pipeline/Train", c.Replicate[0].Stage)
	require.Equal(t, "headstart/pipeline-train", c.Replicate[0].Target.Name)
	require.Equal(t, "pipeline-train", c.Replicate[0].Queue, "the stage worker's -task-queue in stage-worker.yaml")
}

// TestAnEmptyFileTakesTheDefaults: forecasting only, on localhost.
func TestAnEmptyFileTakesTheDefaults(t *testing.T) {
	f, err := config.Parse("empty.yaml", nil)
	require.NoError(t, err)
	require.Equal(t, config.Temporal{ConnectTimeout: 2 * time.Minute}, f.Temporal, "the connection is resolved when connecting: Temporal's profile and environment, else localhost:7233")
	require.Equal(t, "default", f.Fleet)
	require.Equal(t, "headstart", f.TaskQueue)
	require.Nil(t, f.Plane().Coordinator)
}

const valid = `temporal:
  address: 127.0.0.1:7233
pools:
  - name: local
    capacity: {cpu: 8, memory: 16Gi}
coordinator:
  pool: local
  interval: 1s
  replicate:
    - stage: Pipeline/Transform
      target: {kind: workerpool, name: pipeline-transform}
shapers:
  workerpool:
    command: [sh, -c, "exec sleep 1000"]
`

// measured is a valid file whose pool is measured by Kubernetes.
const measured = `temporal:
  address: 127.0.0.1:7233
pools:
  - name: local
    measure: {with: deployment, node_selector: "headstart.dev/pool=batch"}
coordinator:
  pool: local
shapers:
  kubernetes: {}
`

// TestAMeasuredPoolNeedsNoCapacity: a measured pool's capacity comes from
// the platform; the coordinator is told to measure it through Kubernetes.
func TestAMeasuredPoolNeedsNoCapacity(t *testing.T) {
	f, err := config.Parse("measured.yaml", []byte(measured))
	require.NoError(t, err)
	p := f.Plane()
	require.True(t, p.Pools[0].Capacity.IsZero())
	require.True(t, p.Pools[0].Measured, "a restart leaves the measured capacity alone")
	require.Equal(t, &coordinator.Measure{With: "deployment", Selector: "headstart.dev/pool=batch"}, p.Coordinator.Measure)
}

// TestEveryBadValueGetsItsOwnError: each bad value is reported with the
// file, its line, its field and why; and a file with several problems
// reports them all at once.
func TestEveryBadValueGetsItsOwnError(t *testing.T) {
	for _, tc := range []struct {
		name, old, new string
		want           string // file:line: field: why (a prefix of the reason)
	}{
		{"unknown top-level key", "temporal:", "tempral:\n  x: 1\ntemporal:", "bad.yaml:1: tempral: unknown field; known: agent, coordinator, fleet,"},
		{"unknown nested key", "  interval: 1s", "  intervall: 1s", "bad.yaml:8: coordinator.intervall: unknown field; known:"},
		{"address without port", "127.0.0.1:7233", "127.0.0.1", `bad.yaml:2: temporal.address: "127.0.0.1" is not host:port`},
		{"tls cert without its key", "  address: 127.0.0.1:7233", "  address: 127.0.0.1:7233\n  tls: {cert: config_test.go}", "bad.yaml:3: temporal.tls: cert and key go together"},
		{"unreadable tls ca", "  address: 127.0.0.1:7233", "  address: 127.0.0.1:7233\n  tls: {ca: /nonexistent/ca.pem}", "bad.yaml:3: temporal.tls.ca: open /nonexistent/ca.pem: no such file or directory"},
		{"missing temporal client configuration", "  address: 127.0.0.1:7233", "  address: 127.0.0.1:7233\n  config_file: /nonexistent/temporal.toml", "bad.yaml:3: temporal.config_file: open /nonexistent/temporal.toml"},
		{"negative connect timeout", "  address: 127.0.0.1:7233", "  address: 127.0.0.1:7233\n  connect_timeout: -1s", "bad.yaml:3: temporal.connect_timeout: -1s is negative"},
		{"address with a bad port", "127.0.0.1:7233", "127.0.0.1:x", `bad.yaml:2: temporal.address: "127.0.0.1:x" has no port number`},
		{"metrics address", "pools:", "metrics_address: nowhere\npools:", `bad.yaml:3: metrics_address: "nowhere" is not host:port`},
		{"duration", "interval: 1s", "interval: soon", `bad.yaml:8: coordinator.interval: "soon" is not a duration such as 2s or 1m30s`},
		{"negative duration", "interval: 1s", "interval: -1s", "bad.yaml:8: coordinator.interval: -1s is negative"},
		{"number", "  pool: local", "  pool: local\n  min_confidence: high", `bad.yaml:8: coordinator.min_confidence: "high" is not a number`},
		{"confidence above 1", "  pool: local", "  pool: local\n  min_confidence: 1.5", "bad.yaml:8: coordinator.min_confidence: 1.5 is outside [0, 1]"},
		{"protected share of all", "  pool: local", "  pool: local\n  protected_share: 1", "bad.yaml:8: coordinator.protected_share: 1 is outside [0, 0.99]"},
		{"negative margin", "  pool: local", "  pool: local\n  max_margin: -0.1", "bad.yaml:8: coordinator.max_margin: -0.1 is negative"},
		{"min partial", "  pool: local", "  pool: local\n  min_partial: 2", "bad.yaml:8: coordinator.min_partial: 2 is outside [0, 1]"},
		{"negative lead", "  pool: local", "  pool: local\n  lead: -2s", "bad.yaml:8: coordinator.lead: -2s is negative"},
		{"negative actuation", "  pool: local", "  pool: local\n  actuation_time: -2s", "bad.yaml:8: coordinator.actuation_time: -2s is negative"},
		{"negative retry", "  pool: local", "  pool: local\n  retry_after: -2s", "bad.yaml:8: coordinator.retry_after: -2s is negative"},
		{"mode", "  pool: local", "  pool: local\n  mode: yolo", `bad.yaml:8: coordinator.mode: "yolo" is none of prefetch, dry-run, forecast-only`},
		{"unknown pool", "  pool: local", "  pool: remote", `bad.yaml:7: coordinator.pool: "remote" is not among the pools (local)`},
		{"no pool", "  pool: local\n", "", "bad.yaml:6: coordinator.pool: not set"},
		{"hold with a worker pool", "  pool: local", "  pool: local\n  hold_with: workerpool", `bad.yaml:8: coordinator.hold_with: "workerpool" cannot hold reservations; only deployment can`},
		{"hold without kubernetes", "  pool: local", "  pool: local\n  hold_with: deployment", "bad.yaml:8: coordinator.hold_with: deployment needs shapers.kubernetes"},
		{"levels descend", "  interval: 1s", "  interval: 1s\n  replication: {levels: [4, 2]}", "bad.yaml:9: coordinator.replication.levels: [4 2] do not ascend"},
		{"negative level", "  interval: 1s", "  interval: 1s\n  replication: {levels: [-1, 2]}", "bad.yaml:9: coordinator.replication.levels[0]: -1 replicas is below 0"},
		{"per replica", "  interval: 1s", "  interval: 1s\n  replication: {per_replica: -3}", "bad.yaml:9: coordinator.replication.per_replica: -3 is below 0"},
		{"scale down", "  interval: 1s", "  interval: 1s\n  replication: {scale_down_after: -1m}", "bad.yaml:9: coordinator.replication.scale_down_after: -1m0s is negative"},
		{"a stage's own levels", "      target: {kind", "      levels: [2, 1]\n      target: {kind", "bad.yaml:11: coordinator.replicate[0].levels: [2 1] do not ascend"},
		{"no stage", "    - stage: Pipeline/Transform", "    - stage: \"\"", "bad.yaml:10: coordinator.replicate[0].stage: not set"},
		{"stage twice", "shapers:", "    - stage: Pipeline/Transform\n      target: {kind: workerpool, name: q}\nshapers:", "bad.yaml:12: coordinator.replicate[1].stage: Pipeline/Transform is listed twice"},
		{"no target kind", "kind: workerpool, ", "", "bad.yaml:11: coordinator.replicate[0].target.kind: not set"},
		{"no target name", ", name: pipeline-transform", "", "bad.yaml:11: coordinator.replicate[0].target.name: not set"},
		{"unknown target kind", "kind: workerpool", "kind: lambda", `bad.yaml:11: coordinator.replicate[0].target.kind: "lambda" is none of workerpool, deployment`},
		{"target without its shaper", "kind: workerpool, name: pipeline-transform", "kind: deployment, name: stages/train", "bad.yaml:11: coordinator.replicate[0].target.kind: deployment targets need shapers.kubernetes"},
		{"measure with a worker pool", "with: deployment", "with: workerpool", `bad.yaml:5: pools[0].measure.with: "workerpool" cannot measure a pool; only deployment can`},
		{"measure with nothing", "with: deployment, ", "", "bad.yaml:5: pools[0].measure.with: not set"},
		{"measure by a bad selector", "pool=batch", "pool==!", `bad.yaml:5: pools[0].measure.node_selector: "headstart.dev/pool==!" is not a label selector`},
		{"measure a pool not the coordinator's", "coordinator:", "  - name: other\n    measure: {with: deployment}\ncoordinator:", "bad.yaml:7: pools[1].measure: only the coordinator's pool is measured"},
		{"negative items per task", "temporal:", "forecaster:\n  max_items_per_task: -1\ntemporal:", "bad.yaml:2: forecaster.max_items_per_task: -1 is below 0"},
		{"negative backlog", "temporal:", "forecaster:\n  max_backlog_batches: -5\ntemporal:", "bad.yaml:2: forecaster.max_backlog_batches: -5 is below 0"},
		{"measured without its shaper", "    capacity: {cpu: 8, memory: 16Gi}", "    measure: {with: deployment}", "bad.yaml:5: pools[0].measure.with: deployment needs shapers.kubernetes"},
		{"deployment name", "kind: workerpool, name: pipeline-transform}\nshapers:", "kind: deployment, name: train}\nshapers:\n  kubernetes: {}", `bad.yaml:11: coordinator.replicate[0].target.name: "train" is not namespace/deployment`},
		{"no pool name", "  - name: local", "  - name: \"\"", "bad.yaml:4: pools[0].name: not set"},
		{"pool twice", "coordinator:", "  - name: local\n    capacity: {cpu: 1}\ncoordinator:", "bad.yaml:6: pools[1].name: local is listed twice"},
		{"pool name with a slash", "  - name: local", "  - name: a/b", `bad.yaml:4: pools[0].name: "a/b" has a space or a slash`},
		{"no capacity", "    capacity: {cpu: 8, memory: 16Gi}", "    capacity: {}", "bad.yaml:5: pools[0].capacity: not set: give at least one of cpu, memory,"},
		{"capacity kind", "cpu: 8,", "gpu: 8,", "bad.yaml:5: pools[0].capacity.gpu: not a resource kind; one of cpu, memory"},
		{"capacity quantity", "memory: 16Gi", "memory: lots", `bad.yaml:5: pools[0].capacity.memory: "lots" is not a quantity such as 8, 500m or 16Gi`},
		{"negative capacity", "cpu: 8", "cpu: -8", `bad.yaml:5: pools[0].capacity.cpu: "-8" is not a quantity`},
		{"pools not a list", "pools:\n  - name: local\n    capacity: {cpu: 8, memory: 16Gi}", "pools: local", `bad.yaml:3: pools: "local" is not a list`},
		{"no command", `    command: [sh, -c, "exec sleep 1000"]`, "    command: []", "bad.yaml:14: shapers.workerpool.command: not set"},
		{"command not found", "command: [sh,", "command: [no-such-program-headstart,", `bad.yaml:14: shapers.workerpool.command[0]: executable file not found in $PATH`},
		{"env", `    command: [sh, -c, "exec sleep 1000"]`, `    command: [sh, -c, "exec sleep 1000"]` + "\n    env: [NOVALUE]", `bad.yaml:15: shapers.workerpool.env[0]: "NOVALUE" is not KEY=VALUE`},
		{"concurrency", `    command: [sh, -c, "exec sleep 1000"]`, `    command: [sh, -c, "exec sleep 1000"]` + "\n    concurrency: -1", "bad.yaml:15: shapers.workerpool.concurrency: -1 is below 0"},
		{"startup delay", `    command: [sh, -c, "exec sleep 1000"]`, `    command: [sh, -c, "exec sleep 1000"]` + "\n    startup_delay: -1s", "bad.yaml:15: shapers.workerpool.startup_delay: -1s is negative"},
		{"stop timeout", `    command: [sh, -c, "exec sleep 1000"]`, `    command: [sh, -c, "exec sleep 1000"]` + "\n    stop_timeout: -1s", "bad.yaml:15: shapers.workerpool.stop_timeout: -1s is negative"},
		{"kubeconfig", "shapers:", "shapers:\n  kubernetes: {kubeconfig: /no/such/kubeconfig}", "bad.yaml:13: shapers.kubernetes.kubeconfig: stat /no/such/kubeconfig: no such file or directory"},
		{"prometheus url", "pools:", "forecaster: {prometheus_url: 'localhost:9090'}\npools:", `bad.yaml:3: forecaster.prometheus_url: "localhost:9090" is not an http:// or https:// URL`},
		{"utilization without prometheus", "pools:", "forecaster:\n  utilization: {cpu: up}\npools:", "bad.yaml:4: forecaster.utilization: needs forecaster.prometheus_url"},
		{"utilization kind", "pools:", "forecaster:\n  prometheus_url: http://p:9090\n  utilization: {gpu: up}\npools:", "bad.yaml:5: forecaster.utilization.gpu: not a resource kind"},
		{"quantile", "pools:", "forecaster: {quantile: 1.5}\npools:", "bad.yaml:3: forecaster.quantile: 1.5 is outside (0, 1)"},
		{"max stages", "pools:", "forecaster: {max_stages: -1}\npools:", "bad.yaml:3: forecaster.max_stages: -1 is below 0"},
		{"window", "pools:", "forecaster: {window: -1}\npools:", "bad.yaml:3: forecaster.window: -1 is below 0"},
		{"fit interval", "pools:", "forecaster: {fit_interval: -1m}\npools:", "bad.yaml:3: forecaster.fit_interval: -1m0s is negative"},
		{"limited target without host", "  replicate:", "  limits:\n    - {stage: P/T, target: {kind: cgroup, name: t}, raised: {cpu: 2}}\n  replicate:", "bad.yaml:10: coordinator.limits[0].target.host: not set: a cgroup is on one host"},
		{"limited target kind", "  replicate:", "  limits:\n    - {stage: P/T, target: {kind: workerpool, name: t}, raised: {cpu: 2}}\n  replicate:", `bad.yaml:10: coordinator.limits[0].target.kind: "workerpool" cannot be limited; only cgroup, bandwidth and vsphere can`},
		{"limit quantity", "  replicate:", "  limits:\n    - {stage: P/T, target: {kind: cgroup, name: t, host: h}, idle: {cpu: lots}, raised: {cpu: 2}}\n  replicate:", `bad.yaml:10: coordinator.limits[0].idle.cpu: "lots" is not a quantity`},
		{"limit with nothing to shape", "  replicate:", "  limits:\n    - {stage: P/T, target: {kind: cgroup, name: t, host: h}}\n  replicate:", "bad.yaml:10: coordinator.limits[0]: neither idle nor raised limits are set"},
		{"agent worker without command", "shapers:", "agent:\n  workers: [{cgroup: t}]\nshapers:", "bad.yaml:13: agent.workers[0].command: not set"},
		{"agent cgroup name", "shapers:", "agent:\n  workers: [{cgroup: ../x, command: [sh]}]\nshapers:", `bad.yaml:13: agent.workers[0].cgroup: "../x": want letters`},
		{"agent max step", "shapers:", "agent:\n  cgroups: {max_step: 1}\nshapers:", "bad.yaml:13: agent.cgroups: max step 1: want more than 1"},
		{"vsphere credentials in the url", "shapers:", "shapers:\n  vsphere: {url: 'https://u:p@vc/sdk'}", "bad.yaml:13: shapers.vsphere: url: credentials belong in User and Password, not in the URL"},
		{"agent IOPS budget", "shapers:", "agent:\n  cgroups: {disk_iops_budget: lots}\nshapers:", `bad.yaml:13: agent.cgroups.disk_iops_budget: "lots": want a number of IOPS above 0, or "measure"`},
		{"agent IOPS budget to measure on no folder", "shapers:", "agent:\n  cgroups: {disk_iops_budget: measure, devices: ['8:0']}\nshapers:", "bad.yaml:13: agent.cgroups.disk_iops_budget: measure: none of agent.cgroups.devices is a folder"},
		{"agent IOPS budget without devices", "shapers:", "agent:\n  cgroups: {disk_iops_budget: 400}\nshapers:", "bad.yaml:13: agent.cgroups: a disk IOPS budget needs the devices"},
		{"agent bandwidth rate", "shapers:", "agent:\n  bandwidth: {device: eth0, ceiling: 40MB, stages: [{name: a, ports: [1]}]}\nshapers:", `bad.yaml:13: agent.bandwidth.ceiling: "40MB" is not a rate such as 40Mbit`},
		{"agent bandwidth stage", "shapers:", "agent:\n  bandwidth: {device: eth0, ceiling: 40Mbit, stages: [{name: a}]}\nshapers:", "bad.yaml:13: agent.bandwidth: stages[0] (a): no ports or peers"},
		{"unset environment variable", "127.0.0.1:7233", "${HEADSTART_TEST_UNSET}:7233", "bad.yaml:2: ${HEADSTART_TEST_UNSET} is not set in the environment"},
		{"not YAML", "  interval: 1s", "  interval: [1s", "bad.yaml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := valid
			if strings.HasPrefix(tc.name, "measure ") {
				base = measured
			}
			require.Contains(t, base, tc.old, "the case edits the valid file")
			_, err := config.Parse("bad.yaml", []byte(strings.Replace(base, tc.old, tc.new, 1)))
			require.Error(t, err)
			require.ErrorIs(t, err, config.ErrInvalid)
			var es config.Errors
			require.True(t, errors.As(err, &es))
			require.Len(t, es, 1, "one bad value, one error: %v", err)
			require.True(t, strings.HasPrefix(es[0].Error(), tc.want), "got  %s\nwant %s…", es[0], tc.want)
		})
	}
}

func TestTheValidFileLoads(t *testing.T) {
	f, err := config.Parse("good.yaml", []byte(valid))
	require.NoError(t, err)
	c := f.Plane().Coordinator
	require.Equal(t, time.Second, c.Interval)
	require.Equal(t, "pipeline-transform", c.Replicate[0].Queue, "a worker pool's queue is its name")
	require.Nil(t, c.Replicate[0].Replication, "no override: the coordinator's replication")
}

// TestEveryProblemIsReportedAtOnce, in the order of the file's lines.
func TestEveryProblemIsReportedAtOnce(t *testing.T) {
	bad := strings.NewReplacer("127.0.0.1:7233", "nowhere", "16Gi", "lots", "interval: 1s", "interval: -1s", "workerpool, name", "lambda, name").Replace(valid)
	_, err := config.Parse("bad.yaml", []byte(bad))
	var es config.Errors
	require.ErrorAs(t, err, &es)
	require.Len(t, es, 4, "%v", err)
	var lines []int
	for _, e := range es {
		lines = append(lines, e.Line)
	}
	require.Equal(t, []int{2, 5, 8, 11}, lines, "%v", err)
}

func TestAMissingFileIsAnOSError(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "none.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)
	require.NotErrorIs(t, err, config.ErrInvalid)
}

// TestWorkerPoolStateDirDefaultsUnderXDGStateHome: replicas are recorded
// per fleet under $XDG_STATE_HOME unless the file names a folder.
func TestWorkerPoolStateDirDefaultsUnderXDGStateHome(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/var/lib/x")
	dir, err := config.WorkerPool{}.StateDirFor("blue")
	require.NoError(t, err)
	require.Equal(t, "/var/lib/x/headstart/workerpool/blue", dir)
	dir, err = config.WorkerPool{StateDir: "/srv/replicas"}.StateDirFor("blue")
	require.NoError(t, err)
	require.Equal(t, "/srv/replicas", dir)
}

func TestRatesAreBitsPerSecondWithAUnit(t *testing.T) {
	for in, want := range map[string]float64{"40Mbit": 5e6, "1Gbit": 125e6, "500kbit": 62500, "8bit": 1, "2.5 Mbit": 312500} {
		if got, err := config.ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v bytes/s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "40", "40MB", "-1Mbit", "Mbit", "1e400Mbit"} {
		if _, err := config.ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
}

// TestTheVSpherePasswordComesFromTheEnvironment, never from the file.
func TestTheVSpherePasswordComesFromTheEnvironment(t *testing.T) {
	t.Setenv("MY_VC_PASSWORD", "s3cret")
	o := config.VSphere{URL: "https://vc/sdk", User: "headstart", PasswordEnv: "MY_VC_PASSWORD"}.Options()
	if o.Password != "s3cret" || o.User != "headstart" {
		t.Errorf("options %+v: want the password of MY_VC_PASSWORD", o)
	}
	t.Setenv(config.DefaultPasswordEnv, "other")
	if o := (config.VSphere{URL: "https://vc/sdk"}).Options(); o.Password != "other" {
		t.Errorf("by default the password is read from %s", config.DefaultPasswordEnv)
	}
}
