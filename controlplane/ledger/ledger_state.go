package ledger

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/resources"
)

// ledgerState is a pool's capacity and reservations. Deterministic.
type ledgerState struct {
	Pool         string
	Capacity     resources.Vector
	Reservations []headstart.Reservation // sorted by key
	Reclaims     int64
	Expiries     int64
	// Measured is the last measurement of a measured pool (nil: the
	// capacity is configured); its InUse is taken before any reservation.
	Measured *headstart.Measurement
}

// inUse is what other work holds of a measured pool.
func (l *ledgerState) inUse() resources.Vector {
	if l.Measured == nil {
		return resources.Vector{}
	}
	return l.Measured.InUse
}

func (l *ledgerState) find(key string) int {
	i := sort.Search(len(l.Reservations), func(i int) bool { return l.Reservations[i].Key >= key })
	if i < len(l.Reservations) && l.Reservations[i].Key == key {
		return i
	}
	return -1
}

// used returns the sum of the hard and of the soft reservations.
func (l *ledgerState) used() (hard, soft resources.Vector) {
	for _, r := range l.Reservations {
		if r.Soft {
			soft = soft.Add(r.Resources)
		} else {
			hard = hard.Add(r.Resources)
		}
	}
	return hard, soft
}

// Free is the capacity neither a reservation nor other work holds.
func (l *ledgerState) Free() resources.Vector {
	hard, soft := l.used()
	return l.Capacity.Sub(hard).Sub(soft).Sub(l.inUse()).ClampZero()
}

// expire releases reservations whose time is up and returns their keys.
func (l *ledgerState) expire(now time.Time) []string {
	var gone []string
	kept := l.Reservations[:0]
	for _, r := range l.Reservations {
		if !r.Expires.After(now) {
			gone = append(gone, r.Key)
			continue
		}
		kept = append(kept, r)
	}
	l.Reservations = kept
	l.Expiries += int64(len(gone))
	return gone
}

// reclaimOrder lists soft reservations in the order they are reclaimed:
// lowest priority first, then newest first, then by key.
func (l *ledgerState) reclaimOrder() []headstart.Reservation {
	var soft []headstart.Reservation
	for _, r := range l.Reservations {
		if r.Soft {
			soft = append(soft, r)
		}
	}
	sort.SliceStable(soft, func(i, j int) bool {
		a, b := soft[i], soft[j]
		if a.Priority != b.Priority {
			return a.Priority < b.Priority
		}
		if !a.Created.Equal(b.Created) {
			return a.Created.After(b.Created)
		}
		return a.Key < b.Key
	})
	return soft
}

// reserve holds capacity for a valid request at time now. A request whose
// key is already held returns that reservation unchanged. A hard request
// may reclaim soft reservations; a soft one takes only free capacity. In a
// measured pool, what other work holds counts as taken.
func (l *ledgerState) reserve(req headstart.ReserveRequest, now time.Time) (headstart.ReserveResult, error) {
	l.expire(now)
	if i := l.find(req.Key); i >= 0 {
		return headstart.ReserveResult{Reservation: l.Reservations[i], Existing: true}, nil
	}
	hard, soft := l.used()
	hard = hard.Add(l.inUse()) // other work is never reclaimed
	var reclaim []string
	if !(hard.Add(soft).Add(req.Resources)).Fits(l.Capacity) {
		if req.Soft || !hard.Add(req.Resources).Fits(l.Capacity) {
			return headstart.ReserveResult{}, fmt.Errorf("%w in pool %s for %s: want %v, free %v", headstart.ErrInsufficientCapacity, l.Pool, req.Stage, req.Resources, l.Free())
		}
		for _, r := range l.reclaimOrder() {
			soft = soft.Sub(r.Resources)
			reclaim = append(reclaim, r.Key)
			if hard.Add(soft.ClampZero()).Add(req.Resources).Fits(l.Capacity) {
				break
			}
		}
	}
	for _, k := range reclaim {
		l.remove(k)
	}
	l.Reclaims += int64(len(reclaim))
	r := headstart.Reservation{Key: req.Key, Pool: l.Pool, Stage: req.Stage, Resources: req.Resources, Soft: req.Soft,
		Priority: req.Priority, Created: now, Expires: now.Add(req.TTL)}
	i := sort.Search(len(l.Reservations), func(i int) bool { return l.Reservations[i].Key >= r.Key })
	l.Reservations = append(l.Reservations, headstart.Reservation{})
	copy(l.Reservations[i+1:], l.Reservations[i:])
	l.Reservations[i] = r
	return headstart.ReserveResult{Reservation: r, Reclaimed: reclaim}, nil
}

func (l *ledgerState) remove(key string) bool {
	i := l.find(key)
	if i < 0 {
		return false
	}
	l.Reservations = append(l.Reservations[:i], l.Reservations[i+1:]...)
	return true
}

// release removes a reservation. Releasing a key that is not held is not an
// error (a retried release, or one that expired): it reports false.
func (l *ledgerState) release(key string, now time.Time) bool {
	l.expire(now)
	return l.remove(key)
}

// setCapacity changes the pool's capacity, reclaiming soft reservations that
// no longer fit; it refuses a capacity below the hard reservations.
func (l *ledgerState) setCapacity(c resources.Vector, now time.Time) ([]string, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: capacity: %w", headstart.ErrInvalidReservation, err)
	}
	l.expire(now)
	hard, _ := l.used()
	if !hard.Fits(c) {
		return nil, fmt.Errorf("%w: capacity %v, hard reservations %v", headstart.ErrCapacityBelowHard, c, hard)
	}
	l.Capacity = c
	return l.reclaimToFit(), nil
}

// measure takes a measurement of the pool: its capacity and what other
// work holds of it are as measured, whatever is reserved, and soft
// reservations that no longer fit are reclaimed. Hard reservations are
// kept even where the measured room is gone: the platform holds them (a
// placeholder pod), so the next measurement sees them.
func (l *ledgerState) measure(m headstart.Measurement, now time.Time) ([]string, error) {
	if err := validMeasurement(m); err != nil {
		return nil, err
	}
	l.expire(now)
	l.Capacity, l.Measured = m.Capacity, &m
	return l.reclaimToFit(), nil
}

func validMeasurement(m headstart.Measurement) error {
	if err := m.Capacity.Validate(); err != nil {
		return fmt.Errorf("%w: measured capacity: %w", headstart.ErrInvalidReservation, err)
	}
	if err := m.InUse.Validate(); err != nil {
		return fmt.Errorf("%w: measured use: %w", headstart.ErrInvalidReservation, err)
	}
	return nil
}

// reclaimToFit reclaims soft reservations, in reclaim order, until hard and
// soft reservations and other work's use fit the capacity, or none is left.
func (l *ledgerState) reclaimToFit() []string {
	hard, soft := l.used()
	taken := hard.Add(l.inUse())
	var reclaim []string
	for _, r := range l.reclaimOrder() {
		if taken.Add(soft).Fits(l.Capacity) {
			break
		}
		soft = soft.Sub(r.Resources).ClampZero()
		reclaim = append(reclaim, r.Key)
	}
	for _, k := range reclaim {
		l.remove(k)
	}
	l.Reclaims += int64(len(reclaim))
	return reclaim
}

// nextExpiry is when the earliest reservation expires (zero if none).
func (l *ledgerState) nextExpiry() time.Time {
	var next time.Time
	for _, r := range l.Reservations {
		if next.IsZero() || r.Expires.Before(next) {
			next = r.Expires
		}
	}
	return next
}

// checkInvariants reports a broken invariant: hard reservations never exceed
// a configured capacity; while any soft reservation is held, hard and soft
// reservations and other work's use together never exceed capacity.
func (l *ledgerState) checkInvariants() error {
	hard, soft := l.used()
	use := l.inUse()
	const eps = 1e-6
	anySoft := false
	for _, r := range l.Reservations {
		anySoft = anySoft || r.Soft
	}
	for k := range resources.NumKinds {
		c := l.Capacity.Get(k)
		if l.Measured == nil && hard.Get(k) > c+eps*math.Max(1, c) {
			return fmt.Errorf("hard %s %v exceeds capacity %v", k, hard.Get(k), c)
		}
		if t := hard.Get(k) + soft.Get(k) + use.Get(k); anySoft && t > c+eps*math.Max(1, c) {
			return fmt.Errorf("reserved and in use %s %v exceeds capacity %v", k, t, c)
		}
	}
	return nil
}
