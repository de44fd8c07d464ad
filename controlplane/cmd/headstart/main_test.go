package main

import (
	"bytes"
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
