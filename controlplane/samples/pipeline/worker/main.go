// Command worker runs the pipeline sample's worker with Headstart's drop-in
// (interceptors.New): every activity is profiled, the observations go in
// batches to the Headstart forecaster (run `headstart worker` beside it),
// the metrics are served at http://<-metrics-address>/metrics, and a stage
// the coordinator replicates is routed to its replicas' queue while they
// poll it (the same binary, run by the coordinator's worker pool with
// -task-queue).
package main

import (
	"context"
	"flag"
	"log"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"

	"github.com/headstart-dev/headstart/controlplane/samples/pipeline"
	"github.com/headstart-dev/headstart/interceptors"
)

func main() {
	address := flag.String("address", client.DefaultHostPort, "Temporal frontend host:port")
	namespace := flag.String("namespace", client.DefaultNamespace, "Temporal namespace")
	dir := flag.String("dir", "", "folder for Extract's temporary files (default: the system's)")
	metricsAddress := flag.String("metrics-address", "127.0.0.1:9464", "where to serve /metrics; empty: nowhere")
	fleet := flag.String("fleet", "default", "the Headstart forecaster to send observations to; empty: none")
	taskQueue := flag.String("task-queue", pipeline.TaskQueue, "the task queue to poll: the pipeline's, or a replicated stage's own")
	route := flag.Bool("route", true, "route replicated stages to their replicas, following the fleet's coordinator")
	stopTimeout := flag.Duration("stop-timeout", 10*time.Second, "on SIGINT or SIGTERM, how long running activities may take to finish before they are cancelled (and retried elsewhere)")
	flag.Parse()

	c, err := client.Dial(client.Options{HostPort: *address, Namespace: *namespace})
	if err != nil {
		log.Fatalf("dial %s: %v", *address, err)
	}
	defer c.Close()

	// Headstart's drop-in: one value in worker.Options.Interceptors.
	hs, err := interceptors.New(c, interceptors.Options{
		Fleet: *fleet, Namespace: *namespace, MetricsAddress: *metricsAddress,
		DisableReporting: *fleet == "", DisableRouting: !*route || *fleet == "",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Close(ctx); err != nil {
			log.Print(err)
		}
	}()
	if a := hs.MetricsAddr(); a != nil {
		log.Printf("serving metrics at http://%s/metrics", a)
	}

	w := worker.New(c, *taskQueue, worker.Options{
		Interceptors: []interceptor.WorkerInterceptor{hs},
		// A replica stopped by its shaper (or orphaned by a control worker
		// that died) stops polling and finishes what it runs: no attempt fails.
		WorkerStopTimeout: *stopTimeout,
	})
	w.RegisterWorkflow(pipeline.Pipeline)
	w.RegisterActivity(&pipeline.Activities{Dir: *dir})
	if err := w.Run(worker.InterruptCh()); err != nil {
		log.Printf("worker: %v", err)
	}
}
