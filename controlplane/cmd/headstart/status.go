package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/activities"
	"github.com/headstart-dev/headstart/controlplane/config"
	"github.com/headstart-dev/headstart/controlplane/coordinator"
	"github.com/headstart-dev/headstart/resources"
)

// runStatus prints what the Web UI shows of the control plane — the
// forecaster's predictions, the coordinator's decisions and replicas, each
// pool's capacity and reservations — as terminal tables.
func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ff := addFileFlags(fs, "the configuration file of headstart worker: its connection, fleet and pools")
	fleet := fs.String("fleet", headstart.DefaultFleet, "the fleet (overrides fleet)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "headstart status:", err)
		return 1
	}
	file, err := ff.load(fs, func(f *flag.Flag, file *config.File) {
		if f.Name == "fleet" {
			file.Fleet = *fleet
		}
	})
	if err != nil {
		return fail(err)
	}
	copts, err := file.Temporal.ClientOptions()
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, copts)
	if err != nil {
		return fail(config.ExplainDial(copts.HostPort, err))
	}
	defer c.Close()
	pools := make([]string, 0, len(file.Pools))
	for _, p := range file.Pools {
		pools = append(pools, p.Name)
	}
	printStatus(ctx, c, file.Fleet, pools, stdout)
	return 0
}

// printStatus writes the fleet's forecaster and coordinator, and the pools
// (the coordinator's and those named), as tables.
func printStatus(ctx context.Context, c client.Client, fleet string, pools []string, w io.Writer) {
	fid, cid := headstart.ForecasterWorkflowID(fleet), headstart.CoordinatorWorkflowID(fleet)
	notRunning := func(id string, err error) {
		fmt.Fprintf(w, "%s: not answering (%v)\n\n", id, firstLine(err))
	}
	if st, err := activities.Query[headstart.ForecasterStatus](ctx, c, fid, headstart.QueryStatus); err != nil {
		notRunning(fid, err)
	} else {
		fmt.Fprintf(w, "Forecaster %s: %d observations (%d rejected), %d stages, %d runs tracked\n", fid, st.Observed, st.Rejected, st.Stages, st.Running)
		preds, err := activities.Query[[]headstart.Prediction](ctx, c, fid, headstart.QueryPredictions)
		if err != nil {
			notRunning(fid, err)
		} else {
			t := table(w, "STAGE", "NEXT", "CPU", "MEMORY (LOWER–UPPER)", "DURATION", "TASKS/RUN", "CONFIDENCE", "RECENT ERROR")
			for _, p := range preds {
				next := "—"
				if len(p.Next) > 0 {
					next = fmt.Sprintf("%s %.0f%% ~%v", p.Next[0].Stage, 100*p.Next[0].Probability, p.Next[0].DelayP50.Round(time.Second))
				}
				t.row(p.Stage, next, resources.FormatQuantity(p.CPU.Target),
					fmt.Sprintf("%s (%s–%s)", resources.FormatBytes(p.Memory.Target), resources.FormatBytes(p.Memory.Lower), resources.FormatBytes(p.Memory.Upper)),
					time.Duration(p.Duration.Target*float64(time.Second)).Round(time.Millisecond).String(),
					fmt.Sprintf("%.1f", p.TasksPerRun), fmt.Sprintf("%.2f", p.Confidence), fmt.Sprintf("%.0f%%", 100*p.RecentError))
			}
			t.flush()
		}
	}

	if st, err := activities.Query[coordinator.Status](ctx, c, cid, headstart.QueryCoordinatorState); err != nil {
		notRunning(cid, err)
	} else {
		fmt.Fprintf(w, "Coordinator %s: %s, pool %s, every %v\n", cid, st.Config.Mode, st.Config.Pool, st.Config.Interval)
		if st.Config.Pool != "" && !slices.Contains(pools, st.Config.Pool) {
			pools = append(pools, st.Config.Pool)
		}
		decisions, err := activities.Query[[]coordinator.Decision](ctx, c, cid, headstart.QueryDecisions)
		if err == nil {
			t := table(w, "UPCOMING STAGE", "DECISION", "AMOUNT", "REASON")
			for _, d := range decisions {
				t.row(d.Stage, string(d.Kind), d.Amount.String(), d.Reason)
			}
			t.flush()
		}
		routes, _ := activities.Query[map[string]string](ctx, c, cid, headstart.QueryRoutes)
		t := table(w, "STAGE", "RESERVATION", "REPLICAS", "ROUTED TO")
		stages := map[string]bool{}
		for s := range st.State.Held {
			stages[s] = true
		}
		for s := range st.State.Plans {
			stages[s] = true
		}
		for _, s := range slices.Sorted(maps.Keys(stages)) {
			t.row(s, orDash(st.State.Held[s]), fmt.Sprint(st.State.Plans[s].Replicas), orDash(routes[s]))
		}
		t.flush()
	}

	for _, pool := range pools {
		id := headstart.LedgerWorkflowID(pool)
		st, err := activities.Query[headstart.PoolStatus](ctx, c, id, headstart.QueryPool)
		if err != nil {
			notRunning(id, err)
			continue
		}
		fmt.Fprintf(w, "Pool %s (%s): capacity %v; hard %v; soft %v; free %v", pool, id, st.Capacity, st.Hard, st.Soft, st.Free)
		if !st.Measured.IsZero() {
			fmt.Fprintf(w, "; other work %v (measured %s from %s)", st.InUse, st.Measured.Local().Format(time.TimeOnly), st.Source)
		}
		fmt.Fprintln(w)
		rs, err := activities.Query[[]headstart.Reservation](ctx, c, id, headstart.QueryReservations)
		if err != nil {
			continue
		}
		t := table(w, "RESERVATION", "STAGE", "RESOURCES", "KIND", "EXPIRES")
		for _, r := range rs {
			kind := "hard"
			if r.Soft {
				kind = "soft"
			}
			t.row(r.Key, r.Stage, r.Resources.String(), kind, r.Expires.Local().Format(time.DateTime))
		}
		t.flush()
	}
}

type tab struct {
	tw   *tabwriter.Writer
	rows int
}

func table(w io.Writer, header ...string) *tab {
	t := &tab{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	fmt.Fprintln(t.tw, strings.Join(header, "\t"))
	return t
}

func (t *tab) row(cells ...string) {
	t.rows++
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *tab) flush() {
	if t.rows == 0 {
		fmt.Fprintln(t.tw, "(none)")
	}
	_ = t.tw.Flush()
	fmt.Fprintln(t.tw)
	_ = t.tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
