package coordinator

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/headstart-dev/headstart/resources"
)

func TestDecideAppliesThePrefetchRule(t *testing.T) {
	now := t0
	capacity := vec(16, 64)
	need := vec(4, 8)
	opts := Rule{MinConfidence: 0.8, ActuationTime: 5 * time.Second, Lead: 2 * time.Second, ProtectedShare: 0.25, MaxMargin: 0.5, MinPartial: 0.5}
	soon := now.Add(6 * time.Second) // within 5 s + 2 s
	tests := []struct {
		name   string
		u      Upcoming
		free   resources.Vector
		kind   DecisionKind
		amount resources.Vector
		reason string
	}{
		{"low confidence", Upcoming{"W/train", soon, 0.6, need, 4}, capacity, DecideSkip, resources.Vector{}, "below 0.80"},
		{"too early", Upcoming{"W/train", now.Add(time.Minute), 0.95, need, 4}, capacity, DecideWait, resources.Vector{}, "acting 7s ahead"},
		{"certain: no margin", Upcoming{"W/train", soon, 1, need, 4}, capacity, DecideReserve, need, "margin 0%"},
		{"at the threshold: full margin", Upcoming{"W/train", soon, 0.8, need, 4}, capacity, DecideReserve, need.Scale(1.5), "margin 50%"},
		{"halfway: half the margin", Upcoming{"W/train", soon, 0.9, need, 4}, capacity, DecideReserve, need.Scale(1.25), "margin 25%"},
		// Free 7 CPU, of which 4 (25% of 16) are protected: 3 of the 4 wanted fit.
		{"partial", Upcoming{"W/train", soon, 1, need, 4}, vec(7, 64), DecidePartial, need.Scale(0.75), "only 75% fits"},
		// Free 5 CPU: 1 usable, a quarter of the need: delay.
		{"delay", Upcoming{"W/train", soon, 1, need, 4}, vec(5, 64), DecideDelay, resources.Vector{}, "too little room"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.u, now, capacity, tt.free, opts)
			require.Equal(t, tt.kind, d.Kind, d.Reason)
			for k := range resources.NumKinds {
				require.InDelta(t, tt.amount.Get(k), d.Amount.Get(k), 1e-6*(1+tt.amount.Get(k)), "%s", k)
			}
			require.Contains(t, d.Reason, tt.reason)
			if d.Kind == DecideReserve && tt.u.Confidence == 1 {
				require.Equal(t, "reserve 4 CPU / 8 GiB for W/train, confidence 1.00, lead 6 s", d.Summary)
			}
			// Prefetching never eats into the protected share.
			usable := tt.free.Sub(capacity.Scale(0.25)).ClampZero()
			require.True(t, d.Amount.Fits(usable.Scale(1+1e-9)), "reserved %v beyond usable %v", d.Amount, usable)
		})
	}
	wait := Decide(Upcoming{"W/train", now.Add(time.Minute), 0.95, need, 4}, now, capacity, capacity, opts)
	require.Equal(t, now.Add(time.Minute-7*time.Second), wait.ActAt)
}
