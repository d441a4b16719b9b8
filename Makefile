# The two commands of the README: `make demo` (the operator's main job on the embedded default)
# and `make test` (the whole suite). Everything else is a step of theirs or a developer's helper.

CARGO ?= cargo
CONTROLPLANE_DIR ?= .controlplane

.PHONY: test demo bench fuzz lint fmt crds controlplane-binaries controlplane-up controlplane-down

## Run every test: unit, CRD drift, and integration tests against a real kube-apiserver + etcd,
## then a 10-second run of each fuzz target (installs cargo-fuzz on first use).
test: controlplane-binaries
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --all-targets
	FUZZ_SECONDS=10 fuzz/run.sh

## Start the local control plane, the simulator and the operator with sample tasks, and show
## `kubectl get mpurelaytasks` following the cloud. Ctrl-C stops it; DEMO_SECONDS=30 stops it by itself.
demo: controlplane-binaries
	$(CARGO) build
	$(CARGO) run --example demo

## Measure budget adherence, freshness, API server cost, memory and CPU (not part of `make test`).
bench: controlplane-binaries
	$(CARGO) run --release --example bench

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
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt
