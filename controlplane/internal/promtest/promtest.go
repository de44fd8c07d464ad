// Package promtest starts a real Prometheus server (Debian's `prometheus`
// package; `make prometheus` installs it) on 127.0.0.1 with a free port,
// scraping the targets a test gives it, and stops it afterwards.
package promtest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headstart-dev/headstart/internal/testproc"
)

// Server is a running Prometheus.
type Server struct {
	URL string
}

// Start starts Prometheus scraping targets (host:port, path /metrics) every
// interval. The server stops when the test ends. A missing binary fails the
// test with how to install it.
func Start(t testing.TB, interval time.Duration, targets ...string) *Server {
	t.Helper()
	return StartWithRules(t, interval, nil, targets...)
}

// StartWithRules is Start with rule files (recording and alerting rules)
// that Prometheus loads and evaluates every interval.
func StartWithRules(t testing.TB, interval time.Duration, ruleFiles []string, targets ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("promtest: no prometheus binary (%v): run `make prometheus` (apt-get install prometheus)", err)
	}
	dir := t.TempDir()
	quoted := make([]string, len(targets))
	for i, tg := range targets {
		quoted[i] = fmt.Sprintf("%q", tg)
	}
	config := fmt.Sprintf("global:\n  scrape_interval: %s\n  evaluation_interval: %s\nscrape_configs:\n  - job_name: test\n    static_configs:\n      - targets: [%s]\n",
		interval, interval, strings.Join(quoted, ", "))
	if len(ruleFiles) > 0 {
		config += "rule_files:\n"
		for _, f := range ruleFiles {
			config += fmt.Sprintf("  - %q\n", f)
		}
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t))
	proc, err := testproc.Start("prometheus", bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	if err != nil {
		t.Fatalf("promtest: %v", err)
	}
	s := &Server{URL: "http://" + addr}
	t.Cleanup(func() { proc.Stop(10 * time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/-/ready", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if err := proc.Exited(); err != nil {
			t.Fatalf("promtest: %v before it was ready:\n%s", err, proc.Log.Tail(4000))
		}
		if ctx.Err() != nil {
			t.Fatalf("promtest: prometheus not ready at %s within 30 s:\n%s", s.URL, proc.Log.Tail(4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
