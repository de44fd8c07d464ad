package headstart_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"testing"
	"time"

	"github.com/headstart-dev/headstart"
)

// FuzzObservationBatch: whatever bytes a batch's Packed holds — gzip or
// not, gob or not, of any size — All returns the plain observations and
// either the packed ones or an error wrapping ErrBadBatch; none panics.
func FuzzObservationBatch(f *testing.F) {
	good, err := headstart.NewObservationBatch(headstart.Batch{
		Observations: []headstart.Observation{{Stage: "W/a", Attempt: 1, Wall: time.Second, Outcome: headstart.OutcomeOK}},
		Starts:       []headstart.StageStart{{Stage: "W/b", Attempt: 1}},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good.Packed)
	f.Add(good.Packed[:len(good.Packed)/2])
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte("not gob at all"))
	_ = zw.Close()
	f.Add(gz.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, packed []byte) {
		plain := headstart.Observation{Stage: "W/plain", Attempt: 1}
		b := headstart.ObservationBatch{Observations: []headstart.Observation{plain}, Packed: packed}
		all, err := b.All()
		if err != nil && !errors.Is(err, headstart.ErrBadBatch) {
			t.Fatalf("untyped error %v", err)
		}
		if len(all.Observations) == 0 || all.Observations[0] != plain {
			t.Fatalf("the plain observation is lost: %+v", all.Observations)
		}
	})
}
