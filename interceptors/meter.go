package interceptors

import (
	"bytes"
	"os"
	"runtime/metrics"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// How each figure is measured. A worker runs many activities as goroutines of
// one process, so most figures are process counters apportioned across the
// attempts running at the time; see the package README for the accuracy.
//
//   - CPU: getrusage(RUSAGE_SELF) user+system time, read when an attempt
//     starts or ends and every sample interval; each delta is split equally
//     among the attempts running during it. Exact for an attempt running alone
//     (it includes the SDK's own work and GC meanwhile).
//   - Peak memory: the rise of the Go heap's object bytes
//     (/memory/classes/heap/objects:bytes) above its level at the attempt's
//     start, read at start, end and every sample interval. Every concurrent
//     attempt sees the whole rise.
//   - Disk: /proc/self/io read_bytes and write_bytes (what reached storage)
//     and syscr+syscw (read and write calls), read at every end and sample
//     interval, apportioned like CPU.
//   - Network: the bytes received and sent on the network namespace's
//     interfaces (/proc/self/net/dev), read every sample interval and
//     apportioned like CPU. In a container with its own namespace this is the
//     worker's traffic, including its traffic with Temporal.
//   - Child processes an activity reports with RecordChild: exact, from the
//     child's own rusage.
type usage struct {
	cpu, alloc, diskRead, diskWrite, diskOps, net float64
}

func (u usage) sub(v usage) usage {
	return usage{u.cpu - v.cpu, u.alloc - v.alloc, u.diskRead - v.diskRead, u.diskWrite - v.diskWrite, u.diskOps - v.diskOps, u.net - v.net}
}

func (u usage) add(v usage) usage {
	return usage{u.cpu + v.cpu, u.alloc + v.alloc, u.diskRead + v.diskRead, u.diskWrite + v.diskWrite, u.diskOps + v.diskOps, u.net + v.net}
}

func (u usage) scale(f float64) usage {
	return usage{u.cpu * f, u.alloc * f, u.diskRead * f, u.diskWrite * f, u.diskOps * f, u.net * f}
}

// clampZero guards against counters that went backwards (a reset).
func (u usage) clampZero() usage {
	c := func(x float64) float64 { return max(x, 0) }
	return usage{c(u.cpu), c(u.alloc), c(u.diskRead), c(u.diskWrite), c(u.diskOps), c(u.net)}
}

// meterSpan is one attempt's view of the meter.
type meterSpan struct {
	startShare usage   // meter.share when the attempt started
	startHeap  float64 // heap object bytes when it started
	peakHeap   float64 // highest heap object bytes seen while it ran
}

// meter apportions process counters across running attempts. Safe for
// concurrent use.
type meter struct {
	mu      sync.Mutex
	active  map[*meterSpan]struct{}
	last    usage // counters at the last read
	share   usage // cumulative per-attempt share of every delta
	heap    float64
	samples []metrics.Sample
	io      *os.File // /proc/self/io, or nil where unavailable
	netDev  *os.File // /proc/self/net/dev, or nil
	buf     []byte
}

func newMeter() *meter {
	m := &meter{
		active: map[*meterSpan]struct{}{},
		samples: []metrics.Sample{
			{Name: "/gc/heap/allocs:bytes"},
			{Name: "/memory/classes/heap/objects:bytes"},
		},
		buf: make([]byte, 8192),
	}
	m.io, _ = os.Open("/proc/self/io")
	m.netDev, _ = os.Open("/proc/self/net/dev")
	return m
}

func (m *meter) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range []*os.File{m.io, m.netDev} {
		if f != nil {
			_ = f.Close()
		}
	}
	m.io, m.netDev = nil, nil
}

// read levels selected by the flags into u, starting from m.last for the rest.
func (m *meter) read(disk, net bool) usage {
	u := m.last
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		u.cpu = tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
	}
	metrics.Read(m.samples)
	if m.samples[0].Value.Kind() == metrics.KindUint64 {
		u.alloc = float64(m.samples[0].Value.Uint64())
	}
	if m.samples[1].Value.Kind() == metrics.KindUint64 {
		m.heap = float64(m.samples[1].Value.Uint64())
	}
	if disk && m.io != nil {
		if n, err := m.io.ReadAt(m.buf, 0); n > 0 || err == nil {
			r, w, ops := parseProcIO(m.buf[:n])
			u.diskRead, u.diskWrite, u.diskOps = r, w, ops
		}
	}
	if net && m.netDev != nil {
		if n, err := m.netDev.ReadAt(m.buf, 0); n > 0 || err == nil {
			u.net = parseNetDev(m.buf[:n])
		}
	}
	return u
}

// advance reads counters and splits their deltas among the running attempts.
// With none running, it only moves the baseline.
func (m *meter) advance(disk, net bool) {
	now := m.read(disk, net)
	if n := len(m.active); n > 0 {
		m.share = m.share.add(now.sub(m.last).clampZero().scale(1 / float64(n)))
		for s := range m.active {
			s.peakHeap = max(s.peakHeap, m.heap)
		}
	}
	m.last = now
}

// begin starts metering an attempt.
func (m *meter) begin() *meterSpan {
	m.mu.Lock()
	defer m.mu.Unlock()
	idle := len(m.active) == 0
	m.advance(idle, idle) // from idle, refresh every baseline so idle time is not charged
	s := &meterSpan{startShare: m.share, startHeap: m.heap, peakHeap: m.heap}
	m.active[s] = struct{}{}
	return s
}

// end stops metering an attempt and returns its share and its heap rise.
func (m *meter) end(s *meterSpan) (usage, float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advance(true, false)
	delete(m.active, s)
	return m.share.sub(s.startShare).clampZero(), max(s.peakHeap-s.startHeap, 0)
}

// sample is the periodic read of every counter while attempts run.
func (m *meter) sample() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.active) > 0 {
		m.advance(true, true)
	}
}

// run samples every interval until stop is closed.
func (m *meter) run(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			m.sample()
		}
	}
}

func tvSeconds(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }

// parseProcIO returns read_bytes, write_bytes and syscr+syscw from /proc/<pid>/io.
func parseProcIO(b []byte) (read, write, ops float64) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		k, v, ok := bytes.Cut(line, []byte(": "))
		if !ok {
			continue
		}
		x, err := strconv.ParseFloat(string(bytes.TrimSpace(v)), 64)
		if err != nil {
			continue
		}
		switch string(k) {
		case "read_bytes":
			read = x
		case "write_bytes":
			write = x
		case "syscr", "syscw":
			ops += x
		}
	}
	return read, write, ops
}

// parseNetDev returns the bytes received plus sent on every interface listed
// in /proc/net/dev.
func parseNetDev(b []byte) float64 {
	var total float64
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		_, rest, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) < 9 {
			continue
		}
		rx, err1 := strconv.ParseFloat(string(f[0]), 64)
		tx, err2 := strconv.ParseFloat(string(f[8]), 64)
		if err1 == nil && err2 == nil {
			total += rx + tx
		}
	}
	return total
}
