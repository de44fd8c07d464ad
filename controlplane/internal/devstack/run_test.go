package devstack

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/headstart-dev/headstart/controlplane"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/internal/testproc"
)

// TestMakeRun starts scripts/run.sh as `make run` does, checks that the Web UI
// at the printed address lists the sample's workflows running and completed,
// then presses Ctrl-C (SIGINT to the process group) and checks that every
// child stops.
func TestMakeRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(temporaltest.RepoRoot(), "scripts", "run.sh"))
	cmd.Dir = temporaltest.RepoRoot()
	port, uiPort, metricsPort := testproc.FreePort(t), testproc.FreePort(t), testproc.FreePort(t)
	cmd.Env = append(os.Environ(),
		"HEADSTART_RUN_DIR="+t.TempDir(),
		fmt.Sprintf("TEMPORAL_PORT=%d", port),
		fmt.Sprintf("TEMPORAL_UI_PORT=%d", uiPort),
		fmt.Sprintf("METRICS_PORT=%d", metricsPort),
		"STARTER_ARGS=-rate 120 -scale 0.25 -seed 1",
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})

	uiURL := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`Temporal Web UI\s+(http://\S+)`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				uiURL <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()

	var ui string
	select {
	case ui = <-uiURL:
	case err := <-exited:
		t.Fatalf("run.sh exited before printing the Web UI address: %v\n%s", err, stderr.String())
	case <-ctx.Done():
		t.Fatalf("no Web UI address printed: %v\n%s", ctx.Err(), stderr.String())
	}
	if want := fmt.Sprintf("http://127.0.0.1:%d/", uiPort); !strings.HasPrefix(ui, want) {
		t.Fatalf("printed Web UI address %q, want it under %q", ui, want)
	}

	// The page a person opens, and the API it reads the workflow list from.
	page := httpGet(ctx, t, ui)
	if !strings.Contains(page, "<html") {
		t.Fatalf("Web UI page is not HTML: %.200q", page)
	}
	seen := map[string]bool{}
	deadline := time.Now().Add(2 * time.Minute)
	for !(seen["RUNNING"] && seen["COMPLETED"]) {
		if time.Now().After(deadline) {
			t.Fatalf("the Web UI's workflow list never showed a pipeline both running and completed; saw %v", seen)
		}
		var list struct {
			Executions []struct {
				Execution struct {
					WorkflowID string `json:"workflowId"`
				} `json:"execution"`
				Type struct {
					Name string `json:"name"`
				} `json:"type"`
				Status string `json:"status"`
			} `json:"executions"`
		}
		body := httpGet(ctx, t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/namespaces/default/workflows", uiPort))
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			t.Fatalf("decode workflow list: %v: %.300q", err, body)
		}
		for _, e := range list.Executions {
			if e.Type.Name == "Pipeline" && strings.HasPrefix(e.Execution.WorkflowID, "pipeline-") {
				seen[strings.TrimPrefix(e.Status, "WORKFLOW_EXECUTION_STATUS_")] = true
			}
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The worker is profiled: its /metrics endpoint has every stage of a completed pipeline.
	waitFor(t, time.Minute, "the worker's metrics to show every stage", func() bool {
		m := httpGet(ctx, t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
		for _, stage := range []string{"Extract", "Transform", "Train", "Publish"} {
			if !strings.Contains(m, `headstart_activity_attempts_total{stage="Pipeline/`+stage+`"}`) {
				return false
			}
		}
		return true
	})

	// The forecaster, started by the worker's first batch, predicts every stage.
	c, err := client.Dial(client.Options{HostPort: fmt.Sprintf("127.0.0.1:%d", port)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var stages []string
	waitFor(t, time.Minute, "the forecaster to predict every pipeline stage", func() bool {
		preds, err := controlplane.Predictions(ctx, c, "default")
		stages = stages[:0]
		for _, p := range preds {
			stages = append(stages, p.Stage)
		}
		return err == nil && len(preds) == 4
	})
	t.Logf("forecaster predicts %v", stages)

	// Ctrl-C: SIGINT to the whole foreground process group.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("run.sh did not stop within 30 s of Ctrl-C\n%s", stderr.String())
	}
	// Every child is gone: nothing is left in the process group and the ports are free.
	waitFor(t, 10*time.Second, "the process group to empty", func() bool {
		return syscall.Kill(-cmd.Process.Pid, 0) == syscall.ESRCH
	})
	for _, p := range []int{port, uiPort, metricsPort} {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second); err == nil {
			c.Close()
			t.Errorf("port %d still accepts connections after Ctrl-C", p)
		}
	}
	if !strings.Contains(stderr.String(), "stopped") {
		t.Errorf("run.sh did not report stopping:\n%s", stderr.String())
	}
}

func httpGet(ctx context.Context, t *testing.T, url string) string {
	t.Helper()
	var last error
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				return string(b)
			}
			err = fmt.Errorf("status %s, read error %v", resp.Status, rerr)
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("GET %s: %v", url, last)
	return ""
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
