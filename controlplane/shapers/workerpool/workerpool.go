// Package workerpool is a shaper that runs real Temporal workers for a stage's
// task queue as child processes, so replicas run in parallel: it starts and
// stops them to the desired count, replaces those that die, waits a
// configurable start-up delay (standing in for a pod's cold start) before a
// new one starts, and changes their concurrency by restarting them.
package workerpool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/headstart-dev/headstart/controlplane/shapers"
)

// Kind is the target kind this shaper manages; a target's Name is the task queue.
const Kind = "workerpool"

// Options configure a Shaper.
type Options struct {
	// Command returns the command that runs one worker polling taskQueue
	// with the given concurrency, until SIGTERM. Required.
	Command func(taskQueue string, concurrency int) *exec.Cmd
	// StartupDelay before a new replica's process starts, standing in for a
	// pod's cold start. If not set, none.
	StartupDelay time.Duration
	// Concurrency of a replica until an action sets it. If not set, 10.
	Concurrency int
	// StopTimeout is how long a stopping replica may take before it is
	// killed. If not set, 10 s.
	StopTimeout time.Duration
	// Output receives the children's stdout and stderr. If not set, discarded.
	// With StateDir, make it an *os.File (os.Stdout, a log file), which the
	// children hold themselves: a pipe to this process would close with it.
	Output io.Writer
	// StateDir, if set, is a folder where the shaper records each replica
	// (PID, start time, command line), so that a shaper started after this
	// one's process died (a restarted control worker) adopts the replicas
	// still running instead of starting more. Replicas then outlive a crash
	// of the shaper's process and keep serving through its restart:
	// stopping them would lose the tasks their polls were being handed.
	// Close still stops them. If not set, replicas get SIGTERM when the
	// shaper's process dies.
	StateDir string
}

// ErrNoCommand is returned by New without Options.Command.
var ErrNoCommand = errors.New("workerpool: Options.Command is required")

// Shaper runs worker pools. Safe for concurrent use; Close stops every child.
type Shaper struct {
	opts   Options
	mu     sync.Mutex
	pools  map[string]*pool
	closed bool
}

var (
	_ shapers.Shaper = (*Shaper)(nil)
	_ shapers.Closer = (*Shaper)(nil)
)

type pool struct {
	queue       string
	desired     int
	concurrency int
	replicas    []*replica
	spent       time.Duration // lifetimes of replicas that have exited
}

type replica struct {
	asked       time.Time // when it was asked for: its cold start counts
	cmd         *exec.Cmd
	pid         int // its process, once started (or adopted)
	concurrency int
	running     bool // its process started and has not exited
	stop        chan struct{}
	exited      chan struct{}
	stopping    bool
}

// New returns a worker-pool shaper.
func New(opts Options) (*Shaper, error) {
	if opts.Command == nil {
		return nil, ErrNoCommand
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 10
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 10 * time.Second
	}
	if opts.Output == nil {
		opts.Output = io.Discard
	}
	s := &Shaper{opts: opts, pools: map[string]*pool{}}
	if opts.StateDir != "" {
		if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("workerpool: state dir: %w", err)
		}
		s.adopt()
	}
	return s, nil
}

func (s *Shaper) pool(queue string) *pool {
	p := s.pools[queue]
	if p == nil {
		p = &pool{queue: queue, concurrency: s.opts.Concurrency}
		s.pools[queue] = p
	}
	return p
}

// Status implements shapers.Shaper.
func (s *Shaper) Status(_ context.Context, t shapers.Target) (shapers.Status, error) {
	if t.Kind != Kind {
		return shapers.Status{}, fmt.Errorf("%w: %s (this shaper runs %s targets)", shapers.ErrUnknownTarget, t, Kind)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status(t, s.pool(t.Name)), nil
}

func (s *Shaper) status(t shapers.Target, p *pool) shapers.Status {
	ready, current := 0, 0
	for _, r := range p.replicas {
		if r.stopping {
			continue
		}
		current++
		if r.running && r.concurrency == p.concurrency {
			ready++
		}
	}
	st := shapers.Status{Target: t, Replicas: p.desired, Ready: ready, Concurrency: p.concurrency}
	st.Converged = ready == p.desired && current == p.desired && s.stoppingCount(p) == 0
	if !st.Converged {
		st.Message = fmt.Sprintf("%d of %d replicas ready", ready, p.desired)
	}
	return st
}

func (s *Shaper) stoppingCount(p *pool) int {
	n := 0
	for _, r := range p.replicas {
		if r.stopping {
			n++
		}
	}
	return n
}

// Apply implements shapers.Shaper: it sets the pool's replica count and
// concurrency and starts or stops processes towards them. Resources are not
// something a worker pool can change: ErrUnsupported.
func (s *Shaper) Apply(_ context.Context, a shapers.Action) (shapers.Status, error) {
	if err := a.Validate(); err != nil {
		return shapers.Status{}, err
	}
	if a.Target.Kind != Kind {
		return shapers.Status{}, fmt.Errorf("%w: %s (this shaper runs %s targets)", shapers.ErrUnknownTarget, a.Target, Kind)
	}
	if a.Desired.Resources != nil {
		return shapers.Status{}, fmt.Errorf("%w: %s: a worker pool's replicas have no resources to set", shapers.ErrUnsupported, a.Target)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return shapers.Status{}, errors.New("workerpool: shaper closed")
	}
	p := s.pool(a.Target.Name)
	if a.DryRun {
		st := s.status(a.Target, p)
		if a.Desired.Replicas != nil {
			st.Replicas = *a.Desired.Replicas
		}
		if a.Desired.Concurrency != nil {
			st.Concurrency = *a.Desired.Concurrency
		}
		st.Converged = false
		st.Message = "dry run: nothing changed"
		return st, nil
	}
	if a.Desired.Replicas != nil {
		p.desired = *a.Desired.Replicas
	}
	if a.Desired.Concurrency != nil {
		p.concurrency = *a.Desired.Concurrency
	}
	s.reconcile(p)
	return s.status(a.Target, p), nil
}

// reconcile starts and stops replicas towards the desired count, replacing
// those of an older concurrency as new ones come up. Called with s.mu held.
func (s *Shaper) reconcile(p *pool) {
	if s.closed {
		return
	}
	var live, stale []*replica
	for _, r := range p.replicas {
		switch {
		case r.stopping:
		case r.concurrency != p.concurrency:
			stale = append(stale, r)
		default:
			live = append(live, r)
		}
	}
	// Too many: stop the newest first.
	for len(live) > p.desired {
		s.stopReplica(live[len(live)-1])
		live = live[:len(live)-1]
	}
	// Too few of the current concurrency: start them (replicas of an older
	// concurrency keep working meanwhile).
	for n := len(live); n < p.desired; n++ {
		s.startReplica(p)
	}
	// Keep only as many old replicas as the new ones cannot yet stand in for.
	ready := 0
	for _, r := range live {
		if r.running {
			ready++
		}
	}
	for keep := max(p.desired-ready, 0); len(stale) > keep; stale = stale[1:] {
		s.stopReplica(stale[0])
	}
}

func (s *Shaper) startReplica(p *pool) {
	r := &replica{asked: time.Now(), concurrency: p.concurrency, stop: make(chan struct{}), exited: make(chan struct{})}
	p.replicas = append(p.replicas, r)
	go s.run(p, r)
}

// run waits out the start-up delay, runs the process, and on its exit
// removes it and reconciles (replacing it if it died).
func (s *Shaper) run(p *pool, r *replica) {
	defer close(r.exited)
	if s.opts.StartupDelay > 0 {
		select {
		case <-time.After(s.opts.StartupDelay):
		case <-r.stop:
			s.forget(p, r)
			return
		}
	}
	cmd := s.opts.Command(p.queue, r.concurrency)
	cmd.Stdout, cmd.Stderr = s.opts.Output, s.opts.Output
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if s.opts.StateDir == "" {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM // children never outlive the shaper's process
	} else {
		cmd.SysProcAttr.Setpgid = true // a Ctrl-C to the control worker leaves them to Close
	}
	s.mu.Lock()
	stopped := r.stopping
	var err error
	if !stopped {
		err = cmd.Start()
		if err == nil {
			r.cmd, r.pid, r.running = cmd, cmd.Process.Pid, true
			s.record(p, r)
			s.reconcile(p) // a new replica is up: an old one may go
		}
	}
	s.mu.Unlock()
	if stopped {
		s.forget(p, r)
		return
	}
	if err != nil {
		fmt.Fprintf(s.opts.Output, "workerpool: start replica for %s: %v\n", p.queue, err)
		time.Sleep(time.Second) // do not spin on a command that cannot start
		s.forget(p, r)
		return
	}
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	s.supervise(p, r, waited)
}

// supervise waits for a running replica to exit, or stops it when asked
// (SIGTERM, then SIGKILL after StopTimeout), then forgets it.
func (s *Shaper) supervise(p *pool, r *replica, exited <-chan struct{}) {
	select {
	case <-exited:
	case <-r.stop:
		_ = syscall.Kill(r.pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(s.opts.StopTimeout):
			_ = syscall.Kill(r.pid, syscall.SIGKILL)
			<-exited
		}
	}
	s.unrecord(p, r)
	s.forget(p, r)
}

// forget removes an exited replica and reconciles, which replaces it if the
// pool still wants it.
func (s *Shaper) forget(p *pool, r *replica) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.running = false
	for i, x := range p.replicas {
		if x == r {
			p.replicas = append(p.replicas[:i], p.replicas[i+1:]...)
			p.spent += time.Since(r.asked)
			break
		}
	}
	s.reconcile(p)
}

func (s *Shaper) stopReplica(r *replica) {
	if !r.stopping {
		r.stopping = true
		close(r.stop)
	}
}

// Close stops every replica and waits for them to exit (or ctx to end).
func (s *Shaper) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	var all []*replica
	names := make([]string, 0, len(s.pools))
	for n := range s.pools {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, r := range s.pools[n].replicas {
			s.stopReplica(r)
			all = append(all, r)
		}
	}
	s.mu.Unlock()
	for _, r := range all {
		select {
		case <-r.exited:
		case <-ctx.Done():
			return fmt.Errorf("workerpool: close: %w", ctx.Err())
		}
	}
	return nil
}

// WorkerSeconds is the cost of a pool so far: the lifetimes of its replicas
// summed, each from when it was asked for (its start-up delay counts, as a
// pod's cold start is paid for) until it exited, or until now.
func (s *Shaper) WorkerSeconds(queue string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pools[queue]
	if p == nil {
		return 0
	}
	total := p.spent
	for _, r := range p.replicas {
		total += time.Since(r.asked)
	}
	return total.Seconds()
}

// PIDs returns the process IDs of a pool's running replicas, oldest first
// (for tests and status pages).
func (s *Shaper) PIDs(queue string) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pids []int
	for _, r := range s.pool(queue).replicas {
		if r.running && r.pid > 0 {
			pids = append(pids, r.pid)
		}
	}
	return pids
}
