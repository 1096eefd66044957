# pve-gitops: the two front-door commands are `make demo` and `make test`.
# Both install what they need themselves (Rust must be present; Python 3 for fakepve).

CARGO ?= cargo
BIN := target/debug/pve-gitops

.PHONY: demo test lint ci schema build clean bench bench-compare bench-scale

build:
	$(CARGO) build --workspace

## Run the main job end to end on the embedded examples.
demo: build
	bash scripts/demo.sh

## The whole test suite (unit, corpus, snapshots, CLI, end-to-end).
test:
	bash scripts/test.sh

## Converge 10, 100 and 500 VMs on fakepve and print wall time and API calls against the
## targets (BENCH_SIZES=10,100 to choose sizes; BENCH_PARALLEL_N=0 skips the p1/p4 run).
bench:
	$(CARGO) bench -p pve-gitops --bench converge

## pve-gitops against the Ansible playbook a Proxmox user writes (community.proxmox), and
## the agent at 1,000 VMs; regenerates docs/benchmarks.md, .json and .png. Makes its own
## venvs (.venv-fakepve, .venv-ansible). 30 to 60 minutes by the machine; BENCH_SIZES=10,100 and
## BENCH_REALISTIC_SIZES=10 (or empty) make it shorter, BENCH_SCALE=0 skips the 1,000 VMs,
## BENCH_MAX_WORKERS= (empty) the realistic converges at a raised max_workers.
bench-compare:
	$(CARGO) bench -p pve-gitops --bench compare

## Only the 1,000-VM figures (plan time, RSS, CPU, drift check, a day of polling): printed,
## and written to target/bench-scale/ (docs/ keeps the full run's).
bench-scale:
	BENCH_PARTS=scale BENCH_OUT=target/bench-scale $(CARGO) bench -p pve-gitops --bench compare

## Formatting and lints, as CI runs them.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

ci: lint test

## Regenerate the JSON Schema editors use (checked by the test suite).
schema: build
	$(BIN) schema > schema/pve-gitops.schema.json

clean:
	$(CARGO) clean

.PHONY: deb deb-check

## The Debian package (target/debian/pve-gitops_<version>_<arch>.deb) with cargo-deb,
## from [package.metadata.deb] in agent/Cargo.toml and packaging/; a release build unless
## DEB_PROFILE says otherwise. The man pages and completions are generated from the CLI
## into $(DEB_ASSETS) first.
DEB_ASSETS := build/deb-assets
# `make test` packages the debug build (DEB_PROFILE=dev: no second, release, compile)
# to check the same package lifecycle on every run.
DEB_PROFILE ?= release
# Pinned: cargo-deb warns that packaging the dev profile will become an error; this
# version accepts it (and the package checks were written against its output).
CARGO_DEB_VERSION := 3.8.0
deb:
	@command -v cargo-deb >/dev/null 2>&1 || { \
	  echo "make deb: cargo-deb is not installed; running 'cargo install cargo-deb --locked --version $(CARGO_DEB_VERSION)' (once, a few minutes)"; \
	  $(CARGO) install cargo-deb --locked --version $(CARGO_DEB_VERSION); }
	rm -rf $(DEB_ASSETS)
	$(CARGO) run --profile $(DEB_PROFILE) -q -p pve-gitops -- generate man $(DEB_ASSETS)/man
	$(CARGO) run --profile $(DEB_PROFILE) -q -p pve-gitops -- generate completions bash $(DEB_ASSETS)/completions
	$(CARGO) run --profile $(DEB_PROFILE) -q -p pve-gitops -- generate completions zsh $(DEB_ASSETS)/completions
	$(CARGO) deb -p pve-gitops --profile $(DEB_PROFILE)

## The unit (systemd-analyze verify, security exposure) and the package (lintian, file
## list, install/upgrade/remove/purge in an overlay root; root for the last part).
deb-check: deb
	bash tests/packaging/check-unit.sh
	bash tests/packaging/check-deb.sh
