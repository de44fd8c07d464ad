// Package cgroups shapes the CPU, memory and block I/O of a stage's cgroup
// on one Linux host, through containerd/cgroups: cgroup v1 (a legacy or
// hybrid hierarchy) or v2 (unified), whichever the host has.
//
// Each target is a cgroup, Options.Root/<name>, holding a stage's worker
// processes (Place puts them there). Apply records the desired limits and
// steps toward them: each step moves a limit at most a factor MaxStep, one
// step every StepInterval, so running work sees its capacity change
// gradually. A memory limit is never set below what the cgroup uses (no
// out-of-memory kill from shaping): it holds above the use and says so.
// With a StateDir the desired state survives a restart, and a shaper
// started again reconciles the cgroups to it.
package cgroups

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/internal/state"
	"github.com/headstart-dev/headstart/resources"
)

// Kind is the target kind this shaper serves.
const Kind = "cgroup"

// Options configure a Shaper. Zero values take the defaults.
type Options struct {
	// Root is the cgroup every target's cgroup is made under. Default "headstart".
	Root string
	// Devices whose I/O disk_bytes and disk_iops limit: "major:minor", a
	// block device (/dev/vda), or any path, naming the disk its file system
	// is on. Default none: a disk limit is refused (shapers.ErrUnsupported).
	Devices []string
	// MaxStep bounds a step: a limit moves at most this factor toward its
	// target. From no limit, CPU starts at the host's cores and memory at
	// its RAM; a disk limit is set at once. Default 2.
	MaxStep float64
	// StepInterval is the time between steps. Default 1s.
	StepInterval time.Duration
	// DiskIOPSBudget is the IOPS the Devices sustain, as measured on them.
	// With it set, a target's disk_iops is its floor, not its cap: each
	// target (every cgroup the shaper knows, asked for limits or holding
	// placed processes) is capped at its floor plus an equal share of what
	// the floors leave of the budget, so the favoured stage gets its floor
	// whatever the others do, and gets it back to share when its floor is
	// lowered. The floors may add up to the budget at most. Default 0:
	// disk_iops is each target's cap.
	DiskIOPSBudget float64
	// StateDir keeps each target's desired state; a Shaper started on it
	// again reconciles the cgroups to it. Default: kept in memory only.
	StateDir string
	// Log receives a line per step. Default: nowhere.
	Log io.Writer
}

// Defaults.
const (
	DefaultRoot         = "headstart"
	DefaultMaxStep      = 2.0
	DefaultStepInterval = time.Second
	// SoftShare is where the soft limit (v1) or memory.high (v2) sits, as a
	// share of the hard limit: the kernel reclaims above it, before the hard
	// limit would kill.
	SoftShare = 0.9
)

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func validName(name string) bool {
	return namePattern.MatchString(name) && name != "." && name != ".."
}

// Validate reports the first option that cannot work.
func (o Options) Validate() error {
	switch {
	case o.Root != "" && !validPath(o.Root):
		return fmt.Errorf("cgroups: root %q: want cgroup names ([A-Za-z0-9_.-]) separated by /", o.Root)
	case o.MaxStep != 0 && o.MaxStep <= 1:
		return fmt.Errorf("cgroups: max step %v: want more than 1", o.MaxStep)
	case o.StepInterval < 0:
		return fmt.Errorf("cgroups: step interval %v is negative", o.StepInterval)
	case o.DiskIOPSBudget < 0:
		return fmt.Errorf("cgroups: disk IOPS budget %v is negative", o.DiskIOPSBudget)
	case o.DiskIOPSBudget > 0 && len(o.Devices) == 0:
		return errors.New("cgroups: a disk IOPS budget needs the devices it is measured on")
	}
	return nil
}

func validPath(p string) bool {
	for _, part := range strings.Split(strings.Trim(p, "/"), "/") {
		if !validName(part) {
			return false
		}
	}
	return true
}

func (o Options) withDefaults() Options {
	if o.Root == "" {
		o.Root = DefaultRoot
	}
	o.Root = "/" + strings.Trim(o.Root, "/")
	if o.MaxStep == 0 {
		o.MaxStep = DefaultMaxStep
	}
	if o.StepInterval == 0 {
		o.StepInterval = DefaultStepInterval
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return o
}

// Shaper shapes the cgroups of one host. Safe for concurrent use; Close
// stops its stepping (the limits stay).
type Shaper struct {
	opts    Options
	version string
	devices []device
	hostCPU float64
	hostMem int64

	mu      sync.Mutex
	targets map[string]*target
	stop    chan struct{}
	done    chan struct{}
}

type target struct {
	ctl     control
	Desired limits `json:"desired"`
	Reason  string `json:"reason"`
}

// New returns a Shaper on this host's cgroups, reconciling to the desired
// state kept in opts.StateDir, if any.
func New(opts Options) (*Shaper, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	ver, err := version()
	if err != nil {
		return nil, err
	}
	s := &Shaper{opts: opts, version: ver, hostCPU: float64(runtime.NumCPU()), targets: map[string]*target{},
		stop: make(chan struct{}), done: make(chan struct{})}
	var info unix.Sysinfo_t
	if err := unix.Sysinfo(&info); err != nil {
		return nil, fmt.Errorf("cgroups: host memory: %w", err)
	}
	s.hostMem = int64(info.Totalram) * int64(info.Unit)
	for _, spec := range opts.Devices {
		d, err := resolveDevice(spec)
		if err != nil {
			return nil, fmt.Errorf("cgroups: %w", err)
		}
		if !slices.Contains(s.devices, d) {
			s.devices = append(s.devices, d)
		}
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	go s.run()
	return s, nil
}

// Version is the cgroup version shaped: "v1" or "v2".
func (s *Shaper) Version() string { return s.version }

// Group is the cgroup path of target name, e.g. "/headstart/transform".
func (s *Shaper) Group(name string) string { return s.opts.Root + "/" + name }

// Close stops stepping toward the desired state; the limits set stay.
func (s *Shaper) Close(context.Context) error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	return nil
}

// Apply records the action's limits as the target's desired state and
// takes the first step toward them. CPU is in cores, memory the hard limit
// in bytes, disk_bytes and disk_iops each of reads and writes per device;
// a kind at 0 keeps what was asked before.
func (s *Shaper) Apply(ctx context.Context, a shapers.Action) (shapers.Status, error) {
	if err := s.check(a.Target); err != nil {
		return shapers.Status{}, err
	}
	if err := a.Validate(); err != nil {
		return shapers.Status{}, err
	}
	if a.Desired.Replicas != nil || a.Desired.Concurrency != nil {
		return shapers.Status{}, fmt.Errorf("%w: %s: a cgroup has no replicas: the shaper that starts the stage's workers places them in it", shapers.ErrUnsupported, a.Target)
	}
	want := limits{}
	if r := a.Desired.Resources; r != nil {
		if r.Get(resources.NetBytes) > 0 {
			return shapers.Status{}, fmt.Errorf("%w: %s: network bandwidth is the bandwidth shaper's", shapers.ErrUnsupported, a.Target)
		}
		if (r.Get(resources.DiskBytes) > 0 || r.Get(resources.DiskIOPS) > 0) && len(s.devices) == 0 {
			return shapers.Status{}, fmt.Errorf("%w: %s: disk limits need the devices they apply to (cgroups devices)", shapers.ErrUnsupported, a.Target)
		}
		want = limits{CPU: r.Get(resources.CPU), Memory: int64(r.Get(resources.Memory)),
			DiskBytes: uint64(r.Get(resources.DiskBytes)), DiskIOPS: uint64(r.Get(resources.DiskIOPS))}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.targets[a.Target.Name]
	desired := want
	if t != nil {
		desired = merge(t.Desired, want)
	}
	if b := s.opts.DiskIOPSBudget; b > 0 {
		floors := float64(desired.DiskIOPS)
		for n, o := range s.targets {
			if n != a.Target.Name {
				floors += float64(o.Desired.DiskIOPS)
			}
		}
		if floors > b {
			return shapers.Status{}, fmt.Errorf("%w: %s: disk IOPS floors would add up to %.0f, above the devices' budget of %.0f", shapers.ErrInvalidAction, a.Target, floors, b)
		}
	}
	if a.DryRun {
		var o observed
		if t != nil {
			var err error
			if o, err = t.ctl.read(s.devices); err != nil {
				return shapers.Status{}, err
			}
		}
		desired = s.effective(a.Target.Name, desired)
		next, held := s.next(o, desired)
		st := s.status(a.Target, o, desired)
		st.Message = "dry run: " + describe(o.limits, next, desired, held)
		return st, nil
	}
	if t == nil {
		ctl, err := open(s.version, s.Group(a.Target.Name))
		if err != nil {
			return shapers.Status{}, err
		}
		t = &target{ctl: ctl}
		s.targets[a.Target.Name] = t
	}
	t.Desired, t.Reason = desired, a.Reason
	if err := state.Dir(s.opts.StateDir).Save(a.Target.Name, t); err != nil {
		return shapers.Status{}, fmt.Errorf("cgroups: %w", err)
	}
	if s.opts.DiskIOPSBudget > 0 { // the others' share changed with this floor: they move first
		for _, name := range s.names() {
			if name != a.Target.Name {
				if _, err := s.step(name, s.targets[name]); err != nil {
					return shapers.Status{}, err
				}
			}
		}
	}
	return s.step(a.Target.Name, t)
}

// merge is want over was: each limit asked for replaces the one before.
func merge(was, want limits) limits {
	if want.CPU > 0 {
		was.CPU = want.CPU
	}
	if want.Memory > 0 {
		was.Memory = want.Memory
	}
	if want.DiskBytes > 0 {
		was.DiskBytes = want.DiskBytes
	}
	if want.DiskIOPS > 0 {
		was.DiskIOPS = want.DiskIOPS
	}
	return was
}

// Status reads the target's cgroup: its limits (resources: CPU cores,
// memory hard limit, disk limits), its processes as replicas, and whether
// the limits are the desired ones.
func (s *Shaper) Status(ctx context.Context, tg shapers.Target) (shapers.Status, error) {
	if err := s.check(tg); err != nil {
		return shapers.Status{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.targets[tg.Name]
	if t == nil {
		return shapers.Status{Target: tg, Converged: true, Message: "no limits asked for"}, nil
	}
	o, err := t.ctl.read(s.devices)
	if err != nil {
		return shapers.Status{}, err
	}
	want := s.effective(tg.Name, t.Desired)
	st := s.status(tg, o, want)
	if !st.Converged {
		next, held := s.next(o, want)
		st.Message = describe(o.limits, next, want, held)
	}
	return st, nil
}

// effective is what target name's cgroup is brought to, with desired as
// its desired limits: those, but with a disk IOPS budget, its IOPS cap is
// its floor plus an equal share of what all the floors leave.
func (s *Shaper) effective(name string, desired limits) limits {
	b := s.opts.DiskIOPSBudget
	if b <= 0 {
		return desired
	}
	floors, n := float64(desired.DiskIOPS), 1.0
	for other, t := range s.targets {
		if other != name {
			floors, n = floors+float64(t.Desired.DiskIOPS), n+1
		}
	}
	desired.DiskIOPS = uint64(math.Max(float64(desired.DiskIOPS)+math.Max(b-floors, 0)/n, minIOPS))
	return desired
}

// minIOPS is the lowest IOPS cap a budget gives: a cap of 0 would be none.
const minIOPS = 10

// names are the targets' names, sorted.
func (s *Shaper) names() []string {
	names := make([]string, 0, len(s.targets))
	for name := range s.targets {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Place moves process pid (and the threads it has) into the target's
// cgroup, making it if needed. Children it starts afterwards are born there.
func (s *Shaper) Place(ctx context.Context, name string, pid int) error {
	if !validName(name) {
		return fmt.Errorf("%w: cgroup name %q: want [A-Za-z0-9_.-]", shapers.ErrInvalidAction, name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.targets[name]
	if t == nil {
		ctl, err := open(s.version, s.Group(name))
		if err != nil {
			return err
		}
		t = &target{ctl: ctl}
		s.targets[name] = t
	}
	if err := t.ctl.add(pid); err != nil {
		return fmt.Errorf("cgroups: place %d in %s: %w", pid, s.Group(name), err)
	}
	return nil
}

// Remove forgets target name and deletes its cgroup, which must hold no
// process, and its desired state.
func (s *Shaper) Remove(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.targets[name]
	if t == nil {
		return nil
	}
	if err := t.ctl.remove(); err != nil {
		return fmt.Errorf("cgroups: remove %s: %w", s.Group(name), err)
	}
	delete(s.targets, name)
	if err := state.Dir(s.opts.StateDir).Delete(name); err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	return nil
}

func (s *Shaper) check(t shapers.Target) error {
	if t.Kind != Kind {
		return fmt.Errorf("%w: %s: this shaper serves %s", shapers.ErrUnknownTarget, t, Kind)
	}
	if !validName(t.Name) {
		return fmt.Errorf("%w: %s: a cgroup name is [A-Za-z0-9_.-]", shapers.ErrInvalidAction, t)
	}
	return nil
}

// status is the observed state against the desired.
func (s *Shaper) status(tg shapers.Target, o observed, desired limits) shapers.Status {
	v := resources.Vector{}.With(resources.CPU, o.CPU).With(resources.Memory, float64(o.Memory)).
		With(resources.DiskBytes, float64(o.DiskBytes)).With(resources.DiskIOPS, float64(o.DiskIOPS))
	return shapers.Status{Target: tg, Replicas: o.Procs, Ready: o.Procs, Resources: v, Converged: reached(o.limits, desired)}
}

// reached reports whether every desired limit is in place (memory to the
// page, CPU to the microsecond of quota).
func reached(have, want limits) bool {
	return (want.CPU == 0 || math.Abs(have.CPU-want.CPU) < 1.5/cpuPeriod) &&
		(want.Memory == 0 || abs(have.Memory-want.Memory) < pageSize) &&
		(want.DiskBytes == 0 || have.DiskBytes == want.DiskBytes) &&
		(want.DiskIOPS == 0 || have.DiskIOPS == want.DiskIOPS)
}

const pageSize = 4096

func abs(n int64) int64 { return max(n, -n) }

// next is one step from o toward desired, and whether memory is held above
// its target by what the cgroup uses.
func (s *Shaper) next(o observed, desired limits) (limits, bool) {
	next := o.limits
	from := func(have, host float64) float64 {
		if have == 0 {
			return host
		}
		return have
	}
	if desired.CPU > 0 {
		next.CPU = toward(from(o.CPU, s.hostCPU), desired.CPU, s.opts.MaxStep)
	}
	held := false
	if desired.Memory > 0 {
		m := int64(toward(from(float64(o.Memory), float64(s.hostMem)), float64(desired.Memory), s.opts.MaxStep))
		if floor := (o.MemoryUsed + pageSize - 1) / pageSize * pageSize; m < floor {
			m, held = max(floor, o.Memory), true
			if o.Memory == 0 {
				m = max(floor, int64(toward(float64(s.hostMem), float64(desired.Memory), s.opts.MaxStep)))
			}
		}
		next.Memory = m
		next.MemorySoft = int64(SoftShare * float64(m))
	}
	if desired.DiskBytes > 0 {
		next.DiskBytes = uint64(toward(float64(o.DiskBytes), float64(desired.DiskBytes), s.opts.MaxStep))
	}
	if desired.DiskIOPS > 0 {
		next.DiskIOPS = uint64(toward(float64(o.DiskIOPS), float64(desired.DiskIOPS), s.opts.MaxStep))
	}
	return next, held
}

// toward moves from have to want by at most a factor step; from 0 (no
// limit) straight to want.
func toward(have, want, step float64) float64 {
	switch {
	case have == 0:
		return want
	case want > have:
		return math.Min(want, have*step)
	default:
		return math.Max(want, have/step)
	}
}

// step takes one step toward t's desired state.
func (s *Shaper) step(name string, t *target) (shapers.Status, error) {
	tg := shapers.Target{Kind: Kind, Name: name}
	o, err := t.ctl.read(s.devices)
	if err != nil {
		return shapers.Status{}, err
	}
	want := s.effective(name, t.Desired)
	if reached(o.limits, want) {
		return s.status(tg, o, want), nil
	}
	next, held := s.next(o, want)
	if next != o.limits {
		if err := t.ctl.write(next, s.devices); err != nil {
			return shapers.Status{}, err
		}
		reason := t.Reason
		if reason == "" && want.DiskIOPS != t.Desired.DiskIOPS {
			reason = "its share of the disk IOPS the other stages' floors leave"
		}
		fmt.Fprintf(s.opts.Log, "cgroups: %s: %s: %s\n", s.Group(name), describe(o.limits, next, want, held), reason)
	}
	if o, err = t.ctl.read(s.devices); err != nil {
		return shapers.Status{}, err
	}
	st := s.status(tg, o, want)
	if !st.Converged {
		next, held := s.next(o, want)
		st.Message = describe(o.limits, next, want, held)
	}
	return st, nil
}

// describe says what a step changes, toward what.
func describe(have, next, want limits, held bool) string {
	var parts []string
	if next.CPU != have.CPU {
		parts = append(parts, fmt.Sprintf("cpu %s → %.3g cores (target %.3g)", orNone(have.CPU > 0, fmt.Sprintf("%.3g", have.CPU)), next.CPU, want.CPU))
	}
	if next.Memory != have.Memory {
		parts = append(parts, fmt.Sprintf("memory %s → %s (target %s)", orNone(have.Memory > 0, resources.FormatBytes(float64(have.Memory))),
			resources.FormatBytes(float64(next.Memory)), resources.FormatBytes(float64(want.Memory))))
	}
	if held {
		parts = append(parts, fmt.Sprintf("memory held at %s, above its target %s: the cgroup uses more", resources.FormatBytes(float64(next.Memory)), resources.FormatBytes(float64(want.Memory))))
	}
	if next.DiskBytes != have.DiskBytes {
		parts = append(parts, fmt.Sprintf("disk %s → %s/s (target %s/s)", orNone(have.DiskBytes > 0, resources.FormatBytes(float64(have.DiskBytes))+"/s"),
			resources.FormatBytes(float64(next.DiskBytes)), resources.FormatBytes(float64(want.DiskBytes))))
	}
	if next.DiskIOPS != have.DiskIOPS {
		parts = append(parts, fmt.Sprintf("disk IOPS %s → %d (target %d)", orNone(have.DiskIOPS > 0, fmt.Sprint(have.DiskIOPS)), next.DiskIOPS, want.DiskIOPS))
	}
	if len(parts) == 0 {
		return "at the desired limits"
	}
	return strings.Join(parts, "; ")
}

func orNone(set bool, s string) string {
	if set {
		return s
	}
	return "none"
}

// run steps every target not at its desired state, every StepInterval.
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
		for _, name := range s.names() {
			if _, err := s.step(name, s.targets[name]); err != nil {
				fmt.Fprintf(s.opts.Log, "cgroups: %s: %v\n", s.Group(name), err)
			}
		}
		s.mu.Unlock()
	}
}

// load reads the desired state a shaper before this one kept.
func (s *Shaper) load() error {
	err := state.Dir(s.opts.StateDir).Load(validName, func(name string, b []byte) error {
		t := &target{}
		if err := json.Unmarshal(b, t); err != nil {
			return err
		}
		ctl, err := open(s.version, s.Group(name))
		if err != nil {
			return err
		}
		t.ctl = ctl
		s.targets[name] = t
		return nil
	})
	if err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	return nil
}

// Start starts cmd with its process in cgroup name (made if needed) from
// its first instruction: cmd runs through /bin/sh, which waits on a pipe
// until its process has been placed, then execs cmd's program with cmd's
// arguments in its place (same process, same pid). cmd must not have been
// started; wait for it with cmd.Wait as usual.
func (s *Shaper) Start(ctx context.Context, name string, cmd *exec.Cmd) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("cgroups: start in %s: %w", s.Group(name), err)
	}
	defer r.Close()
	defer w.Close()
	program := cmd.Path
	if len(cmd.Args) == 0 {
		cmd.Args = []string{program}
	}
	fd := 3 + len(cmd.ExtraFiles) // after cmd's own extra files, which keep their numbers
	cmd.Path = "/bin/sh"
	cmd.Args = append([]string{"/bin/sh", "-c", fmt.Sprintf(`read -r _ <&%d && exec %d<&- "$@"`, fd, fd), "headstart-cgroup", program}, cmd.Args[1:]...)
	cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cgroups: start %s in %s: %w", program, s.Group(name), err)
	}
	if err := s.Place(ctx, name, cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	if _, err := w.WriteString("placed\n"); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("cgroups: start %s in %s: %w", program, s.Group(name), err)
	}
	return nil
}
