package activities

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/internal/promtest"
)

// TestReadUtilizationFromARealPrometheus: Prometheus scrapes a target that
// reports two nodes' busy cores; the activity's PromQL sums them.
func TestReadUtilizationFromARealPrometheus(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# TYPE node_busy_cores gauge\nnode_busy_cores{node=\"a\"} 0.75\nnode_busy_cores{node=\"b\"} 1.5\n")
	}))
	defer target.Close()
	prom := promtest.Start(t, time.Second, strings.TrimPrefix(target.URL, "http://"))

	r := &PrometheusReader{URL: prom.URL}
	env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
	env.RegisterActivity(r)
	in := UtilizationInput{Queries: map[string]string{"cpu": "sum(node_busy_cores)", "broken": "sum(("}}
	var res headstart.UtilizationResult
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := env.ExecuteActivity(r.ReadUtilization, in)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Get(&res); err != nil {
			t.Fatal(err)
		}
		if _, ok := res.Values["cpu"]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus never returned the scraped value: %+v", res)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if res.Values["cpu"] != 2.25 {
		t.Errorf("cpu = %v, want 0.75 + 1.5", res.Values["cpu"])
	}
	if !strings.Contains(res.Errors["broken"], "bad_data") {
		t.Errorf("a malformed query should be reported, not fail the rest: %+v", res.Errors)
	}
	if _, err := r.Query(context.Background(), "sum(("); !errors.Is(err, ErrPrometheus) {
		t.Errorf("Query error %v, want ErrPrometheus", err)
	}
	down := &PrometheusReader{URL: "http://127.0.0.1:1"}
	if _, err := down.Query(context.Background(), "up"); err == nil {
		t.Error("an unreachable server must be an error")
	}
}
