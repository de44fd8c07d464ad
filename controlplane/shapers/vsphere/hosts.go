package vsphere

import (
	"context"
	"fmt"

	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// roomiest is the connected host of v's cluster, other than v's own, with
// the most memory free; nil if there is none.
func (s *Shaper) roomiest(ctx context.Context, v *vm) (*mo.HostSystem, error) {
	var own mo.HostSystem
	if err := v.obj.Properties(ctx, *v.mo.Runtime.Host, []string{"parent"}, &own); err != nil || own.Parent == nil {
		return nil, fmt.Errorf("vsphere: the cluster of %s: %v", v.obj.Name(), err)
	}
	var cluster mo.ComputeResource
	if err := v.obj.Properties(ctx, *own.Parent, []string{"host"}, &cluster); err != nil {
		return nil, fmt.Errorf("vsphere: the hosts of %s's cluster: %w", v.obj.Name(), err)
	}
	var best *mo.HostSystem
	var bestFree int64
	for _, ref := range cluster.Host {
		if ref == *v.mo.Runtime.Host {
			continue
		}
		var h mo.HostSystem
		if err := v.obj.Properties(ctx, ref, []string{"name", "summary", "runtime"}, &h); err != nil {
			return nil, fmt.Errorf("vsphere: host %s: %w", ref, err)
		}
		if h.Runtime.ConnectionState != types.HostSystemConnectionStateConnected || h.Runtime.InMaintenanceMode {
			continue
		}
		var free int64
		if hw := h.Summary.Hardware; hw != nil {
			free = hw.MemorySize - int64(h.Summary.QuickStats.OverallMemoryUsage)<<20
		}
		if best == nil || free > bestFree || free == bestFree && h.Name < best.Name {
			best, bestFree = &h, free
		}
	}
	return best, nil
}
