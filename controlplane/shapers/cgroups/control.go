package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// limits are a cgroup's limits; 0 is no limit.
type limits struct {
	CPU        float64 `json:"cpu,omitempty"`         // cores
	Memory     int64   `json:"memory,omitempty"`      // bytes: the hard limit
	MemorySoft int64   `json:"memory_soft,omitempty"` // bytes: reclaimed above it under pressure (v1 soft limit, v2 memory.high)
	DiskBytes  uint64  `json:"disk_bytes,omitempty"`  // bytes/s, each of read and write, per device
	DiskIOPS   uint64  `json:"disk_iops,omitempty"`   // operations/s, each of read and write, per device
}

// observed is what a cgroup has now: its limits, as the lowest over the
// devices for I/O, and its memory use.
type observed struct {
	limits
	MemoryUsed int64
	Procs      int
}

// control drives one cgroup of one version.
type control interface {
	read(devices []device) (observed, error)
	write(l limits, devices []device) error
	add(pid int) error
	remove() error
}

// cpuPeriod is the CFS period quotas are set against: 100 ms, the kernel's default.
const cpuPeriod = 100000

// version names the hierarchy this host has: "v1" (legacy or hybrid) or "v2".
func version() (string, error) {
	switch cgroups.Mode() {
	case cgroups.Unified:
		return "v2", nil
	case cgroups.Legacy, cgroups.Hybrid:
		return "v1", nil
	}
	return "", fmt.Errorf("%w: no cgroup hierarchy is mounted at /sys/fs/cgroup", ErrNoCgroups)
}

// ErrNoCgroups is returned where the host has no cgroup hierarchy to shape.
var ErrNoCgroups = errors.New("cgroups unavailable")

// open creates (or opens) the cgroup at group, e.g. "/headstart/transform".
func open(ver, group string) (control, error) {
	if ver == "v2" {
		m, err := cgroup2.NewManager("/sys/fs/cgroup", group, &cgroup2.Resources{CPU: &cgroup2.CPU{}, Memory: &cgroup2.Memory{}, IO: &cgroup2.IO{}})
		if err != nil {
			return nil, fmt.Errorf("cgroup v2 %s: %w", group, err)
		}
		return &v2{m: m, dir: filepath.Join("/sys/fs/cgroup", group)}, nil
	}
	hierarchy := func() ([]cgroup1.Subsystem, error) {
		all, err := cgroup1.Default()
		if err != nil {
			return nil, err
		}
		return slices.DeleteFunc(all, func(s cgroup1.Subsystem) bool {
			return !slices.Contains([]cgroup1.Name{cgroup1.Cpu, cgroup1.Memory, cgroup1.Blkio}, s.Name())
		}), nil
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(group), &specs.LinuxResources{}, cgroup1.WithHierarchy(hierarchy))
	if err != nil {
		return nil, fmt.Errorf("cgroup v1 %s: %w", group, err)
	}
	return &v1{cg: cg, group: group}, nil
}

type v1 struct {
	cg    cgroup1.Cgroup
	group string
}

func (c *v1) file(controller, name string) string {
	return filepath.Join("/sys/fs/cgroup", controller, c.group, name)
}

func (c *v1) read(devices []device) (observed, error) {
	var o observed
	quota, err := readInt(c.file("cpu", "cpu.cfs_quota_us"))
	if err != nil {
		return o, err
	}
	period, err := readInt(c.file("cpu", "cpu.cfs_period_us"))
	if err != nil {
		return o, err
	}
	if quota > 0 && period > 0 {
		o.CPU = float64(quota) / float64(period)
	}
	if o.Memory, err = readMemory(c.file("memory", "memory.limit_in_bytes")); err != nil {
		return o, err
	}
	if o.MemorySoft, err = readMemory(c.file("memory", "memory.soft_limit_in_bytes")); err != nil {
		return o, err
	}
	if o.MemoryUsed, err = readInt(c.file("memory", "memory.usage_in_bytes")); err != nil {
		return o, err
	}
	var bps, iops []uint64
	for _, kind := range []string{"read_bps", "write_bps", "read_iops", "write_iops"} {
		rates, err := readDeviceRates(c.file("blkio", "blkio.throttle."+kind+"_device"))
		if err != nil {
			return o, err
		}
		for _, d := range devices {
			if strings.HasSuffix(kind, "bps") {
				bps = append(bps, rates[d.String()])
			} else {
				iops = append(iops, rates[d.String()])
			}
		}
	}
	o.DiskBytes, o.DiskIOPS = lowest(bps), lowest(iops)
	procs, err := c.cg.Processes(cgroup1.Cpu, false)
	o.Procs = len(procs)
	return o, err
}

func (c *v1) write(l limits, devices []device) error {
	r := &specs.LinuxResources{}
	if l.CPU > 0 {
		quota, period := int64(math.Round(l.CPU*cpuPeriod)), uint64(cpuPeriod)
		r.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	if l.Memory > 0 || l.MemorySoft > 0 {
		r.Memory = &specs.LinuxMemory{}
		if l.Memory > 0 {
			r.Memory.Limit = &l.Memory
		}
		if l.MemorySoft > 0 {
			r.Memory.Reservation = &l.MemorySoft
		}
	}
	r.BlockIO = throttles(l, devices)
	if err := c.cg.Update(r); err != nil {
		return fmt.Errorf("cgroup v1 %s: %w", c.group, err)
	}
	return nil
}

func (c *v1) add(pid int) error { return c.cg.AddProc(uint64(pid)) }

func (c *v1) remove() error { return c.cg.Delete() }

type v2 struct {
	m   *cgroup2.Manager
	dir string
}

func (c *v2) read(devices []device) (observed, error) {
	var o observed
	b, err := os.ReadFile(filepath.Join(c.dir, "cpu.max"))
	if err != nil {
		return o, err
	}
	if f := strings.Fields(string(b)); len(f) == 2 && f[0] != "max" {
		quota, err1 := strconv.ParseFloat(f[0], 64)
		period, err2 := strconv.ParseFloat(f[1], 64)
		if err := errors.Join(err1, err2); err != nil {
			return o, fmt.Errorf("%s: %w", filepath.Join(c.dir, "cpu.max"), err)
		}
		o.CPU = quota / period
	}
	if o.Memory, err = readMemory(filepath.Join(c.dir, "memory.max")); err != nil {
		return o, err
	}
	if o.MemorySoft, err = readMemory(filepath.Join(c.dir, "memory.high")); err != nil {
		return o, err
	}
	if o.MemoryUsed, err = readInt(filepath.Join(c.dir, "memory.current")); err != nil {
		return o, err
	}
	b, err = os.ReadFile(filepath.Join(c.dir, "io.max"))
	if err != nil {
		return o, err
	}
	rates := map[string]map[string]uint64{} // device → rbps… → rate
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		rates[f[0]] = map[string]uint64{}
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			if n, err := strconv.ParseUint(v, 10, 64); err == nil {
				rates[f[0]][k] = n
			}
		}
	}
	var bps, iops []uint64
	for _, d := range devices {
		r := rates[d.String()]
		bps = append(bps, r["rbps"], r["wbps"])
		iops = append(iops, r["riops"], r["wiops"])
	}
	o.DiskBytes, o.DiskIOPS = lowest(bps), lowest(iops)
	procs, err := c.m.Procs(false)
	o.Procs = len(procs)
	return o, err
}

func (c *v2) write(l limits, devices []device) error {
	r := &cgroup2.Resources{}
	if l.CPU > 0 {
		quota, period := int64(math.Round(l.CPU*cpuPeriod)), uint64(cpuPeriod)
		r.CPU = &cgroup2.CPU{Max: cgroup2.NewCPUMax(&quota, &period)}
	}
	if l.Memory > 0 || l.MemorySoft > 0 {
		r.Memory = &cgroup2.Memory{}
		if l.Memory > 0 {
			r.Memory.Max = &l.Memory
		}
		if l.MemorySoft > 0 {
			r.Memory.High = &l.MemorySoft
		}
	}
	if io := throttles(l, devices); io != nil {
		r.IO = cgroup2.ToResources(&specs.LinuxResources{BlockIO: io}).IO
	}
	if err := c.m.Update(r); err != nil {
		return fmt.Errorf("cgroup v2 %s: %w", c.dir, err)
	}
	return nil
}

func (c *v2) add(pid int) error { return c.m.AddProc(uint64(pid)) }

func (c *v2) remove() error { return c.m.Delete() }

// throttles are the block I/O limits of l on every device, nil if none.
func throttles(l limits, devices []device) *specs.LinuxBlockIO {
	if (l.DiskBytes == 0 && l.DiskIOPS == 0) || len(devices) == 0 {
		return nil
	}
	io := &specs.LinuxBlockIO{}
	for _, d := range devices {
		at := func(rate uint64) specs.LinuxThrottleDevice {
			t := specs.LinuxThrottleDevice{Rate: rate}
			t.Major, t.Minor = d.major, d.minor
			return t
		}
		if l.DiskBytes > 0 {
			io.ThrottleReadBpsDevice = append(io.ThrottleReadBpsDevice, at(l.DiskBytes))
			io.ThrottleWriteBpsDevice = append(io.ThrottleWriteBpsDevice, at(l.DiskBytes))
		}
		if l.DiskIOPS > 0 {
			io.ThrottleReadIOPSDevice = append(io.ThrottleReadIOPSDevice, at(l.DiskIOPS))
			io.ThrottleWriteIOPSDevice = append(io.ThrottleWriteIOPSDevice, at(l.DiskIOPS))
		}
	}
	return io
}

// lowest is the smallest rate, 0 (no limit) if any is unlimited or none is given.
func lowest(rates []uint64) uint64 {
	if len(rates) == 0 || slices.Contains(rates, 0) {
		return 0
	}
	return slices.Min(rates)
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// unlimitedMemory: v1 reports no limit as the largest page-aligned int64.
const unlimitedMemory = math.MaxInt64 &^ 4095

// readMemory reads a memory limit, 0 for none ("max", or v1's largest value).
func readMemory(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil // a kernel without the soft limit
	}
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if n >= unlimitedMemory {
		return 0, nil
	}
	return n, nil
}

// readDeviceRates reads a v1 throttle file: "major:minor rate" lines.
func readDeviceRates(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if dev, rate, ok := strings.Cut(line, " "); ok {
			if n, err := strconv.ParseUint(rate, 10, 64); err == nil {
				out[dev] = n
			}
		}
	}
	return out, nil
}
