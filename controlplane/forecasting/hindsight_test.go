package forecasting

import (
	"math"
	"testing"
	"time"
)

func TestHindsightSizesEachStageByTheCheaperOfItsLargestPeakAndItsRaisedLine(t *testing.T) {
	h := time.Hour
	task := func(id, stage string, submit time.Duration, input, peak float64) TraceTask {
		return TraceTask{Task: Task{ID: id, Stage: stage, InputBytes: input, RequestMemory: 8e9, Submit: t0.Add(submit)},
			Usage: Usage{PeakMemory: peak, Runtime: h}, Complete: t0.Add(submit + h)}
	}
	tasks := []TraceTask{
		// grows as the square root of its input: the line fits exactly.
		task("a1", "grows", 0, 1e9, 1e9), task("a2", "grows", 2*h, 4e9, 2e9),
		// the same input, different peaks: the line is flat at the largest.
		task("b1", "flat", 0, 1e9, 1e9), task("b2", "flat", 2*h, 1e9, 1e9), task("b3", "flat", 2*h, 1e9, 2e9),
	}
	want := map[string]float64{"a1": 1e9, "a2": 2e9, "b1": 2e9, "b2": 2e9, "b3": 2e9}
	for _, tt := range tasks {
		got := NewHindsight(tasks, false).Size(tt.Task).Memory.Target
		if math.Abs(got-want[tt.ID])/want[tt.ID] > 1e-9 || got < tt.PeakMemory {
			t.Errorf("%s: allocated %.4g, want %.4g and at least its peak", tt.ID, got, want[tt.ID])
		}
	}

	// Used 1+2+1+1+2 GB·h of 1+2+2+2+2 allocated.
	r := Replay(tasks, []Sizer{NewHindsight(tasks, false), NewHindsight(tasks, true)}, ReplayOptions{})
	if math.Abs(r[0].MAQ-7.0/9) > 1e-9 || r[0].Under != 0 || r[0].Retries != 0 {
		t.Errorf("hindsight: MAQ %v under %v retries %d, want 7/9, 0, 0", r[0].MAQ, r[0].Under, r[0].Retries)
	}
	// Warm: a1 and b1 come before any task of their stage finished, so they
	// get the request (8 GB); the rest are sized in hindsight.
	if math.Abs(r[1].MAQ-7.0/(8+2+8+2+2)) > 1e-9 || r[1].Method != "hindsight-warm" {
		t.Errorf("%s: MAQ %v, want 7/22", r[1].Method, r[1].MAQ)
	}
}

func TestHindsightRaisesTheLineToFitEveryTask(t *testing.T) {
	var tasks []TraceTask
	for i := range 50 {
		input := float64(i+1) * 1e8
		// Peaks scatter around input^0.7, so the fitted line misses some.
		peak := math.Pow(input, 0.7) * (1 + 0.3*math.Sin(float64(i)))
		tasks = append(tasks, TraceTask{Task: Task{ID: string(rune('a' + i)), Stage: "s", InputBytes: input, Submit: t0},
			Usage: Usage{PeakMemory: peak, Runtime: time.Hour}, Complete: t0.Add(time.Hour)})
	}
	h := NewHindsight(tasks, false)
	tight := false
	for _, tt := range tasks {
		got := h.Size(tt.Task).Memory.Target
		if got < tt.PeakMemory {
			t.Fatalf("task %s: allocated %.6g below its peak %.6g", tt.ID, got, tt.PeakMemory)
		}
		tight = tight || got/tt.PeakMemory < 1+1e-9
	}
	if !tight {
		t.Error("no task is allocated exactly its peak: the line is raised more than its largest residual")
	}
}
