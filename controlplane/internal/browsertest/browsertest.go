// Package browsertest opens pages of a web UI the way a person does: in
// headless Chromium (Debian's chromium package) driven by playwright-core
// (from npm, installed once into the cache outside the clone, keyed by its
// version). `make browser` installs both; a test run without them fails
// saying so.
package browsertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// PlaywrightVersion is the playwright-core the harness drives Chromium with.
const PlaywrightVersion = "1.65.2"

// Page is what a person saw: the page's text, its tables (rows of cells,
// the header row first) and the screenshot saved.
type Page struct {
	Text       string
	Tables     [][][]string
	Screenshot string
}

// Table returns the first table whose header row has every one of headers.
func (p Page) Table(headers ...string) ([][]string, bool) {
	for _, t := range p.Tables {
		if len(t) == 0 {
			continue
		}
		all := true
		for _, h := range headers {
			found := false
			for _, c := range t[0] {
				found = found || strings.EqualFold(c, h)
			}
			all = all && found
		}
		if all {
			return t, true
		}
	}
	return nil, false
}

// Browser is headless Chromium with playwright-core.
type Browser struct {
	node, chromium, playwright, script string
}

// New finds Chromium (HEADSTART_CHROMIUM, else chromium on PATH), node, and
// playwright-core in the cache, installing it there with npm if missing.
func New(t testing.TB) *Browser {
	t.Helper()
	b := &Browser{chromium: os.Getenv("HEADSTART_CHROMIUM")}
	var err error
	if b.chromium == "" {
		if b.chromium, err = exec.LookPath("chromium"); err != nil {
			t.Fatalf("browsertest: no chromium on PATH (make browser installs Debian's): %v", err)
		}
	}
	if b.node, err = exec.LookPath("node"); err != nil {
		t.Fatalf("browsertest: no node on PATH: %v", err)
	}
	if b.playwright, err = playwright(t); err != nil {
		t.Fatalf("browsertest: %v", err)
	}
	_, file, _, _ := runtime.Caller(0)
	b.script = filepath.Join(filepath.Dir(file), "page.js")
	return b
}

func playwright(t testing.TB) (string, error) {
	cache := os.Getenv("HEADSTART_CACHE")
	if cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(dir, "headstart")
	}
	root := filepath.Join(cache, "playwright-core-"+PlaywrightVersion)
	pkg := filepath.Join(root, "node_modules", "playwright-core")
	if _, err := os.Stat(filepath.Join(pkg, "package.json")); err == nil {
		return pkg, nil
	}
	t.Logf("browsertest: installing playwright-core %s into %s", PlaywrightVersion, root)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--prefix", root, "--no-audit", "--no-fund", "playwright-core@"+PlaywrightVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm install playwright-core@%s: %w\n%s", PlaywrightVersion, err, out)
	}
	return pkg, nil
}

// Open loads url, clicks the element whose text is click (if not empty),
// waits until each of waitFor shows, and saves a screenshot as name.png
// in dir.
func (b *Browser) Open(ctx context.Context, url, click, dir, name string, waitFor ...string) (Page, error) {
	shot := filepath.Join(dir, name+".png")
	args := append([]string{b.script, url, shot, click, "--"}, waitFor...)
	cmd := exec.CommandContext(ctx, b.node, args...)
	cmd.Env = append(os.Environ(), "PLAYWRIGHT_CORE="+b.playwright, "CHROMIUM="+b.chromium)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return Page{Screenshot: shot}, fmt.Errorf("open %s: %w: %s", url, err, strings.TrimSpace(stderr.String()))
	}
	var out struct {
		Text   string       `json:"text"`
		Tables [][][]string `json:"tables"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return Page{Screenshot: shot}, errors.Join(fmt.Errorf("open %s: decode page.js output", url), err)
	}
	return Page{Text: out.Text, Tables: out.Tables, Screenshot: shot}, nil
}
