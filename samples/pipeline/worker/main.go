// Command worker runs the pipeline sample's worker with Headstart's profiler:
// observations go in batches to the Headstart forecaster (run `headstart
// worker` beside it) and the profiler's Prometheus metrics are served at
// http://<-metrics-address>/metrics. With -route, a stage the coordinator
// replicates is routed to its replicas' queue while they poll it (the same
// binary, run by the coordinator's worker pool with -task-queue).
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"

	hsinterceptors "github.com/headstart-dev/headstart/interceptors"
	"github.com/headstart-dev/headstart/samples/pipeline"
)

func main() {
	address := flag.String("address", client.DefaultHostPort, "Temporal frontend host:port")
	namespace := flag.String("namespace", client.DefaultNamespace, "Temporal namespace")
	dir := flag.String("dir", "", "folder for Extract's temporary files (default: the system's)")
	metricsAddress := flag.String("metrics-address", "127.0.0.1:9464", "where to serve /metrics; empty: nowhere")
	fleet := flag.String("fleet", "default", "the Headstart forecaster to send observations to; empty: none")
	taskQueue := flag.String("task-queue", pipeline.TaskQueue, "the task queue to poll: the pipeline's, or a replicated stage's own")
	route := flag.Bool("route", true, "route replicated stages to their replicas, following the fleet's coordinator")
	flag.Parse()

	c, err := client.Dial(client.Options{HostPort: *address, Namespace: *namespace})
	if err != nil {
		log.Fatalf("dial %s: %v", *address, err)
	}
	defer c.Close()

	registry := prometheus.NewRegistry()
	var sink hsinterceptors.Sink
	if *fleet != "" {
		sink, err = hsinterceptors.NewBatchingSink(hsinterceptors.BatchOptions{
			Send: hsinterceptors.ForecasterSender(c, hsinterceptors.SenderOptions{Fleet: *fleet}),
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	profiler, err := hsinterceptors.NewProfiler(hsinterceptors.ProfilerOptions{Registerer: registry, Sink: sink})
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := profiler.Close(ctx); err != nil {
			log.Print(err)
		}
	}()
	if *metricsAddress != "" {
		l, err := net.Listen("tcp", *metricsAddress)
		if err != nil {
			log.Fatalf("metrics: %v", err)
		}
		log.Printf("serving metrics at http://%s/metrics", l.Addr())
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Printf("metrics: %v", err)
			}
		}()
		defer srv.Close()
	}

	interceptors := []interceptor.WorkerInterceptor{profiler}
	if *route && *fleet != "" {
		router := hsinterceptors.NewRouter()
		interceptors = append(interceptors, hsinterceptors.NewRouting(router, hsinterceptors.RoutingOptions{}))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var lastLog time.Time
		go hsinterceptors.SyncRoutes(ctx, c, router, hsinterceptors.RouteSyncOptions{Fleet: *fleet, Namespace: *namespace, OnError: func(err error) {
			if time.Since(lastLog) > time.Minute { // until the coordinator runs, every sync fails: say so once a minute
				lastLog = time.Now()
				log.Printf("routes (activities stay on their own queues): %v", err)
			}
		}})
	}
	w := worker.New(c, *taskQueue, worker.Options{Interceptors: interceptors})
	w.RegisterWorkflow(pipeline.Pipeline)
	w.RegisterActivity(&pipeline.Activities{Dir: *dir})
	if err := w.Run(worker.InterruptCh()); err != nil {
		log.Printf("worker: %v", err)
	}
}
