package traces_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headstart-dev/headstart/controlplane/internal/traces"
	"github.com/headstart-dev/headstart/internal/temporaltest"
)

const nextflow = `task_id,process,status,submit,start,complete,realtime,peak_rss,memory,time,rchar
1,align,COMPLETED,1000,2000,5000,3000,2000000,4000000,60000,100
2,align,FAILED,1000,2000,5000,3000,2000000,4000000,60000,100
3,sort,COMPLETED,6000,6000,9000,3000,-,4000000,60000,100
4,sort,COMPLETED,6000,6500,9000,2500,1500000,-,-,-
`

func TestReadNextflowKeepsCompletedTasksWithMemory(t *testing.T) {
	tr, err := traces.ReadNextflow(strings.NewReader(nextflow), "tiny")
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Tasks) != 2 || tr.Skipped != 2 {
		t.Fatalf("%d tasks, %d skipped; want 2 and 2 (one failed, one without peak_rss)", len(tr.Tasks), tr.Skipped)
	}
	a := tr.Tasks[0]
	if a.Stage != "align" || a.PeakMemory != 2e6 || a.RequestMemory != 4e6 || a.Runtime != 3*time.Second ||
		a.RequestRuntime != time.Minute || a.InputBytes != 100 || !a.Submit.Equal(time.UnixMilli(1000)) || !a.Complete.Equal(time.UnixMilli(5000)) {
		t.Fatalf("first task = %+v", a)
	}
	if b := tr.Tasks[1]; b.RequestMemory != 0 || b.InputBytes != 0 {
		t.Fatalf("'-' should read as not given: %+v", b)
	}
}

func TestReadNextflowRejectsMalformedInput(t *testing.T) {
	for name, in := range map[string]string{
		"no columns":     "a,b\n1,2\n",
		"bad number":     "process,status,submit,complete,realtime,peak_rss\nx,COMPLETED,abc,1,1,1\n",
		"negative value": "process,status,submit,complete,realtime,peak_rss\nx,COMPLETED,1,1,1,-5\n",
		"empty":          "",
	} {
		if _, err := traces.ReadNextflow(strings.NewReader(in), name); !errors.Is(err, traces.ErrFormat) {
			t.Errorf("%s: error %v, want ErrFormat", name, err)
		}
	}
	if _, err := traces.ReadNextflow(strings.NewReader("process,status,submit,complete,realtime,peak_rss\n"), "x"); !errors.Is(err, traces.ErrNoMemory) {
		t.Errorf("no tasks: error %v, want ErrNoMemory", err)
	}
}

const wfcommons = `{"workflow": {
  "specification": {
    "tasks": [
      {"name": "split_ID000001", "id": "split_ID000001", "parents": [], "inputFiles": ["in"]},
      {"name": "work_ID000002", "id": "work_ID000002", "parents": ["split_ID000001"], "inputFiles": ["p1"]},
      {"name": "work_ID000003", "id": "work_ID000003", "parents": ["split_ID000001"], "inputFiles": ["p2"]},
      {"name": "merge_ID000004", "id": "merge_ID000004", "parents": ["work_ID000002", "work_ID000003"], "inputFiles": []}
    ],
    "files": [{"id": "in", "sizeInBytes": 1000}, {"id": "p1", "sizeInBytes": 10}, {"id": "p2", "sizeInBytes": 20}]
  },
  "execution": {
    "machines": [{"cpu": {"coreCount": 1}}],
    "tasks": [
      {"id": "split_ID000001", "runtimeInSeconds": 10, "memoryInBytes": 100},
      {"id": "work_ID000002", "runtimeInSeconds": 5, "memoryInBytes": 200},
      {"id": "work_ID000003", "runtimeInSeconds": 7, "memoryInBytes": 300},
      {"id": "merge_ID000004", "runtimeInSeconds": 1}
    ]
  }
}}`

func TestReadWfCommonsSchedulesOnTheRecordedCores(t *testing.T) {
	tr, err := traces.ReadWfCommons(strings.NewReader(wfcommons), "tiny")
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Tasks) != 3 || tr.Skipped != 1 {
		t.Fatalf("%d tasks, %d skipped; want 3 and 1 (merge has no memory)", len(tr.Tasks), tr.Skipped)
	}
	// One core: split 0–10 s, work 2 at 10–15 s, work 3 at 15–22 s.
	want := []struct {
		stage         string
		submit, input float64
	}{{"split", 0, 1000}, {"work", 10, 10}, {"work", 15, 20}}
	for i, w := range want {
		got := tr.Tasks[i]
		if got.Stage != w.stage || got.Submit.Sub(time.Unix(0, 0)).Seconds() != w.submit || got.InputBytes != w.input {
			t.Errorf("task %d = stage %s submit %v input %v; want %+v", i, got.Stage, got.Submit.Sub(time.Unix(0, 0)), got.InputBytes, w)
		}
	}
}

func TestReadWfCommonsRejectsCyclesAndUnknownParents(t *testing.T) {
	cycle := strings.Replace(wfcommons, `"parents": []`, `"parents": ["merge_ID000004"]`, 1)
	if _, err := traces.ReadWfCommons(strings.NewReader(cycle), "x"); !errors.Is(err, traces.ErrFormat) {
		t.Errorf("cycle: error %v, want ErrFormat", err)
	}
	unknown := strings.Replace(wfcommons, `"parents": []`, `"parents": ["ghost"]`, 1)
	if _, err := traces.ReadWfCommons(strings.NewReader(unknown), "x"); !errors.Is(err, traces.ErrFormat) {
		t.Errorf("unknown parent: error %v, want ErrFormat", err)
	}
	if _, err := traces.ReadWfCommons(strings.NewReader("{"), "x"); !errors.Is(err, traces.ErrFormat) {
		t.Errorf("bad JSON: error %v, want ErrFormat", err)
	}
}

func TestStageOf(t *testing.T) {
	for in, want := range map[string]string{
		"mProject_ID0000001": "mProject", "blastall_ID000002": "blastall",
		"cpuhog_chain_00000001": "cpuhog_chain", "NFCORE_X.SAMTOOLS_SORT": "NFCORE_X.SAMTOOLS_SORT",
	} {
		if got := traces.StageOf(in); got != want {
			t.Errorf("StageOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestReadsTheSharedTraces reads every real trace in ../shared/data.
func TestReadsTheSharedTraces(t *testing.T) {
	data := filepath.Join(temporaltest.RepoRoot(), "..", "shared", "data")
	files, _ := filepath.Glob(filepath.Join(data, "nextflow-traces", "*.csv"))
	more, _ := filepath.Glob(filepath.Join(data, "wfcommons", "*", "*", "*.json"))
	more2, _ := filepath.Glob(filepath.Join(data, "wfcommons", "*", "*.json"))
	files = append(append(files, more...), more2...)
	if len(files) < 10 {
		t.Fatalf("found %d traces under %s; ../shared/data must sit beside the repository", len(files), data)
	}
	read := 0
	for _, f := range files {
		tr, err := traces.ReadFile(f)
		if errors.Is(err, traces.ErrNoMemory) {
			continue // pegasus 1000genome and epigenomics record no memory
		}
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		read++
		for _, task := range tr.Tasks {
			if task.Stage == "" || task.PeakMemory <= 0 || task.Runtime < 0 || task.Complete.Before(task.Submit) {
				t.Fatalf("%s: bad task %+v", f, task)
			}
		}
	}
	t.Logf("read %d of %d traces with memory figures", read, len(files))
}
