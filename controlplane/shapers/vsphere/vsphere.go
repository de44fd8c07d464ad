// Package vsphere shapes VMware virtual machines through vCenter (govmomi):
// a VM's vCPUs and memory (hot-added while it runs, where the VM allows
// it; a running VM that does not is reported, never powered off), its CPU
// and memory reservations, limits and shares, its disks' storage I/O
// limits and shares, and vMotion to another host for migration.
//
// Targets are {Kind: "vsphere", Name: the VM's name or inventory path}.
// Desired.Resources' CPU is the VM's vCPUs (rounded up), Memory its memory
// (rounded up to 4 MiB), DiskIOPS the IOPS limit of each of its disks.
// With Options.MaxStep, each Apply moves CPU and memory by at most that
// factor; Status says when the VM has the desired size, and the
// coordinator's next tick takes the next step.
package vsphere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/session/keepalive"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/resources"
)

// Kind is the target kind this shaper serves.
const Kind = "vsphere"

// Options configure a Shaper.
type Options struct {
	// URL of vCenter's SDK, e.g. https://vcenter.example.com/sdk. Required.
	URL string
	// User and Password log in (not in the URL, so they stay out of logs).
	User, Password string
	// Insecure skips verifying vCenter's certificate (a lab's self-signed one).
	Insecure bool
	// Datacenter holding the VMs (default: the only one).
	Datacenter string
	// MaxStep: CPU and memory move at most this factor per Apply, the next
	// step taken by the next Apply (the coordinator's next tick). Default 0:
	// straight to the target.
	MaxStep float64
	// Reserve is the share of the VM's size reserved for it on its host
	// (CPU in MHz, memory), 0 to 1; default 0: no reservation.
	Reserve float64
	// Limit caps the VM at its size (CPU in MHz, memory), so that a VM
	// sized for a stage never takes more from its host. Default: no limit.
	Limit bool
	// Shares level of CPU, memory and disks: low, normal or high (default normal).
	Shares string
	// Log receives every change and why (default: discarded).
	Log io.Writer
}

// Validate reports every option the shaper cannot work with.
func (o Options) Validate() error {
	var errs []error
	if u, err := url.Parse(o.URL); o.URL == "" || err != nil || u.Host == "" {
		errs = append(errs, fmt.Errorf("url %q: want vCenter's SDK URL, https://host/sdk", o.URL))
	} else if u.User != nil {
		errs = append(errs, errors.New("url: credentials belong in User and Password, not in the URL"))
	}
	if o.MaxStep != 0 && o.MaxStep <= 1 {
		errs = append(errs, fmt.Errorf("max step %v: want more than 1", o.MaxStep))
	}
	if o.Reserve < 0 || o.Reserve > 1 {
		errs = append(errs, fmt.Errorf("reserve %v: want a share from 0 to 1", o.Reserve))
	}
	switch o.Shares {
	case "", "low", "normal", "high":
	default:
		errs = append(errs, fmt.Errorf("shares %q: want low, normal or high", o.Shares))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("vsphere: %w", err)
	}
	return nil
}

// Shaper shapes the VMs of one vCenter. Safe for concurrent use.
type Shaper struct {
	opts   Options
	client *govmomi.Client
	finder *find.Finder

	mu      sync.Mutex
	desired map[string]resources.Vector
}

var (
	_ shapers.Shaper   = (*Shaper)(nil)
	_ shapers.Migrator = (*Shaper)(nil)
	_ shapers.Closer   = (*Shaper)(nil)
)

// New logs in to vCenter.
func New(ctx context.Context, opts Options) (*Shaper, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Shares == "" {
		opts.Shares = "normal"
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	u, _ := url.Parse(opts.URL)
	vc, err := vim25.NewClient(ctx, soap.NewClient(u, opts.Insecure))
	if err != nil {
		return nil, fmt.Errorf("vsphere: %s: %w", opts.URL, err)
	}
	// Keep the session from idling out between the coordinator's ticks.
	vc.RoundTripper = keepalive.NewHandlerSOAP(vc.RoundTripper, 5*time.Minute, nil)
	c := &govmomi.Client{Client: vc, SessionManager: session.NewManager(vc)}
	if err := c.Login(ctx, url.UserPassword(opts.User, opts.Password)); err != nil {
		return nil, fmt.Errorf("vsphere: log in to %s as %q: %w", opts.URL, opts.User, err)
	}
	f := find.NewFinder(c.Client, true)
	var dc *object.Datacenter
	if opts.Datacenter != "" {
		dc, err = f.Datacenter(ctx, opts.Datacenter)
	} else {
		dc, err = f.DefaultDatacenter(ctx)
	}
	if err != nil {
		_ = c.Logout(ctx)
		return nil, fmt.Errorf("vsphere: datacenter: %w", err)
	}
	f.SetDatacenter(dc)
	return &Shaper{opts: opts, client: c, finder: f, desired: map[string]resources.Vector{}}, nil
}

// Close logs out.
func (s *Shaper) Close(ctx context.Context) error { return s.client.Logout(ctx) }

// vm is what the shaper reads of a VM.
type vm struct {
	obj  *object.VirtualMachine
	mo   mo.VirtualMachine
	host string
}

func (s *Shaper) vm(ctx context.Context, t shapers.Target) (*vm, error) {
	if t.Kind != Kind {
		return nil, fmt.Errorf("%w: %s: this shaper serves %s", shapers.ErrUnknownTarget, t, Kind)
	}
	if t.Name == "" {
		return nil, fmt.Errorf("%w: %s: no VM named", shapers.ErrInvalidAction, t)
	}
	obj, err := s.finder.VirtualMachine(ctx, t.Name)
	if err != nil && isNotAuthenticated(err) {
		// The session ended (vCenter restarted, or it idled out): log in again, once.
		if lerr := s.client.Login(ctx, url.UserPassword(s.opts.User, s.opts.Password)); lerr != nil {
			return nil, fmt.Errorf("vsphere: %s: the session ended and logging in again failed: %w", t, lerr)
		}
		fmt.Fprintf(s.opts.Log, "vsphere: logged in to %s again: the session had ended\n", s.opts.URL)
		obj, err = s.finder.VirtualMachine(ctx, t.Name)
	}
	if err != nil {
		var nf *find.NotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("%w: %s: %v", shapers.ErrUnknownTarget, t, err)
		}
		return nil, fmt.Errorf("vsphere: %s: %w", t, err)
	}
	v := &vm{obj: obj}
	if err := obj.Properties(ctx, obj.Reference(), []string{"config", "runtime"}, &v.mo); err != nil {
		return nil, fmt.Errorf("vsphere: %s: read: %w", t, err)
	}
	if v.mo.Config == nil {
		return nil, fmt.Errorf("vsphere: %s: the VM has no configuration (is it being created?)", t)
	}
	if h := v.mo.Runtime.Host; h != nil {
		var host mo.HostSystem
		if err := obj.Properties(ctx, *h, []string{"name"}, &host); err == nil {
			v.host = host.Name
		}
	}
	return v, nil
}

// isNotAuthenticated reports whether err is vCenter saying the session has ended.
func isNotAuthenticated(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if soap.IsSoapFault(e) {
			if _, ok := soap.ToSoapFault(e).VimFault().(types.NotAuthenticated); ok {
				return true
			}
		}
		if soap.IsVimFault(e) {
			if _, ok := soap.ToVimFault(e).(*types.NotAuthenticated); ok {
				return true
			}
		}
	}
	return false
}

// size is the VM's resources: vCPUs, memory, and the lowest IOPS limit of its disks.
func (v *vm) size() resources.Vector {
	hw := v.mo.Config.Hardware
	out := resources.Vector{}.With(resources.CPU, float64(hw.NumCPU)).With(resources.Memory, float64(hw.MemoryMB)*(1<<20))
	if iops := v.diskIOPS(); iops > 0 {
		out = out.With(resources.DiskIOPS, float64(iops))
	}
	return out
}

func (v *vm) disks() []*types.VirtualDisk {
	var out []*types.VirtualDisk
	for _, d := range v.mo.Config.Hardware.Device {
		if disk, ok := d.(*types.VirtualDisk); ok {
			out = append(out, disk)
		}
	}
	return out
}

// diskIOPS is the lowest IOPS limit over the VM's disks, 0 when one has none.
func (v *vm) diskIOPS() int64 {
	var low int64
	for i, d := range v.disks() {
		var lim int64
		if a := d.StorageIOAllocation; a != nil && a.Limit != nil && *a.Limit > 0 {
			lim = *a.Limit
		}
		if lim == 0 {
			return 0
		}
		if i == 0 || lim < low {
			low = lim
		}
	}
	return low
}

// Status reads the VM: its size, whether it runs (one replica, ready when
// powered on), its host, and whether it has the size last asked for.
func (s *Shaper) Status(ctx context.Context, t shapers.Target) (shapers.Status, error) {
	v, err := s.vm(ctx, t)
	if err != nil {
		return shapers.Status{}, err
	}
	s.mu.Lock()
	want, asked := s.desired[t.Name]
	s.mu.Unlock()
	return s.status(t, v, want, asked), nil
}

func (s *Shaper) status(t shapers.Target, v *vm, want resources.Vector, asked bool) shapers.Status {
	have := v.size()
	st := shapers.Status{Target: t, Replicas: 1, Resources: have, Converged: true}
	if v.mo.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
		st.Ready = 1
	}
	if asked {
		target := rounded(want)
		for _, k := range resources.Kinds() {
			if w := target.Get(k); w > 0 && have.Get(k) != w {
				st.Converged = false
			}
		}
		if !st.Converged {
			st.Message = fmt.Sprintf("%s on %s, target %s", have, v.host, target)
		}
	}
	if st.Message == "" {
		st.Message = "on " + v.host
	}
	return st
}

// rounded is want as vSphere can hold it: whole vCPUs, memory in 4 MiB, whole IOPS.
func rounded(want resources.Vector) resources.Vector {
	out := resources.Vector{}
	if c := want.Get(resources.CPU); c > 0 {
		out = out.With(resources.CPU, math.Ceil(c-1e-9))
	}
	if m := want.Get(resources.Memory); m > 0 {
		out = out.With(resources.Memory, math.Ceil(m/(4<<20))*(4<<20))
	}
	if d := want.Get(resources.DiskIOPS); d > 0 {
		out = out.With(resources.DiskIOPS, math.Ceil(d))
	}
	return out
}

// toward moves from have to want by at most a factor step.
func toward(have, want, step float64) float64 {
	if have <= 0 || step == 0 {
		return want
	}
	if want > have {
		return math.Min(want, have*step)
	}
	return math.Max(want, have/step)
}

// Apply resizes the VM one step toward Desired.Resources (see the package
// doc), with the reservations, limits and shares the options ask for. A
// running VM is never powered off: a change it cannot take running (CPU or
// memory hot-add disabled, fewer vCPUs or less memory) is refused with
// shapers.ErrUnsupported and the reason.
func (s *Shaper) Apply(ctx context.Context, a shapers.Action) (shapers.Status, error) {
	if err := a.Validate(); err != nil {
		return shapers.Status{}, err
	}
	v, err := s.vm(ctx, a.Target)
	if err != nil {
		return shapers.Status{}, err
	}
	if a.Desired.Replicas != nil && *a.Desired.Replicas != 1 || a.Desired.Concurrency != nil {
		return shapers.Status{}, fmt.Errorf("%w: %s: a VM is one replica; resize it", shapers.ErrUnsupported, a.Target)
	}
	if a.Desired.Resources == nil {
		return s.status(a.Target, v, resources.Vector{}, false), nil
	}
	for _, k := range resources.Kinds() {
		if k != resources.CPU && k != resources.Memory && k != resources.DiskIOPS && a.Desired.Resources.Get(k) > 0 {
			return shapers.Status{}, fmt.Errorf("%w: %s: %s cannot be set on a VM through vSphere", shapers.ErrUnsupported, a.Target, k)
		}
	}
	want := rounded(*a.Desired.Resources)
	have := v.size()
	next := resources.Vector{}
	for _, k := range []resources.Kind{resources.CPU, resources.Memory} {
		if w := want.Get(k); w > 0 {
			next = next.With(k, toward(have.Get(k), w, s.opts.MaxStep))
		}
	}
	next = rounded(next.With(resources.DiskIOPS, want.Get(resources.DiskIOPS)))
	if err := v.canTake(have, next); err != nil {
		return shapers.Status{}, fmt.Errorf("%w: %s: %v; it is not powered off to resize", shapers.ErrUnsupported, a.Target, err)
	}
	spec, changes, err := s.spec(ctx, v, next)
	if err != nil {
		return shapers.Status{}, err
	}
	if a.DryRun {
		st := s.status(a.Target, v, want, true)
		st.Message = "dry run: " + orNothing(changes)
		return st, nil
	}
	s.mu.Lock()
	s.desired[a.Target.Name] = want
	s.mu.Unlock()
	if len(changes) > 0 {
		task, err := v.obj.Reconfigure(ctx, spec)
		if err != nil {
			return shapers.Status{}, fmt.Errorf("vsphere: %s: reconfigure: %w", a.Target, err)
		}
		if err := task.Wait(ctx); err != nil {
			return shapers.Status{}, fmt.Errorf("vsphere: %s: reconfigure refused: %w", a.Target, err)
		}
		fmt.Fprintf(s.opts.Log, "vsphere: %s: %s: %s\n", a.Target, strings.Join(changes, "; "), a.Reason)
		if v, err = s.vm(ctx, a.Target); err != nil {
			return shapers.Status{}, err
		}
	}
	return s.status(a.Target, v, want, true), nil
}

func orNothing(changes []string) string {
	if len(changes) == 0 {
		return "nothing to change"
	}
	return strings.Join(changes, "; ")
}

// canTake reports why the VM cannot go from have to next as it is now.
func (v *vm) canTake(have, next resources.Vector) error {
	if v.mo.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		return nil
	}
	c := v.mo.Config
	switch cpu := next.Get(resources.CPU); {
	case cpu > 0 && cpu > have.Get(resources.CPU) && (c.CpuHotAddEnabled == nil || !*c.CpuHotAddEnabled):
		return fmt.Errorf("it runs with CPU hot-add disabled: %v vCPUs cannot become %v", have.Get(resources.CPU), cpu)
	case cpu > 0 && cpu < have.Get(resources.CPU) && (c.CpuHotRemoveEnabled == nil || !*c.CpuHotRemoveEnabled):
		return fmt.Errorf("it runs with CPU hot-remove disabled: %v vCPUs cannot become %v", have.Get(resources.CPU), cpu)
	}
	switch mem := next.Get(resources.Memory); {
	case mem > 0 && mem > have.Get(resources.Memory) && (c.MemoryHotAddEnabled == nil || !*c.MemoryHotAddEnabled):
		return fmt.Errorf("it runs with memory hot-add disabled: %s cannot become %s",
			resources.FormatBytes(have.Get(resources.Memory)), resources.FormatBytes(mem))
	case mem > 0 && mem < have.Get(resources.Memory):
		return fmt.Errorf("a running VM's memory cannot shrink (%s to %s)", resources.FormatBytes(have.Get(resources.Memory)), resources.FormatBytes(mem))
	}
	return nil
}
