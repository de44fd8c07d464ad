// Command headstart is Headstart's binary: it runs the control worker, replays
// execution traces through the forecasting models, runs the benchmarks and
// reports status. Subcommands arrive with the capabilities they drive; `headstart
// help` lists those this build has.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"agent", "run on each host: apply the coordinator's limits to its cgroups, run its stage workers in them, report it", runAgent},
		{"replay", "replay recorded executions and compare how each method sizes memory", runReplay},
		{"status", "print the forecaster's predictions, the coordinator's decisions and replicas, and the pools", runStatus},
		{"version", "print the module version and the Temporal SDK it is built with", runVersion},
		{"worker", "run the Headstart control worker: forecaster, ledgers, coordinator and shapers, from --config", runWorker},
	}
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "headstart: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: headstart <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
}

func runVersion(_ []string, stdout, _ io.Writer) int {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintln(stdout, "headstart (no build info)")
		return 0
	}
	fmt.Fprintf(stdout, "headstart %s (%s)\n", info.Main.Version, info.GoVersion)
	for _, d := range info.Deps {
		if d.Path == "go.temporal.io/sdk" {
			fmt.Fprintf(stdout, "go.temporal.io/sdk %s\n", d.Version)
		}
	}
	return 0
}
