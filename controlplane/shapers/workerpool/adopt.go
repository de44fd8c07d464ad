package workerpool

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// record is what StateDir holds of a running replica: enough to know it
// again, as the same process, after this process died.
type record struct {
	Queue       string
	PID         int
	Start       string // the process's start time, from /proc/<pid>/stat (a PID can be reused)
	Args        []string
	Concurrency int
}

func (s *Shaper) recordPath(queue string, pid int) string {
	return filepath.Join(s.opts.StateDir, fmt.Sprintf("%s.%d.json", url.PathEscape(queue), pid))
}

// record writes r's record, if the shaper keeps state. Called with s.mu held.
func (s *Shaper) record(p *pool, r *replica) {
	if s.opts.StateDir == "" {
		return
	}
	start, _, err := procIdentity(r.pid)
	if err == nil {
		var b []byte
		b, err = json.Marshal(record{Queue: p.queue, PID: r.pid, Start: start, Args: r.cmd.Args, Concurrency: r.concurrency})
		if err == nil {
			err = os.WriteFile(s.recordPath(p.queue, r.pid), b, 0o600)
		}
	}
	if err != nil {
		fmt.Fprintf(s.opts.Output, "workerpool: replica %d of %s is not recorded, so a restarted control worker will not adopt it: %v\n", r.pid, p.queue, err)
	}
}

func (s *Shaper) unrecord(p *pool, r *replica) {
	if s.opts.StateDir != "" {
		_ = os.Remove(s.recordPath(p.queue, r.pid))
	}
}

// adopt takes over the recorded replicas that still run, as the same
// process with the same command line; each pool wants as many replicas as
// it adopted until an action says otherwise. Records of processes gone are
// removed; those of live processes that are not the replica they name are
// left to whoever wrote them.
func (s *Shaper) adopt() {
	files, _ := filepath.Glob(filepath.Join(s.opts.StateDir, "*.json"))
	slices.Sort(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		var rec record
		if err != nil || json.Unmarshal(b, &rec) != nil || rec.PID <= 0 {
			_ = os.Remove(f)
			continue
		}
		start, args, err := procIdentity(rec.PID)
		if err != nil {
			_ = os.Remove(f) // gone
			continue
		}
		if start != rec.Start || !slices.Equal(args, rec.Args) {
			continue
		}
		p := s.pool(rec.Queue)
		r := &replica{asked: time.Now(), pid: rec.PID, concurrency: rec.Concurrency, running: true, stop: make(chan struct{}), exited: make(chan struct{})}
		p.replicas = append(p.replicas, r)
		p.desired++
		if p.concurrency != rec.Concurrency {
			p.concurrency = rec.Concurrency
		}
		fmt.Fprintf(s.opts.Output, "workerpool: adopted replica %d of %s\n", rec.PID, rec.Queue)
		go func() {
			defer close(r.exited)
			s.supervise(p, r, watchExit(rec.PID, start))
		}()
	}
}

// watchExit closes the returned channel once the process pid, started at
// start, is gone: an adopted replica is not this process's child, so it
// cannot be waited for.
func watchExit(pid int, start string) <-chan struct{} {
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		for {
			if s, _, err := procIdentity(pid); err != nil || s != start {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	return gone
}

// procIdentity reads a live process's start time and command line. A
// zombie counts as gone.
func procIdentity(pid int) (start string, args []string, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", nil, err
	}
	// pid (comm) state ppid … starttime is field 22; comm may hold spaces.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return "", nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 || fields[0] == "Z" {
		return "", nil, fmt.Errorf("process %d has exited", pid)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return "", nil, err
	}
	return fields[19], strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00"), nil
}
