package main

import (
	"flag"
	"fmt"
	"io"

	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/headstart-dev/headstart/worker"
)

func runWorker(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	address := fs.String("address", client.DefaultHostPort, "Temporal frontend host:port")
	namespace := fs.String("namespace", client.DefaultNamespace, "Temporal namespace")
	taskQueue := fs.String("task-queue", worker.TaskQueue, "the control plane's task queue")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c, err := client.Dial(client.Options{HostPort: *address, Namespace: *namespace})
	if err != nil {
		fmt.Fprintf(stderr, "headstart worker: dial %s: %v\n", *address, err)
		return 1
	}
	defer c.Close()
	w := worker.New(c, worker.Options{TaskQueue: *taskQueue})
	fmt.Fprintf(stdout, "headstart control worker on task queue %q, namespace %q\n", *taskQueue, *namespace)
	if err := w.Run(sdkworker.InterruptCh()); err != nil {
		fmt.Fprintln(stderr, "headstart worker:", err)
		return 1
	}
	return 0
}
