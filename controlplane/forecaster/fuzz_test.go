package forecaster

import (
	"bytes"
	"compress/gzip"
	"errors"
	"testing"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/forecasting"
)

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

// FuzzRestoreState: a forecaster checkpoint of any bytes restores to a
// state that takes observations and answers every query, or is refused
// with forecasting.ErrCheckpoint; none panics.
func FuzzRestoreState(f *testing.F) {
	st := newForecasterState(headstart.ForecasterOptions{})
	st.ingest(pipelineBatch(0, 3, 1e9), t0)
	good, err := st.checkpoint()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(gzipped([]byte(`{"Instances":{"r":null}}`)))
	f.Add(gzipped([]byte(`{"Sizer":"AAAA","Feedback":{"W/a":{"Stage":"W/a","Scored":-1}}}`)))
	f.Add([]byte("not gzip"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := restoreState(b)
		if err != nil {
			if !errors.Is(err, forecasting.ErrCheckpoint) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		s.ingest(pipelineBatch(10, 1, 1e9), t0)
		s.predictions()
		s.instanceForecasts()
		s.feedbackList()
		s.fitInput()
		if _, err := s.checkpoint(); err != nil {
			t.Fatalf("a restored state does not checkpoint: %v", err)
		}
	})
}
