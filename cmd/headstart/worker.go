package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/headstart-dev/headstart/shapers"
	"github.com/headstart-dev/headstart/shapers/kubernetes"
	"github.com/headstart-dev/headstart/worker"
)

func runWorker(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	address := fs.String("address", client.DefaultHostPort, "Temporal frontend host:port")
	namespace := fs.String("namespace", client.DefaultNamespace, "Temporal namespace")
	taskQueue := fs.String("task-queue", worker.TaskQueue, "the control plane's task queue")
	metricsAddress := fs.String("metrics-address", "", "where to serve the control worker's /metrics (feedback errors); empty: nowhere")
	onKubernetes := fs.Bool("kubernetes", false, "shape stage Deployments (the deployment shaper), in-cluster or with --kubeconfig")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig for --kubernetes; empty: the pod's ServiceAccount")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// Configuration errors first, before connecting anywhere.
	shaping := map[string]shapers.Shaper{}
	if *onKubernetes {
		cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
		if err != nil {
			fmt.Fprintln(stderr, "headstart worker: kubernetes:", err)
			return 1
		}
		k, err := k8s.NewForConfig(cfg)
		if err != nil {
			fmt.Fprintln(stderr, "headstart worker: kubernetes:", err)
			return 1
		}
		shaping[kubernetes.Kind] = kubernetes.New(k, kubernetes.Options{})
		fmt.Fprintf(stdout, "shaping Kubernetes Deployments through %s\n", cfg.Host)
	}
	c, err := client.Dial(client.Options{HostPort: *address, Namespace: *namespace})
	if err != nil {
		fmt.Fprintf(stderr, "headstart worker: dial %s: %v\n", *address, err)
		return 1
	}
	defer c.Close()
	registry := prometheus.NewRegistry()
	if *metricsAddress != "" {
		l, err := net.Listen("tcp", *metricsAddress)
		if err != nil {
			fmt.Fprintln(stderr, "headstart worker: metrics:", err)
			return 1
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fmt.Fprintln(stderr, "headstart worker: metrics:", err)
			}
		}()
		defer srv.Close()
		fmt.Fprintf(stdout, "serving control worker metrics at http://%s/metrics\n", l.Addr())
	}
	w, err := worker.New(c, worker.Options{TaskQueue: *taskQueue, Registerer: registry, Shapers: shaping})
	if err != nil {
		fmt.Fprintln(stderr, "headstart worker:", err)
		return 1
	}
	fmt.Fprintf(stdout, "headstart control worker on task queue %q, namespace %q\n", *taskQueue, *namespace)
	if err := w.Run(sdkworker.InterruptCh()); err != nil {
		fmt.Fprintln(stderr, "headstart worker:", err)
		return 1
	}
	return 0
}
