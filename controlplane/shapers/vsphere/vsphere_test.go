package vsphere_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/shapertest"
	"github.com/headstart-dev/headstart/controlplane/shapers/vsphere"
	"github.com/headstart-dev/headstart/resources"
)

// inventory reads and changes the simulator's VMs directly, as an
// administrator would, to check what the shaper did.
type inventory struct {
	t *testing.T
	c *govmomi.Client
	f *find.Finder
}

// vcenter starts govmomi's vCenter simulator for one test: a datacenter, a
// cluster of three hosts and a standalone host, with powered-on VMs
// (DC0_C0_RP0_VM0, DC0_C0_RP0_VM1 in the cluster).
func vcenter(t *testing.T) (vsphere.Options, inventory) {
	t.Helper()
	model := simulator.VPX()
	model.ClusterHost = 3
	if err := model.Create(); err != nil {
		t.Fatal(err)
	}
	srv := model.Service.NewServer()
	t.Cleanup(func() { srv.Close(); model.Remove() })
	ctx := context.Background()
	c, err := govmomi.NewClient(ctx, srv.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	f := find.NewFinder(c.Client, true)
	dc, err := f.DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.SetDatacenter(dc)
	u := *srv.URL
	user := u.User.Username()
	pass, _ := u.User.Password()
	u.User = nil
	return vsphere.Options{URL: u.String(), User: user, Password: pass, Insecure: true}, inventory{t, c, f}
}

func (inv inventory) vm(name string) mo.VirtualMachine {
	inv.t.Helper()
	obj, err := inv.f.VirtualMachine(context.Background(), name)
	if err != nil {
		inv.t.Fatal(err)
	}
	var v mo.VirtualMachine
	if err := obj.Properties(context.Background(), obj.Reference(), []string{"config", "runtime"}, &v); err != nil {
		inv.t.Fatal(err)
	}
	return v
}

func (inv inventory) hostOf(name string) string {
	inv.t.Helper()
	v := inv.vm(name)
	var h mo.HostSystem
	if err := inv.c.PropertyCollector().RetrieveOne(context.Background(), *v.Runtime.Host, []string{"name"}, &h); err != nil {
		inv.t.Fatal(err)
	}
	return h.Name
}

// allowHotAdd turns CPU and memory hot-add on, as an administrator would.
func (inv inventory) allowHotAdd(name string) {
	inv.t.Helper()
	obj, err := inv.f.VirtualMachine(context.Background(), name)
	if err != nil {
		inv.t.Fatal(err)
	}
	task, err := obj.Reconfigure(context.Background(), types.VirtualMachineConfigSpec{CpuHotAddEnabled: types.NewBool(true), MemoryHotAddEnabled: types.NewBool(true)})
	if err == nil {
		err = task.Wait(context.Background())
	}
	if err != nil {
		inv.t.Fatal(err)
	}
}

func newShaper(t *testing.T, opts vsphere.Options) *vsphere.Shaper {
	t.Helper()
	s, err := vsphere.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func vmTarget(name string) shapers.Target { return shapers.Target{Kind: vsphere.Kind, Name: name} }

func size(name string, v resources.Vector) shapers.Action {
	return shapers.Action{Target: vmTarget(name), Desired: shapers.Desired{Resources: &v}, Reason: "test"}
}

func TestTheVSphereShaperConforms(t *testing.T) {
	opts, inv := vcenter(t)
	inv.allowHotAdd("DC0_C0_RP0_VM0")
	s := newShaper(t, opts)
	shapertest.RunResources(t, s, shapertest.ResourceOptions{
		Target: vmTarget("DC0_C0_RP0_VM0"),
		First:  resources.Vector{}.With(resources.CPU, 2).With(resources.Memory, 2<<30).With(resources.DiskIOPS, 500),
		Second: resources.Vector{}.With(resources.CPU, 4).With(resources.Memory, 4<<30).With(resources.DiskIOPS, 200),
	})
}

// TestEveryReconfigureIsReadBackFromTheInventory: vCPUs, memory, the
// reservations, limits and shares the options ask for, and each disk's
// IOPS limit and shares.
func TestEveryReconfigureIsReadBackFromTheInventory(t *testing.T) {
	opts, inv := vcenter(t)
	inv.allowHotAdd("DC0_C0_RP0_VM1")
	opts.Reserve, opts.Limit, opts.Shares = 0.5, true, "high"
	s := newShaper(t, opts)
	st, err := s.Apply(context.Background(), size("DC0_C0_RP0_VM1", resources.Vector{}.With(resources.CPU, 1.5).With(resources.Memory, 3000<<20).With(resources.DiskIOPS, 750)))
	if err != nil {
		t.Fatal(err)
	}
	if !st.Converged {
		t.Fatalf("not converged after one apply without a max step: %+v", st)
	}
	v := inv.vm("DC0_C0_RP0_VM1")
	hw := v.Config.Hardware
	if hw.NumCPU != 2 || hw.MemoryMB != 3000 {
		t.Errorf("the inventory holds %d vCPUs and %d MiB, want 2 (1.5 rounded up) and 3000", hw.NumCPU, hw.MemoryMB)
	}
	var host mo.HostSystem
	if err := inv.c.PropertyCollector().RetrieveOne(context.Background(), *v.Runtime.Host, []string{"summary.hardware"}, &host); err != nil {
		t.Fatal(err)
	}
	mhz := int64(host.Summary.Hardware.CpuMhz)
	cpu, mem := v.Config.CpuAllocation, v.Config.MemoryAllocation
	if *cpu.Reservation != mhz || *cpu.Limit != 2*mhz || cpu.Shares.Level != types.SharesLevelHigh {
		t.Errorf("CPU allocation: reservation %d, limit %d, shares %s; want %d, %d MHz (host at %d MHz a core), high", *cpu.Reservation, *cpu.Limit, cpu.Shares.Level, mhz, 2*mhz, mhz)
	}
	if *mem.Reservation != 1500 || *mem.Limit != 3000 || mem.Shares.Level != types.SharesLevelHigh {
		t.Errorf("memory allocation: reservation %d, limit %d, shares %s; want 1500, 3000 MiB, high", *mem.Reservation, *mem.Limit, mem.Shares.Level)
	}
	disks := 0
	for _, d := range hw.Device {
		if disk, ok := d.(*types.VirtualDisk); ok {
			disks++
			if a := disk.StorageIOAllocation; a == nil || a.Limit == nil || *a.Limit != 750 || a.Shares.Level != types.SharesLevelHigh {
				t.Errorf("disk %d: storage I/O allocation %+v, want a limit of 750 IOPS and high shares", disk.Key, a)
			}
		}
	}
	if disks == 0 {
		t.Fatal("the VM has no disk to check")
	}
}

// TestARunningVMThatCannotTakeAChangeIsReportedNotPoweredOff: hot-add is
// off (the simulator's default), so more vCPUs or memory are refused with
// the reason, and the VM keeps running at its size.
func TestARunningVMThatCannotTakeAChangeIsReportedNotPoweredOff(t *testing.T) {
	opts, inv := vcenter(t)
	s := newShaper(t, opts)
	before := inv.vm("DC0_C0_RP0_VM0").Config.Hardware
	_, err := s.Apply(context.Background(), size("DC0_C0_RP0_VM0", resources.Vector{}.With(resources.CPU, float64(before.NumCPU+2))))
	if !errors.Is(err, shapers.ErrUnsupported) || !strings.Contains(err.Error(), "CPU hot-add disabled") || !strings.Contains(err.Error(), "not powered off") {
		t.Errorf("more vCPUs with hot-add off: %v", err)
	}
	_, err = s.Apply(context.Background(), size("DC0_C0_RP0_VM0", resources.Vector{}.With(resources.Memory, float64(before.MemoryMB)*(1<<20)*4)))
	if !errors.Is(err, shapers.ErrUnsupported) || !strings.Contains(err.Error(), "memory hot-add disabled") {
		t.Errorf("more memory with hot-add off: %v", err)
	}
	after := inv.vm("DC0_C0_RP0_VM0")
	if after.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn || after.Config.Hardware.NumCPU != before.NumCPU || after.Config.Hardware.MemoryMB != before.MemoryMB {
		t.Errorf("the VM changed: %s, %d vCPUs, %d MiB", after.Runtime.PowerState, after.Config.Hardware.NumCPU, after.Config.Hardware.MemoryMB)
	}
	if _, err := s.Apply(context.Background(), size("no-such-vm", resources.Vector{}.With(resources.CPU, 1))); !errors.Is(err, shapers.ErrUnknownTarget) {
		t.Errorf("a VM that does not exist: %v, want ErrUnknownTarget", err)
	}
}

// TestAMaxStepBoundsEachApply: from 1 vCPU to 4 with a step of 2, the
// first apply gives 2 and says it is not there yet; the next gives 4.
func TestAMaxStepBoundsEachApply(t *testing.T) {
	opts, inv := vcenter(t)
	inv.allowHotAdd("DC0_C0_RP0_VM0")
	opts.MaxStep = 2
	s := newShaper(t, opts)
	want := resources.Vector{}.With(resources.CPU, 4)
	if _, err := s.Apply(context.Background(), size("DC0_C0_RP0_VM0", resources.Vector{}.With(resources.CPU, 1))); err != nil {
		t.Fatal(err)
	}
	st, err := s.Apply(context.Background(), size("DC0_C0_RP0_VM0", want))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Resources.Get(resources.CPU); got != 2 || st.Converged {
		t.Fatalf("after one step: %v vCPUs, converged %v; want 2, not converged", got, st.Converged)
	}
	if st, err = s.Apply(context.Background(), size("DC0_C0_RP0_VM0", want)); err != nil || st.Resources.Get(resources.CPU) != 4 || !st.Converged {
		t.Fatalf("after two steps: %+v, %v", st, err)
	}
}

// TestVMotionMovesAVMOffItsHostOnce: the VM leaves the hot host for another
// of its cluster; asked again, it is not moved back or further.
func TestVMotionMovesAVMOffItsHostOnce(t *testing.T) {
	opts, inv := vcenter(t)
	s := newShaper(t, opts)
	from := inv.hostOf("DC0_C0_RP0_VM0")
	m := shapers.Migration{Target: vmTarget("DC0_C0_RP0_VM0"), From: from, Reason: "test: the host is hot"}
	dry := m
	dry.DryRun = true
	if moved, err := s.Migrate(context.Background(), dry); err != nil || len(moved.Moved) != 1 || inv.hostOf("DC0_C0_RP0_VM0") != from {
		t.Fatalf("dry run: %+v, %v; the VM must stay on %s", moved, err, from)
	}
	moved, err := s.Migrate(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	to := inv.hostOf("DC0_C0_RP0_VM0")
	if len(moved.Moved) != 1 || to == from {
		t.Fatalf("moved %+v: the VM is on %s, was on %s", moved, to, from)
	}
	if inv.vm("DC0_C0_RP0_VM0").Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		t.Error("the VM stopped running across vMotion")
	}
	again, err := s.Migrate(context.Background(), m)
	if err != nil || len(again.Moved) != 0 || inv.hostOf("DC0_C0_RP0_VM0") != to {
		t.Fatalf("asked again: %+v, %v; the VM must stay on %s", again, err, to)
	}
	t.Logf("moved from %s to %s: %s", from, to, moved.Message)
}

func TestOptionsAreChecked(t *testing.T) {
	for _, bad := range []vsphere.Options{
		{},
		{URL: "https://user:secret@vc/sdk"},
		{URL: "https://vc/sdk", MaxStep: 1},
		{URL: "https://vc/sdk", Reserve: 2},
		{URL: "https://vc/sdk", Shares: "max"},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if err := (vsphere.Options{URL: "https://vc/sdk"}).Validate(); err != nil {
		t.Error(err)
	}
}

// TestAnEndedSessionIsLoggedInAgain: vCenter ends the shaper's session (as
// a restart or an idle timeout would); its next call logs in again.
func TestAnEndedSessionIsLoggedInAgain(t *testing.T) {
	opts, inv := vcenter(t)
	var log strings.Builder
	opts.Log = &log
	s := newShaper(t, opts)
	if _, err := s.Status(context.Background(), vmTarget("DC0_C0_RP0_VM0")); err != nil {
		t.Fatal(err)
	}
	var sm mo.SessionManager
	if err := inv.c.PropertyCollector().RetrieveOne(context.Background(), *inv.c.Client.ServiceContent.SessionManager, []string{"sessionList"}, &sm); err != nil {
		t.Fatal(err)
	}
	own, err := inv.c.SessionManager.UserSession(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var others []string
	for _, us := range sm.SessionList {
		if us.Key != own.Key {
			others = append(others, us.Key)
		}
	}
	if len(others) == 0 {
		t.Fatal("the shaper's session is not in vCenter's session list")
	}
	if err := inv.c.SessionManager.TerminateSession(context.Background(), others); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Status(context.Background(), vmTarget("DC0_C0_RP0_VM0")); err != nil {
		t.Fatalf("after its session ended: %v", err)
	}
	if !strings.Contains(log.String(), "logged in to "+opts.URL+" again") {
		t.Errorf("the shaper did not say it logged in again: %q", log.String())
	}
}
