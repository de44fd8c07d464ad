package forecasting

// ArrivalSeries counts a stage's first attempts per bucket of scheduled
// time, keeping the newest buckets of a window: the series demand curves
// are fitted to.
type ArrivalSeries struct {
	Last   int64     // bucket index of the newest count
	Counts []float64 // oldest first, ending at Last
}

// Add counts one arrival in bucket, keeping at most window buckets. A gap
// of a whole window or more starts the series afresh; an arrival older
// than the kept buckets is dropped.
func (a *ArrivalSeries) Add(bucket int64, window int) {
	switch {
	case len(a.Counts) == 0:
		a.Last, a.Counts = bucket, []float64{0}
	case bucket > a.Last:
		gap := bucket - a.Last
		if gap >= int64(window) {
			a.Counts = a.Counts[:0]
			gap = 1
		}
		for range gap {
			a.Counts = append(a.Counts, 0)
		}
		a.Last = bucket
		if len(a.Counts) > window {
			a.Counts = append([]float64(nil), a.Counts[len(a.Counts)-window:]...)
		}
	case a.Last-bucket >= int64(len(a.Counts)):
		return // older than the window
	}
	a.Counts[len(a.Counts)-1-int(a.Last-bucket)]++
}

// Total is the arrivals the series holds.
func (a *ArrivalSeries) Total() float64 {
	var t float64
	for _, c := range a.Counts {
		t += c
	}
	return t
}
