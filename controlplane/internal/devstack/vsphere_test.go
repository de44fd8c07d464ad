package devstack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/internal/testproc"
)

// TestTheControlWorkerResizesAVMAheadOfAStage runs the chain on VMware from
// the binaries and one config file: `headstart worker` with shapers.vsphere
// pointing at govmomi's vCenter simulator and coordinator.limits naming a
// VM. Once the forecaster has seen a few runs, the VM gets its raised vCPUs
// and disk IOPS limit before Transform's first task starts, and its idle
// ones after the run — read back from vCenter's inventory.
func TestTheControlWorkerResizesAVMAheadOfAStage(t *testing.T) {
	srv := temporaltest.Shared(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	model := simulator.VPX()
	model.ClusterHost = 3
	if err := model.Create(); err != nil {
		t.Fatal(err)
	}
	vc := model.Service.NewServer()
	t.Cleanup(func() { vc.Close(); model.Remove() })
	inv, err := govmomi.NewClient(ctx, vc.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	finder := find.NewFinder(inv.Client, true)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	finder.SetDatacenter(dc)
	const vmName = "DC0_C0_RP0_VM0"
	vm, err := finder.VirtualMachine(ctx, vmName)
	if err != nil {
		t.Fatal(err)
	}
	// The administrator lets the VM take vCPUs running, and give them back.
	task, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{CpuHotAddEnabled: types.NewBool(true), CpuHotRemoveEnabled: types.NewBool(true)})
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}

	bin := buildBinaries(t, ctx, "./cmd/headstart", "./samples/pipeline/worker")
	fleet := fmt.Sprintf("vsphere-%d", os.Getpid())
	const idleCPU, raisedCPU, idleIOPS, raisedIOPS = 1, 4, 200, 2000
	u := *vc.URL
	pass, _ := u.User.Password()
	user := u.User.Username()
	u.User = nil
	config := filepath.Join(t.TempDir(), "headstart.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`fleet: %[1]s
task_queue: headstart-%[1]s
pools:
  - name: %[1]s
    capacity: {cpu: 8, memory: 16Gi}
coordinator:
  pool: %[1]s
  interval: 1s
  min_confidence: 0.5
  actuation_time: 2s
  lead: 1s
  limits:
    - stage: Pipeline/Transform
      target: {kind: vsphere, name: %[2]s}
      idle: {cpu: %[3]d, disk_iops: %[4]d}
      raised: {cpu: %[5]d, disk_iops: %[6]d}
      lower_after: 3s
shapers:
  vsphere:
    url: %[7]s
    user: %[8]s
    password_env: HEADSTART_TEST_VC_PASSWORD
    insecure: true
`, fleet, vmName, idleCPU, idleIOPS, raisedCPU, raisedIOPS, u.String(), user)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, wid := range []string{headstart.ForecasterWorkflowID(fleet), headstart.LedgerWorkflowID(fleet), headstart.CoordinatorWorkflowID(fleet)} {
			_ = c.TerminateWorkflow(context.Background(), wid, "", "test over")
		}
	})
	t.Setenv("HEADSTART_TEST_VC_PASSWORD", pass) // inherited by the worker: the file holds no secret
	start := func(name, program string, args ...string) *testproc.Proc {
		return startBinary(t, bin, name, program, args...)
	}
	control := start("headstart worker", "headstart", "worker", "-config", config, "-address", srv.HostPort())
	start("pipeline worker", "worker", "-address", srv.HostPort(), "-namespace", srv.Namespace(), "-fleet", fleet,
		"-metrics-address=", "-route=false", "-task-queue", "pipeline-"+fleet)

	type size struct {
		cpu  int32
		iops int64
	}
	read := func() size {
		var v mo.VirtualMachine
		if err := vm.Properties(ctx, vm.Reference(), []string{"config.hardware"}, &v); err != nil || v.Config == nil {
			return size{}
		}
		s := size{cpu: v.Config.Hardware.NumCPU}
		for _, d := range v.Config.Hardware.Device {
			if disk, ok := d.(*types.VirtualDisk); ok && disk.StorageIOAllocation != nil && disk.StorageIOAllocation.Limit != nil {
				s.iops = *disk.StorageIOAllocation.Limit
			}
		}
		return s
	}
	atIdle := func() bool { s := read(); return s.cpu == idleCPU && s.iops == idleIOPS }
	waitFor(t, time.Minute, "the VM at its idle size", func() bool { return atIdle() || control.Exited() != nil })
	if err := control.Exited(); err != nil {
		t.Fatalf("the control worker exited: %v\n%s", err, control.Log.Tail(4096))
	}
	transformStarted, raisedAt, atStart := raiseAheadOfTransform(t, ctx, c, fleet, atIdle, read,
		func(s size) bool { return s.cpu >= raisedCPU && s.iops == raisedIOPS })
	t.Logf("VM raised %v before Transform's first task; at its start: %d vCPUs, %d IOPS",
		transformStarted.Sub(raisedAt).Round(time.Millisecond), atStart.cpu, atStart.iops)
	if raisedAt.IsZero() || !raisedAt.Before(transformStarted) || atStart.cpu < raisedCPU || atStart.iops != raisedIOPS {
		t.Fatalf("Transform's first task (started %s) did not start on the raised VM (raised at %s; at its start %+v)\ncontrol worker:\n%s",
			transformStarted.Format(time.StampMilli), raisedAt.Format(time.StampMilli), atStart, control.Log.Tail(3000))
	}
	waitFor(t, time.Minute, "the VM back at its idle size after the run", atIdle)
	if !strings.Contains(control.Log.Tail(1<<20), "shaping VMware VMs through "+u.String()) {
		t.Errorf("the control worker's log does not name the shaper:\n%s", control.Log.Tail(3000))
	}
}
