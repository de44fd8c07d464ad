package ledger

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/resources"
)

func vec(cpu, memGiB float64) resources.Vector {
	return resources.Vector{}.With(resources.CPU, cpu).With(resources.Memory, memGiB*(1<<30))
}

func newPool() *ledgerState { return &ledgerState{Pool: "p", Capacity: vec(8, 32)} }

func req(key string, cpu, mem float64, soft bool, prio int) headstart.ReserveRequest {
	return headstart.ReserveRequest{Key: key, Pool: "p", Stage: "W/train", Resources: vec(cpu, mem), TTL: time.Hour, Soft: soft, Priority: prio}
}

func TestReserveRejectsMalformedRequests(t *testing.T) {
	for name, tt := range map[string]struct {
		r    headstart.ReserveRequest
		want error
	}{
		"unknown pool":   {headstart.ReserveRequest{Key: "k", Pool: "q", Stage: "s", Resources: vec(1, 1), TTL: time.Minute}, headstart.ErrUnknownPool},
		"empty key":      {headstart.ReserveRequest{Pool: "p", Stage: "s", Resources: vec(1, 1), TTL: time.Minute}, headstart.ErrInvalidReservation},
		"empty stage":    {headstart.ReserveRequest{Key: "k", Pool: "p", Resources: vec(1, 1), TTL: time.Minute}, headstart.ErrInvalidReservation},
		"negative":       {headstart.ReserveRequest{Key: "k", Pool: "p", Stage: "s", Resources: vec(-1, 1), TTL: time.Minute}, resources.ErrNegative},
		"NaN":            {headstart.ReserveRequest{Key: "k", Pool: "p", Stage: "s", Resources: vec(math.NaN(), 1), TTL: time.Minute}, resources.ErrInvalid},
		"infinite":       {headstart.ReserveRequest{Key: "k", Pool: "p", Stage: "s", Resources: vec(math.Inf(1), 1), TTL: time.Minute}, resources.ErrInvalid},
		"overflowing":    {headstart.ReserveRequest{Key: "k", Pool: "p", Stage: "s", Resources: vec(1e30, 1), TTL: time.Minute}, resources.ErrOverflow},
		"no ttl":         {headstart.ReserveRequest{Key: "k", Pool: "p", Stage: "s", Resources: vec(1, 1)}, headstart.ErrInvalidReservation},
		"too long a ttl": {headstart.ReserveRequest{Key: "k", Pool: "p", Stage: "s", Resources: vec(1, 1), TTL: 48 * time.Hour}, headstart.ErrInvalidReservation},
		"nothing":        {headstart.ReserveRequest{Key: "k", Pool: "p", Stage: "s", TTL: time.Minute}, headstart.ErrInvalidReservation},
	} {
		if err := tt.r.Validate("p"); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", name, err, tt.want)
		}
	}
}

func TestReserveIsIdempotentPerKey(t *testing.T) {
	l := newPool()
	a, err := l.reserve(req("k", 2, 4, false, 0), t0)
	require.NoError(t, err)
	b, err := l.reserve(req("k", 2, 4, false, 0), t0.Add(time.Minute))
	require.NoError(t, err)
	require.True(t, b.Existing)
	require.Equal(t, a.Reservation, b.Reservation)
	require.Len(t, l.Reservations, 1)
	require.True(t, l.release("k", t0))
	require.False(t, l.release("k", t0), "a second release is a no-op")
}

func TestHardRequestsReclaimSoftNewestAndLowestPriorityFirst(t *testing.T) {
	l := newPool()
	now := t0
	for _, r := range []headstart.ReserveRequest{
		req("old-low", 2, 8, true, 0), req("new-low", 2, 8, true, 0), req("high", 2, 8, true, 5),
	} {
		_, err := l.reserve(r, now)
		require.NoError(t, err)
		now = now.Add(time.Second)
	}
	// 6 of 8 CPU held softly; a hard request for 4 needs 2 more: one soft goes, newest low first.
	res, err := l.reserve(req("hard", 4, 8, false, 0), now)
	require.NoError(t, err)
	require.Equal(t, []string{"new-low"}, res.Reclaimed)
	// A soft request never reclaims: it fits only in free capacity.
	_, err = l.reserve(req("soft-big", 4, 1, true, 9), now)
	require.ErrorIs(t, err, headstart.ErrInsufficientCapacity)
	// A hard request beyond what hard reservations leave fails, and reclaims nothing.
	_, err = l.reserve(req("too-big", 5, 1, false, 0), now)
	require.ErrorIs(t, err, headstart.ErrInsufficientCapacity)
	require.Len(t, l.Reservations, 3)
	require.NoError(t, l.checkInvariants())
}

func TestReservationsExpire(t *testing.T) {
	l := newPool()
	r := req("k", 8, 32, false, 0)
	r.TTL = time.Minute
	_, err := l.reserve(r, t0)
	require.NoError(t, err)
	require.Equal(t, t0.Add(time.Minute), l.nextExpiry())
	_, err = l.reserve(req("other", 1, 1, false, 0), t0.Add(30*time.Second))
	require.ErrorIs(t, err, headstart.ErrInsufficientCapacity)
	_, err = l.reserve(req("other", 1, 1, false, 0), t0.Add(time.Minute))
	require.NoError(t, err, "the expired reservation released its capacity")
	require.Equal(t, int64(1), l.Expiries)
}

func TestCapacityChanges(t *testing.T) {
	l := newPool()
	_, _ = l.reserve(req("hard", 4, 8, false, 0), t0)
	_, _ = l.reserve(req("soft", 4, 8, true, 0), t0)
	_, err := l.setCapacity(vec(2, 32), t0)
	require.ErrorIs(t, err, headstart.ErrCapacityBelowHard)
	reclaimed, err := l.setCapacity(vec(6, 32), t0)
	require.NoError(t, err)
	require.Equal(t, []string{"soft"}, reclaimed)
	_, err = l.setCapacity(vec(math.NaN(), 1), t0)
	require.ErrorIs(t, err, resources.ErrInvalid)
}

// TestAMeasuredPoolReservesOnlyWhatOtherWorkLeaves: other work's use is
// taken first; a soft request for more than what is left is refused; a
// measurement with more in use reclaims soft reservations, newest first, but
// keeps hard ones even past the room measured.
func TestAMeasuredPoolReservesOnlyWhatOtherWorkLeaves(t *testing.T) {
	l := newPool() // 8 CPU, 32 GiB
	_, err := l.measure(headstart.Measurement{Capacity: vec(8, 32), InUse: vec(5, 8), At: t0, Source: "test"}, t0)
	require.NoError(t, err)
	require.Equal(t, vec(3, 24), l.Free())
	_, err = l.reserve(req("big", 4, 1, true, 0), t0)
	require.ErrorIs(t, err, headstart.ErrInsufficientCapacity, "5 of 8 CPU are in use")
	_, err = l.reserve(req("hard", 1, 1, false, 0), t0)
	require.NoError(t, err)
	_, err = l.reserve(req("soft-old", 1, 1, true, 0), t0)
	require.NoError(t, err)
	_, err = l.reserve(req("soft-new", 1, 1, true, 0), t0.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, 0.0, l.Free().Get(resources.CPU))

	reclaimed, err := l.measure(headstart.Measurement{Capacity: vec(8, 32), InUse: vec(6, 8), At: t0.Add(time.Minute)}, t0.Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, []string{"soft-new"}, reclaimed, "other work grew by a CPU: the newest soft reservation goes")
	require.NoError(t, l.checkInvariants())

	reclaimed, err = l.measure(headstart.Measurement{Capacity: vec(4, 32), InUse: vec(4, 8), At: t0.Add(2 * time.Minute)}, t0.Add(2*time.Minute))
	require.NoError(t, err, "a measurement is what the platform says: never refused for what is reserved")
	require.Equal(t, []string{"soft-old"}, reclaimed)
	require.Equal(t, 1, len(l.Reservations), "the hard reservation stays")
	require.NoError(t, l.checkInvariants())
	st := l.status()
	require.Equal(t, vec(4, 8), st.InUse)
	require.Equal(t, t0.Add(2*time.Minute), st.Measured)

	_, err = l.measure(headstart.Measurement{Capacity: vec(-1, 1)}, t0)
	require.ErrorIs(t, err, headstart.ErrInvalidReservation)
}

// TestLedgerInvariantsUnderRandomOperations: hard reservations never exceed
// a configured capacity, and nor does everything held (other work's use in
// a measured pool included), whatever the sequence.
func TestLedgerInvariantsUnderRandomOperations(t *testing.T) {
	for seed := uint64(0); seed < 200; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		l := newPool()
		now := t0
		for step := 0; step < 200; step++ {
			now = now.Add(time.Duration(rng.IntN(120)) * time.Second)
			key := fmt.Sprintf("k%d", rng.IntN(30))
			var op string
			switch rng.IntN(10) {
			case 0, 1, 2, 3, 4, 5:
				op = "reserve"
				r := headstart.ReserveRequest{Key: key, Pool: "p", Stage: "s", Resources: vec(float64(rng.IntN(5)), float64(rng.IntN(20))+0.5),
					TTL: time.Duration(1+rng.IntN(30)) * time.Minute, Soft: rng.IntN(2) == 0, Priority: rng.IntN(3)}
				_, err := l.reserve(r, now)
				if err != nil && !errors.Is(err, headstart.ErrInsufficientCapacity) {
					t.Fatalf("seed %d step %d: %v", seed, step, err)
				}
			case 6, 7:
				op = "release"
				l.release(key, now)
			case 8:
				if seed%2 == 0 { // half the seeds configure the capacity, half measure it
					op = "capacity"
					_, err := l.setCapacity(vec(float64(4+rng.IntN(8)), float64(16+rng.IntN(32))), now)
					if err != nil && !errors.Is(err, headstart.ErrCapacityBelowHard) {
						t.Fatalf("seed %d step %d: %v", seed, step, err)
					}
				} else {
					op = "measure"
					m := headstart.Measurement{Capacity: vec(float64(4+rng.IntN(8)), float64(16+rng.IntN(32))), InUse: vec(float64(rng.IntN(6)), float64(rng.IntN(20))), At: now}
					if _, err := l.measure(m, now); err != nil {
						t.Fatalf("seed %d step %d: %v", seed, step, err)
					}
				}
			default:
				op = "expire"
				l.expire(now)
			}
			if err := l.checkInvariants(); err != nil {
				t.Fatalf("seed %d step %d after %s: %v", seed, step, op, err)
			}
			for i := 1; i < len(l.Reservations); i++ {
				if l.Reservations[i-1].Key >= l.Reservations[i].Key {
					t.Fatalf("seed %d step %d: reservations out of order", seed, step)
				}
			}
		}
	}
}

var t0 = time.Unix(0, 0)
