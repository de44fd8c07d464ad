package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/headstart-dev/headstart/controlplane/agent"
	"github.com/headstart-dev/headstart/controlplane/config"
)

// runAgent runs `headstart agent`: the daemon on each host (package agent).
// It waits for a server that is not up yet, as the control worker does.
func runAgent(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ff := addFileFlags(fs, "configuration file: its agent section and temporal connection (see headstart.example.yaml)")
	host := fs.String("host", "", "this host's name (overrides agent.host; default the hostname)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "headstart agent:", err)
		return 1
	}
	file, err := ff.load(fs, func(f *flag.Flag, file *config.File) {
		if f.Name == "host" {
			file.Agent.Host = *host
		}
	})
	if err != nil {
		return fail(err)
	}
	copts, err := file.Temporal.ClientOptions()
	if err != nil {
		return fail(err)
	}
	opts, err := file.AgentOptions(copts)
	if err != nil {
		return fail(err)
	}
	opts.Log = stdout
	a, err := agent.New(opts)
	if err != nil {
		return fail(err)
	}
	defer a.Close(context.Background())

	copts.Logger = log.NewStructuredLogger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	patience := file.Temporal.ConnectTimeout
	c, err := dialServer(ctx, patience, stderr, copts)
	if err != nil {
		return fail(err)
	}
	defer c.Close()

	w, err := startWorker(ctx, patience, stderr, "the agent's worker", func() (sdkworker.Worker, error) { return a.NewWorker(c), nil })
	if err != nil {
		return fail(err)
	}
	defer w.Stop()
	fmt.Fprintf(stdout, "headstart agent: host %s on task queue %s, shaping cgroups %s under %s (state in %s)\n",
		opts.Host, a.Queue(), a.Cgroups().Version(), a.Cgroups().Group(""), opts.Cgroups.StateDir)
	a.Run(ctx, c)
	fmt.Fprintln(stdout, "headstart agent: stopping")
	return 0
}
