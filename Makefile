# dr-syncer: every workflow is a target. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
LAB := test/lab/lab.sh
CRD_DIR ?= charts/dr-syncer/crds
CRDGEN ?= $(CARGO) run -q -p dr-syncer-api --bin crdgen --

# `make test` runs its own lab (state in .lab-test, ports from 25100) so it never touches clusters started with
# `make lab-up` (state in .lab, ports from 24100).
TEST_LAB_RUN ?= $(CURDIR)/.lab-test
TEST_LAB_PORT_BASE ?= 25100
TEST_CLUSTERS ?= source dr
CARGO_TEST_ARGS ?=
# Test tools that are not apt installs (promtool) live here; see test/tools/ensure-tools.sh.
DR_SYNCER_CACHE ?= $(HOME)/.cache/dr-syncer
TOOLS_BIN := $(DR_SYNCER_CACHE)/tools/bin
export PATH := $(TOOLS_BIN):$(PATH)

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Build
.PHONY: build
build: ## Build every crate (debug).
	$(CARGO) build --workspace --all-targets

.PHONY: release
release: ## Build the release binaries.
	$(CARGO) build --workspace --release

.PHONY: images
images: ## Build the container images from the release binaries (target/images) and load them into running lab nodes.
	@images/build.sh
	@$(LAB) load target/images/*.tar

.PHONY: image-check
image-check: ## Fail when the agent image (target/images/agent.tar) has a Debian package older than this machine's apt would install.
	@images/check-packages.sh target/images/agent.tar

.PHONY: crds
crds: ## Regenerate charts/dr-syncer/crds from the Rust types in api/.
	$(CRDGEN) $(CRD_DIR)

##@ Checks
.PHONY: fmt
fmt: ## Format the code.
	$(CARGO) fmt --all

.PHONY: lint
lint: ## cargo fmt --check and clippy with warnings as errors.
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: deny
deny: tools ## cargo deny: licenses, banned crates and sources against deny.toml (the advisory database is out of reach here).
	cargo-deny --log-level error check bans licenses sources

.PHONY: unit
unit: ## Unit tests (no cluster needed).
	$(CARGO) test --workspace --lib --bins $(CARGO_TEST_ARGS)

.PHONY: verify
verify: verify-crds verify-rust-version verify-crate-graph ## Check generated files are current (CRDs), the declared rust-version is true and no crate depends on one it must not.

.PHONY: verify-crate-graph
verify-crate-graph: ## Fail when the controller would link the agent crate (or a shared crate a binary crate).
	@python3 test/tools/check-crate-graph.py

.PHONY: verify-rust-version
verify-rust-version: ## Fail when a dependency needs a newer Rust than the workspace's rust-version declares.
	@python3 test/tools/check-rust-version.py

.PHONY: verify-crds
verify-crds: ## Fail when charts/dr-syncer/crds differs from the Rust types.
	@$(CRDGEN) --check $(CRD_DIR)

.PHONY: tools
tools: ## Fetch test tools that are not apt installs (promtool) into ~/.cache/dr-syncer/tools.
	@test/tools/ensure-tools.sh >/dev/null

.PHONY: chart-test
chart-test: tools ## Chart tests without a cluster: Helm SDK lint, snapshots, invariants, refusals, promtool on the alerts.
	@python3 -m unittest discover -s test/py -p 'test_chart_render.py'

.PHONY: chart-snapshots
chart-snapshots: ## Rewrite the chart snapshots in test/chart/snapshots after an intended change.
	@UPDATE_SNAPSHOTS=1 python3 -m unittest discover -s test/py -p 'test_chart_render.py'

.PHONY: test
test: ## Everything CI runs: lint, unit tests, chart tests, lab integration tests, verify. Starts and stops its own lab.
	@start=$$SECONDS; \
	$(MAKE) --no-print-directory tools lint deny unit chart-test verify && \
	$(MAKE) --no-print-directory test-lab; rc=$$?; \
	echo "make test: $$([ $$rc -eq 0 ] && echo passed || echo FAILED) in $$((SECONDS - start)) s"; exit $$rc

.PHONY: test-lab
test-lab: tools ## Lab integration tests: starts the test lab (with nodes), checks the agent image has no pending Debian upgrade, loads the images, runs cargo's integration tests and the in-cluster tests (network, chart install, leader election), stops the lab (also on failure).
	@set -e; export LAB_RUN=$(TEST_LAB_RUN) LAB_PORT_BASE=$(TEST_LAB_PORT_BASE); \
	trap '$(LAB) down --purge $$(ls $(TEST_LAB_RUN) 2>/dev/null) >/dev/null 2>&1 || true' EXIT; \
	$(LAB) down --purge $$(ls $(TEST_LAB_RUN) 2>/dev/null) >/dev/null 2>&1 || true; \
	images/build.sh >/dev/null & images=$$!; \
	$(LAB) up $(TEST_CLUSTERS); \
	wait $$images; images/check-packages.sh target/images/agent.tar; $(LAB) load target/images/*.tar; \
	eval "$$($(LAB) env)"; \
	rc=0; $(CARGO) test --workspace --no-fail-fast --test '*' $(CARGO_TEST_ARGS) || rc=$$?; \
	python3 -m unittest discover -s test/py -p 'test_lab_*.py' -v || rc=1; \
	python3 -m unittest discover -s test/py -p 'test_chart_install.py' -v || rc=1; \
	exit $$rc

##@ Benchmarks
BENCH_LAB_RUN ?= $(CURDIR)/.lab-bench
BENCH_LAB_PORT_BASE ?= 27100
.PHONY: bench
bench: tools ## Benchmarks: sync rate vs direct apply, no-op writes, Continuous latency, RSS (own lab, control planes only); PVC data path through the agent vs an OpenSSH jump host vs direct OpenSSH (loopback). Prints the numbers.
	@set -e; export LAB_RUN=$(BENCH_LAB_RUN) LAB_PORT_BASE=$(BENCH_LAB_PORT_BASE) LAB_NODES=0; \
	trap '$(LAB) down --purge $$(ls $(BENCH_LAB_RUN) 2>/dev/null) >/dev/null 2>&1 || true' EXIT; \
	$(LAB) down --purge $$(ls $(BENCH_LAB_RUN) 2>/dev/null) >/dev/null 2>&1 || true; \
	$(CARGO) bench -p dr-syncer-controller --bench bench --no-run; \
	$(CARGO) bench -p dr-syncer-agent --bench data_path --no-run; \
	$(LAB) up $(TEST_CLUSTERS); \
	eval "$$($(LAB) env)"; \
	$(CARGO) bench -p dr-syncer-controller --bench bench; \
	$(LAB) down --purge $$(ls $(BENCH_LAB_RUN) 2>/dev/null) >/dev/null 2>&1 || true; \
	$(CARGO) bench -p dr-syncer-agent --bench data_path

##@ Lab (real Kubernetes v1.20.2 clusters on this machine, one node each; LAB_NODES=0 for control planes only)
.PHONY: lab-build
lab-build: ## Build (or find cached) the Kubernetes binaries and the lab's pause image.
	@$(LAB) build

.PHONY: lab-up
lab-up: ## Start clusters `source` and `dr`.
	@$(LAB) up

.PHONY: lab-down
lab-down: ## Stop every lab cluster and delete its data.
	@$(LAB) down

.PHONY: lab-env
lab-env: ## Print KUBECONFIG_SOURCE/KUBECONFIG_DR exports: eval "$$(make -s lab-env)".
	@$(LAB) env

.PHONY: lab-status
lab-status: ## Show the lab's processes.
	@$(LAB) status

##@ Run
.PHONY: demo
demo: ## Set up this machine if needed, start the lab, install the chart into `source` and replicate a demo app to `dr`.
	@test/tools/setup.sh
	@test/demo/demo.sh

.PHONY: demo-down
demo-down: ## Remove what `make demo` made and stop the lab.
	@test/demo/demo-down.sh

.PHONY: run
run: ## Run the controller locally against the lab's `source` cluster (CRDs installed first).
	@eval "$$($(LAB) env source)"; test -n "$$KUBECONFIG_SOURCE" || { echo "lab not running: make lab-up"; exit 1; }; \
	KUBECONFIG=$$KUBECONFIG_SOURCE kubectl apply --server-side -f $(CRD_DIR) >/dev/null; \
	$(CARGO) run -p dr-syncer-controller -- --kubeconfig $$KUBECONFIG_SOURCE

.PHONY: clean
clean: ## Remove build output and lab state (stops lab clusters first).
	-@$(LAB) down >/dev/null 2>&1
	$(CARGO) clean
	rm -rf .lab .lab-test target/images
