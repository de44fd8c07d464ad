package forecasting

import (
	"math"
	"testing"
	"time"
)

// fixed allocates the same memory to every task and records what it was told.
type fixed struct {
	alloc float64
	log   []string
}

func (f *fixed) Name() string { return "fixed" }
func (f *fixed) Size(t Task) Sizing {
	f.log = append(f.log, "size "+t.ID)
	return Sizing{Memory: Estimate{Target: f.alloc, Lower: 0, Upper: f.alloc}}
}
func (f *fixed) Observe(t Task, _ Usage, _ time.Time) { f.log = append(f.log, "done "+t.ID) }
func (f *fixed) ObserveFailure(t Task, a float64, _ time.Time) {
	f.log = append(f.log, "oom "+t.ID)
}

func TestReplayAccountsWasteAndFailuresByHand(t *testing.T) {
	h := time.Hour
	tasks := []TraceTask{
		{Task: Task{ID: "a", Stage: "s", Submit: t0}, Usage: Usage{PeakMemory: 0.5e9, Runtime: h}, Complete: t0.Add(h)},
		{Task: Task{ID: "b", Stage: "s", Submit: t0.Add(2 * h)}, Usage: Usage{PeakMemory: 1.5e9, Runtime: 2 * h}, Complete: t0.Add(4 * h)},
		{Task: Task{ID: "c", Stage: "s", Submit: t0.Add(3 * h)}, Usage: Usage{PeakMemory: 1e9, Runtime: h}, Complete: t0.Add(4 * h)},
	}
	f := &fixed{alloc: 1e9}
	r := Replay(tasks, []Sizer{f}, ReplayOptions{})[0]
	// a: over 0.5 GB × 1 h. b: fails at 1 GB for 2 h (2 GB·h), retried at
	// 2 GB: over 0.5 GB × 2 h. c: exact fit.
	want := MethodReport{UsedGBh: 0.5 + 3 + 1, OverGBh: 0.5 + 1, FailedGBh: 2, Retries: 1}
	for name, got := range map[string][2]float64{
		"used": {r.UsedGBh, want.UsedGBh}, "over": {r.OverGBh, want.OverGBh}, "failed": {r.FailedGBh, want.FailedGBh},
		"maq": {r.MAQ, 4.5 / (4.5 + 1.5 + 2)}, "under": {r.Under, 1.0 / 3}, "wasted": {r.WastedGBh, 3.5},
	} {
		if math.Abs(got[0]-got[1]) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got[0], got[1])
		}
	}
	if r.Retries != 1 || !math.IsNaN(r.RuntimeMdAPE) {
		t.Errorf("retries %d, runtime MdAPE %v", r.Retries, r.RuntimeMdAPE)
	}
	// The method hears of a only after it completed (before b), and of b's
	// OOM at 4 h, after c was submitted at 3 h.
	wantLog := []string{"size a", "done a", "size b", "size c", "oom b", "done b", "done c"}
	if len(f.log) < 3 || f.log[0] != wantLog[0] || f.log[1] != wantLog[1] || f.log[2] != wantLog[2] || f.log[3] != wantLog[3] {
		t.Errorf("events seen = %v, want them to begin %v", f.log, wantLog[:4])
	}
}

func TestReplayGivesUpAfterMaxAttempts(t *testing.T) {
	tasks := []TraceTask{{Task: Task{ID: "a", Stage: "s", Submit: t0}, Usage: Usage{PeakMemory: 1e12, Runtime: time.Hour}, Complete: t0.Add(time.Hour)}}
	r := Replay(tasks, []Sizer{&fixed{alloc: 1}}, ReplayOptions{MaxAttempts: 3})[0]
	if r.Retries != 2 || r.OverGBh != 0 {
		t.Errorf("retries %d over %v: want 2 failed attempts, then the last given exactly what it used", r.Retries, r.OverGBh)
	}
}

func TestPinballLoss(t *testing.T) {
	for _, tt := range []struct{ q, y, p, want float64 }{
		{0.9, 10, 8, 1.8}, {0.9, 8, 10, 0.2}, {0.5, 3, 3, 0},
	} {
		if got := pinballLoss(tt.q, tt.y, tt.p); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("pinball(%v, %v, %v) = %v, want %v", tt.q, tt.y, tt.p, got, tt.want)
		}
	}
}

// TestColdShareCountsTasksSubmittedBeforeTheirStageFirstFinished: of stage
// s, a finishes at 1 h; b was submitted before (cold), c after. Stage u's
// only task is cold too.
func TestColdShareCountsTasksSubmittedBeforeTheirStageFirstFinished(t *testing.T) {
	h := time.Hour
	tasks := []TraceTask{
		{Task: Task{ID: "a", Stage: "s", Submit: t0}, Usage: Usage{PeakMemory: 1e9, Runtime: h}, Complete: t0.Add(h)},
		{Task: Task{ID: "b", Stage: "s", Submit: t0.Add(h / 2)}, Usage: Usage{PeakMemory: 2e9, Runtime: h}, Complete: t0.Add(3 * h / 2)},
		{Task: Task{ID: "c", Stage: "s", Submit: t0.Add(h)}, Usage: Usage{PeakMemory: 3e9, Runtime: h}, Complete: t0.Add(2 * h)},
		{Task: Task{ID: "d", Stage: "u", Submit: t0.Add(h)}, Usage: Usage{PeakMemory: 4e9, Runtime: h}, Complete: t0.Add(2 * h)},
	}
	// a, b and d are cold: 7 of 10 GB·h.
	if got := ColdShare(tasks); math.Abs(got-0.7) > 1e-12 {
		t.Errorf("cold share = %v, want 0.7", got)
	}
}
