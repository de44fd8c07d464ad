package interceptors_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/headstart-dev/headstart/interceptors"
	"github.com/headstart-dev/headstart/internal/temporaltest"
)

// scrape returns the drop-in's metrics as Prometheus serves them.
func scrape(t *testing.T, hs *interceptors.Interceptor) string {
	t.Helper()
	resp, err := http.Get("http://" + hs.MetricsAddr().String() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// Sessioned runs one activity in a session.
func Sessioned(ctx workflow.Context) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	sctx, err := workflow.CreateSession(ctx, &workflow.SessionOptions{CreationTimeout: 10 * time.Second, ExecutionTimeout: time.Minute})
	if err != nil {
		return err
	}
	defer workflow.CompleteSession(sctx)
	if err := workflow.ExecuteActivity(sctx, "Work").Get(sctx, nil); err != nil {
		return err
	}
	return workflow.ExecuteActivity(ctx, "Other").Get(ctx, nil)
}

// TestDropInProfilesTheUsersActivitiesOnly: the SDK's session activities
// are not stages unless asked for, and excluded activity types are left alone.
func TestDropInProfilesTheUsersActivitiesOnly(t *testing.T) {
	srv := temporaltest.Shared(t)
	c := srv.Client()
	for _, tt := range []struct {
		name     string
		opts     interceptors.Options
		want     []string
		wantNone []string
	}{
		{"by default", interceptors.Options{}, []string{"Sessioned/Work", "Sessioned/Other"}, []string{"internalSession"}},
		{"sessions asked for", interceptors.Options{ProfileSessionActivities: true},
			[]string{"Sessioned/Work", "Sessioned/internalSessionCreationActivity", "Sessioned/internalSessionCompletionActivity"}, nil},
		{"an excluded type", interceptors.Options{ExcludeActivityTypes: []string{"Other"}}, []string{"Sessioned/Work"}, []string{"Sessioned/Other", "internalSession"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			opts := tt.opts
			opts.DisableReporting, opts.DisableRouting, opts.MetricsAddress = true, true, "127.0.0.1:0"
			opts.Registerer = prometheus.NewRegistry()
			hs, err := interceptors.New(c, opts)
			require.NoError(t, err)
			defer hs.Close(context.Background())
			queue := "sessions-" + strings.ReplaceAll(tt.name, " ", "-")
			w := worker.New(c, queue, worker.Options{Interceptors: []interceptor.WorkerInterceptor{hs}, EnableSessionWorker: true})
			w.RegisterWorkflow(Sessioned)
			for _, name := range []string{"Work", "Other"} {
				w.RegisterActivityWithOptions(func(context.Context) error { return nil }, activity.RegisterOptions{Name: name})
			}
			require.NoError(t, w.Start())
			defer w.Stop()
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: queue}, Sessioned)
			require.NoError(t, err)
			require.NoError(t, run.Get(ctx, nil))

			var m string
			require.Eventually(t, func() bool {
				m = scrape(t, hs)
				for _, s := range tt.want {
					if !strings.Contains(m, `headstart_activity_attempts_total{stage="`+s+`"} 1`) {
						return false
					}
				}
				return true
			}, 10*time.Second, 20*time.Millisecond, "attempts of %v", tt.want)
			for _, s := range tt.wantNone {
				require.NotContains(t, m, `stage="`+s, "no stage %s", s)
			}
		})
	}
}

func TestDropInOptionsAreValidated(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts interceptors.Options
		want string
	}{
		{"negative interval", interceptors.Options{RouteSyncInterval: -time.Second}, "RouteSyncInterval -1s is negative"},
		{"bad address", interceptors.Options{MetricsAddress: "9464"}, `MetricsAddress "9464" is not host:port`},
		{"registerer that cannot be served", interceptors.Options{MetricsAddress: ":0", Registerer: prometheus.WrapRegistererWithPrefix("x_", prometheus.NewRegistry())}, "also a prometheus.Gatherer"},
		{"empty excluded type", interceptors.Options{ExcludeActivityTypes: []string{""}}, "empty activity type"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := interceptors.New(nil, tt.opts)
			require.ErrorIs(t, err, interceptors.ErrInvalidOptions)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// TestTheDropInPullsInOnlyWhatAWorkerNeeds: the packages a user's worker
// imports for the drop-in bring neither the models (gonum), nor Kubernetes'
// client, nor the control plane into its build; and the module they come
// from requires none of them either, so adding it upgrades nothing of the
// kind in the user's module (its go.mod declares the oldest Go and SDK it is
// tested with).
func TestTheDropInPullsInOnlyWhatAWorkerNeeds(t *testing.T) {
	heavy := []string{"gonum.org/", "k8s.io/", "sigs.k8s.io/", "github.com/headstart-dev/headstart/controlplane"}
	out, err := exec.Command("go", "list", "-deps", "github.com/headstart-dev/headstart/interceptors").CombinedOutput()
	require.NoError(t, err, "%s", out)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "go.temporal.io/sdk/client")
	for _, d := range deps {
		for _, h := range heavy {
			require.False(t, strings.HasPrefix(d, h), "the drop-in depends on %s", d)
		}
	}
	out, err = exec.Command("go", "mod", "edit", "-json").CombinedOutput() // the go.mod of the module the test runs in: the drop-in's
	require.NoError(t, err, "%s", out)
	var mod struct {
		Module  struct{ Path string }
		Go      string
		Require []struct{ Path, Version string }
	}
	require.NoError(t, json.Unmarshal(out, &mod))
	require.Equal(t, "github.com/headstart-dev/headstart", mod.Module.Path)
	for _, r := range mod.Require {
		for _, h := range heavy {
			require.False(t, strings.HasPrefix(r.Path, h), "the drop-in's module requires %s", r.Path)
		}
		if r.Path == "go.temporal.io/sdk" {
			t.Logf("the drop-in's module declares go %s and go.temporal.io/sdk %s", mod.Go, r.Version)
		}
	}
}
