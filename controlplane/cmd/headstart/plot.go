package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/headstart-dev/headstart/controlplane/forecasting"
)

// margins swept for the wastage vs under-prediction curve: each method's
// memory target is scaled by these factors.
var margins = []float64{0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.1, 1.25, 1.5, 1.75, 2, 2.5, 3}

// scaled multiplies a method's memory target by a margin.
type scaled struct {
	forecasting.Sizer
	margin float64
}

func (s scaled) Size(t forecasting.Task) forecasting.Sizing {
	z := s.Sizer.Size(t)
	z.Memory.Target *= s.margin
	return z
}

// writePlots writes TRACE-tradeoff.png (wasted GB·h against first-attempt
// under-prediction as each method's margin is swept) and TRACE-stages.png
// (predicted against used memory per task, Headstart, coloured by stage).
func writePlots(dir string, tr *tracePlotInput) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := tradeoffPlot(filepath.Join(dir, tr.name+"-tradeoff.png"), tr); err != nil {
		return fmt.Errorf("tradeoff plot: %w", err)
	}
	return stagesPlot(filepath.Join(dir, tr.name+"-stages.png"), tr)
}

// tracePlotInput is what the plots need of a trace.
type tracePlotInput struct {
	name    string
	tasks   []forecasting.TraceTask
	quant   float64
	reports []forecasting.MethodReport
}

func tradeoffPlot(path string, tr *tracePlotInput) error {
	p := plot.New()
	p.Title.Text = tr.name + ": memory wasted vs first attempts that failed, margin swept"
	p.X.Label.Text = "first-attempt under-prediction (%)"
	p.Y.Label.Text = "wasted GB·h (over-allocation + failed attempts)"
	var lines []any
	for mi := range sizersWith(tr.quant, tr.tasks) {
		var pts plotter.XYs
		var name string
		for _, m := range margins {
			s := sizersWith(tr.quant, tr.tasks)[mi]
			name = s.Name()
			r := forecasting.Replay(tr.tasks, []forecasting.Sizer{scaled{s, m}}, forecasting.ReplayOptions{Quantile: tr.quant})[0]
			pts = append(pts, plotter.XY{X: 100 * r.Under, Y: r.WastedGBh})
		}
		lines = append(lines, name, pts)
	}
	if err := plotutil.AddLinePoints(p, lines...); err != nil {
		return err
	}
	p.Legend.Top = true
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

func stagesPlot(path string, tr *tracePlotInput) error {
	p := plot.New()
	p.Title.Text = tr.name + ": Headstart's memory target vs what each task used"
	p.X.Label.Text = "used (GB)"
	p.Y.Label.Text = "predicted (GB)"
	var hs *forecasting.MethodReport
	for i := range tr.reports {
		if tr.reports[i].Method == "headstart" {
			hs = &tr.reports[i]
		}
	}
	if hs == nil {
		return fmt.Errorf("no headstart report")
	}
	byStage := map[string]plotter.XYs{}
	var top float64
	for _, pt := range hs.Points {
		byStage[pt.Stage] = append(byStage[pt.Stage], plotter.XY{X: pt.Used / 1e9, Y: pt.Predicted / 1e9})
		top = max(top, pt.Used/1e9)
	}
	stages := make([]string, 0, len(byStage))
	for s := range byStage {
		stages = append(stages, s)
	}
	sort.Strings(stages)
	for i, s := range stages {
		sc, err := plotter.NewScatter(byStage[s])
		if err != nil {
			return err
		}
		sc.GlyphStyle.Color = plotutil.Color(i)
		sc.GlyphStyle.Radius = vg.Points(1.5)
		p.Add(sc)
		if i < 12 {
			p.Legend.Add(shorten(s), sc)
		}
	}
	diag := plotter.NewFunction(func(x float64) float64 { return x })
	diag.Color = color.Gray{Y: 128}
	diag.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
	p.Add(diag)
	p.X.Max, p.Y.Max = top*1.1, top*3
	p.Legend.Top, p.Legend.Left = true, true
	return p.Save(8*vg.Inch, 6*vg.Inch, path)
}

func shorten(s string) string {
	if len(s) > 32 {
		return "…" + s[len(s)-31:]
	}
	return s
}
