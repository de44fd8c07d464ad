package vsphere

import (
	"context"
	"fmt"

	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/resources"
)

// spec is the reconfiguration that brings v to size next, with the
// options' reservations, limits and shares, and what it changes; no
// change, no spec fields.
func (s *Shaper) spec(ctx context.Context, v *vm, next resources.Vector) (types.VirtualMachineConfigSpec, []string, error) {
	var spec types.VirtualMachineConfigSpec
	var changes []string
	hw := v.mo.Config.Hardware
	cpus, memMB := hw.NumCPU, hw.MemoryMB
	if c := next.Get(resources.CPU); c > 0 && int32(c) != hw.NumCPU {
		cpus, spec.NumCPUs = int32(c), int32(c)
		changes = append(changes, fmt.Sprintf("vCPUs %d → %d", hw.NumCPU, cpus))
	}
	if m := next.Get(resources.Memory); m > 0 && int64(m)>>20 != int64(hw.MemoryMB) {
		memMB, spec.MemoryMB = int32(int64(m)>>20), int64(m)>>20
		changes = append(changes, fmt.Sprintf("memory %d → %d MiB", hw.MemoryMB, memMB))
	}
	mhz, err := s.hostMHz(ctx, v)
	if err != nil {
		return spec, nil, err
	}
	level := types.SharesLevel(s.opts.Shares)
	cpu := allocation(float64(cpus)*mhz, s.opts.Reserve, s.opts.Limit, level)
	if !sameAllocation(v.mo.Config.CpuAllocation, cpu) {
		spec.CpuAllocation = cpu
		changes = append(changes, "CPU "+describeAllocation(cpu, "MHz"))
	}
	mem := allocation(float64(memMB), s.opts.Reserve, s.opts.Limit, level)
	if !sameAllocation(v.mo.Config.MemoryAllocation, mem) {
		spec.MemoryAllocation = mem
		changes = append(changes, "memory "+describeAllocation(mem, "MiB"))
	}
	if iops := int64(next.Get(resources.DiskIOPS)); iops > 0 {
		for _, d := range v.disks() {
			a := d.StorageIOAllocation
			if a != nil && a.Limit != nil && *a.Limit == iops && a.Shares != nil && a.Shares.Level == level {
				continue
			}
			was := "none"
			if a != nil && a.Limit != nil && *a.Limit > 0 {
				was = fmt.Sprint(*a.Limit)
			}
			edited := *d
			edited.StorageIOAllocation = &types.StorageIOAllocationInfo{Limit: types.NewInt64(iops), Shares: &types.SharesInfo{Level: level}}
			spec.DeviceChange = append(spec.DeviceChange, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: &edited})
			changes = append(changes, fmt.Sprintf("disk %d IOPS limit %s → %d", d.Key, was, iops))
		}
	}
	return spec, changes, nil
}

// allocation is a reservation of share of size, a limit at size if asked,
// and shares at level.
func allocation(size, reserve float64, limit bool, level types.SharesLevel) *types.ResourceAllocationInfo {
	a := &types.ResourceAllocationInfo{Reservation: types.NewInt64(int64(reserve * size)), Limit: types.NewInt64(-1), Shares: &types.SharesInfo{Level: level}}
	if limit {
		a.Limit = types.NewInt64(int64(size))
	}
	return a
}

func sameAllocation(have, want *types.ResourceAllocationInfo) bool {
	if have == nil {
		return false
	}
	eq := func(a, b *int64) bool { return a != nil && b != nil && *a == *b }
	return eq(have.Reservation, want.Reservation) && eq(have.Limit, want.Limit) && have.Shares != nil && have.Shares.Level == want.Shares.Level
}

func describeAllocation(a *types.ResourceAllocationInfo, unit string) string {
	limit := "none"
	if *a.Limit >= 0 {
		limit = fmt.Sprintf("%d %s", *a.Limit, unit)
	}
	return fmt.Sprintf("reservation %d %s, limit %s, shares %s", *a.Reservation, unit, limit, a.Shares.Level)
}

// hostMHz is the clock of one core of the VM's host: what vSphere counts CPU
// reservations and limits in.
func (s *Shaper) hostMHz(ctx context.Context, v *vm) (float64, error) {
	if v.mo.Runtime.Host == nil {
		return 0, fmt.Errorf("vsphere: %s: the VM has no host", v.obj.Name())
	}
	var h mo.HostSystem
	if err := v.obj.Properties(ctx, *v.mo.Runtime.Host, []string{"summary.hardware"}, &h); err != nil {
		return 0, fmt.Errorf("vsphere: the host of %s: %w", v.obj.Name(), err)
	}
	if h.Summary.Hardware == nil || h.Summary.Hardware.CpuMhz <= 0 {
		return 0, fmt.Errorf("vsphere: the host of %s reports no CPU clock", v.obj.Name())
	}
	return float64(h.Summary.Hardware.CpuMhz), nil
}

// Migrate implements shapers.Migrator with vMotion: a VM on host From moves,
// running, to the host of its cluster with the most free memory. A VM
// already elsewhere is left alone.
func (s *Shaper) Migrate(ctx context.Context, m shapers.Migration) (shapers.Moved, error) {
	if err := m.Validate(); err != nil {
		return shapers.Moved{}, err
	}
	v, err := s.vm(ctx, m.Target)
	if err != nil {
		return shapers.Moved{}, err
	}
	if v.host != m.From {
		return shapers.Moved{Message: fmt.Sprintf("%s is on %s, not %s", m.Target.Name, v.host, m.From)}, nil
	}
	to, err := s.roomiest(ctx, v)
	if err != nil {
		return shapers.Moved{}, err
	}
	if to == nil {
		return shapers.Moved{Blocked: []string{m.Target.Name}, Message: "no other connected host in " + m.From + "'s cluster"}, nil
	}
	if m.DryRun {
		return shapers.Moved{Moved: []string{m.Target.Name}, Message: fmt.Sprintf("dry run: %s would move to %s", m.Target.Name, to.Name)}, nil
	}
	ref := to.Reference()
	// Relocate with only a host is vMotion: the VM keeps running, its disks stay on their datastores.
	task, err := v.obj.Relocate(ctx, types.VirtualMachineRelocateSpec{Host: &ref}, types.VirtualMachineMovePriorityDefaultPriority)
	if err != nil {
		return shapers.Moved{}, fmt.Errorf("vsphere: vMotion %s: %w", m.Target, err)
	}
	if err := task.Wait(ctx); err != nil {
		return shapers.Moved{Blocked: []string{m.Target.Name}, Message: fmt.Sprintf("vMotion to %s refused: %v", to.Name, err)}, nil
	}
	fmt.Fprintf(s.opts.Log, "vsphere: %s: vMotion %s → %s: %s\n", m.Target, m.From, to.Name, m.Reason)
	return shapers.Moved{Moved: []string{m.Target.Name}, Message: fmt.Sprintf("moved from %s to %s", m.From, to.Name)}, nil
}
