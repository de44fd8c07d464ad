package cgroups_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/cgroups"
	"github.com/headstart-dev/headstart/controlplane/shapers/shapertest"
	"github.com/headstart-dev/headstart/resources"
)

// The test binary is its own helper process: HEADSTART_CGROUPS_HELPER=spin
// burns a core, =alloc:N holds N MiB, =measure:DIR prints MeasureIOPS of
// DIR; each waits for a line on stdin first,
// so it can be placed in its cgroup before it starts.
func TestMain(m *testing.M) {
	switch mode := os.Getenv("HEADSTART_CGROUPS_HELPER"); {
	case mode == "spin":
		bufio.NewReader(os.Stdin).ReadString('\n')
		for x := uint64(1); ; x = x*6364136223846793005 + 1 {
			if x == 0 {
				fmt.Println(x)
			}
		}
	case strings.HasPrefix(mode, "alloc:"):
		bufio.NewReader(os.Stdin).ReadString('\n')
		n, _ := strconv.Atoi(strings.TrimPrefix(mode, "alloc:"))
		b := make([]byte, n<<20)
		for i := range b {
			b[i] = byte(i)
		}
		fmt.Println("allocated")
		io.Copy(io.Discard, os.Stdin) // hold until stdin closes
		fmt.Println(len(b))
		os.Exit(0)
	case strings.HasPrefix(mode, "measure:"):
		bufio.NewReader(os.Stdin).ReadString('\n')
		iops, err := cgroups.MeasureIOPS(context.Background(), strings.TrimPrefix(mode, "measure:"), time.Second)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println(iops)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var seq atomic.Int64

// newShaper is a shaper under a root of this test's own, whose cgroups the
// test removes; it needs root.
func newShaper(t *testing.T, opts cgroups.Options) (*cgroups.Shaper, string) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("the cgroup shaper's tests need root: they shape real cgroups")
	}
	if opts.Root == "" {
		opts.Root = fmt.Sprintf("headstart-test-%d", os.Getpid())
	}
	if opts.StepInterval == 0 {
		opts.StepInterval = 50 * time.Millisecond
	}
	s, err := cgroups.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	name := fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "_"), seq.Add(1))
	if len(name) > 60 {
		name = name[len(name)-60:]
	}
	t.Cleanup(func() {
		if err := s.Remove(context.Background(), name); err != nil {
			t.Errorf("remove the test's cgroup: %v", err)
		}
		for _, c := range []string{"cpu", "memory", "blkio", ""} {
			os.Remove(filepath.Join("/sys/fs/cgroup", c, opts.Root)) // the root, once empty
		}
	})
	return s, name
}

// helper starts the test binary as a helper process, placed in the
// target's cgroup before it does anything; it is killed at cleanup.
func helper(t *testing.T, s *cgroups.Shaper, name, mode string) (*exec.Cmd, io.WriteCloser, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "HEADSTART_CGROUPS_HELPER="+mode)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := s.Place(context.Background(), name, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	return cmd, stdin, bufio.NewReader(stdout)
}

func limit(name string, v resources.Vector) shapers.Action {
	return shapers.Action{Target: shapers.Target{Kind: cgroups.Kind, Name: name}, Desired: shapers.Desired{Resources: &v}, Reason: "test"}
}

// converge waits until the target's limits are the desired ones.
func converge(t *testing.T, s *cgroups.Shaper, name string, within time.Duration) shapers.Status {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := s.Status(context.Background(), shapers.Target{Kind: cgroups.Kind, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if st.Converged {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not reach its limits within %v: %+v", name, within, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cpuSeconds is the CPU time process pid has used.
func cpuSeconds(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

func TestACPULimitHoldsABusyProcessToItsShare(t *testing.T) {
	s, name := newShaper(t, cgroups.Options{})
	t.Logf("cgroup %s", s.Version())
	if _, err := s.Apply(context.Background(), limit(name, resources.Vector{}.With(resources.CPU, 0.2))); err != nil {
		t.Fatal(err)
	}
	cmd, _, _ := helper(t, s, name, "spin")
	converge(t, s, name, 10*time.Second)
	before, start := cpuSeconds(t, cmd.Process.Pid), time.Now()
	time.Sleep(4 * time.Second) // the measurement's window, not a wait for a condition
	share := (cpuSeconds(t, cmd.Process.Pid) - before) / time.Since(start).Seconds()
	t.Logf("a spinning process limited to 0.2 cores used %.1f%% of a core", 100*share)
	if share < 0.17 || share > 0.23 {
		t.Fatalf("used %.1f%% of a core, want 20 ± 3", 100*share)
	}
}

func TestADiskLimitHoldsDirectWritesToItsRate(t *testing.T) {
	dir := t.TempDir()
	s, name := newShaper(t, cgroups.Options{Devices: []string{dir}})
	const rate = 2 << 20
	if _, err := s.Apply(context.Background(), limit(name, resources.Vector{}.With(resources.DiskBytes, rate))); err != nil {
		t.Fatal(err)
	}
	converge(t, s, name, 10*time.Second)
	const size = 8 << 20
	dd := exec.Command("sh", "-c", `read _; exec dd if=/dev/zero of="$1" bs=64k count=$2 oflag=direct`, "sh", filepath.Join(dir, "out"), strconv.Itoa(size/(64<<10)))
	stdin, err := dd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	dd.Stdout, dd.Stderr = &out, &out
	if err := dd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Place(context.Background(), name, dd.Process.Pid); err != nil {
		dd.Process.Kill()
		t.Fatal(err)
	}
	start := time.Now()
	io.WriteString(stdin, "go\n")
	if err := dd.Wait(); err != nil {
		t.Fatalf("dd: %v\n%s", err, out.String())
	}
	got := size / time.Since(start).Seconds()
	t.Logf("dd oflag=direct of %d MiB limited to 2 MiB/s: %.2f MiB/s", size>>20, got/(1<<20))
	if got < 0.9*rate || got > 1.1*rate {
		t.Fatalf("wrote at %.2f MiB/s, want 2 ± 10%%", got/(1<<20))
	}
}

func TestAMemoryLimitIsNeverSetBelowWhatTheCgroupUses(t *testing.T) {
	s, name := newShaper(t, cgroups.Options{})
	cmd, stdin, stdout := helper(t, s, name, "alloc:64")
	if line, err := stdout.ReadString('\n'); err != nil || line != "allocated\n" {
		t.Fatalf("the helper did not allocate: %q %v", line, err)
	}
	st, err := s.Apply(context.Background(), limit(name, resources.Vector{}.With(resources.Memory, 16<<20)))
	if err != nil {
		t.Fatal(err)
	}
	// Steps go on; the limit stays above the 64 MiB in use.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if st, err = s.Status(context.Background(), shapers.Target{Kind: cgroups.Kind, Name: name}); err != nil {
			t.Fatal(err)
		}
		if m := st.Resources.Get(resources.Memory); m != 0 && m < 64<<20 {
			t.Fatalf("memory limit %s is below the 64 MiB the cgroup uses", resources.FormatBytes(m))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.Converged || !strings.Contains(st.Message, "held at") {
		t.Fatalf("a limit held above its target should say so: %+v", st)
	}
	t.Logf("asked for 16 MiB with 64 MiB in use: %s", st.Message)
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the process was hurt by shaping: %v", err)
	}
	// With the memory freed the limit reaches its target.
	converge(t, s, name, 10*time.Second)
}

func TestLimitsChangeInBoundedSteps(t *testing.T) {
	var log syncWriter
	s, name := newShaper(t, cgroups.Options{MaxStep: 2, Log: &log})
	if _, err := s.Apply(context.Background(), limit(name, resources.Vector{}.With(resources.CPU, 0.1))); err != nil {
		t.Fatal(err)
	}
	var seen []float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := s.Status(context.Background(), shapers.Target{Kind: cgroups.Kind, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if c := st.Resources.Get(resources.CPU); len(seen) == 0 || c != seen[len(seen)-1] {
			seen = append(seen, c)
		}
		if st.Converged {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no convergence: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("CPU limits seen: %v", seen)
	for i := 1; i < len(seen); i++ {
		if seen[i-1] > 0 && seen[i-1]/seen[i] > 2.0001 {
			t.Fatalf("a step from %.3g to %.3g cores is more than a factor 2", seen[i-1], seen[i])
		}
	}
	if len(seen) < 3 {
		t.Fatalf("from no limit on this host to 0.1 cores should take several steps: %v", seen)
	}
	if !strings.Contains(log.String(), "(target 0.1): test") {
		t.Fatalf("steps are not logged with their reason:\n%s", log.String())
	}
}

func TestARestartedShaperReconcilesToTheDesiredState(t *testing.T) {
	state := t.TempDir()
	// The first shaper takes one step and stops: a crash mid-change.
	s, name := newShaper(t, cgroups.Options{StateDir: state, StepInterval: time.Hour})
	if _, err := s.Apply(context.Background(), limit(name, resources.Vector{}.With(resources.CPU, 0.1))); err != nil {
		t.Fatal(err)
	}
	st, err := s.Status(context.Background(), shapers.Target{Kind: cgroups.Kind, Name: name})
	if err != nil || st.Converged {
		t.Fatalf("one step should not reach 0.1 cores: %+v %v", st, err)
	}
	s.Close(context.Background())
	again, err := cgroups.New(cgroups.Options{Root: fmt.Sprintf("headstart-test-%d", os.Getpid()), StateDir: state, StepInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close(context.Background())
	converge(t, again, name, 10*time.Second)
}

func TestTheCgroupShaperRefusesWhatItCannotDo(t *testing.T) {
	s, name := newShaper(t, cgroups.Options{})
	tg := shapers.Target{Kind: cgroups.Kind, Name: name}
	for what, a := range map[string]shapers.Action{
		"replicas":           {Target: tg, Desired: shapers.Desired{Replicas: shapers.Int(2)}, Reason: "x"},
		"network bandwidth":  limit(name, resources.Vector{}.With(resources.NetBytes, 1e6)),
		"disk without disks": limit(name, resources.Vector{}.With(resources.DiskIOPS, 100)),
	} {
		if _, err := s.Apply(context.Background(), a); err == nil || !strings.Contains(err.Error(), "not supported") {
			t.Errorf("%s: %v, want ErrUnsupported", what, err)
		}
	}
	bad := shapers.Action{Target: shapers.Target{Kind: cgroups.Kind, Name: "../escape"}, Desired: shapers.Desired{Resources: &resources.Vector{}}, Reason: "x"}
	if _, err := s.Apply(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "invalid") {
		t.Errorf("a name outside the root: %v, want ErrInvalidAction", err)
	}
}

func TestTheCgroupShaperConforms(t *testing.T) {
	dir := t.TempDir()
	s, name := newShaper(t, cgroups.Options{Devices: []string{dir}})
	shapertest.RunResources(t, s, shapertest.ResourceOptions{
		Target: shapers.Target{Kind: cgroups.Kind, Name: name},
		First:  resources.Vector{}.With(resources.CPU, 0.5).With(resources.Memory, 256<<20).With(resources.DiskBytes, 4<<20).With(resources.DiskIOPS, 200),
		Second: resources.Vector{}.With(resources.CPU, 1.5).With(resources.Memory, 128<<20).With(resources.DiskBytes, 8<<20).With(resources.DiskIOPS, 400),
	})
}

// syncWriter is a log the shaper writes while the test reads it.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestStartRunsACommandInItsCgroupFromItsFirstInstruction: the command
// reads its own cgroup, and finds it is the target's.
func TestStartRunsACommandInItsCgroupFromItsFirstInstruction(t *testing.T) {
	s, name := newShaper(t, cgroups.Options{})
	var out strings.Builder
	cmd := exec.Command("cat", "/proc/self/cgroup")
	cmd.Stdout = &out
	if err := s.Start(context.Background(), name, cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	want := ":" + s.Group(name) + "\n"
	if !strings.Contains(out.String(), want) {
		t.Fatalf("cat's first read of /proc/self/cgroup does not show %s:\n%s", s.Group(name), out.String())
	}
}

// TestTheFavouredStageGetsItsIOPSFloorAndTheOthersShareTheRest: with the
// device's IOPS budget (400 here, set low so the throttle and not the disk
// decides), the stage asked a floor of 300 gets at least 300 IOPS while
// another stage writes as fast as it can beside it, which is throttled to
// an equal share of what is left; lowering the floor gives the IOPS back.
func TestTheFavouredStageGetsItsIOPSFloorAndTheOthersShareTheRest(t *testing.T) {
	dir := t.TempDir()
	const budget = 400
	s, favoured := newShaper(t, cgroups.Options{Devices: []string{dir}, DiskIOPSBudget: budget})
	other := favoured + "-other"
	ctx := context.Background()
	t.Cleanup(func() {
		if err := s.Remove(ctx, other); err != nil {
			t.Errorf("remove %s: %v", other, err)
		}
	})
	// writer starts dd in cgroup name, waiting for go() to write count 4 KiB blocks.
	writer := func(name string, count int) (goAhead func() float64) {
		cmd := exec.Command("sh", "-c", `read _; exec dd if=/dev/zero of="$1" bs=4k count=$2 oflag=direct`, "sh", filepath.Join(dir, name), strconv.Itoa(count))
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := s.Start(ctx, name, cmd); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		var start time.Time
		done := make(chan float64, 1)
		return func() float64 {
			start = time.Now()
			io.WriteString(stdin, "go\n")
			go func() {
				if err := cmd.Wait(); err != nil {
					t.Errorf("dd in %s: %v\n%s", name, err, out.String())
				}
				done <- float64(count) / time.Since(start).Seconds()
			}()
			return <-done
		}
	}
	capOf := func(name string) float64 {
		converge(t, s, name, 10*time.Second)
		st, err := s.Status(ctx, shapers.Target{Kind: cgroups.Kind, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return st.Resources.Get(resources.DiskIOPS)
	}

	otherRun := writer(other, 100) // known to the shaper from here: it gets its share
	favouredRun := writer(favoured, 700)
	if _, err := s.Apply(ctx, limit(favoured, resources.Vector{}.With(resources.DiskIOPS, 300))); err != nil {
		t.Fatal(err)
	}
	if f, o := capOf(favoured), capOf(other); f != 350 || o != 50 {
		t.Fatalf("caps: favoured %v, other %v; want 300 + 100/2 and 0 + 100/2", f, o)
	}
	rates := make(chan float64, 1)
	go func() { rates <- otherRun() }()
	fav := favouredRun()
	oth := <-rates
	t.Logf("budget %d IOPS, floor 300: the favoured stage wrote at %.0f IOPS, the other at %.0f", budget, fav, oth)
	if fav < 0.9*300 {
		t.Errorf("the favoured stage got %.0f IOPS, below its floor of 300", fav)
	}
	if oth > 1.15*50 {
		t.Errorf("the other stage got %.0f IOPS, above its share of 50", oth)
	}

	if _, err := s.Apply(ctx, limit(favoured, resources.Vector{}.With(resources.DiskIOPS, 20))); err != nil {
		t.Fatal(err)
	}
	if o := capOf(other); o != 190 {
		t.Fatalf("after the floor is lowered the other stage's cap is %v, want (400 - 20)/2", o)
	}
	again := writer(other, 380)()
	t.Logf("given back: the other stage writes at %.0f IOPS (cap 190)", again)
	if again < 0.85*190 || again > 1.15*190 {
		t.Errorf("the other stage wrote at %.0f IOPS once the floor was lowered, want 190 ± 15%%", again)
	}

	if _, err := s.Apply(ctx, limit(other, resources.Vector{}.With(resources.DiskIOPS, 390))); !errors.Is(err, shapers.ErrInvalidAction) {
		t.Errorf("floors above the budget: %v, want ErrInvalidAction", err)
	}
}

// TestMeasureIOPSReadsWhatTheDiskSustainsAndWhatAThrottleLeaves: the
// measured budget of the test's disk is a positive rate, and the same
// measure from inside a cgroup throttled to 100 IOPS finds about 100.
func TestMeasureIOPSReadsWhatTheDiskSustainsAndWhatAThrottleLeaves(t *testing.T) {
	dir := t.TempDir()
	iops, err := cgroups.MeasureIOPS(context.Background(), dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the test's disk sustains %.0f IOPS of 4 KiB direct random reads", iops)
	if iops < 150 {
		t.Fatalf("measured %.0f IOPS: a throttle of 100 below could not be told apart", iops)
	}
	s, name := newShaper(t, cgroups.Options{Devices: []string{dir}})
	if _, err := s.Apply(context.Background(), limit(name, resources.Vector{}.With(resources.DiskIOPS, 100))); err != nil {
		t.Fatal(err)
	}
	converge(t, s, name, 10*time.Second)
	cmd, _, stdout := helper(t, s, name, "measure:"+dir)
	line, err := stdout.ReadString('\n')
	if err != nil {
		t.Fatalf("the helper did not measure: %v", err)
	}
	cmd.Wait()
	var throttled float64
	if _, err := fmt.Sscan(line, &throttled); err != nil {
		t.Fatalf("helper said %q", line)
	}
	t.Logf("throttled to 100 IOPS, it measures %.0f", throttled)
	if throttled < 80 || throttled > 125 {
		t.Errorf("measured %.0f IOPS in a cgroup throttled to 100", throttled)
	}
}
