# Headstart — `make help` lists the targets.
#
# Built tools are cached outside the clone, keyed by version and Go version,
# so a fresh clone reuses them: $(CACHE).

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO            ?= go
GOVERSION     := $(shell $(GO) env GOVERSION)
CACHE         ?= $(or $(HEADSTART_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/headstart)
TOOLS         := $(CACHE)/bin-$(GOVERSION)
TEMPORAL_CLI_VERSION ?= v1.5.1
STATICCHECK_VERSION  ?= v0.8.2
WORKFLOWCHECK_VERSION ?= v0.6.0
TEMPORAL      := $(CACHE)/temporal-cli-$(TEMPORAL_CLI_VERSION)-$(GOVERSION)/temporal
# The control plane is a module of its own in $(CP); the root module is the
# wire API and the drop-in a user's worker requires.
CP            := controlplane
PLAYWRIGHT_VERSION := $(shell sed -n 's/^const PlaywrightVersion = "\(.*\)"/\1/p' $(CP)/internal/browsertest/browsertest.go)
PLAYWRIGHT    := $(CACHE)/playwright-core-$(PLAYWRIGHT_VERSION)
ARTIFACTS     ?= $(CURDIR)/.artifacts
TEST_FLAGS    ?=
TEST_TIMEOUT  ?= 30m
CHAOS_FLAGS   ?= -chaos.kills 20 -chaos.restarts 5 -chaos.target-kills 3

export HEADSTART_CACHE := $(CACHE)
export TEMPORAL_CLI_VERSION
export HEADSTART_TEMPORAL_CLI := $(TEMPORAL)

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## start the dev server + Web UI, the sample worker and a starter (Ctrl-C stops all)
	@scripts/run.sh

.PHONY: test
test: temporal prometheus kubernetes browser docker ## all unit and integration tests, with -race, against a real dev server, Prometheus, Kubernetes control plane, headless Chromium and Docker engine; screenshots in .artifacts/
	@mkdir -p $(ARTIFACTS)
	$(GO) test -race -timeout $(TEST_TIMEOUT) -count=1 -artifacts -outputdir $(ARTIFACTS) $(TEST_FLAGS) ./...
	cd $(CP) && $(GO) test -race -timeout $(TEST_TIMEOUT) -count=1 -artifacts -outputdir $(ARTIFACTS) -skip '^TestChaos|^TestCompose' $(TEST_FLAGS) ./...
	@# The short chaos run (3 kills, 1 restart, 1 replica killed) restarts its dev server on a fixed port:
	@# alone, not beside the other packages' servers. make chaos runs it at full strength.
	cd $(CP) && $(GO) test -race -timeout $(TEST_TIMEOUT) -count=1 -run '^TestChaos' $(TEST_FLAGS) ./internal/chaos/
	@# Latency bounds hold for production builds: check them without the race detector too.
	$(GO) test -timeout $(TEST_TIMEOUT) -count=1 -run 'TestSinkFailuresNeverReachActivities' $(TEST_FLAGS) ./interceptors/
	@# The compose stack builds images and runs eight containers: alone, after the rest.
	$(MAKE) --no-print-directory compose-test

.PHONY: lint
lint: vet staticcheck workflowcheck check-deps check-size ## go vet, staticcheck, workflowcheck, check-deps and check-size

.PHONY: vet
vet: ## go vet
	$(GO) vet ./...
	cd $(CP) && $(GO) vet ./...

.PHONY: staticcheck
staticcheck: $(TOOLS)/staticcheck ## staticcheck
	$(TOOLS)/staticcheck ./...
	cd $(CP) && $(TOOLS)/staticcheck ./...

.PHONY: workflowcheck
workflowcheck: $(TOOLS)/workflowcheck ## determinism check of workflow code
	$(TOOLS)/workflowcheck ./...
	cd $(CP) && $(TOOLS)/workflowcheck ./...

.PHONY: check-deps
check-deps: ## fail when a package imports against the direction in DESIGN.md
	cd $(CP) && $(GO) run ./internal/tools/checkdeps -root ..

.PHONY: check-size
check-size: ## fail when a tracked file is over 1 MiB (a built binary committed by mistake)
	@big=$$(git ls-files -z | xargs -0 -r stat -c '%s %n' 2>/dev/null | awk '$$1 > 1048576 {print}'); \
		if [ -n "$$big" ]; then echo "tracked files over 1 MiB (build outputs belong in .gitignore):" >&2; echo "$$big" >&2; exit 1; fi

.PHONY: temporal
temporal: $(TEMPORAL) ## build the pinned Temporal CLI into the cache (about 8 minutes cold)

.PHONY: kubernetes
kubernetes: ## build the Kubernetes control plane and kustomize for the tests into the cache (about 20 minutes cold)
	scripts/build-kubernetes.sh >/dev/null

.PHONY: test-k8s
test-k8s: temporal kubernetes ## the tests against a real Kubernetes control plane only
	cd $(CP) && $(GO) test -race -timeout $(TEST_TIMEOUT) -count=1 $(TEST_FLAGS) ./internal/kubetest/ ./shapers/kubernetes/
	cd $(CP) && $(GO) test -race -timeout $(TEST_TIMEOUT) -count=1 $(TEST_FLAGS) -run 'TestStageDeploymentIsScaledBeforeItsTasksAreScheduled|TestOtherPodsFillingTheNode' .

.PHONY: browser
browser: ## install Debian's chromium and playwright-core (npm, into the cache) for the Web UI test
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "install Chromium: sudo apt-get install chromium" >&2; exit 1; fi; }
	@test -f $(PLAYWRIGHT)/node_modules/playwright-core/package.json || \
		npm install --prefix $(PLAYWRIGHT) --no-audit --no-fund --silent playwright-core@$(PLAYWRIGHT_VERSION)

.PHONY: prometheus
prometheus: ## install Debian's Prometheus for the tests that scrape and query a real one
	@command -v prometheus >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; \
		else echo "install Prometheus: sudo apt-get install prometheus" >&2; exit 1; fi; }

$(TEMPORAL):
	scripts/build-temporal.sh >/dev/null

$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(TOOLS)/workflowcheck:
	GOBIN=$(TOOLS) $(GO) install go.temporal.io/sdk/contrib/tools/workflowcheck@$(WORKFLOWCHECK_VERSION)

.PHONY: docker
docker: ## install Debian's Docker engine, docker-compose and debootstrap for make compose-test (the tests start the engine)
	@command -v dockerd >/dev/null && command -v docker-compose >/dev/null && command -v debootstrap >/dev/null && command -v iptables-save >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends docker.io docker-compose iptables debootstrap >/dev/null; \
		else echo "install Docker: sudo apt-get install docker.io docker-compose iptables debootstrap" >&2; exit 1; fi; }

.PHONY: image
image: ## build the headstart and headstart-sample images (HEADSTART_IMAGE, HEADSTART_SAMPLE_IMAGE, GO_IMAGE; BuildKit)
	scripts/build-images.sh

.PHONY: compose-test
compose-test: docker temporal ## docker-compose.yml on a Docker engine started here, every image built here, checked through its ports (root; about 70 s warm, 15 minutes cold)
	cd $(CP) && $(GO) test -count=1 -timeout 40m -run '^TestCompose' -v $(TEST_FLAGS) ./internal/composetest/

.PHONY: clean
clean: ## remove make run's state (.run/); the tool cache stays
	rm -rf .run

# Every parser, decoder and update validator, as folder:package:target.
FUZZ_TARGETS := .:.:FuzzObservationBatch .:./resources:FuzzParseQuantity .:./resources:FuzzParse \
	$(CP):./internal/traces:FuzzReadNextflow $(CP):./internal/traces:FuzzReadWfCommons \
	$(CP):./forecasting:FuzzRestoreHeadstart $(CP):./forecaster:FuzzRestoreState $(CP):./config:FuzzParse \
	$(CP):./ledger:FuzzLedgerUpdates $(CP):./coordinator:FuzzConfigure $(CP):./coordinator:FuzzRebalance
FUZZTIME ?= 5m

.PHONY: fuzz
fuzz: ## fuzz every parser, decoder and update validator for FUZZTIME each (default 5m); what fails lands in the package's testdata/fuzz
	@GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh $(FUZZ_TARGETS)

.PHONY: bench-profiler
bench-profiler: ## profiler overhead per activity vs none and OpenTelemetry tracing
	cd $(CP) && $(GO) test -run '^$$' -bench 'BenchmarkActivityOverhead' -benchmem -benchtime 5000x -count 12 ./internal/benchprofiler/ \
		| ($(GO) run ./internal/tools/benchratio -prefix BenchmarkActivityOverhead -base none -ref otel -cand profiler -label profiler_overhead_ratio_vs_otel)

FORECAST_TRACES ?= ../shared/data/nextflow-traces \
	../shared/data/wfcommons/makeflow/blast/blast-chameleon-medium-001.json \
	../shared/data/wfcommons/makeflow/blast/blast-chameleon-large-001.json \
	../shared/data/wfcommons/nextflow/atacseq-dirt02-001.json \
	../shared/data/wfcommons/nextflow/chipseq-dirt02-001.json \
	../shared/data/wfcommons/nextflow/cutandrun-dirt02-001.json \
	../shared/data/wfcommons/pegasus/montage/montage-chameleon-2mass-005d-001.json

.PHONY: bench-forecast
bench-forecast: ## replay real traces: Headstart vs VPA, Autopilot, request, max-seen and hindsight (plots in .run/plots)
	cd $(CP) && $(GO) run ./cmd/headstart replay --plot ../.run/plots $(addprefix ../,$(FORECAST_TRACES))

.PHONY: bench-e2e
bench-e2e: temporal ## bursty pipeline runs on a real dev server: static fleet, KEDA-like reactive scaling, Headstart, oracle
	@out=$$(mktemp); cd $(CP) && $(GO) test -run '^$$' -bench BenchmarkEndToEnd -benchtime 1x -timeout 30m . | tee $$out; \
		line=$$(grep '^e2e p95_ratio' $$out | tail -1); rm -f $$out; test -n "$$line"

.PHONY: chaos
chaos: temporal ## the chain under SIGKILLs of the control worker, dev server restarts and replica deaths (CHAOS_FLAGS)
	@out=$$(mktemp); cd $(CP) && $(GO) test -count=1 -timeout 40m -run TestChaos -v ./internal/chaos/ -args $(CHAOS_FLAGS) 2>&1 | tee $$out; \
		status=$${PIPESTATUS[0]}; line=$$(grep '^chaos ' $$out | tail -1); rm -f $$out; test -n "$$line" && echo "$$line"; exit $$status

.PHONY: bench-latency
bench-latency: temporal ## a profiled worker's activity latency with the control plane healthy, dead and slowed 10x by a cgroup (root)
	@out=$$(mktemp); cd $(CP) && $(GO) test -run '^$$' -bench BenchmarkActivityLatencyWhateverTheControlPlane -benchtime 1x -timeout 30m ./internal/benchprofiler/ | tee $$out; \
		line=$$(grep '^latency ' $$out | tail -1); rm -f $$out; test -n "$$line" && echo "$$line"

.PHONY: bench-forecaster
bench-forecaster: temporal ## 100,000 observations across 1,000 stages into a forecaster on a real dev server
	@out=$$(mktemp); cd $(CP) && $(GO) test -run '^$$' -bench BenchmarkForecasterOnDevServer -benchtime 1x ./forecaster/ | tee $$out; \
		line=$$(grep '^forecaster ' $$out | tail -1); rm -f $$out; test -n "$$line" && echo "$$line"
