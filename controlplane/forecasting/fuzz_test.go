package forecasting

import (
	"errors"
	"testing"
	"time"
)

// FuzzRestoreHeadstart: a sizer checkpoint of any bytes restores to a sizer
// that observes and sizes, or is refused with ErrCheckpoint; none panics.
func FuzzRestoreHeadstart(f *testing.F) {
	h := NewHeadstart(HeadstartOptions{})
	for i := range 5 {
		h.Observe(Task{Stage: "W/a", InputBytes: float64(i)}, Usage{PeakMemory: 1e8, Runtime: time.Second}, t0)
	}
	good, err := h.Checkpoint()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := RestoreHeadstart(b)
		if err != nil {
			if !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		r.Observe(Task{Stage: "W/a", InputBytes: 1}, Usage{PeakMemory: 1e8, Runtime: time.Second}, t0)
		r.Size(Task{Stage: "W/a", InputBytes: 1})
		r.Size(Task{Stage: "W/new"})
		if _, err := r.Checkpoint(); err != nil {
			t.Fatalf("a restored sizer does not checkpoint: %v", err)
		}
	})
}
