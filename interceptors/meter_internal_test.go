package interceptors

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeCounters are process counters a test sets by hand.
type fakeCounters struct {
	mu   sync.Mutex
	ev   eventReading
	cpus float64 // CPU seconds
	smp  usage
}

func (f *fakeCounters) event() eventReading { f.mu.Lock(); defer f.mu.Unlock(); return f.ev }
func (f *fakeCounters) cpu() float64        { f.mu.Lock(); defer f.mu.Unlock(); return f.cpus }
func (f *fakeCounters) sampled() usage      { f.mu.Lock(); defer f.mu.Unlock(); return f.smp }
func (f *fakeCounters) close()              {}

// set moves the counters to the given totals.
func (f *fakeCounters) set(cpu, heap, disk float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cpus, f.ev.heap = cpu, heap
	f.smp.diskRead = disk
}

// TestMeterApportionsTheProcessCounters is the meter's rule: CPU growth is
// split equally among the attempts running while it grew (here the CPU
// reader reads right after each start and end); disk (and
// network) growth between two ticks is split among the attempts that ran in
// the interval, in proportion to how long each ran in it; every attempt
// running sees the heap's whole rise; an ended attempt is handed back by the
// next tick, complete.
func TestMeterApportionsTheProcessCounters(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	c := &fakeCounters{}
	c.set(10, 100, 1000)
	m := newMeter(c, 16, t0)
	read := func() { m.applyReading(c.cpu()) } // the CPU reader

	var a, b meterSpan
	m.begin(&a, at(0)) // a alone
	read()
	c.set(12, 150, 1000)
	m.begin(&b, at(1)) // 2 CPU s grew while a ran alone
	read()
	c.set(16, 400, 1000)
	require.True(t, m.end(&a, at(2))) // 4 CPU s grew while both ran; the heap rose to 400
	read()
	c.set(16, 120, 4000)

	// The first interval, 0–4 s: a ran 2 s of it, b 3 s; 3,000 disk bytes.
	begun, ended := m.tick(at(4))
	require.Equal(t, []*meterSpan{&b}, begun, "b began since the last tick and runs on")
	require.Equal(t, []*meterSpan{&a}, ended)
	require.InDelta(t, 2+4.0/2, a.used.cpu, 1e-9, "a: 2 s alone and half of 4 s shared")
	require.Equal(t, 400.0, a.peakHeap, "a saw the heap's whole rise")
	require.Equal(t, 100.0, a.startHeap)
	require.InDelta(t, 3000*2.0/5, a.used.diskRead, 1e-9)
	require.InDelta(t, 3000*3.0/5, b.used.diskRead, 1e-9)

	// The second interval, 4–8 s: b alone, until 6 s.
	c.set(18, 120, 4000)
	require.True(t, m.end(&b, at(6)))
	read()
	c.set(18, 120, 5000)
	begun, ended = m.tick(at(8))
	require.Empty(t, begun)
	require.Equal(t, []*meterSpan{&b}, ended)
	require.InDelta(t, 4.0/2+2, b.used.cpu, 1e-9, "b: half of 4 s shared and 2 s alone")
	require.Equal(t, 400.0, b.peakHeap)
	require.Equal(t, 150.0, b.startHeap)
	require.InDelta(t, 1800+1000, b.used.diskRead, 1e-9, "the second interval's growth is b's alone")
}

// TestMeterAppliesCPUInTheOrderOfEvents: the CPU reader runs on its own
// goroutine, after the events it applies; when it lags, the next tick
// applies what awaits it, so an ended attempt is handed back with its CPU.
func TestMeterAppliesCPUInTheOrderOfEvents(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := &fakeCounters{}
	m := newMeter(c, 16, t0)
	stop := make(chan struct{})
	defer close(stop)
	go m.readCPU(stop)
	started := func(s *meterSpan) func() bool {
		return func() bool { m.mu.Lock(); defer m.mu.Unlock(); return m.cpuActive[s] }
	}

	var a, b meterSpan
	m.begin(&a, t0)
	require.Eventually(t, started(&a), 10*time.Second, time.Millisecond, "the reader applies a's start")
	c.set(3, 0, 0)
	require.True(t, m.end(&a, t0.Add(time.Second)))
	require.Eventually(t, func() bool { return !started(&a)() }, 10*time.Second, time.Millisecond, "and its end")
	m.begin(&b, t0.Add(2*time.Second))
	require.True(t, m.end(&b, t0.Add(3*time.Second))) // however the reader lags
	c.set(5, 0, 0)
	_, ended := m.tick(t0.Add(4 * time.Second))
	require.Equal(t, []*meterSpan{&a, &b}, ended)
	require.InDelta(t, 3, a.used.cpu, 1e-9, "a ran alone while 3 CPU s grew")
	require.GreaterOrEqual(t, b.used.cpu, 0.0)
	require.LessOrEqual(t, b.used.cpu, 2.0, "b has at most what grew after a's end was applied")
	m.mu.Lock()
	defer m.mu.Unlock()
	require.Empty(t, m.cpuActive, "no attempt runs")
	require.Empty(t, m.cpuPending)
}

// TestMeterSplitsDiskByTimeRunInTheInterval: two attempts in one interval
// share its disk growth by how long each ran in it.
func TestMeterSplitsDiskByTimeRunInTheInterval(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := &fakeCounters{}
	m := newMeter(c, 16, t0)
	var a, b meterSpan
	m.begin(&a, t0)
	m.begin(&b, t0.Add(3*time.Second))
	m.end(&a, t0.Add(4*time.Second)) // a ran 4 s of the interval
	c.set(0, 0, 6000)
	_, ended := m.tick(t0.Add(5 * time.Second)) // b ran 2 s of it, and runs on
	require.Equal(t, []*meterSpan{&a}, ended)
	require.InDelta(t, 4000, a.used.diskRead, 1e-9)
	require.InDelta(t, 2000, b.used.diskRead, 1e-9)
}

// TestMeterForgetsAttemptsPastItsBound: past maxEnded ended attempts
// awaiting a tick, end reports false and the attempt is not handed back.
func TestMeterForgetsAttemptsPastItsBound(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := newMeter(&fakeCounters{}, 1, t0)
	var a, b meterSpan
	m.begin(&a, t0)
	m.begin(&b, t0)
	require.True(t, m.end(&a, t0.Add(time.Second)))
	require.False(t, m.end(&b, t0.Add(time.Second)))
	_, ended := m.tick(t0.Add(2 * time.Second))
	require.Equal(t, []*meterSpan{&a}, ended)
}

// TestPeakMemoryCountsFromTheLiveHeapOnceAGCFreedTheStartsGarbage: the heap
// at an attempt's start holds garbage (here 200 of its 300 bytes); a GC
// during the attempt frees it while the attempt allocates 250. The peak is
// the attempt's 250, not the 50 the heap rose above its start.
func TestPeakMemoryCountsFromTheLiveHeapOnceAGCFreedTheStartsGarbage(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := &fakeCounters{}
	c.ev = eventReading{heap: 300, live: 100, gcs: 7}
	m := newMeter(c, 16, t0)
	var a meterSpan
	m.begin(&a, t0)
	c.ev = eventReading{heap: 350, live: 100, gcs: 8} // a GC ended: 100 live + a's 250
	require.True(t, m.end(&a, t0.Add(time.Second)))
	require.Equal(t, 250.0, a.peakMemory())

	// Without a GC, the rise above the start is all there is to see.
	var b meterSpan
	c.ev = eventReading{heap: 300, live: 100, gcs: 8}
	m.begin(&b, t0)
	c.ev = eventReading{heap: 420, live: 100, gcs: 8}
	require.True(t, m.end(&b, t0.Add(time.Second)))
	require.Equal(t, 120.0, b.peakMemory())
}
