package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// device is a whole block device, as major:minor.
type device struct{ major, minor int64 }

func (d device) String() string { return fmt.Sprintf("%d:%d", d.major, d.minor) }

// resolveDevice turns a device spec into the whole disk its I/O limits go
// on: "major:minor", a block device's path (/dev/vda), or any other path,
// naming the disk its file system is on. A partition stands for its disk:
// the kernel throttles whole disks.
func resolveDevice(spec string) (device, error) {
	var d device
	if maj, min, ok := strings.Cut(spec, ":"); ok && !strings.Contains(spec, "/") {
		var err1, err2 error
		d.major, err1 = strconv.ParseInt(maj, 10, 64)
		d.minor, err2 = strconv.ParseInt(min, 10, 64)
		if err1 != nil || err2 != nil || d.major < 0 || d.minor < 0 {
			return d, fmt.Errorf("device %q: not major:minor", spec)
		}
	} else {
		var st unix.Stat_t
		if err := unix.Stat(spec, &st); err != nil {
			return d, fmt.Errorf("device %q: %w", spec, err)
		}
		dev := st.Dev
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			dev = st.Rdev
		}
		d = device{int64(unix.Major(dev)), int64(unix.Minor(dev))}
	}
	sys := filepath.Join("/sys/dev/block", d.String())
	if _, err := os.Stat(sys); err != nil {
		return d, fmt.Errorf("device %q (%s): not a block device of this host", spec, d)
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		real, err := filepath.EvalSymlinks(sys)
		if err != nil {
			return d, fmt.Errorf("device %q: %w", spec, err)
		}
		b, err := os.ReadFile(filepath.Join(real, "..", "dev"))
		if err != nil {
			return d, fmt.Errorf("device %q: the disk of partition %s: %w", spec, d, err)
		}
		return resolveDevice(strings.TrimSpace(string(b)))
	}
	return d, nil
}
