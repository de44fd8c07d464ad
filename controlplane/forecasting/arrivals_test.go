package forecasting

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestArrivalSeries(t *testing.T) {
	for _, tt := range []struct {
		name     string
		buckets  []int64
		wantLast int64
		want     []float64
	}{
		{"one", []int64{5}, 5, []float64{1}},
		{"same bucket", []int64{5, 5, 5}, 5, []float64{3}},
		{"gaps are zeros", []int64{5, 7}, 7, []float64{1, 0, 1}},
		{"late arrivals count in their bucket", []int64{5, 7, 6}, 7, []float64{1, 1, 1}},
		{"older than the window is dropped", []int64{10, 13, 9}, 13, []float64{1, 0, 0, 1}},
		{"past the window the oldest go", []int64{1, 2, 3, 4, 5, 6}, 6, []float64{1, 1, 1, 1}},
		{"a whole window of silence starts afresh", []int64{1, 2, 9}, 9, []float64{1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var a ArrivalSeries
			for _, b := range tt.buckets {
				a.Add(b, 4)
			}
			require.Equal(t, tt.wantLast, a.Last)
			require.Equal(t, tt.want, a.Counts)
		})
	}
}
