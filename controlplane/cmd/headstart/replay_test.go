package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/headstart-dev/headstart/internal/temporaltest"
)

func sharedTrace(t *testing.T, rel string) string {
	t.Helper()
	p := filepath.Join(temporaltest.RepoRoot(), "..", "shared", "data", rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%v: ../shared/data must sit beside the repository", err)
	}
	return p
}

// TestReplayEndsWithOneLinePerTrace: the closing lines have the documented
// form, and the table lists every method.
func TestReplayEndsWithOneLinePerTrace(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"replay", sharedTrace(t, "nextflow-traces/iwd.csv"), sharedTrace(t, "wfcommons/pegasus/montage")}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	form := regexp.MustCompile(`^forecast (\S+) headstart maq=\d+\.\d under=\d+\.\d vpa maq=\d+\.\d under=\d+\.\d autopilot maq=\d+\.\d under=\d+\.\d$`)
	last := lines[len(lines)-2:]
	for i, want := range []string{"iwd", "montage-chameleon-2mass-005d-001"} {
		m := form.FindStringSubmatch(last[i])
		if m == nil || m[1] != want {
			t.Errorf("closing line %d = %q, want the form for %s", i, last[i], want)
		}
	}
	for _, method := range []string{"headstart", "vpa", "autopilot", "request", "maxseen", "hindsight", "hindsight-warm"} {
		if !strings.Contains(out.String(), method) {
			t.Errorf("table lacks %s", method)
		}
	}
}

func TestReplayJSONAndPlots(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	code := run([]string{"replay", "--json", "--plot", dir, sharedTrace(t, "wfcommons/pegasus/srasearch/srasearch-chameleon-10a-001.json")}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var results []struct {
		Trace   string `json:"trace"`
		Tasks   int    `json:"tasks"`
		Methods []struct {
			Method string  `json:"method"`
			MAQ    float64 `json:"maq"`
		} `json:"methods"`
	}
	if err := json.Unmarshal(out.Bytes(), &results); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, out.String())
	}
	if len(results) != 1 || results[0].Tasks != 22 || len(results[0].Methods) != 7 {
		t.Fatalf("results = %+v", results)
	}
	for _, f := range []string{"srasearch-chameleon-10a-001-tradeoff.png", "srasearch-chameleon-10a-001-stages.png"} {
		if info, err := os.Stat(filepath.Join(dir, f)); err != nil || info.Size() < 1000 {
			t.Errorf("plot %s: %v", f, err)
		}
	}
}

func TestReplayRejectsBadInput(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(bad, []byte("process,status,submit,complete,realtime,peak_rss\nx,COMPLETED,zz,1,1,1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"malformed trace": {"replay", bad},
		"missing file":    {"replay", filepath.Join(t.TempDir(), "none.csv")},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 1 || errOut.Len() == 0 {
			t.Errorf("%s: exit %d, stderr %q; want 1 and a message", name, code, errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"replay"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "usage") {
		t.Errorf("no arguments: exit %d, stderr %q", code, errOut.String())
	}
}
