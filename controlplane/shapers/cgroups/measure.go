package cgroups

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// MeasureIOPS measures the IOPS the disk under folder dir sustains: 4 KiB
// direct (uncached) random reads of a 16 MiB file it writes there and
// removes, for d (default 2 s), one at a time as a single busy process
// would. The result is a budget for Options.DiskIOPSBudget.
func MeasureIOPS(ctx context.Context, dir string, d time.Duration) (float64, error) {
	if d <= 0 {
		d = 2 * time.Second
	}
	const block, size = 4096, 16 << 20
	f, err := os.CreateTemp(dir, ".headstart-iops-*")
	if err != nil {
		return 0, fmt.Errorf("cgroups: measure IOPS in %s: %w", dir, err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	for written := 0; written < size; written += len(chunk) {
		if _, err := f.Write(chunk); err != nil {
			return 0, fmt.Errorf("cgroups: measure IOPS in %s: %w", dir, err)
		}
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("cgroups: measure IOPS in %s: %w", dir, err)
	}
	fd, err := unix.Open(f.Name(), unix.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return 0, fmt.Errorf("cgroups: measure IOPS in %s: direct I/O: %w", dir, err)
	}
	defer unix.Close(fd)
	// O_DIRECT needs an aligned buffer: a page from mmap is.
	buf, err := unix.Mmap(-1, 0, block, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return 0, fmt.Errorf("cgroups: measure IOPS: %w", err)
	}
	defer unix.Munmap(buf)
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	ops := 0
	for time.Since(start) < d {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		off := int64(rng.IntN(size/block)) * block
		if _, err := unix.Pread(fd, buf, off); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return 0, fmt.Errorf("cgroups: measure IOPS in %s: %w", dir, err)
		}
		ops++
	}
	return float64(ops) / time.Since(start).Seconds(), nil
}
