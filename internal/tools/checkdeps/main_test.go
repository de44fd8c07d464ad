package main

import (
	"strings"
	"testing"
)

const mod = "example.com/hs"

func TestCheckAcceptsTheDesignedDirection(t *testing.T) {
	pkgs := []Package{
		{ImportPath: mod + "/resources", Deps: []string{"fmt", "math"}},
		{ImportPath: mod + "/forecasting", Imports: []string{mod + "/resources"}, Deps: []string{"gonum.org/v1/gonum/mat", mod + "/resources"}},
		{ImportPath: mod + "/shapers", Imports: []string{mod + "/resources"}, Deps: []string{"context", mod + "/resources"}},
		{ImportPath: mod + "/shapers/kubernetes", Imports: []string{mod + "/shapers", "k8s.io/client-go/kubernetes"}, Deps: []string{"k8s.io/client-go/kubernetes"}},
		{ImportPath: mod + "/worker", Imports: []string{mod + "/interceptors", mod + "/shapers/kubernetes"}},
		{ImportPath: mod + "/cmd/headstart", Imports: []string{mod + "/worker", mod + "/internal/x"}},
		{ImportPath: mod + "/samples/pipeline/worker", Imports: []string{mod + "/samples/pipeline", mod + "/interceptors"}},
	}
	if bad := Check(mod, pkgs, Rules); len(bad) != 0 {
		t.Fatalf("Check reported %q, want nothing", bad)
	}
}

func TestCheckRejectsArrowsAgainstTheDirection(t *testing.T) {
	tests := []struct {
		name string
		pkg  Package
		want string
	}{
		{"forecasting imports worker", Package{ImportPath: mod + "/forecasting", Imports: []string{mod + "/worker"}}, "forecasting may import only resources"},
		{"interceptors imports worker", Package{ImportPath: mod + "/interceptors", Imports: []string{mod + "/worker"}}, "imports " + mod + "/worker"},
		{"forecasting depends on temporal", Package{ImportPath: mod + "/forecasting", Deps: []string{"go.temporal.io/sdk/workflow"}}, "depends on go.temporal.io/sdk/workflow"},
		{"resources depends on gonum", Package{ImportPath: mod + "/resources", Deps: []string{"gonum.org/v1/gonum/mat"}}, "depends on gonum.org/v1/gonum/mat"},
		{"shapers root depends on client-go", Package{ImportPath: mod + "/shapers", Deps: []string{"k8s.io/client-go/kubernetes"}}, "depends on k8s.io/client-go"},
		{"shapers imports forecasting", Package{ImportPath: mod + "/shapers/cgroups", Imports: []string{mod + "/forecasting"}}, "shapers may import only resources"},
		{"samples import internal", Package{ImportPath: mod + "/samples/x", Imports: []string{mod + "/internal/temporaltest"}}, "samples may import only"},
		{"anything imports cmd", Package{ImportPath: mod + "/worker", Imports: []string{mod + "/cmd/headstart"}}, "worker may import only"},
		{"unknown folder", Package{ImportPath: mod + "/misc"}, "no rule covers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := Check(mod, []Package{tt.pkg}, Rules)
			if len(bad) != 1 || !strings.Contains(bad[0], tt.want) {
				t.Fatalf("Check = %q, want one line containing %q", bad, tt.want)
			}
		})
	}
}
