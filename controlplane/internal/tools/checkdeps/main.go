// Command checkdeps fails when a package imports against the dependency
// direction of DESIGN.md, as the module lays it out:
//
//	resources ◄── headstart (the root: wire API) ◄── interceptors (the drop-in)
//	    ▲               ▲
//	    │          forecasting (pure models)
//	    │               ▲
//	 shapers ◄──── activities ◄── forecaster, ledger, coordinator ◄── controlplane ◄── config ◄── cmd
//	                    ▲                                                              │
//	                    └──────────────────────── agent (the host agent) ◄─────────────┘
//
// The drop-in a user's worker imports (the root and interceptors) may not
// depend on gonum or client-go, even through another module.
//
// The repository holds two modules: the root one (the wire API, resources,
// the drop-in and the test harnesses they need), which a user's worker
// requires, and controlplane/ (everything else). A package of the
// controlplane module is named in the rules without its controlplane/
// prefix (controlplane/forecasting is "forecasting"); the control plane's
// assembly package is "controlplane".
//
// Only non-test imports count. The rules are the table below; `make check-deps`
// runs it over ./... of both modules (-root names the repository's root).
package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Package is the part of `go list -json` the check reads.
type Package struct {
	ImportPath string
	Imports    []string // direct, non-test
	Deps       []string // transitive, non-test
}

// Rule constrains the packages whose module-relative path is Path or below it.
type Rule struct {
	Path string
	// Internal lists the module-relative path prefixes a package may import
	// directly; its own subtree is always allowed.
	Internal []string
	// External lists the path prefixes of other modules a package may depend
	// on, transitively; nil allows any. The standard library is always allowed.
	External []string
	// Forbidden lists path prefixes a package may not depend on, transitively.
	Forbidden []string
}

var public = []string{"", "resources", "forecasting", "interceptors", "activities", "shapers",
	"forecaster", "ledger", "coordinator", "controlplane", "agent", "config", "samples"}

// heavy are what a user's worker must not pull in through Headstart's drop-in.
var heavy = []string{"gonum.org/", "k8s.io/", "sigs.k8s.io/"}

// Rules are checked most specific first: a package obeys the rule with the longest matching Path.
// Path "" is the module's root package only.
var Rules = []Rule{
	{Path: "", Internal: []string{"resources"}, External: []string{}}, // the wire API: the standard library only
	{Path: "resources", Internal: nil, External: []string{}},
	{Path: "forecasting", Internal: []string{"", "resources"}, External: []string{"gonum.org/", "golang.org/x/"}}, // gonum and what it needs
	{Path: "interceptors", Internal: []string{"", "resources"}, Forbidden: heavy},
	{Path: "shapers", Internal: []string{"resources"}},
	{Path: "activities", Internal: []string{"", "resources", "forecasting", "shapers"}},
	// One package per workflow, with its pure state; the Web UI details share internal/details.
	{Path: "forecaster", Internal: []string{"", "resources", "forecasting", "activities", "internal/details"}},
	{Path: "ledger", Internal: []string{"", "resources", "internal/details"}},
	{Path: "coordinator", Internal: []string{"", "resources", "activities", "shapers", "internal/details"}},
	// The control worker's assembly: registers the workflows and activities, starts the plane.
	{Path: "controlplane", Internal: []string{"", "resources", "activities", "shapers", "forecaster", "ledger", "coordinator"}},
	// The host agent's assembly: a worker of the host's queue with the host's shapers.
	{Path: "agent", Internal: []string{"", "resources", "activities", "shapers"}},
	// config is the file's schema: it maps onto the options of the control plane, the agent and the shapers, and starts nothing.
	{Path: "config", Internal: []string{"", "resources", "shapers", "coordinator", "controlplane", "agent"}},
	{Path: "samples", Internal: public},
	{Path: "internal/details", Internal: nil, External: []string{}},
	{Path: "internal", Internal: append([]string{"internal"}, public...)},
	{Path: "cmd", Internal: append([]string{"internal"}, public...)},
}

// rootOnly lists rules whose External constraint applies to the folder itself,
// not its subpackages: each shaper subpackage brings its own client library.
var rootOnly = map[string][]string{"shapers": {}}

// Check returns one line per import that breaks a rule, sorted.
func Check(module string, pkgs []Package, rules []Rule) []string {
	var bad []string
	for _, p := range pkgs {
		rel, ok := relative(module, p.ImportPath)
		if !ok {
			continue
		}
		r, ok := ruleFor(rel, rules)
		if !ok {
			bad = append(bad, fmt.Sprintf("%s: no rule covers this package; add one to internal/tools/checkdeps", p.ImportPath))
			continue
		}
		for _, imp := range p.Imports {
			irel, internal := relative(module, imp)
			if internal && !under(irel, r.Path) && !underAny(irel, r.Internal) {
				bad = append(bad, fmt.Sprintf("%s imports %s: %s may import only %s", p.ImportPath, imp, r.Path, list(r.Internal)))
			}
		}
		for _, d := range p.Deps {
			if hasPrefixAny(d, r.Forbidden) {
				bad = append(bad, fmt.Sprintf("%s depends on %s: %s may not depend on %s", p.ImportPath, d, rel, strings.Join(r.Forbidden, ", ")))
			}
		}
		external := r.External
		if ext, ok := rootOnly[r.Path]; ok && rel == r.Path {
			external = ext
		}
		if external == nil {
			continue
		}
		for _, d := range p.Deps {
			if _, internal := relative(module, d); internal || isStd(d) || hasPrefixAny(d, external) {
				continue
			}
			bad = append(bad, fmt.Sprintf("%s depends on %s: %s may depend only on the standard library%s", p.ImportPath, d, rel, andList(external)))
		}
	}
	sort.Strings(bad)
	return bad
}

// relative is path's name in the rules, if it is one of the repository's packages.
func relative(module, path string) (string, bool) {
	if path == module {
		return "", true
	}
	if rest, ok := strings.CutPrefix(path, module+"/"); ok {
		if sub, ok := strings.CutPrefix(rest, controlPlane+"/"); ok {
			return sub, true
		}
		return rest, true
	}
	return "", false
}

// controlPlane is the folder of the control plane's module.
const controlPlane = "controlplane"

func ruleFor(rel string, rules []Rule) (Rule, bool) {
	best, found := Rule{}, false
	for _, r := range rules {
		if under(rel, r.Path) && (!found || len(r.Path) > len(best.Path)) {
			best, found = r, true
		}
	}
	return best, found
}

func under(rel, dir string) bool { return rel == dir || strings.HasPrefix(rel, dir+"/") }

func underAny(rel string, dirs []string) bool {
	for _, d := range dirs {
		if under(rel, d) {
			return true
		}
	}
	return false
}

func hasPrefixAny(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// isStd reports whether an import path is in the standard library: its first
// element has no dot.
func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func list(xs []string) string {
	if len(xs) == 0 {
		return "nothing else in the module"
	}
	named := make([]string, len(xs))
	for i, x := range xs {
		named[i] = cmp.Or(x, "the root package")
	}
	return strings.Join(named, ", ")
}

func andList(xs []string) string {
	if len(xs) == 0 {
		return ""
	}
	return " and " + strings.Join(xs, ", ")
}

func main() {
	root := flag.String("root", ".", "the repository's root folder")
	flag.Parse()
	list := exec.Command("go", "list", "-m")
	list.Dir = *root
	module, err := list.Output()
	if err != nil {
		fail("go list -m: %v", err)
	}
	var pkgs []Package
	for _, dir := range []string{*root, filepath.Join(*root, controlPlane)} {
		cmd := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", "./...")
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			fail("go list ./... in %s: %v", dir, err)
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		for {
			var p Package
			if err := dec.Decode(&p); err == io.EOF {
				break
			} else if err != nil {
				fail("decode go list output: %v", err)
			}
			pkgs = append(pkgs, p)
		}
	}
	bad := Check(strings.TrimSpace(string(module)), pkgs, Rules)
	for _, b := range bad {
		fmt.Println(b)
	}
	if len(bad) > 0 {
		fail("%d imports break the dependency direction of DESIGN.md", len(bad))
	}
	fmt.Printf("check-deps: %d packages in 2 modules follow the dependency direction\n", len(pkgs))
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "check-deps: "+format+"\n", args...)
	os.Exit(1)
}
