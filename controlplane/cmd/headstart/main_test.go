package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnknownCommandIsAUsageError(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"frobnicate"}, &out, &errOut); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	if !strings.Contains(errOut.String(), `unknown command "frobnicate"`) || !strings.Contains(errOut.String(), "version") {
		t.Fatalf("stderr does not name the command and list the commands:\n%s", errOut.String())
	}
}

func TestHelpListsCommands(t *testing.T) {
	var out bytes.Buffer
	if code := run(nil, &out, &out); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	for _, c := range commands() {
		if !strings.Contains(out.String(), c.name) {
			t.Errorf("help does not list %q:\n%s", c.name, out.String())
		}
	}
}

// TestWorkerRefusesAnUnreadableKubeconfig before connecting anywhere.
func TestWorkerRefusesAnUnreadableKubeconfig(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"worker", "--kubernetes", "--kubeconfig", t.TempDir() + "/missing", "--address", "127.0.0.1:1"}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "headstart worker: kubernetes:") || strings.Contains(errOut.String(), "dial") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut.String())
	}
}

// TestTheAgentsSystemdUnitRunsTheAgentWithFlagsItKnows: the unit file's
// ExecStart is `headstart agent` with flags the command accepts (its
// config file is missing here, which is the only error).
func TestTheAgentsSystemdUnitRunsTheAgentWithFlagsItKnows(t *testing.T) {
	unit, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "systemd", "headstart-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	var exec []string
	for _, line := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			exec = strings.Fields(v)
		}
	}
	if len(exec) < 2 || filepath.Base(exec[0]) != "headstart" || exec[1] != "agent" {
		t.Fatalf("ExecStart is %q, want headstart agent …", exec)
	}
	args := append([]string(nil), exec[1:]...)
	for i, a := range args {
		if a == "-config" && i+1 < len(args) {
			args[i+1] = filepath.Join(t.TempDir(), "headstart.yaml")
		}
	}
	var out, errOut bytes.Buffer
	if code := run(args, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "headstart.yaml") {
		t.Fatalf("headstart %s: exit %d, stderr:\n%s", strings.Join(args, " "), code, errOut.String())
	}
}
