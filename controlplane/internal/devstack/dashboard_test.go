package devstack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
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

	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	b, err = os.ReadFile(filepath.Join(temporaltest.RepoRoot(), "deploy", "grafana", "headstart-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	queries := map[string]string{} // what → PromQL, as Grafana sends it
	for _, p := range dash.Panels {
		for i, tg := range p.Targets {
			q := strings.NewReplacer(`$stage`, `.*`, `$__rate_interval`, `15s`).Replace(tg.Expr)
			queries[fmt.Sprintf("panel %q, query %d", p.Title, i+1)] = q
		}
	}
	if len(queries) < 12 {
		t.Fatalf("the dashboard has %d queries", len(queries))
	}
	// Wait until every query has held series at some point of the run (a
	// reservation or a decision lasts seconds), or report which never did.
	var empty []string
	deadline := time.Now().Add(4 * time.Minute)
	for {
		empty = empty[:0]
		for what, q := range queries {
			n, err := seriesOver(ctx, prom.URL, q, began, time.Now())
			if err != nil {
				t.Fatalf("%s: %v\n%s", what, err, q)
			}
			if n == 0 {
				empty = append(empty, what+": "+q)
			}
		}
		if len(empty) == 0 || time.Now().After(deadline) {
			break
		}
		if err := control.Exited(); err != nil {
			t.Fatalf("the control worker exited: %v\n%s", err, control.Log.Tail(4096))
		}
		time.Sleep(2 * time.Second)
	}
	sort.Strings(empty)
	if len(empty) > 0 {
		t.Errorf("queries that returned no series over %v of the running sample:\n%s", time.Since(began).Round(time.Second), strings.Join(empty, "\n"))
	}

	// The rules as Prometheus evaluated them.
	var rules struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name, Type, Health, LastError, Query string
				}
			}
		}
	}
	if err := getJSON(ctx, prom.URL+"/api/v1/rules", &rules); err != nil {
		t.Fatal(err)
	}
	count := 0
	for _, g := range rules.Data.Groups {
		for _, r := range g.Rules {
			count++
			if r.Health != "ok" || r.LastError != "" {
				t.Errorf("rule %s: health %q, error %q", r.Name, r.Health, r.LastError)
			}
			if r.Type == "recording" {
				if n, err := seriesOver(ctx, prom.URL, r.Name, began, time.Now()); err != nil || n == 0 {
					t.Errorf("recording rule %s recorded no series (%v)", r.Name, err)
				}
			}
		}
	}
	if count < 12 {
		t.Errorf("Prometheus loaded %d rules, want the 12 of deploy/prometheus/headstart-rules.yml", count)
	}
}

// seriesOver is how many series query returns over [from, to], step 1 s.
func seriesOver(ctx context.Context, prom, query string, from, to time.Time) (int, error) {
	v := url.Values{"query": {query}, "start": {fmt.Sprint(from.Unix())}, "end": {fmt.Sprint(to.Unix())}, "step": {"1"}}
	var r struct {
		Status, Error string
		Data          struct{ Result []json.RawMessage }
	}
	if err := getJSON(ctx, prom+"/api/v1/query_range?"+v.Encode(), &r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("prometheus: %s", r.Error)
	}
	return len(r.Data.Result), nil
}

func getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
