package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/headstart-dev/headstart/controlplane/forecasting"
	"github.com/headstart-dev/headstart/controlplane/internal/traces"
)

// sizersWith returns the methods a replay of tasks compares, Headstart
// (at quantile q) first, and the two hindsight references last.
func sizersWith(q float64, tasks []forecasting.TraceTask) []forecasting.Sizer {
	return []forecasting.Sizer{
		forecasting.NewHeadstart(forecasting.HeadstartOptions{Quantile: q}),
		&forecasting.VPA{},
		&forecasting.Autopilot{},
		&forecasting.Request{},
		&forecasting.MaxSeen{},
		forecasting.NewHindsight(tasks, false),
		forecasting.NewHindsight(tasks, true),
	}
}

// hindsightLegend explains the references at the end of the tables.
const hindsightLegend = `hindsight and hindsight-warm are references, not methods: each stage is
sized knowing all its tasks, future ones included (the cheaper of its largest
peak and a log-log line on input size raised to fit every task).
hindsight-warm gives tasks submitted before their stage's first task finished
the request (or the fallback where there is none), as any method that learns
a stage from its own tasks must.`

// traceResult is one trace's replay, as printed with --json.
type traceResult struct {
	Trace   string `json:"trace"`
	Format  string `json:"format"`
	Tasks   int    `json:"tasks"`
	Skipped int    `json:"skipped"`
	// ColdShare is the share of used GB·h in tasks submitted before their
	// stage's first task finished (see forecasting.ColdShare).
	ColdShare float64                    `json:"cold_share"`
	Methods   []forecasting.MethodReport `json:"methods"`
}

func runReplay(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the results as JSON")
	plotDir := fs.String("plot", "", "write plots to this folder")
	quantile := fs.Float64("quantile", 0.99, "operating quantile of memory (pinball loss and Headstart's target)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: headstart replay [--json] [--plot DIR] [--quantile Q] TRACE|DIR ...")
		fmt.Fprintln(stderr, "\nReplays recorded executions (Nextflow trace CSV, WfCommons JSON) online and")
		fmt.Fprintln(stderr, "compares how Headstart, the VPA recommender, Autopilot, the user's request and")
		fmt.Fprintln(stderr, "max-seen size each task's memory, against per-stage sizing in hindsight.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 || *quantile <= 0 || *quantile >= 1 {
		fs.Usage()
		return 2
	}
	files, err := expand(fs.Args())
	if err != nil {
		fmt.Fprintln(stderr, "headstart replay:", err)
		return 1
	}
	progress := newProgress(stderr)
	var results []traceResult
	for _, f := range files {
		tr, err := traces.ReadFile(f)
		if errors.Is(err, traces.ErrNoMemory) {
			fmt.Fprintf(stderr, "headstart replay: %s: no task records its memory; skipped\n", f)
			continue
		}
		if err != nil {
			fmt.Fprintln(stderr, "headstart replay:", err)
			return 1
		}
		reports := forecasting.Replay(tr.Tasks, sizersWith(*quantile, tr.Tasks), forecasting.ReplayOptions{
			Quantile: *quantile,
			Progress: progress.update(tr.Name),
		})
		progress.done()
		results = append(results, traceResult{Trace: tr.Name, Format: tr.Format, Tasks: len(tr.Tasks), Skipped: tr.Skipped,
			ColdShare: forecasting.ColdShare(tr.Tasks), Methods: reports})
		if *plotDir != "" {
			if err := writePlots(*plotDir, &tracePlotInput{name: tr.Name, tasks: tr.Tasks, quant: *quantile, reports: reports}); err != nil {
				fmt.Fprintln(stderr, "headstart replay: plot:", err)
				return 1
			}
		}
	}
	if len(results) == 0 {
		fmt.Fprintln(stderr, "headstart replay: no trace with memory figures")
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(jsonSafe(results)); err != nil {
			fmt.Fprintln(stderr, "headstart replay:", err)
			return 1
		}
		return 0
	}
	printTables(stdout, results)
	for _, r := range results {
		fmt.Fprintln(stdout, summaryLine(r))
	}
	return 0
}

// expand turns folders into the trace files inside them (*.csv, *.txt, *.json), sorted.
func expand(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		info, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			out = append(out, a)
			continue
		}
		err = filepath.WalkDir(a, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch strings.ToLower(filepath.Ext(p)) {
			case ".csv", ".txt", ".json":
				if !d.IsDir() {
					out = append(out, p)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(out)
	return out, nil
}

func pct(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	return fmt.Sprintf("%.1f", 100*x)
}

func printTables(w io.Writer, results []traceResult) {
	for _, r := range results {
		fmt.Fprintf(w, "\n%s (%s): %d tasks", r.Trace, r.Format, r.Tasks)
		if r.Skipped > 0 {
			fmt.Fprintf(w, ", %d without memory figures left out", r.Skipped)
		}
		fmt.Fprintf(w, "; %s%% of GB·h in tasks submitted before their stage's first task finished\n", pct(r.ColdShare))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "method\tMAQ %\tunder %\twasted GB·h\tpinball GB\tcover90 %\truntime MdAPE %\tretries\t")
		for _, m := range r.Methods {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.3f\t%.4f\t%s\t%s\t%d\t\n", m.Method, pct(m.MAQ), pct(m.Under), m.WastedGBh, m.Pinball, pct(m.Coverage), pct(m.RuntimeMdAPE), m.Retries)
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\n%s\n\n", hindsightLegend)
}

// summaryLine is the closing line for one trace.
func summaryLine(r traceResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "forecast %s", r.Trace)
	for _, name := range []string{"headstart", "vpa", "autopilot"} {
		for _, m := range r.Methods {
			if m.Method == name {
				fmt.Fprintf(&b, " %s maq=%s under=%s", name, pct(m.MAQ), pct(m.Under))
			}
		}
	}
	return b.String()
}

// jsonSafe replaces NaN (no runtime prediction) by -1, which JSON can carry.
func jsonSafe(rs []traceResult) []traceResult {
	for i := range rs {
		for j := range rs[i].Methods {
			if math.IsNaN(rs[i].Methods[j].RuntimeMdAPE) {
				rs[i].Methods[j].RuntimeMdAPE = -1
			}
		}
	}
	return rs
}

// progress draws a bar on stderr when it is a terminal.
type progress struct {
	w   io.Writer
	tty bool
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	tty := false
	if ok {
		if info, err := f.Stat(); err == nil && info.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, tty: tty}
}

func (p *progress) update(name string) func(done, total int) {
	if !p.tty {
		return nil
	}
	return func(done, total int) {
		if done%50 != 0 && done != total {
			return
		}
		const width = 30
		n := width * done / max(total, 1)
		fmt.Fprintf(p.w, "\r%-24.24s [%s%s] %3d%%", name, strings.Repeat("#", n), strings.Repeat(".", width-n), 100*done/max(total, 1))
	}
}

func (p *progress) done() {
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
