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
	b, err := h.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	r, err := RestoreHeadstart(b)
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
	if _, err := RestoreHeadstart([]byte("not a checkpoint")); !errors.Is(err, ErrCheckpoint) {
		t.Errorf("garbage: %v, want ErrCheckpoint", err)
	}
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
