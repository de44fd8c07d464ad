package forecasting

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/headstart-dev/headstart"
)

// TestObservationsAreScoredAgainstThePredictionOfTheirSchedulingTime: the
// prediction in force is the newest made at or before the task was
// scheduled, else the oldest kept.
func TestObservationsAreScoredAgainstThePredictionOfTheirSchedulingTime(t *testing.T) {
	t1, t2 := t0.Add(time.Hour), t0.Add(2*time.Hour)
	past := []DatedSizing{{At: t1, Median: 1}, {At: t2, Median: 2}}
	for _, tt := range []struct {
		scheduled time.Time
		want      float64
	}{{t1.Add(time.Minute), 1}, {t2, 2}, {t2.Add(time.Hour), 2}, {t0, 1}} {
		p, ok := SizingAt(past, tt.scheduled)
		require.True(t, ok)
		require.Equal(t, tt.want, p.Median, "scheduled %v", tt.scheduled)
	}
	_, ok := SizingAt(nil, t1)
	require.False(t, ok)
}

func TestAppendDatedKeepsTheNewest(t *testing.T) {
	var ps []DatedSizing
	for i := range MaxPastPredictions + 3 {
		ps = AppendDated(ps, DatedSizing{Median: float64(i)})
	}
	require.Len(t, ps, MaxPastPredictions)
	require.Equal(t, 3.0, ps[0].Median)
	require.Equal(t, float64(MaxPastPredictions+2), ps[len(ps)-1].Median)
}

// TestScore: errors are of the median, floored at 1 MiB; coverage counts
// the tasks inside [low, high]; a stage whose bias passes the drift
// threshold after three tasks asks for a refit and starts afresh.
func TestScore(t *testing.T) {
	const mib = 1 << 20
	p := DatedSizing{Median: 100 * mib, Low: 80 * mib, High: 150 * mib, Runtime: 10}
	obs := func(mem float64, wall time.Duration) headstart.Observation {
		return headstart.Observation{Stage: "W/a", PeakMemoryBytes: mem, Wall: wall}
	}
	for _, tt := range []struct {
		name      string
		obs       []headstart.Observation
		p         DatedSizing
		want      headstart.Feedback
		lastRefit bool
	}{
		{name: "exact", obs: []headstart.Observation{obs(100*mib, 10*time.Second)}, p: p,
			want: headstart.Feedback{Scored: 1, Inside: 1}},
		{name: "over by a quarter, runtime double", obs: []headstart.Observation{obs(80*mib, 20*time.Second)}, p: p,
			want: headstart.Feedback{Scored: 1, Inside: 1, MAPE: 0.25, Bias: -0.25, RuntimeMAPE: 0.5}},
		{name: "tiny tasks are floored at 1 MiB", obs: []headstart.Observation{obs(1000, 0)}, p: DatedSizing{Median: 10},
			want: headstart.Feedback{Scored: 1}},
		{name: "no memory is not scored", obs: []headstart.Observation{obs(0, time.Second)}, p: p},
		{name: "no median is not scored", obs: []headstart.Observation{obs(mib, time.Second)}, p: DatedSizing{}},
		{name: "a stage that doubles is refitted at its third task",
			obs: []headstart.Observation{obs(200*mib, 0), obs(200*mib, 0), obs(200*mib, 0)}, p: p,
			want: headstart.Feedback{Bias: 0.5, Refits: 1}, lastRefit: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var f headstart.Feedback
			var refit bool
			for _, o := range tt.obs {
				refit = Score(&f, o, tt.p, 0.3)
			}
			require.Equal(t, tt.lastRefit, refit)
			require.Equal(t, tt.want.Scored, f.Scored)
			require.Equal(t, tt.want.Inside, f.Inside)
			require.Equal(t, tt.want.Refits, f.Refits)
			require.InDelta(t, tt.want.MAPE, f.MAPE, 1e-9)
			require.InDelta(t, tt.want.Bias, f.Bias, 1e-9)
			require.InDelta(t, tt.want.RuntimeMAPE, f.RuntimeMAPE, 1e-9)
		})
	}
}
