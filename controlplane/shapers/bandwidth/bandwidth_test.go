package bandwidth_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/bandwidth"
	"github.com/headstart-dev/headstart/controlplane/shapers/shapertest"
	"github.com/headstart-dev/headstart/resources"
)

const mbit = 1e6 / 8 // bytes/s

// link is a veth pair between two network namespaces made for one test:
// a (10.77.0.1) and b (10.77.0.2), removed at cleanup.
type link struct {
	a, b       string // namespace names
	devA, devB string
}

var seq atomic.Int32

func newLink(t *testing.T) link {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("the bandwidth shaper's tests need root: they shape real network namespaces")
	}
	n := fmt.Sprintf("%d-%d", os.Getpid()%100000, seq.Add(1))
	l := link{a: "hs-bw-a-" + n, b: "hs-bw-b-" + n, devA: "hsa" + n, devB: "hsb" + n}
	l.devA, l.devB = l.devA[:min(len(l.devA), 15)], l.devB[:min(len(l.devB), 15)]
	t.Cleanup(func() {
		for _, ns := range []string{l.a, l.b} {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		}
	})
	for _, args := range [][]string{
		{"netns", "add", l.a}, {"netns", "add", l.b},
		{"link", "add", l.devA, "netns", l.a, "type", "veth", "peer", "name", l.devB, "netns", l.b},
		{"-n", l.a, "addr", "add", "10.77.0.1/24", "dev", l.devA}, {"-n", l.b, "addr", "add", "10.77.0.2/24", "dev", l.devB},
		{"-n", l.a, "link", "set", l.devA, "up"}, {"-n", l.b, "link", "set", l.devB, "up"},
		{"-n", l.a, "link", "set", "lo", "up"}, {"-n", l.b, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return l
}

// inNS runs f on a thread in namespace name: sockets it makes stay there.
func inNS(t *testing.T, name string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread ends with the goroutine, never reused outside name
		ns, err := netns.GetFromName(name)
		if err != nil {
			done <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			done <- err
			return
		}
		done <- f()
	}()
	if err := <-done; err != nil {
		t.Fatalf("in namespace %s: %v", name, err)
	}
}

// flow is a greedy TCP transfer whose receiver counts the bytes.
type flow struct {
	received atomic.Int64
	stop     func()
}

// send starts sending from namespace from to to's address at port as fast
// as TCP goes, until the test ends or stop is called.
func send(t *testing.T, from, to, addr string, port int) *flow {
	t.Helper()
	f := &flow{}
	var ln net.Listener
	inNS(t, to, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(addr, fmt.Sprint(port)))
		return err
	})
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			f.received.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	var conn net.Conn
	inNS(t, from, func() (err error) {
		conn, err = net.Dial("tcp", net.JoinHostPort(addr, fmt.Sprint(port)))
		return err
	})
	wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := conn.Write(buf); err != nil {
				return
			}
		}
	})
	var once sync.Once
	f.stop = func() {
		once.Do(func() {
			ln.Close()
			conn.Close()
			wg.Wait()
		})
	}
	t.Cleanup(f.stop)
	return f
}

// measure is each flow's received rate over window, after warm-up (htb's
// first burst and TCP's slow start), in bytes/s.
func measure(warmUp, window time.Duration, flows ...*flow) []float64 {
	time.Sleep(warmUp)
	before := make([]int64, len(flows))
	for i, f := range flows {
		before[i] = f.received.Load()
	}
	start := time.Now()
	time.Sleep(window)
	took := time.Since(start).Seconds()
	rates := make([]float64, len(flows))
	for i, f := range flows {
		rates[i] = float64(f.received.Load()-before[i]) / took
	}
	return rates
}

// classBytes reads the bytes htb has sent through classes 1:minor on a's device.
func classBytes(t *testing.T, l link, minors ...int) []int64 {
	t.Helper()
	ns, err := netns.GetFromName(l.a)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	dev, err := h.LinkByName(l.devA)
	if err != nil {
		t.Fatal(err)
	}
	classes, err := h.ClassList(dev, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int64, len(minors))
	for i, m := range minors {
		for _, c := range classes {
			if a := c.Attrs(); a.Handle == netlink.MakeHandle(1, uint16(m)) && a.Statistics != nil && a.Statistics.Basic != nil {
				out[i] = int64(a.Statistics.Basic.Bytes)
			}
		}
	}
	return out
}

func newShaper(t *testing.T, l link, opts bandwidth.Options) *bandwidth.Shaper {
	t.Helper()
	opts.Device, opts.NetNS = l.devA, "/run/netns/"+l.a
	if opts.StepInterval == 0 {
		opts.StepInterval = 50 * time.Millisecond
	}
	s, err := bandwidth.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func floor(name string, bytesPerSec float64) shapers.Action {
	v := resources.Vector{}.With(resources.NetBytes, bytesPerSec)
	return shapers.Action{Target: shapers.Target{Kind: bandwidth.Kind, Name: name}, Desired: shapers.Desired{Resources: &v}, Reason: "test"}
}

// converge waits until the stage's classes have their desired floor.
func converge(t *testing.T, s *bandwidth.Shaper, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := s.Status(context.Background(), shapers.Target{Kind: bandwidth.Kind, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if st.Converged {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not reach its floor in 30 s: %+v", name, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAStageLimitedTo20MbitTransfersAt20 in each direction: sent traffic
// through Device's htb, received traffic through the ifb it is redirected to.
func TestAStageLimitedTo20MbitTransfersAt20(t *testing.T) {
	l := newLink(t)
	s := newShaper(t, l, bandwidth.Options{Ceiling: 1000 * mbit, Ingress: true,
		Stages: []bandwidth.Stage{{Name: "transfer", Ports: []uint16{5001, 5002}, Ceiling: 20 * mbit}}})
	if _, err := s.Apply(context.Background(), floor("transfer", 20*mbit)); err != nil {
		t.Fatal(err)
	}
	converge(t, s, "transfer")

	sent := send(t, l.a, l.b, "10.77.0.2", 5001)
	rate := measure(time.Second, 3*time.Second, sent)[0]
	sent.stop()
	t.Logf("sent: %.2f Mbit/s", rate/mbit)
	if rate < 18*mbit || rate > 22*mbit {
		t.Errorf("sent at %.2f Mbit/s, want 20 ± 2", rate/mbit)
	}

	received := send(t, l.b, l.a, "10.77.0.1", 5002)
	rate = measure(time.Second, 3*time.Second, received)[0]
	t.Logf("received: %.2f Mbit/s", rate/mbit)
	if rate < 18*mbit || rate > 22*mbit {
		t.Errorf("received at %.2f Mbit/s, want 20 ± 2", rate/mbit)
	}
}

// TestEachStageGetsItsFloorUnderContention: two stages with floors of 30
// and 10 Mbit/s, both greedy, share a 40 Mbit/s link; each gets its floor.
// Unshaped, the same flows run at gigabits (a veth pair is not a 40 Mbit link).
func TestEachStageGetsItsFloorUnderContention(t *testing.T) {
	l := newLink(t)
	s := newShaper(t, l, bandwidth.Options{Ceiling: 40 * mbit,
		Stages: []bandwidth.Stage{{Name: "big", Ports: []uint16{5001}}, {Name: "small", Peers: []string{"10.77.0.2"}}}})
	for _, a := range []shapers.Action{floor("big", 30*mbit), floor("small", 10*mbit)} {
		if _, err := s.Apply(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	converge(t, s, "big")
	converge(t, s, "small")
	big := send(t, l.a, l.b, "10.77.0.2", 5001)   // by its port
	small := send(t, l.a, l.b, "10.77.0.2", 6001) // by its peer
	time.Sleep(2 * time.Second)                   // htb's first burst and TCP's slow start
	wire0, payload0, start := classBytes(t, l, 16, 17), []int64{big.received.Load(), small.received.Load()}, time.Now()
	time.Sleep(4 * time.Second)
	wire1, payload1, took := classBytes(t, l, 16, 17), []int64{big.received.Load(), small.received.Load()}, time.Since(start).Seconds()
	var onWire, payload [2]float64
	for i := range 2 {
		onWire[i] = float64(wire1[i]-wire0[i]) / took
		payload[i] = float64(payload1[i]-payload0[i]) / took
	}
	t.Logf("big %.2f Mbit/s on the wire, %.2f of TCP payload (floor 30); small %.2f, %.2f (floor 10); together %.2f on the wire (ceiling 40)",
		onWire[0]/mbit, payload[0]/mbit, onWire[1]/mbit, payload[1]/mbit, (onWire[0]+onWire[1])/mbit)
	// A floor counts the bytes htb sends, headers included: the payload the
	// receiver counts is about 95% of them (1448 of 1514 bytes a segment).
	if onWire[0] < 0.97*30*mbit || onWire[1] < 0.97*10*mbit {
		t.Errorf("a stage got less than its floor: big %.2f Mbit/s (30), small %.2f (10)", onWire[0]/mbit, onWire[1]/mbit)
	}
	if sum := onWire[0] + onWire[1]; sum > 1.05*40*mbit {
		t.Errorf("together %.2f Mbit/s, above the link's ceiling of 40", sum/mbit)
	}
}

// TestFloorsChangeStepByStepAndARestartedShaperReconciles: a floor moves
// by at most a quarter of the link per step; a shaper stopped mid-way and
// started again finds the desired floor on disk and reaches it.
func TestFloorsChangeStepByStepAndARestartedShaperReconciles(t *testing.T) {
	l := newLink(t)
	dir := t.TempDir()
	var log strings.Builder
	opts := bandwidth.Options{Ceiling: 100 * mbit, StateDir: dir, StepInterval: time.Hour, Log: &log,
		Stages: []bandwidth.Stage{{Name: "etl", Ports: []uint16{5001}}}}
	s := newShaper(t, l, opts)
	st, err := s.Apply(context.Background(), floor("etl", 80*mbit))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Resources.Get(resources.NetBytes); got > 25*mbit+1000 || st.Converged {
		t.Fatalf("after one step the floor is %.2f Mbit/s (converged %v), want at most a quarter of the link", got/mbit, st.Converged)
	}
	s.Close(context.Background()) // stopped mid-way, as a killed agent would be

	opts.StepInterval = 50 * time.Millisecond
	again := newShaper(t, l, opts)
	converge(t, again, "etl")
	st, err = again.Status(context.Background(), shapers.Target{Kind: bandwidth.Kind, Name: "etl"})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Resources.Get(resources.NetBytes); got != 80*mbit {
		t.Errorf("the restarted shaper reached %.2f Mbit/s, want the 80 asked before", got/mbit)
	}
	if !strings.Contains(log.String(), "sent on "+l.devA+": etl floor 8 kbit/s → 25.01 Mbit/s (target 80 Mbit/s, up to 100 Mbit/s): test") {
		t.Errorf("the log does not say what changed and why:\n%s", log.String())
	}
}

func TestRefusesWhatItCannotApply(t *testing.T) {
	l := newLink(t)
	s := newShaper(t, l, bandwidth.Options{Ceiling: 40 * mbit,
		Stages: []bandwidth.Stage{{Name: "a", Ports: []uint16{1}, Ceiling: 20 * mbit}, {Name: "b", Ports: []uint16{2}}}})
	ctx := context.Background()
	if _, err := s.Apply(ctx, floor("a", 30*mbit)); !errors.Is(err, shapers.ErrInvalidAction) || !strings.Contains(err.Error(), "above the stage's ceiling") {
		t.Errorf("a floor above the stage's ceiling: %v", err)
	}
	if _, err := s.Apply(ctx, floor("b", 30*mbit)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, floor("a", 15*mbit)); !errors.Is(err, shapers.ErrInvalidAction) || !strings.Contains(err.Error(), "above the link's ceiling") {
		t.Errorf("floors above the link: %v", err)
	}
	cpu := resources.Vector{}.With(resources.CPU, 1)
	if _, err := s.Apply(ctx, shapers.Action{Target: shapers.Target{Kind: bandwidth.Kind, Name: "a"}, Desired: shapers.Desired{Resources: &cpu}, Reason: "x"}); !errors.Is(err, shapers.ErrUnsupported) {
		t.Errorf("CPU asked of the bandwidth shaper: %v, want ErrUnsupported", err)
	}
	if _, err := s.Apply(ctx, floor("c", mbit)); !errors.Is(err, shapers.ErrUnknownTarget) {
		t.Errorf("a stage not configured: %v, want ErrUnknownTarget", err)
	}
	for _, bad := range []bandwidth.Options{
		{Device: "eth0", Ceiling: 1e6},
		{Device: "eth0", Stages: []bandwidth.Stage{{Name: "a", Ports: []uint16{1}}}},
		{Device: "eth0", Ceiling: 1e6, Stages: []bandwidth.Stage{{Name: "a"}}},
		{Device: "eth0", Ceiling: 1e6, Stages: []bandwidth.Stage{{Name: "a", Peers: []string{"::1"}}}},
		{Device: "", Ceiling: 1e6, Stages: []bandwidth.Stage{{Name: "a", Ports: []uint16{1}}}},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestTheBandwidthShaperConforms(t *testing.T) {
	l := newLink(t)
	s := newShaper(t, l, bandwidth.Options{Ceiling: 100 * mbit, Ingress: true,
		Stages: []bandwidth.Stage{{Name: "conformance", Ports: []uint16{5001}}}})
	shapertest.RunResources(t, s, shapertest.ResourceOptions{
		Target: shapers.Target{Kind: bandwidth.Kind, Name: "conformance"},
		First:  resources.Vector{}.With(resources.NetBytes, 30*mbit),
		Second: resources.Vector{}.With(resources.NetBytes, 5*mbit),
	})
}

func TestClearLeavesTheDeviceUnshaped(t *testing.T) {
	l := newLink(t)
	s := newShaper(t, l, bandwidth.Options{Ceiling: 10 * mbit, Ingress: true,
		Stages: []bandwidth.Stage{{Name: "x", Ports: []uint16{5001}}}})
	if err := s.Clear(context.Background()); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "-n", l.a, "-d", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "ifb") || strings.Contains(string(out), "htb") {
		t.Errorf("after Clear:\n%s", out)
	}
	qd, _ := exec.Command("tc", "-n", l.a, "qdisc", "show", "dev", l.devA).CombinedOutput()
	if strings.Contains(string(qd), "htb") || strings.Contains(string(qd), "ingress") {
		t.Errorf("qdiscs after Clear:\n%s", qd)
	}
}
