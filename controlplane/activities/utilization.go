package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/headstart-dev/headstart"
)

// UtilizationInput names one instant PromQL query per resource, e.g.
// {"cpu": "sum(rate(node_cpu_seconds_total{mode!=\"idle\"}[1m]))"}.
type UtilizationInput struct {
	Queries map[string]string
}

// PrometheusReader reads system-wide utilization from a Prometheus HTTP API.
type PrometheusReader struct {
	// URL of the Prometheus server, e.g. http://127.0.0.1:9090.
	URL string
	// Client for the requests. If not set, one with a 10 s timeout.
	Client *http.Client
}

// ErrPrometheus is wrapped by errors the Prometheus API returns.
var ErrPrometheus = errors.New("prometheus query failed")

// ErrNoSamples is wrapped when a query matches no series (yet).
var ErrNoSamples = errors.New("prometheus query returned no samples")

// ReadUtilization runs every query. A query that fails is reported in
// Errors, not as the activity's error, so one bad query does not hide the others.
func (r *PrometheusReader) ReadUtilization(ctx context.Context, in UtilizationInput) (headstart.UtilizationResult, error) {
	res := headstart.UtilizationResult{Values: map[string]float64{}, Errors: map[string]string{}, At: time.Now()}
	names := make([]string, 0, len(in.Queries))
	for name := range in.Queries {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v, err := r.Query(ctx, in.Queries[name])
		if err != nil {
			res.Errors[name] = err.Error()
			continue
		}
		res.Values[name] = v
	}
	return res, nil
}

// Query runs one instant query and returns the sum of its samples.
func (r *PrometheusReader) Query(ctx context.Context, promql string) (float64, error) {
	c := r.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	u := r.URL + "/api/v1/query?" + url.Values{"query": {promql}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, fmt.Errorf("query %q: %w", promql, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("query %q: %w", promql, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, fmt.Errorf("query %q: %w", promql, err)
	}
	var out struct {
		Status    string `json:"status"`
		Error     string `json:"error"`
		ErrorType string `json:"errorType"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return 0, fmt.Errorf("query %q: %s: %w", promql, resp.Status, ErrPrometheus)
	}
	if out.Status != "success" {
		return 0, fmt.Errorf("query %q: %s: %s: %w", promql, out.ErrorType, out.Error, ErrPrometheus)
	}
	switch out.Data.ResultType {
	case "vector":
		var vec []struct {
			Value [2]json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(out.Data.Result, &vec); err != nil {
			return 0, fmt.Errorf("query %q: %w", promql, err)
		}
		if len(vec) == 0 {
			return 0, fmt.Errorf("query %q: %w", promql, ErrNoSamples)
		}
		var sum float64
		for _, s := range vec {
			v, err := sampleValue(s.Value[1])
			if err != nil {
				return 0, fmt.Errorf("query %q: %w", promql, err)
			}
			sum += v
		}
		return sum, nil
	case "scalar":
		var sc [2]json.RawMessage
		if err := json.Unmarshal(out.Data.Result, &sc); err != nil {
			return 0, fmt.Errorf("query %q: %w", promql, err)
		}
		return sampleValue(sc[1])
	}
	return 0, fmt.Errorf("query %q: result type %q is not a vector or scalar: %w", promql, out.Data.ResultType, ErrPrometheus)
}

func sampleValue(raw json.RawMessage) (float64, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, err
	}
	return strconv.ParseFloat(s, 64)
}
