package composetest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/internal/dockertest"
	"github.com/headstart-dev/headstart/controlplane/internal/promtest"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/internal/testproc"
)

// TestComposeStackRunsThePipelineWithHeadstart brings up docker-compose.yml
// as an operator would, with the images built here: PostgreSQL, the Temporal
// server on it, the Web UI, Prometheus, the Headstart control worker with its
// mounted config, the sample's worker and its starter (every service but
// Grafana, which cannot be built here: deploy/docker/offline/README.md).
// Through the stack's published ports: pipelines complete, the forecaster
// predicts every stage they ran, Transform runs on replicas the control
// worker started ahead of its tasks, and Prometheus holds the series of
// Headstart's processes and of the server; every panel of the Grafana
// dashboard returns series and every rule evaluates. Then the Temporal server's
// container is killed and started again: no workflow is lost (PostgreSQL
// keeps them), the pipelines running at the kill complete, Headstart's
// workflows are the same runs. `down -v` leaves nothing behind.
func TestComposeStackRunsThePipelineWithHeadstart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	engine := dockertest.Start(t)
	root := temporaltest.RepoRoot()
	s := &stack{t: t, root: root, engine: engine, project: "headstart-compose-test", vars: map[string]string{
		"HEADSTART_IMAGE":        "headstart:compose-test",
		"HEADSTART_SAMPLE_IMAGE": "headstart-sample:compose-test",
		"TEMPORAL_PORT":          strconv.Itoa(testproc.FreePort(t)),
		"TEMPORAL_UI_PORT":       strconv.Itoa(testproc.FreePort(t)),
		"PROMETHEUS_PORT":        strconv.Itoa(testproc.FreePort(t)),
		"STARTER_COUNT":          "0",
	}}

	began := time.Now()
	for _, l := range strings.Split(s.run(ctx, filepath.Join(root, "scripts", "build-offline-images.sh")), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			s.vars[k] = v
		}
	}
	s.run(ctx, filepath.Join(root, "scripts", "build-images.sh"))
	t.Logf("images built in %v", time.Since(began).Round(time.Second))
	if user := strings.TrimSpace(s.run(ctx, "docker", "image", "inspect", "-f", "{{.Config.User}}", s.vars["HEADSTART_IMAGE"])); user != "65532:65532" {
		t.Errorf("the headstart image runs as %q, want the non-root 65532:65532", user)
	}
	if out := s.run(ctx, "docker", "run", "--rm", s.vars["HEADSTART_IMAGE"], "version"); !strings.Contains(out, "headstart") {
		t.Errorf("headstart version in its image printed %q", out)
	}

	services := []string{"postgresql", "temporal", "temporal-ui", "headstart", "sample-worker", "sample-starter", "prometheus"}
	t.Cleanup(func() { s.down() })
	began = time.Now()
	s.compose(ctx, append([]string{"up", "-d"}, services...)...)
	t.Logf("compose up (healthy Temporal server) in %v", time.Since(began).Round(time.Second))
	up := time.Now()

	c, err := client.Dial(client.Options{HostPort: "127.0.0.1:" + s.vars["TEMPORAL_PORT"], Logger: quiet{}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Pipelines complete, and the forecaster predicts every stage they ran.
	var stages []string
	s.waitFor(ctx, 5*time.Minute, "a completed pipeline", func() bool {
		done := s.pipelines(ctx, c, "ExecutionStatus = 'Completed'")
		if len(done) == 0 {
			return false
		}
		stages = activityTypes(ctx, t, c, done[0])
		return len(stages) > 0
	})
	s.waitFor(ctx, 3*time.Minute, fmt.Sprintf("predictions of every stage the pipelines ran (%v)", stages), func() bool {
		v, err := c.QueryWorkflow(ctx, headstart.ForecasterWorkflowID("default"), "", headstart.QueryPredictions)
		if err != nil {
			return false
		}
		var preds []headstart.Prediction
		if v.Get(&preds) != nil {
			return false
		}
		for _, stage := range stages {
			if !slices.ContainsFunc(preds, func(p headstart.Prediction) bool { return p.Stage == stage }) {
				return false
			}
		}
		return true
	})

	// Transform runs on replicas of the control worker's container, polling
	// before its tasks were scheduled: the sample's worker routes Transform
	// to their queue only while they poll it.
	control := strings.TrimSpace(s.compose(ctx, "ps", "-q", "headstart"))
	host := strings.TrimSpace(s.run(ctx, "docker", "inspect", "-f", "{{.Config.Hostname}}", control))
	s.waitFor(ctx, 5*time.Minute, "Transform started on a replica in the headstart container ("+host+")", func() bool {
		for _, run := range s.pipelines(ctx, c, "ExecutionStatus = 'Completed'") {
			if transformOnReplica(ctx, c, run, host) {
				return true
			}
		}
		return false
	})

	// Prometheus holds Headstart's series, from both of its processes, and the server's.
	s.waitFor(ctx, 2*time.Minute, "Prometheus to hold the series of headstart, sample-worker and temporal", func() bool {
		jobs := s.promJobs(ctx, `count by (job) ({__name__=~"headstart_stage_predicted|headstart_activity_duration_seconds_count"})`)
		up := s.promJobs(ctx, `up{job="temporal"} == 1`)
		return jobs["headstart"] && jobs["sample-worker"] && up["temporal"]
	})
	// Every panel of the dashboard and every rule, on the stack's Prometheus.
	promtest.CheckDashboardAndRules(ctx, t, "http://127.0.0.1:"+s.vars["PROMETHEUS_PORT"], up, 4*time.Minute, func() error {
		if out, err := s.try(ctx, "docker", "inspect", "-f", "{{.State.Running}}", control); err != nil || strings.TrimSpace(out) != "true" {
			return fmt.Errorf("the headstart container is not running (%s %v)", strings.TrimSpace(out), err)
		}
		return nil
	})
	if body := s.get(ctx, "http://127.0.0.1:"+s.vars["TEMPORAL_UI_PORT"]+"/api/v1/namespaces/default/workflows/"+headstart.CoordinatorWorkflowID("default")); !strings.Contains(body, "HeadstartCoordinator") {
		t.Errorf("the Web UI's API does not show the coordinator: %.300s", body)
	}

	// The server's container dies mid-run; PostgreSQL keeps every workflow.
	controlRuns := map[string]string{}
	for _, id := range []string{headstart.ForecasterWorkflowID("default"), headstart.CoordinatorWorkflowID("default"), headstart.LedgerWorkflowID("local")} {
		d, err := c.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			t.Fatal(err)
		}
		controlRuns[id] = d.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	}
	var running []execution
	s.waitFor(ctx, 3*time.Minute, "a pipeline running", func() bool {
		running = s.pipelines(ctx, c, "ExecutionStatus = 'Running'")
		return len(running) > 0
	})
	before := s.pipelines(ctx, c, "")
	server := strings.TrimSpace(s.compose(ctx, "ps", "-q", "temporal"))
	s.run(ctx, "docker", "kill", server)
	killed := time.Now()
	s.run(ctx, "docker", "start", server) // a no-op where the restart policy was first
	s.waitFor(ctx, 3*time.Minute, "the Temporal server to be healthy again", func() bool {
		return strings.TrimSpace(s.run(ctx, "docker", "inspect", "-f", "{{.State.Health.Status}}", server)) == "healthy"
	})
	t.Logf("killed the server with %d pipelines (%d running); healthy again after %v", len(before), len(running), time.Since(killed).Round(time.Second))
	for _, r := range before {
		if _, err := c.DescribeWorkflowExecution(ctx, r.id, r.run); err != nil {
			t.Errorf("pipeline %s/%s, there before the kill: %v", r.id, r.run, err)
		}
	}
	for id, run := range controlRuns {
		d, err := c.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := d.GetWorkflowExecutionInfo().GetExecution().GetRunId(); got != run {
			t.Errorf("%s: run %s after the server's restart, %s before", id, got, run)
		}
		if st := d.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			t.Errorf("%s is %v after the server's restart", id, st)
		}
	}
	s.waitFor(ctx, 5*time.Minute, fmt.Sprintf("the %d pipelines running at the kill to complete", len(running)), func() bool {
		for _, r := range running {
			d, err := c.DescribeWorkflowExecution(ctx, r.id, r.run)
			if err != nil || d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
				return false
			}
		}
		return true
	})
	s.waitFor(ctx, 3*time.Minute, "a pipeline started after the restart to complete", func() bool {
		return len(s.pipelines(ctx, c, fmt.Sprintf("ExecutionStatus = 'Completed' AND StartTime > '%s'", killed.UTC().Format(time.RFC3339Nano)))) > 0
	})

	// down -v removes every container, network and volume of the stack; the
	// engine's cleanup checks the host's iptables rules and cgroups.
	s.down()
	for _, what := range [][]string{{"ps", "-aq"}, {"network", "ls", "-q"}, {"volume", "ls", "-q"}} {
		args := append(slices.Clone(what), "--filter", "label=com.docker.compose.project="+s.project)
		if out := strings.TrimSpace(s.run(ctx, "docker", args...)); out != "" {
			t.Errorf("docker %s after down -v: %s", strings.Join(what, " "), out)
		}
	}
}

// stack is the compose project under test.
type stack struct {
	t       *testing.T
	root    string
	engine  *dockertest.Engine
	project string
	vars    map[string]string // the compose file's variables
	isDown  bool
	// composeCmd is docker compose (v2) or docker-compose (v1), found on first use.
	composeCmd []string
}

func (s *stack) env() []string {
	env := append(s.engine.Env(), "COMPOSE_PROJECT_NAME="+s.project)
	for k, v := range s.vars {
		env = append(env, k+"="+v)
	}
	return env
}

// run runs a command against the engine in the repository's root and
// returns its standard output; a failure ends the test with its output.
func (s *stack) run(ctx context.Context, name string, args ...string) string {
	s.t.Helper()
	out, err := s.try(ctx, name, args...)
	if err != nil {
		s.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func (s *stack) try(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = s.root, s.env()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

// compose runs docker compose (v2) or docker-compose (v1) with args.
func (s *stack) compose(ctx context.Context, args ...string) string {
	s.t.Helper()
	if s.composeCmd == nil {
		s.composeCmd = []string{"docker-compose"}
		if exec.Command("docker", "compose", "version").Run() == nil {
			s.composeCmd = []string{"docker", "compose"}
		}
	}
	return s.run(ctx, s.composeCmd[0], append(slices.Clone(s.composeCmd[1:]), args...)...)
}

// down takes the stack down with its volumes, once; a failed test first
// logs the services' last lines.
func (s *stack) down() {
	if s.isDown {
		return
	}
	s.isDown = true
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if s.t.Failed() {
		s.t.Logf("compose logs:\n%s", s.compose(ctx, "logs", "--no-color", "--tail", "40"))
	}
	s.compose(ctx, "down", "-v", "--remove-orphans", "--timeout", "20")
}

// waitFor polls cond every second until it holds, failing the test after d.
func (s *stack) waitFor(ctx context.Context, d time.Duration, what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Second)
	}
}

type execution struct{ id, run string }

// pipelines lists the Pipeline executions matching a visibility query ("" for all).
func (s *stack) pipelines(ctx context.Context, c client.Client, query string) []execution {
	q := "WorkflowType = 'Pipeline'"
	if query != "" {
		q += " AND " + query
	}
	var all []execution
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, NextPageToken: token})
		if err != nil {
			return all
		}
		for _, e := range resp.GetExecutions() {
			all = append(all, execution{e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId()})
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return all
		}
	}
}

// activityTypes are the stages (WorkflowType/ActivityType) a run scheduled.
func activityTypes(ctx context.Context, t *testing.T, c client.Client, e execution) []string {
	h, err := temporaltest.History(ctx, c, e.id, e.run)
	if err != nil {
		t.Logf("history of %s: %v", e.id, err)
		return nil
	}
	var stages []string
	for _, ev := range h.Events {
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			if st := "Pipeline/" + a.GetActivityType().GetName(); !slices.Contains(stages, st) {
				stages = append(stages, st)
			}
		}
	}
	return stages
}

// transformOnReplica reports whether the run's Transform was scheduled on
// the replicas' queue and started by a worker on host.
func transformOnReplica(ctx context.Context, c client.Client, e execution, host string) bool {
	h, err := temporaltest.History(ctx, c, e.id, e.run)
	if err != nil {
		return false
	}
	queues := map[int64]string{}
	for _, ev := range h.Events {
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == "Transform" {
			queues[ev.EventId] = a.GetTaskQueue().GetName()
		}
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil && queues[a.ScheduledEventId] == "pipeline-transform" {
			if _, rest, _ := strings.Cut(a.GetIdentity(), "@"); strings.HasPrefix(rest, host+"@") {
				return true
			}
		}
	}
	return false
}

// promJobs runs an instant query on the stack's Prometheus and returns the
// job labels of its result.
func (s *stack) promJobs(ctx context.Context, query string) map[string]bool {
	body := s.get(ctx, "http://127.0.0.1:"+s.vars["PROMETHEUS_PORT"]+"/api/v1/query?query="+url.QueryEscape(query))
	var r struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		} `json:"data"`
	}
	jobs := map[string]bool{}
	if json.Unmarshal([]byte(body), &r) == nil {
		for _, v := range r.Data.Result {
			jobs[v.Metric["job"]] = true
		}
	}
	return jobs
}

// get returns the body of a GET, or "" when it fails.
func (s *stack) get(ctx context.Context, u string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b)
}

// quiet is a Temporal client logger that drops everything: the server's
// kill makes the client's retries noisy, and the test says what it waits for.
type quiet struct{}

func (quiet) Debug(string, ...any) {}
func (quiet) Info(string, ...any)  {}
func (quiet) Warn(string, ...any)  {}
func (quiet) Error(string, ...any) {}
