package traces_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/headstart-dev/headstart/controlplane/internal/traces"
	"github.com/headstart-dev/headstart/internal/temporaltest"
)

// seed adds the first n bytes of a file of the shared data as a seed, if
// it is there (the data is read where it lives, never copied).
func seed(f *testing.F, rel string, n int) {
	b, err := os.ReadFile(filepath.Join(temporaltest.RepoRoot(), "..", "shared", "data", rel))
	if err != nil {
		f.Fatalf("seed %s: %v", rel, err)
	}
	f.Add(b[:min(n, len(b))])
}

// checkTrace holds what every trace read without error guarantees.
func checkTrace(t *testing.T, tr *traces.Trace, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, traces.ErrFormat) && !errors.Is(err, traces.ErrNoMemory) {
			t.Fatalf("untyped error: %v", err)
		}
		return
	}
	for _, task := range tr.Tasks {
		if task.Stage == "" || task.Usage.PeakMemory <= 0 || task.Usage.Runtime < 0 {
			t.Fatalf("a task read from a trace is not usable: %+v", task)
		}
	}
}

// FuzzReadNextflow: any bytes are a trace of usable tasks or a typed error.
func FuzzReadNextflow(f *testing.F) {
	seed(f, "nextflow-traces/iwd.csv", 4096)
	f.Add([]byte("process,status,submit,complete,realtime,peak_rss\nA,COMPLETED,2024-01-01 00:00:00.000,2024-01-01 00:00:01.000,1s,1 MB\n"))
	f.Add([]byte("a\tb\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := traces.ReadNextflow(bytes.NewReader(b), "fuzz")
		checkTrace(t, tr, err)
	})
}

// FuzzReadWfCommons: any bytes are a trace of usable tasks or a typed error
// that names what is wrong in the instance's terms.
func FuzzReadWfCommons(f *testing.F) {
	seed(f, "wfcommons/helloworld/helloworld-chain-5-chameleon.json", 1<<20)
	f.Add([]byte(`{"workflow":{"specification":{"tasks":[{"id":"a","parents":["b"]},{"id":"b","parents":["a"]}]}}}`))
	f.Add([]byte(`{"workflow":{"specification":{"tasks":"many"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := traces.ReadWfCommons(bytes.NewReader(b), "fuzz")
		checkTrace(t, tr, err)
		if err != nil && bytes.Contains([]byte(err.Error()), []byte("Go struct")) {
			t.Fatalf("the error speaks Go, not WfFormat: %v", err)
		}
	})
}

// TestMalformedWfCommonsSaysWhatIsWrongInItsTerms: a JSON error names the
// field and what it holds, not the Go types it was read into.
func TestMalformedWfCommonsSaysWhatIsWrongInItsTerms(t *testing.T) {
	for in, want := range map[string]string{
		`{"workflow":{"specification":{"tasks":"many"}}}`: "malformed trace: workflow.specification.tasks: a JSON string where a list belongs",
		`{"workflow":`:   "malformed trace: the JSON ends early",
		`{"workflow" 1}`: "malformed trace: not JSON at byte 13",
	} {
		_, err := traces.ReadWfCommons(bytes.NewReader([]byte(in)), "bad")
		if err == nil || !errors.Is(err, traces.ErrFormat) || len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
			t.Errorf("%s: %v, want %s…", in, err, want)
		}
	}
}

// TestAWfCommonsInstanceDeclaringBillionsOfCoresIsReadAtOnce: the replay
// uses at most a core per task, whatever the machines declare (fuzzing
// found an instance that made the reader allocate gigabytes).
func TestAWfCommonsInstanceDeclaringBillionsOfCoresIsReadAtOnce(t *testing.T) {
	in := `{"workflow":{"specification":{"tasks":[{"id":"a","name":"a"}]},"execution":{"tasks":[{"id":"a","runtimeInSeconds":1,"memoryInBytes":1000}],
		"machines":[{"cpu":{"coreCount":4000000000}},{"cpu":{"coreCount":4000000000}},{"cpu":{"coreCount":-7}}]}}}`
	tr, err := traces.ReadWfCommons(bytes.NewReader([]byte(in)), "many-cores")
	if err != nil || len(tr.Tasks) != 1 {
		t.Fatalf("%+v, %v", tr, err)
	}
}
