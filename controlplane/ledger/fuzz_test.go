package ledger

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/resources"
)

// FuzzLedgerUpdates drives a ledger with updates made of fuzzed figures,
// each passed through the validator its update handler runs first: a
// request the validator lets through is applied or refused with a typed
// error, and after every update the ledger's invariants hold.
func FuzzLedgerUpdates(f *testing.F) {
	f.Add("k1", "p", "W/a", 2.0, 4.0, int64(time.Minute), true, 0, 8.0, 1.0, uint8(0))
	f.Add("k2", "p", "W/b", 9.0, 40.0, int64(time.Hour), false, 3, 4.0, 3.5, uint8(1))
	f.Add("", "q", "", -1.0, 1e300, int64(-1), true, -5, -1.0, math.Inf(1), uint8(2))
	f.Fuzz(func(t *testing.T, key, pool, stage string, cpu, memGiB float64, ttl int64, soft bool, prio int, capCPU, useCPU float64, op uint8) {
		l := newPool()
		now := t0
		for i := range 3 { // some reservations to start from
			_, _ = l.reserve(req(string(rune('a'+i)), 1, 2, i%2 == 0, i), now)
		}
		vec := resources.Vector{}.With(resources.CPU, cpu).With(resources.Memory, memGiB*(1<<30))
		switch op % 4 {
		case 0:
			r := headstart.ReserveRequest{Key: key, Pool: pool, Stage: stage, Resources: vec, TTL: time.Duration(ttl), Soft: soft, Priority: prio}
			if err := r.Validate(l.Pool); err != nil {
				if !errors.Is(err, headstart.ErrInvalidReservation) && !errors.Is(err, headstart.ErrUnknownPool) {
					t.Fatalf("untyped validation error: %v", err)
				}
				return
			}
			if _, err := l.reserve(r, now); err != nil && !errors.Is(err, headstart.ErrInsufficientCapacity) {
				t.Fatalf("reserve: untyped error %v", err)
			}
		case 1:
			if _, err := l.setCapacity(resources.Vector{}.With(resources.CPU, capCPU), now); err != nil &&
				!errors.Is(err, headstart.ErrInvalidReservation) && !errors.Is(err, headstart.ErrCapacityBelowHard) {
				t.Fatalf("set-capacity: untyped error %v", err)
			}
		case 2:
			m := headstart.Measurement{Capacity: resources.Vector{}.With(resources.CPU, capCPU), InUse: resources.Vector{}.With(resources.CPU, useCPU), At: now}
			if err := validMeasurement(m); err != nil {
				if !errors.Is(err, headstart.ErrInvalidReservation) {
					t.Fatalf("untyped validation error: %v", err)
				}
				return
			}
			if _, err := l.measure(m, now); err != nil {
				t.Fatalf("a valid measurement was refused: %v", err)
			}
		case 3:
			l.release(key, now.Add(time.Duration(ttl)))
		}
		if err := l.checkInvariants(); err != nil {
			t.Fatalf("after op %d: %v", op%4, err)
		}
	})
}
