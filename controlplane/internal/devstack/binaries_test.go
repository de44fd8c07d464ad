package devstack

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/internal/testproc"
)

// buildBinaries builds the control plane's packages named (e.g.
// ./cmd/headstart) into a folder of the test's, and returns it.
func buildBinaries(t *testing.T, ctx context.Context, pkgs ...string) string {
	t.Helper()
	bin := t.TempDir()
	build := exec.CommandContext(ctx, "go", append([]string{"build", "-o", bin + "/"}, pkgs...)...)
	build.Dir = filepath.Join(temporaltest.RepoRoot(), "controlplane")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startBinary starts program of folder bin, stopped when the test ends.
func startBinary(t *testing.T, bin, name, program string, args ...string) *testproc.Proc {
	t.Helper()
	p, err := testproc.Start(name, filepath.Join(bin, program), args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(30 * time.Second) })
	return p
}
