// Package dockertest starts a real Docker engine (Debian's docker.io; `make
// docker` installs it) for a test, on a socket of its own, and stops it
// afterwards leaving the host as it found it: the iptables rules and the
// IPv4 forwarding switch dockerd changed are restored, its cgroups and its
// network namespace mount are removed, and what is left over fails the test.
//
// Images and build caches live in the tool cache (HEADSTART_CACHE, default
// ~/.cache/headstart), keyed by the engine's version, so the next run reuses
// them; one engine at a time uses them (a file lock).
package dockertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/headstart-dev/headstart/internal/testproc"
)

// Engine is a running dockerd.
type Engine struct {
	// Host is its DOCKER_HOST, unix:///….
	Host string
}

// Env is the environment of a docker or compose command talking to the engine.
func (e *Engine) Env() []string {
	return append(os.Environ(), "DOCKER_HOST="+e.Host)
}

// Start starts dockerd and stops it when the test ends. A missing binary,
// or a machine where it cannot run (not root), fails the test with what to do.
func Start(t testing.TB) *Engine {
	t.Helper()
	bin, err := exec.LookPath("dockerd")
	if err != nil {
		t.Fatalf("dockertest: no dockerd (%v): run `make docker` (apt-get install docker.io docker-compose debootstrap)", err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("dockertest: dockerd needs root")
	}
	version, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("dockertest: dockerd --version: %v", err)
	}
	v := regexp.MustCompile(`\d+\.\d+`).FindString(string(version))
	data := filepath.Join(cacheDir(), "docker-"+v)
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	unlock := lock(t, data+".lock")

	// The exec root holds the socket: a short path (sun_path is 108 bytes).
	run, err := os.MkdirTemp("", "hsd")
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t)
	sock := filepath.Join(run, "docker.sock")
	p, err := testproc.Start("dockerd", bin, "--data-root", data, "--exec-root", filepath.Join(run, "exec"),
		"--pidfile", filepath.Join(run, "docker.pid"), "-H", "unix://"+sock,
		"--storage-driver", "overlay2", "--bridge", "none")
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{Host: "unix://" + sock}
	t.Cleanup(func() {
		p.Stop(time.Minute)
		cleanUp(t, run, before)
		unlock()
	})
	if err := ping(sock, p, time.Minute); err != nil {
		t.Fatalf("dockertest: %v\n%s", err, p.Log.Tail(4096))
	}
	return e
}

func cacheDir() string {
	if d := os.Getenv("HEADSTART_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "headstart")
	}
	return filepath.Join(os.TempDir(), "headstart-cache")
}

// lock holds an exclusive lock on path until the returned func runs,
// waiting for another engine using the same data to stop.
func lock(t testing.TB, path string) func() {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dockertest: lock %s: %v", path, err)
		}
	case <-time.After(20 * time.Minute):
		t.Fatalf("dockertest: %s is held by another engine for over 20 minutes", path)
	}
	return func() { f.Close() }
}

// ping waits for the engine's API to answer on sock.
func ping(sock string, p *testproc.Proc, within time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	deadline := time.Now().Add(within)
	for {
		resp, err := hc.Get("http://docker/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := p.Exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd did not answer on %s within %v", sock, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// state is what dockerd changes on the host.
type state struct {
	iptables  map[string]string // table → iptables-save -t table
	ipForward string
}

var tables = []string{"filter", "nat"}

func snapshot(t testing.TB) state {
	t.Helper()
	s := state{iptables: map[string]string{}}
	for _, table := range tables {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			t.Fatalf("dockertest: iptables-save -t %s: %v (install iptables)", table, err)
		}
		s.iptables[table] = string(out)
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	s.ipForward = string(b)
	return s
}

// rules is an iptables-save dump without its comments and counters.
func rules(dump string) string {
	var b strings.Builder
	for _, l := range strings.Split(dump, "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, ":") { // ":CHAIN POLICY [packets:bytes]"
			if i := strings.LastIndexByte(l, '['); i > 0 {
				l = strings.TrimSpace(l[:i])
			}
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

// cleanUp undoes what a stopped dockerd left: its rules, the forwarding
// switch, its network namespace mount and cgroups. What the engine should
// have removed itself (rules of networks still there) fails the test after
// it is undone.
func cleanUp(t testing.TB, run string, before state) {
	for _, table := range tables {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			t.Errorf("dockertest: iptables-save -t %s: %v", table, err)
			continue
		}
		if got, want := rules(string(out)), rules(before.iptables[table]); got != want {
			// dockerd keeps its own chains when it stops; rules of a network
			// or a published port mean something was not taken down.
			if left := leftover(got, want); strings.Contains(left, "br-") || strings.Contains(left, "DNAT") {
				t.Errorf("dockertest: iptables %s holds rules of networks or ports still there:\n%s", table, left)
			}
			cmd := exec.Command("iptables-restore", "-T", table)
			cmd.Stdin = strings.NewReader(before.iptables[table])
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("dockertest: restore iptables %s: %v: %s", table, err, out)
			}
		}
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(before.ipForward), 0o644); err != nil {
		t.Errorf("dockertest: restore ip_forward: %v", err)
	}
	netns := filepath.Join(run, "exec", "netns", "default")
	if err := syscall.Unmount(netns, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
		t.Errorf("dockertest: unmount %s: %v", netns, err)
	}
	if err := os.RemoveAll(run); err != nil {
		t.Errorf("dockertest: %v", err)
	}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/docker")
	for _, d := range dirs {
		if err := removeCgroup(d); err != nil {
			t.Errorf("dockertest: a container's cgroup is left in %s: %v", d, err)
		}
	}
}

// leftover is the lines of got that want does not have.
func leftover(got, want string) string {
	have := map[string]bool{}
	for _, l := range strings.Split(want, "\n") {
		have[l] = true
	}
	var b bytes.Buffer
	for _, l := range strings.Split(got, "\n") {
		if !have[l] {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// removeCgroup removes an empty cgroup tree, children first.
func removeCgroup(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroup(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return os.Remove(dir)
}
