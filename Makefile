# The two commands of the README: `make demo` (the operator's main job on the embedded default)
# and `make test` (the whole suite). Everything else is a step of theirs or a developer's helper.

CARGO ?= cargo
CONTROLPLANE_DIR ?= .controlplane

.PHONY: test demo bench profile fuzz lint fmt crds image deny tools controlplane-binaries controlplane-up controlplane-down

## Run every test: unit, CRD drift, and integration tests against a real kube-apiserver + etcd,
## the image (built by `make image` inside tests/image.rs), kstatus, promtool and the dashboard,
## cargo-deny, then a 10-second run of each fuzz target. Every tool is built once and cached.
test: controlplane-binaries tools
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@$(MAKE) --no-print-directory deny
	$(CARGO) test --workspace --all-targets
	FUZZ_SECONDS=10 fuzz/run.sh

## Build the image mpu-relay-operator:<crate version> with buildah from the Dockerfile (apt-installs
## buildah/podman when missing), plus its OCI archive and CycloneDX SBOM in target/image/.
image:
	@image/build.sh

## License, ban, source and advisory checks of the dependency graph (deny.toml); offline, after
## fetching every platform's crates (cargo-deny reads the whole graph; a build fetches only this
## one's). Advisories: a dated RustSec snapshot (tests/tools/advisory-db/README.md).
deny:
	@$(CARGO) fetch --locked -q
	@deny=$$(tests/tools/build.sh cargo-deny) && echo "cargo deny check licenses bans sources" && \
	  $$deny deny --offline --log-level error check licenses bans sources && \
	  tests/tools/deny-advisories.sh $$deny

## Build (once) kstatus, promtool, cargo-deny, cargo-cyclonedx and cargo-fuzz into
## ~/.cache/mpu-relay-operator/tools/ (pinned versions in tests/tools/build.sh).
tools:
	@tests/tools/build.sh kstatus promtool cargo-deny cargo-cyclonedx cargo-fuzz >/dev/null

## Start the local control plane, the simulator and the operator with sample tasks, and show
## `kubectl get mpurelaytasks` following the cloud. Ctrl-C stops it; DEMO_SECONDS=30 stops it by itself.
demo: controlplane-binaries
	$(CARGO) build
	$(CARGO) run --example demo

## Measure budget adherence, freshness, API server cost, memory and CPU (not part of `make test`);
## exits non-zero, naming the rows, when any target is missed.
bench: controlplane-binaries
	$(CARGO) run --release --example bench

## Profile the release operator at scale: TOOL=heaptrack|perf|none TASKS=10000 ACCOUNTS=100
## SECONDS_RUN=120 make profile (summaries in target/profile/; not part of `make test`).
profile: controlplane-binaries
	@TOOL="$(TOOL)" tests/bench/profile.sh

## Run every fuzz target for a fixed time (FUZZ_SECONDS, default 60).
fuzz:
	fuzz/run.sh

## Build (once) kube-apiserver, kubectl, etcd and helm into ~/.cache/mpu-relay-operator/.
controlplane-binaries:
	@tests/controlplane/build.sh >/dev/null

## Start a local control plane in the background; prints the kubeconfig path.
controlplane-up: controlplane-binaries
	@$(CARGO) run -q --example controlplane -- up $(CONTROLPLANE_DIR)

## Stop the control plane started by controlplane-up.
controlplane-down:
	@$(CARGO) run -q --example controlplane -- down $(CONTROLPLANE_DIR)

## Regenerate crds/ from the Rust types.
crds:
	$(CARGO) run -q -- crd --dir crds && $(CARGO) run -q -- crd --dir charts/mpu-relay-operator/crds

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
