package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/headstart-dev/headstart/controlplane/config"
	"github.com/headstart-dev/headstart/internal/temporaltest"
)

// FuzzParse: any bytes are a configuration whose plane is valid, or a
// config.ErrInvalid listing its problems; none panics.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(filepath.Join(temporaltest.RepoRoot(), "headstart.example.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(valid))
	f.Add([]byte(measured))
	f.Add([]byte("temporal: [1, 2]\n"))
	f.Add([]byte("pools:\n  - name: a\n    capacity: {cpu: ${NOPE}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := config.Parse("fuzz.yaml", data)
		if err != nil {
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if err := file.Plane().Validate(); err != nil {
			t.Fatalf("a file that loads makes an invalid plane: %v", err)
		}
	})
}
