package promtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/headstart-dev/headstart/internal/temporaltest"
)

// CheckDashboardAndRules checks Headstart's Grafana dashboard and rules
// against the Prometheus at promURL, which scrapes a running stack since
// began and loads deploy/prometheus/headstart-rules.yml: every query of
// deploy/grafana/headstart-dashboard.json holds series at some point of the
// run, and so does every recording rule (it waits up to within for the
// slowest; alive reports a stack that died), and every rule evaluates
// without error. What fails is reported with t.Errorf.
func CheckDashboardAndRules(ctx context.Context, t testing.TB, promURL string, began time.Time, within time.Duration, alive func() error) {
	t.Helper()
	queries := dashboardQueries(t)
	// Every recording rule is waited for like a panel: its first series come
	// an evaluation or two after the series it reads.
	for _, r := range rules(ctx, t, promURL) {
		if r.Type == "recording" {
			queries["recording rule "+r.Name] = r.Name
		}
	}
	// A reservation or a decision lasts seconds: a query passes once it has
	// held series anywhere in the run.
	var empty []string
	deadline := time.Now().Add(within)
	for {
		empty = empty[:0]
		for what, q := range queries {
			n, err := seriesOver(ctx, promURL, q, began, time.Now())
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
		if err := alive(); err != nil {
			t.Fatalf("the stack died: %v", err)
		}
		time.Sleep(2 * time.Second)
	}
	sort.Strings(empty)
	if len(empty) > 0 {
		t.Errorf("queries that returned no series over %v of the running stack:\n%s", time.Since(began).Round(time.Second), strings.Join(empty, "\n"))
	}

	loaded := rules(ctx, t, promURL)
	for _, r := range loaded {
		if r.Health != "ok" || r.LastError != "" {
			t.Errorf("rule %s: health %q, error %q", r.Name, r.Health, r.LastError)
		}
	}
	if len(loaded) < 12 {
		t.Errorf("Prometheus loaded %d rules, want the 12 of deploy/prometheus/headstart-rules.yml", len(loaded))
	}
}

// rule is a rule as Prometheus evaluated it.
type rule struct {
	Name, Type, Health, LastError, Query string
}

// rules are the rules Prometheus loaded, of every group.
func rules(ctx context.Context, t testing.TB, promURL string) []rule {
	t.Helper()
	var r struct {
		Data struct {
			Groups []struct{ Rules []rule }
		}
	}
	if err := getJSON(ctx, promURL+"/api/v1/rules", &r); err != nil {
		t.Fatal(err)
	}
	var all []rule
	for _, g := range r.Data.Groups {
		all = append(all, g.Rules...)
	}
	return all
}

// dashboardQueries are the dashboard's queries as Grafana sends them, by
// panel and position.
func dashboardQueries(t testing.TB) map[string]string {
	t.Helper()
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	b, err := os.ReadFile(filepath.Join(temporaltest.RepoRoot(), "deploy", "grafana", "headstart-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	queries := map[string]string{}
	for _, p := range dash.Panels {
		for i, tg := range p.Targets {
			q := strings.NewReplacer(`$stage`, `.*`, `$__rate_interval`, `15s`).Replace(tg.Expr)
			queries[fmt.Sprintf("panel %q, query %d", p.Title, i+1)] = q
		}
	}
	if len(queries) < 12 {
		t.Fatalf("the dashboard has %d queries", len(queries))
	}
	return queries
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
