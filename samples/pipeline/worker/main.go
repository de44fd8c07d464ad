// Command worker runs the pipeline sample's worker.
package main

import (
	"flag"
	"log"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/headstart-dev/headstart/samples/pipeline"
)

func main() {
	address := flag.String("address", client.DefaultHostPort, "Temporal frontend host:port")
	namespace := flag.String("namespace", client.DefaultNamespace, "Temporal namespace")
	dir := flag.String("dir", "", "folder for Extract's temporary files (default: the system's)")
	flag.Parse()

	c, err := client.Dial(client.Options{HostPort: *address, Namespace: *namespace})
	if err != nil {
		log.Fatalf("dial %s: %v", *address, err)
	}
	defer c.Close()

	w := worker.New(c, pipeline.TaskQueue, worker.Options{})
	w.RegisterWorkflow(pipeline.Pipeline)
	w.RegisterActivity(&pipeline.Activities{Dir: *dir})
	if err := w.Run(worker.InterruptCh()); err != nil {
		log.Fatalf("worker: %v", err)
	}
}
