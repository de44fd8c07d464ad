package bandwidth

import (
	"context"
	"fmt"
	"math"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/internal/state"
	"github.com/headstart-dev/headstart/resources"
)

var errNoEntry = syscall.ENOENT

// Apply records the stage's floor (Desired.Resources' NetBytes, bytes/s in
// each direction) and takes the first step toward it. The floors of all
// stages may add up to the link's Ceiling at most; a floor of 0 keeps what
// was asked before.
func (s *Shaper) Apply(ctx context.Context, a shapers.Action) (shapers.Status, error) {
	if err := s.check(a.Target); err != nil {
		return shapers.Status{}, err
	}
	if err := a.Validate(); err != nil {
		return shapers.Status{}, err
	}
	if a.Desired.Replicas != nil || a.Desired.Concurrency != nil {
		return shapers.Status{}, fmt.Errorf("%w: %s: a traffic class has no replicas", shapers.ErrUnsupported, a.Target)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	want := s.floor(a.Target.Name)
	if r := a.Desired.Resources; r != nil {
		for _, k := range resources.Kinds() {
			if k != resources.NetBytes && r.Get(k) > 0 {
				return shapers.Status{}, fmt.Errorf("%w: %s: %s is not a network bandwidth: the cgroup shaper limits it", shapers.ErrUnsupported, a.Target, k)
			}
		}
		if f := r.Get(resources.NetBytes); f > 0 {
			want = math.Round(f)
		}
	}
	i := s.stage(a.Target.Name)
	if ceil := s.opts.Stages[i].Ceiling; want > ceil {
		return shapers.Status{}, fmt.Errorf("%w: %s: floor %s above the stage's ceiling %s", shapers.ErrInvalidAction, a.Target,
			rate(want), rate(ceil))
	}
	total := want // the floors asked for; a stage not asked for only borrows
	for name, t := range s.desired {
		if name != a.Target.Name {
			total += t.Floor
		}
	}
	if total > s.opts.Ceiling {
		return shapers.Status{}, fmt.Errorf("%w: %s: floors would add up to %s, above the link's ceiling %s", shapers.ErrInvalidAction, a.Target,
			rate(total), rate(s.opts.Ceiling))
	}
	if a.DryRun {
		st, err := s.status(a.Target.Name, want)
		if err != nil {
			return shapers.Status{}, err
		}
		st.Message = "dry run: " + s.describe(a.Target.Name, st.Resources.Get(resources.NetBytes), want)
		return st, nil
	}
	t := &target{Floor: want, Reason: a.Reason}
	if err := state.Dir(s.opts.StateDir).Save(a.Target.Name, t); err != nil {
		return shapers.Status{}, fmt.Errorf("bandwidth: %w", err)
	}
	s.desired[a.Target.Name] = t
	if err := s.step(); err != nil {
		return shapers.Status{}, err
	}
	return s.status(a.Target.Name, want)
}

// floor is a stage's desired floor: asked for, or none (minRate).
func (s *Shaper) floor(name string) float64 {
	if t := s.desired[name]; t != nil {
		return t.Floor
	}
	return minRate
}

// Status reads the stage's class in each direction: its floor (the lowest
// of them) as NetBytes, and whether every direction has the desired one.
func (s *Shaper) Status(ctx context.Context, tg shapers.Target) (shapers.Status, error) {
	if err := s.check(tg); err != nil {
		return shapers.Status{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	want := s.floor(tg.Name)
	st, err := s.status(tg.Name, want)
	if err != nil {
		return shapers.Status{}, err
	}
	if !st.Converged {
		st.Message = s.describe(tg.Name, st.Resources.Get(resources.NetBytes), want)
	}
	return st, nil
}

func (s *Shaper) status(name string, want float64) (shapers.Status, error) {
	dirs, err := s.directions()
	if err != nil {
		return shapers.Status{}, err
	}
	st := shapers.Status{Target: shapers.Target{Kind: Kind, Name: name}, Converged: true}
	floor := math.Inf(1)
	for _, d := range dirs {
		have, err := s.classes(d)
		if err != nil {
			return shapers.Status{}, fmt.Errorf("bandwidth: %s: %w", d, err)
		}
		c := have[classID(firstStageMinor+s.stage(name))]
		floor = min(floor, c.Rate)
		st.Converged = st.Converged && c.Rate == want
	}
	st.Resources = st.Resources.With(resources.NetBytes, floor)
	return st, nil
}

func (s *Shaper) describe(name string, have, want float64) string {
	if have == want {
		return "at the desired floor"
	}
	next := toward(have, want, s.opts.StepShare*s.opts.Ceiling)
	return fmt.Sprintf("floor %s → %s (target %s, up to %s)", rate(have), rate(next),
		rate(want), rate(s.opts.Stages[s.stage(name)].Ceiling))
}

// toward moves from have to want by at most step.
func toward(have, want, step float64) float64 {
	if want > have {
		return math.Min(want, have+step)
	}
	return math.Max(want, have-step)
}

// step takes one step toward the desired floors in each direction. Its
// caller holds s.mu.
func (s *Shaper) step() error {
	dirs, err := s.directions()
	if err != nil {
		return err
	}
	for _, d := range dirs {
		have, err := s.classes(d)
		if err != nil {
			return fmt.Errorf("bandwidth: %s: %w", d, err)
		}
		floors := make([]float64, len(s.opts.Stages))
		var changes []string
		for i, st := range s.opts.Stages {
			cur := have[classID(firstStageMinor+i)].Rate
			floors[i] = toward(cur, s.floor(st.Name), s.opts.StepShare*s.opts.Ceiling)
			if floors[i] != cur {
				reason := ""
				if t := s.desired[st.Name]; t != nil {
					reason = ": " + t.Reason
				}
				changes = append(changes, fmt.Sprintf("%s %s%s", st.Name, s.describe(st.Name, cur, s.floor(st.Name)), reason))
			}
		}
		if len(changes) == 0 {
			continue
		}
		if err := s.setClasses(d, floors, have); err != nil {
			return fmt.Errorf("bandwidth: %s: %w", d, err)
		}
		fmt.Fprintf(s.opts.Log, "bandwidth: %s: %s\n", d, strings.Join(changes, "; "))
	}
	return nil
}

// run steps toward the desired floors every StepInterval.
func (s *Shaper) run() {
	defer close(s.done)
	tick := time.NewTicker(s.opts.StepInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		s.mu.Lock()
		if err := s.step(); err != nil {
			fmt.Fprintf(s.opts.Log, "bandwidth: %v\n", err)
		}
		s.mu.Unlock()
	}
}

func (s *Shaper) check(t shapers.Target) error {
	if t.Kind != Kind {
		return fmt.Errorf("%w: %s: this shaper serves %s", shapers.ErrUnknownTarget, t, Kind)
	}
	if s.stage(t.Name) < 0 {
		names := make([]string, len(s.opts.Stages))
		for i, st := range s.opts.Stages {
			names[i] = st.Name
		}
		return fmt.Errorf("%w: %s: not one of the stages of %s (%s)", shapers.ErrUnknownTarget, t, s.opts.Device, strings.Join(names, ", "))
	}
	return nil
}

// Close stops stepping toward the desired floors; the classes stay.
func (s *Shaper) Close(context.Context) error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.h.Close()
	return nil
}

// Clear removes what the shaper set up: Device's htb and ingress qdiscs
// (with their classes and filters) and the ifb device. Traffic then flows
// unshaped. The desired floors in StateDir stay.
func (s *Shaper) Clear(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	dev, err := s.h.LinkByName(s.opts.Device)
	if err != nil {
		return fmt.Errorf("bandwidth: device %s: %w", s.opts.Device, err)
	}
	qdiscs, err := s.h.QdiscList(dev)
	if err != nil {
		return fmt.Errorf("bandwidth: %w", err)
	}
	for _, q := range qdiscs {
		a := q.Attrs()
		if a.Parent == netlink.HANDLE_ROOT && a.Handle == netlink.MakeHandle(1, 0) || a.Parent == netlink.HANDLE_INGRESS && s.opts.Ingress {
			if err := s.h.QdiscDel(q); err != nil {
				return fmt.Errorf("bandwidth: delete %s qdisc of %s: %w", q.Type(), s.opts.Device, err)
			}
		}
	}
	if s.opts.Ingress {
		if ifb, err := s.h.LinkByName(s.opts.IFB); err == nil && ifb.Type() == "ifb" {
			if err := s.h.LinkDel(ifb); err != nil {
				return fmt.Errorf("bandwidth: delete %s: %w", s.opts.IFB, err)
			}
		}
	}
	return nil
}

// rate formats bytes/s as bits/s, as links are rated.
func rate(bytesPerSec float64) string {
	bits := bytesPerSec * 8
	switch {
	case bits >= 1e9:
		return fmt.Sprintf("%.4g Gbit/s", bits/1e9)
	case bits >= 1e6:
		return fmt.Sprintf("%.4g Mbit/s", bits/1e6)
	default:
		return fmt.Sprintf("%.4g kbit/s", bits/1e3)
	}
}
