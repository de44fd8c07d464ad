// Package traces reads recorded workflow executions — Nextflow trace files
// and WfCommons WfFormat instances — into the tasks forecasting.Replay sizes.
package traces

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/headstart-dev/headstart/controlplane/forecasting"
	"github.com/headstart-dev/headstart/resources"
)

// ErrFormat is wrapped by every error about a malformed trace.
var ErrFormat = errors.New("malformed trace")

// ErrNoMemory is returned for a trace that records no task's memory.
var ErrNoMemory = errors.New("trace records no memory use")

// Trace is one recorded execution.
type Trace struct {
	Name   string // the file's base name without extension
	Format string // "nextflow" or "wfcommons"
	Tasks  []forecasting.TraceTask
	// Skipped counts tasks left out for lack of a memory or runtime figure.
	Skipped int
}

// ReadFile reads a trace, choosing the format by extension: .json is
// WfCommons, anything else a Nextflow trace (CSV or tab-separated).
func ReadFile(path string) (*Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	var tr *Trace
	if strings.EqualFold(filepath.Ext(path), ".json") {
		tr, err = ReadWfCommons(f, name)
	} else {
		tr, err = ReadNextflow(f, name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tr, nil
}

// ReadNextflow reads a Nextflow trace file. Each COMPLETED row with a
// non-zero peak_rss is a task of stage `process`: submitted at `submit`, using
// `peak_rss` for `realtime`, completing at `complete`, having asked for
// `memory` and `time`; its rates are `%cpu` / 100 cores and
// (read_bytes + write_bytes) / realtime. Its input size is `rchar`, the bytes it read: Nextflow
// records no input size, and rchar approximates the size of the input files a
// scheduler knows at submission.
func ReadNextflow(r io.Reader, name string) (*Trace, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: no header: %v", ErrFormat, err)
	}
	if len(header) == 1 && strings.Contains(header[0], "\t") {
		return nil, fmt.Errorf("%w: tab-separated traces: convert to CSV", ErrFormat)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(h)] = i
	}
	for _, c := range []string{"process", "status", "submit", "complete", "realtime", "peak_rss"} {
		if _, ok := col[c]; !ok {
			return nil, fmt.Errorf("%w: no %q column", ErrFormat, c)
		}
	}
	tr := &Trace{Name: name, Format: "nextflow"}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrFormat, line, err)
		}
		get := func(c string) string {
			if i, ok := col[c]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return "-"
		}
		if get("status") != "COMPLETED" {
			tr.Skipped++
			continue
		}
		if p := get("process"); p == "" || p == "-" {
			return nil, fmt.Errorf("%w: line %d: a completed task without a process", ErrFormat, line)
		}
		num := func(c string) (float64, bool, error) {
			v := get(c)
			if v == "-" || v == "" {
				return 0, false, nil
			}
			x, err := strconv.ParseFloat(v, 64)
			if err != nil || x < 0 {
				return 0, false, fmt.Errorf("%w: line %d: %s = %q", ErrFormat, line, c, v)
			}
			return x, true, nil
		}
		var vals [10]float64
		var have [10]bool
		for i, c := range []string{"submit", "complete", "realtime", "peak_rss", "memory", "time", "rchar", "%cpu", "read_bytes", "write_bytes"} {
			if vals[i], have[i], err = num(c); err != nil {
				return nil, err
			}
		}
		if !have[0] || !have[3] || !have[2] || vals[3] == 0 { // a zero peak was not measured
			tr.Skipped++
			continue
		}
		submit := time.UnixMilli(int64(vals[0]))
		// Nextflow records complete to the second: never before submit + realtime.
		complete := submit.Add(time.Duration(vals[2]) * time.Millisecond)
		if have[1] && time.UnixMilli(int64(vals[1])).After(complete) {
			complete = time.UnixMilli(int64(vals[1]))
		}
		tr.Tasks = append(tr.Tasks, forecasting.TraceTask{
			Task: forecasting.Task{
				ID: get("task_id"), Stage: get("process"), WorkflowType: name,
				InputBytes: vals[6], RequestMemory: vals[4], RequestRuntime: time.Duration(vals[5]) * time.Millisecond,
				Submit: submit,
			},
			Usage: forecasting.Usage{PeakMemory: vals[3], Runtime: time.Duration(vals[2]) * time.Millisecond,
				Rates: rates(vals[7]/100, vals[8]+vals[9], vals[2]/1000)},
			Complete: complete,
		})
	}
	if len(tr.Tasks) == 0 {
		return nil, ErrNoMemory
	}
	return tr, nil
}

// rates are the average CPU cores and disk bytes per second of a task.
func rates(cores, diskBytes, seconds float64) resources.Vector {
	v := resources.Vector{}.With(resources.CPU, cores)
	if seconds > 0 {
		v = v.With(resources.DiskBytes, diskBytes/seconds)
	}
	return v
}

// wfFormat is the part of WfFormat (schema 1.4/1.5) a replay needs.
type wfFormat struct {
	Workflow struct {
		Specification struct {
			Tasks []specTask `json:"tasks"`
			Files []struct {
				ID          string  `json:"id"`
				SizeInBytes float64 `json:"sizeInBytes"`
			} `json:"files"`
		} `json:"specification"`
		Execution struct {
			Machines []struct {
				CPU struct {
					CoreCount int `json:"coreCount"`
				} `json:"cpu"`
			} `json:"machines"`
			Tasks []struct {
				ID               string   `json:"id"`
				RuntimeInSeconds float64  `json:"runtimeInSeconds"`
				MemoryInBytes    *float64 `json:"memoryInBytes"`
				AvgCPU           float64  `json:"avgCPU"`
				ReadBytes        float64  `json:"readBytes"`
				WrittenBytes     float64  `json:"writtenBytes"`
			} `json:"tasks"`
		} `json:"execution"`
	} `json:"workflow"`
}

// stageSuffix is a task's instance number at the end of its name.
var stageSuffix = regexp.MustCompile(`_(ID)?\d+$`)

// StageOf returns the stage of a WfCommons task name: the name without a
// trailing instance number ("mProject_ID0000001" → "mProject").
func StageOf(name string) string { return stageSuffix.ReplaceAllString(name, "") }

// ReadWfCommons reads a WfCommons instance. WfFormat records runtimes but not
// when tasks ran, so the execution is replayed on the recorded machines'
// cores (one task per core; 1 if none are recorded): a task is submitted when
// its last parent completes and starts when a core is free, in the order of
// the instance's task list, running for its recorded runtime. Its input size is the sum of its input files' sizes; it has no
// user request. Tasks without a recorded memory are left out.
func ReadWfCommons(r io.Reader, name string) (*Trace, error) {
	var wf wfFormat
	if err := json.NewDecoder(r).Decode(&wf); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrFormat, jsonProblem(err))
	}
	spec := wf.Workflow.Specification
	if len(spec.Tasks) == 0 {
		return nil, fmt.Errorf("%w: no workflow.specification.tasks", ErrFormat)
	}
	fileSize := map[string]float64{}
	for _, f := range spec.Files {
		fileSize[f.ID] = f.SizeInBytes
	}

	execs := map[string]exec{}
	for _, t := range wf.Workflow.Execution.Tasks {
		if t.RuntimeInSeconds < 0 {
			return nil, fmt.Errorf("%w: task %s: negative runtime", ErrFormat, t.ID)
		}
		execs[t.ID] = exec{t.RuntimeInSeconds, t.MemoryInBytes, rates(t.AvgCPU/100, t.ReadBytes+t.WrittenBytes, t.RuntimeInSeconds)}
	}
	finish, err := schedule(spec.Tasks, execs, cores(wf))
	if err != nil {
		return nil, err
	}
	epoch := time.Unix(0, 0)
	tr := &Trace{Name: name, Format: "wfcommons"}
	for _, t := range spec.Tasks {
		if StageOf(t.Name) == "" {
			return nil, fmt.Errorf("%w: task %q has no name", ErrFormat, t.ID)
		}
		e, ok := execs[t.ID]
		if !ok || e.memory == nil || *e.memory <= 0 {
			tr.Skipped++
			continue
		}
		end := finish[t.ID]
		var input float64
		for _, f := range t.InputFiles {
			input += fileSize[f]
		}
		runtime := time.Duration(e.runtime * float64(time.Second))
		complete := epoch.Add(time.Duration(end * float64(time.Second)))
		tr.Tasks = append(tr.Tasks, forecasting.TraceTask{
			Task: forecasting.Task{
				ID: t.ID, Stage: StageOf(t.Name), WorkflowType: name, InputBytes: input,
				Submit: complete.Add(-runtime),
			},
			Usage:    forecasting.Usage{PeakMemory: *e.memory, Runtime: runtime, Rates: e.rates},
			Complete: complete,
		})
	}
	if len(tr.Tasks) == 0 {
		return nil, ErrNoMemory
	}
	sort.SliceStable(tr.Tasks, func(i, j int) bool { return tr.Tasks[i].Submit.Before(tr.Tasks[j].Submit) })
	return tr, nil
}

// cores is the total core count of the recorded machines, at least 1.
func cores(wf wfFormat) int {
	n := 0
	for _, m := range wf.Workflow.Execution.Machines {
		if m.CPU.CoreCount > 0 {
			n += min(m.CPU.CoreCount, 1<<20) // no sum of declared cores overflows
		}
	}
	return max(n, 1)
}

type specTask = struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Parents    []string `json:"parents"`
	InputFiles []string `json:"inputFiles"`
}

// schedule list-schedules the tasks on n cores and returns each one's finish
// time in seconds: the earliest-ready task (ties in list order) takes the
// earliest free core once its parents have finished.
func schedule[E interface{ runtimeSeconds() float64 }](tasks []specTask, execs map[string]E, n int) (map[string]float64, error) {
	index := map[string]int{}
	for i, t := range tasks {
		index[t.ID] = i
	}
	waiting := make([]int, len(tasks))
	children := make([][]int, len(tasks))
	ready := make([]float64, len(tasks))
	for i, t := range tasks {
		for _, p := range t.Parents {
			j, ok := index[p]
			if !ok {
				return nil, fmt.Errorf("%w: task %s: unknown parent %s", ErrFormat, t.ID, p)
			}
			waiting[i]++
			children[j] = append(children[j], i)
		}
	}
	var queue []int // ready tasks
	for i := range tasks {
		if waiting[i] == 0 {
			queue = append(queue, i)
		}
	}
	// More cores than tasks are never used: an instance that declares
	// billions costs no more than one with a core per task.
	n = max(1, min(n, len(tasks)))
	free := make([]float64, n) // when each core is next free
	finish := map[string]float64{}
	for len(queue) > 0 {
		best := 0
		for k, i := range queue {
			if ready[i] < ready[queue[best]] || (ready[i] == ready[queue[best]] && i < queue[best]) {
				best = k
			}
		}
		i := queue[best]
		queue = append(queue[:best], queue[best+1:]...)
		core := 0
		for c := range free {
			if free[c] < free[core] {
				core = c
			}
		}
		start := max(ready[i], free[core])
		var rt float64
		if e, ok := execs[tasks[i].ID]; ok {
			rt = e.runtimeSeconds()
		}
		end := start + rt
		free[core] = end
		finish[tasks[i].ID] = end
		for _, c := range children[i] {
			ready[c] = max(ready[c], end)
			if waiting[c]--; waiting[c] == 0 {
				queue = append(queue, c)
			}
		}
	}
	if len(finish) != len(tasks) {
		return nil, fmt.Errorf("%w: dependency cycle among %d tasks", ErrFormat, len(tasks)-len(finish))
	}
	return finish, nil
}

type exec struct {
	runtime float64
	memory  *float64
	rates   resources.Vector
}

func (e exec) runtimeSeconds() float64 { return e.runtime }

// jsonProblem says what is wrong with a JSON document in its own terms: the
// field and what it holds, not the Go types it was decoded into.
func jsonProblem(err error) string {
	var typ *json.UnmarshalTypeError
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "the document"
		}
		return fmt.Sprintf("%s: a JSON %s where %s belongs", field, typ.Value, jsonKind(typ.Type))
	case errors.As(err, &syn):
		return fmt.Sprintf("not JSON at byte %d: %v", syn.Offset, syn)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the JSON ends early"
	}
	return err.Error()
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.String:
		return "text"
	case reflect.Bool:
		return "true or false"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	default:
		return "a number"
	}
}
