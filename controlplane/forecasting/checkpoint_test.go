package forecasting

import (
	"errors"
	"fmt"
	"math"
	"testing"
)

func TestHeadstartCheckpointRestoresPredictions(t *testing.T) {
	h := NewHeadstart(HeadstartOptions{})
	ts, us := stageTasks(150, 9)
	for i := range ts {
		h.Observe(ts[i], us[i], t0)
	}
	r, err := restore(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []float64{1e8, 3e8} {
		task := Task{Stage: "s", InputBytes: in}
		a, c := h.Size(task), r.Size(task)
		if math.Abs(a.Memory.Target-c.Memory.Target)/a.Memory.Target > 1e-5 || math.Abs(a.Runtime.Target-c.Runtime.Target)/a.Runtime.Target > 1e-5 {
			t.Errorf("input %g: original %+v, restored %+v", in, a.Memory, c.Memory)
		}
	}
	// What unseen stages expect is kept too.
	for i := 0; i < 20; i++ {
		h.Observe(Task{Stage: fmt.Sprint("other", i), RequestMemory: 1e9}, Usage{PeakMemory: float64(i+1) * 40e6}, t0)
	}
	if r, err = restore(h); err != nil {
		t.Fatal(err)
	}
	if a, c := h.Size(Task{Stage: "new", RequestMemory: 1e9}), r.Size(Task{Stage: "new", RequestMemory: 1e9}); a.Memory != c.Memory || a.Memory.Upper == a.Memory.Target {
		t.Errorf("unseen stage: original %+v, restored %+v", a.Memory, c.Memory)
	}
	if _, err := RestoreHeadstart([]byte("not a checkpoint")); !errors.Is(err, ErrCheckpoint) {
		t.Errorf("garbage: %v, want ErrCheckpoint", err)
	}
}

func restore(h *Headstart) (*Headstart, error) {
	b, err := h.Checkpoint()
	if err != nil {
		return nil, err
	}
	return RestoreHeadstart(b)
}

// TestHeadstartCheckpointIsBounded: with full windows, a kept stage costs a
// bounded number of bytes, so MaxStages = 1000 stays under 4 MiB; stages past
// the cap evict the least recently observed. (100 stages are filled here, with
// different data each, and the size per stage extrapolated to 1000.)
func TestHeadstartCheckpointIsBounded(t *testing.T) {
	h := NewHeadstart(HeadstartOptions{MaxStages: 100})
	for s := 0; s < 120; s++ {
		ts, us := stageTasks(100, uint64(s))
		for i := range ts {
			task := ts[i]
			task.Stage = fmt.Sprintf("W/stage-%d", s)
			h.Observe(task, us[i], t0)
		}
	}
	if len(h.stages) != 100 {
		t.Fatalf("%d stages kept, want MaxStages 100", len(h.stages))
	}
	if _, ok := h.stages["W/stage-0"]; ok {
		t.Error("the least recently observed stage should have been evicted")
	}
	b, err := h.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	perStage := float64(len(b)) / 100
	t.Logf("checkpoint: %d bytes for 100 full stages, %.0f per stage, %.2f MiB at 1000 stages", len(b), perStage, perStage*1000/(1<<20))
	if perStage*1000 > 4<<20 {
		t.Errorf("%.0f bytes per stage: 1000 stages would exceed 4 MiB", perStage)
	}
}
