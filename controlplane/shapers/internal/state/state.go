// Package state keeps a host shaper's desired state on disk, one JSON file
// per target, written atomically: a shaper killed while saving leaves the
// old state or the new one, and a restarted shaper reconciles to it.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Dir is a folder of desired states; "" keeps nothing.
type Dir string

func (d Dir) file(name string) string { return filepath.Join(string(d), name+".json") }

// Save writes v as target name's desired state: to a temporary file,
// synced, then renamed over the old one.
func (d Dir) Save(name string, v any) error {
	if d == "" {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	tmp, err := os.CreateTemp(string(d), "."+name+"-*")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("state: %w", err)
	}
	if err := errors.Join(tmp.Sync(), tmp.Close()); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := os.Rename(tmp.Name(), d.file(name)); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// Delete forgets target name's desired state.
func (d Dir) Delete(name string) error {
	if d == "" {
		return nil
	}
	if err := os.Remove(d.file(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// Load calls add with each target's name and desired state, skipping the
// files whose name valid refuses; a folder not made yet holds nothing.
func (d Dir) Load(valid func(string) bool, add func(name string, b []byte) error) error {
	if d == "" {
		return nil
	}
	files, err := filepath.Glob(d.file("*"))
	if err != nil {
		return err
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		if !valid(name) {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("state: %w", err)
		}
		if err := add(name, b); err != nil {
			return fmt.Errorf("state %s: %w", f, err)
		}
	}
	return nil
}
