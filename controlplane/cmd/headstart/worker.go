package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane"
	"github.com/headstart-dev/headstart/controlplane/config"
	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/kubernetes"
	"github.com/headstart-dev/headstart/controlplane/shapers/vsphere"
	"github.com/headstart-dev/headstart/controlplane/shapers/workerpool"
)

func runWorker(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ff := addFileFlags(fs, "the configuration file (see headstart.example.yaml); empty: forecasting only, with the defaults")
	taskQueue := fs.String("task-queue", headstart.TaskQueue, "the control plane's task queue (overrides task_queue)")
	metricsAddress := fs.String("metrics-address", "", "where to serve the control worker's /metrics (overrides metrics_address); empty: nowhere")
	onKubernetes := fs.Bool("kubernetes", false, "shape stage Deployments, in-cluster or with --kubeconfig (as shapers.kubernetes)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig for --kubernetes; empty: the pod's ServiceAccount")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "headstart worker:", err)
		return 1
	}
	// Configuration errors first, before connecting anywhere.
	file, err := ff.load(fs, func(f *flag.Flag, file *config.File) {
		switch f.Name {
		case "task-queue":
			file.TaskQueue = *taskQueue
		case "metrics-address":
			file.MetricsAddress = *metricsAddress
		case "kubernetes", "kubeconfig":
			if *onKubernetes && file.Shapers.Kubernetes == nil {
				file.Shapers.Kubernetes = &config.Kubernetes{}
			}
			if file.Shapers.Kubernetes != nil && *kubeconfig != "" {
				file.Shapers.Kubernetes.Kubeconfig = *kubeconfig
			}
		}
	})
	if err != nil {
		return fail(err)
	}
	copts, err := file.Temporal.ClientOptions()
	if err != nil {
		return fail(err)
	}
	// The replicas' {address} and {namespace}, and the log, name the connection as resolved.
	file.Temporal.Address, file.Temporal.Namespace = copts.HostPort, copts.Namespace
	shaping, closeShapers, err := newShapers(file, stdout)
	if err != nil {
		return fail(err)
	}
	defer closeShapers()

	copts.Logger = log.NewStructuredLogger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	// Until interrupted, a server that is unreachable or slow (restarting,
	// or not up yet) is waited for, for temporal.connect_timeout at each step.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	patience := file.Temporal.ConnectTimeout
	c, err := dialServer(ctx, patience, stderr, copts)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	registry := prometheus.NewRegistry()
	if file.MetricsAddress != "" {
		stop, err := serveMetrics(file.MetricsAddress, registry, stdout, stderr)
		if err != nil {
			return fail(err)
		}
		defer stop()
	}
	opts := file.Options()
	opts.Registerer, opts.Shapers = registry, shaping
	w, err := startWorker(ctx, patience, stderr, "the control worker", func() (sdkworker.Worker, error) { return controlplane.NewWorker(c, opts) })
	if err != nil {
		return fail(err)
	}
	defer w.Stop()
	fmt.Fprintf(stdout, "headstart control worker: %s\n", file)
	// The worker runs first: a running coordinator's configure update needs it.
	var started []controlplane.Started
	err = untilReachable(ctx, patience, stderr, "start the control workflows", func(ctx context.Context) (err error) {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		started, err = file.Plane().Start(ctx, c)
		return err
	})
	for _, s := range started {
		fmt.Fprintln(stdout, s)
	}
	if err != nil {
		return fail(fmt.Errorf("start the control workflows: %w", err))
	}
	status, err := controlplane.NewStatusMetrics(registry)
	if err != nil {
		return fail(err)
	}
	follow, stopFollowing := context.WithCancel(context.Background())
	defer stopFollowing()
	watch := controlplane.Watch{Fleet: opts.Fleet}
	for _, p := range file.Pools {
		watch.Pools = append(watch.Pools, p.Name)
	}
	go status.Follow(follow, c, watch, cmp.Or(file.MetricsInterval, 15*time.Second), nil)
	check, cancel := context.WithTimeout(ctx, 10*time.Second)
	if used, err := controlplane.HasUserWorkflows(check, c, copts.Namespace); err == nil && !used {
		fmt.Fprintf(stderr, "headstart worker: warning: namespace %q has no workflows but Headstart's: if your workers run elsewhere, set -namespace, temporal.namespace or TEMPORAL_NAMESPACE to theirs\n", copts.Namespace)
	}
	cancel()
	<-ctx.Done()
	fmt.Fprintln(stdout, "headstart control worker: stopping")
	return 0
}

// newShapers builds the shapers the file configures, by target kind, and
// a function that closes them (stopping a worker pool's replicas).
func newShapers(file *config.File, stdout io.Writer) (map[string]shapers.Shaper, func(), error) {
	out := map[string]shapers.Shaper{}
	var closers []shapers.Closer
	closeAll := func() {
		for _, c := range closers {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_ = c.Close(ctx)
			cancel()
		}
	}
	if wp := file.Shapers.WorkerPool; wp != nil {
		temporal := file.Temporal
		state, err := wp.StateDirFor(file.Fleet)
		if err != nil {
			return nil, closeAll, err
		}
		s, err := workerpool.New(workerpool.Options{
			StateDir:     state,
			Command:      func(queue string, concurrency int) *exec.Cmd { return wp.ReplicaCommand(temporal, queue, concurrency) },
			Concurrency:  wp.Concurrency,
			StartupDelay: wp.StartupDelay,
			StopTimeout:  wp.StopTimeout,
			Output:       stdout,
		})
		if err != nil {
			return nil, closeAll, err
		}
		out[workerpool.Kind] = s
		closers = append(closers, s)
	}
	if v := file.Shapers.VSphere; v != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		s, err := vsphere.New(ctx, v.Options())
		cancel()
		if err != nil {
			return nil, closeAll, err
		}
		out[vsphere.Kind] = s
		closers = append(closers, s)
		fmt.Fprintf(stdout, "shaping VMware VMs through %s\n", v.URL)
	}
	if k := file.Shapers.Kubernetes; k != nil {
		cfg, err := clientcmd.BuildConfigFromFlags("", k.Kubeconfig)
		if err != nil {
			return nil, closeAll, fmt.Errorf("kubernetes: %w", err)
		}
		cs, err := k8s.NewForConfig(cfg)
		if err != nil {
			return nil, closeAll, fmt.Errorf("kubernetes: %w", err)
		}
		ns := k.PlaceholderNamespace
		if ns == "" {
			ns = "default"
		}
		out[kubernetes.Kind] = kubernetes.New(cs, kubernetes.Options{Placeholders: kubernetes.Placeholders{Namespace: ns}})
		fmt.Fprintf(stdout, "shaping Kubernetes Deployments through %s\n", cfg.Host)
	}
	return out, closeAll, nil
}

func serveMetrics(address string, registry *prometheus.Registry, stdout, stderr io.Writer) (func(), error) {
	l, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(stderr, "headstart worker: metrics:", err)
		}
	}()
	fmt.Fprintf(stdout, "serving control worker metrics at http://%s/metrics\n", l.Addr())
	return func() { _ = srv.Close() }, nil
}
