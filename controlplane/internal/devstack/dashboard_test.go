package devstack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/internal/promtest"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/internal/testproc"
)

// TestTheRulesPassPromtool: promtool checks the rules and runs their unit
// tests, one case per alert firing and not firing.
func TestTheRulesPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("no promtool (%v): run `make prometheus` (Debian's prometheus package ships it)", err)
	}
	dir := filepath.Join(temporaltest.RepoRoot(), "deploy", "prometheus")
	for _, args := range [][]string{{"check", "rules", "headstart-rules.yml"}, {"test", "rules", "headstart-rules.test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestEveryPanelAndRuleHoldsSeriesOfTheRealStack runs the sample (control
// worker from the sample's config, its worker, its starter) scraped by a
// real Prometheus that loads Headstart's rules; every query of the Grafana
// dashboard then returns series over the run, every rule evaluates without
// error, and every recording rule records series.
func TestEveryPanelAndRuleHoldsSeriesOfTheRealStack(t *testing.T) {
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	bin := buildBinaries(t, ctx, "./cmd/headstart", "./samples/pipeline/worker", "./samples/pipeline/starter")
	t.Setenv("HEADSTART_BIN", bin)
	// The sample's configuration, with the control worker's metrics served
	// and read every second, and the forecaster scoring every 5 s.
	b, err := os.ReadFile(filepath.Join(temporaltest.RepoRoot(), "controlplane", "samples", "pipeline", "headstart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	controlMetrics, workerMetrics := fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t)), fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t))
	cfg["metrics_address"], cfg["metrics_interval"] = controlMetrics, "1s"
	cfg["forecaster"] = map[string]any{"fit_interval": "5s"}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "headstart.yaml")
	if err := os.WriteFile(config, out, 0o600); err != nil {
		t.Fatal(err)
	}
	ids := []string{headstart.ForecasterWorkflowID("default"), headstart.LedgerWorkflowID("local"), headstart.CoordinatorWorkflowID("default")}
	t.Cleanup(func() {
		for _, id := range ids {
			_ = c.TerminateWorkflow(context.Background(), id, "", "test over")
		}
	})
	start := func(name, program string, args ...string) *testproc.Proc {
		return startBinary(t, bin, name, program, args...)
	}
	control := start("headstart worker", "headstart", "worker", "-config", config, "-address", srv.HostPort())
	start("sample worker", "worker", "-address", srv.HostPort(), "-metrics-address", workerMetrics)
	start("starter", "starter", "-address", srv.HostPort(), "-rate", "90", "-scale", "0.25", "-seed", "1")
	began := time.Now()
	prom := promtest.StartWithRules(t, time.Second, []string{filepath.Join(temporaltest.RepoRoot(), "deploy", "prometheus", "headstart-rules.yml")},
		controlMetrics, workerMetrics)

	promtest.CheckDashboardAndRules(ctx, t, prom.URL, began, 4*time.Minute, control.Exited)
}
