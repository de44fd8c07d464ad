package main

import (
	"strings"
	"testing"
)

const mod = "example.com/hs"

func TestCheckAcceptsTheDesignedDirection(t *testing.T) {
	pkgs := []Package{
		{ImportPath: mod + "/resources", Deps: []string{"fmt", "math"}},
		{ImportPath: mod, Imports: []string{mod + "/resources"}, Deps: []string{"fmt", mod + "/resources"}},
		{ImportPath: mod + "/forecasting", Imports: []string{mod, mod + "/resources"}, Deps: []string{"gonum.org/v1/gonum/mat", mod + "/resources"}},
		{ImportPath: mod + "/interceptors", Imports: []string{mod}, Deps: []string{"go.temporal.io/sdk/client", "github.com/prometheus/client_golang/prometheus"}},
		{ImportPath: mod + "/shapers", Imports: []string{mod + "/resources"}, Deps: []string{"context", mod + "/resources"}},
		{ImportPath: mod + "/shapers/kubernetes", Imports: []string{mod + "/shapers", "k8s.io/client-go/kubernetes"}, Deps: []string{"k8s.io/client-go/kubernetes"}},
		{ImportPath: mod + "/forecaster", Imports: []string{mod, mod + "/forecasting", mod + "/activities", mod + "/internal/details"}},
		{ImportPath: mod + "/coordinator", Imports: []string{mod, mod + "/activities", mod + "/shapers"}},
		{ImportPath: mod + "/controlplane", Imports: []string{mod + "/forecaster", mod + "/ledger", mod + "/coordinator"}},
		{ImportPath: mod + "/config", Imports: []string{mod + "/controlplane", mod + "/coordinator"}},
		{ImportPath: mod + "/cmd/headstart", Imports: []string{mod + "/controlplane", mod + "/shapers/kubernetes", mod + "/internal/x"}},
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
		{"forecasting imports a workflow", Package{ImportPath: mod + "/forecasting", Imports: []string{mod + "/forecaster"}}, "forecasting may import only the root package, resources"},
		{"interceptors import the models", Package{ImportPath: mod + "/interceptors", Imports: []string{mod + "/forecasting"}}, "imports " + mod + "/forecasting"},
		{"the drop-in pulls in gonum through another module", Package{ImportPath: mod + "/interceptors", Deps: []string{"example.org/stats", "gonum.org/v1/gonum/mat"}}, "may not depend on gonum.org/"},
		{"the drop-in pulls in client-go", Package{ImportPath: mod + "/interceptors", Deps: []string{"k8s.io/client-go/kubernetes"}}, "may not depend on gonum.org/, k8s.io/"},
		{"the wire API depends on the SDK", Package{ImportPath: mod, Deps: []string{"go.temporal.io/sdk/client"}}, "depends on go.temporal.io/sdk/client"},
		{"the wire API imports a workflow", Package{ImportPath: mod, Imports: []string{mod + "/ledger"}}, "imports " + mod + "/ledger"},
		{"a workflow imports another", Package{ImportPath: mod + "/ledger", Imports: []string{mod + "/coordinator"}}, "ledger may import only"},
		{"a workflow imports the assembly", Package{ImportPath: mod + "/coordinator", Imports: []string{mod + "/controlplane"}}, "coordinator may import only"},
		{"forecasting depends on temporal", Package{ImportPath: mod + "/forecasting", Deps: []string{"go.temporal.io/sdk/workflow"}}, "depends on go.temporal.io/sdk/workflow"},
		{"resources depends on gonum", Package{ImportPath: mod + "/resources", Deps: []string{"gonum.org/v1/gonum/mat"}}, "depends on gonum.org/v1/gonum/mat"},
		{"shapers root depends on client-go", Package{ImportPath: mod + "/shapers", Deps: []string{"k8s.io/client-go/kubernetes"}}, "depends on k8s.io/client-go"},
		{"shapers imports forecasting", Package{ImportPath: mod + "/shapers/cgroups", Imports: []string{mod + "/forecasting"}}, "shapers may import only resources"},
		{"samples import internal", Package{ImportPath: mod + "/samples/x", Imports: []string{mod + "/internal/temporaltest"}}, "samples may import only"},
		{"anything imports cmd", Package{ImportPath: mod + "/controlplane", Imports: []string{mod + "/cmd/headstart"}}, "controlplane may import only"},
		{"unknown folder", Package{ImportPath: mod + "/misc"}, "no rule covers"},
		{"a control-plane package is named without its module's folder", Package{ImportPath: mod + "/controlplane/forecasting", Imports: []string{mod + "/controlplane/forecaster"}}, "forecasting may import only"},
		{"the assembly is not a parent of the workflows", Package{ImportPath: mod + "/controlplane/ledger", Imports: []string{mod + "/controlplane"}}, "ledger may import only"},
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
