#!/usr/bin/env bash
# Builds (once) the control-plane binaries the tests run against: kube-apiserver, kubectl, etcd,
# and helm, from the pinned wrapper modules beside this script. Prints the bin directory.
#
# The binaries are cached outside the repo, keyed by version, so later runs skip the build:
#   ${MPU_RELAY_CACHE:-~/.cache/mpu-relay-operator}/k8s-<ver>-etcd-<ver>-helm-<ver>/
# A fresh machine builds them by itself (the first build takes several minutes on 2 cores).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=$(awk '/k8s.io\/kubernetes v/ {print $NF; exit}' "$here/kube/go.mod")
ETCD_VERSION=$(awk '/go.etcd.io\/etcd\/server\/v3 v/ {print $NF; exit}' "$here/etcd/go.mod")
HELM_VERSION=v3.19.5
cache=${MPU_RELAY_CACHE:-$HOME/.cache/mpu-relay-operator}
bin="$cache/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"

log() { echo "[controlplane] $*" >&2; }

if [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kubectl" ] && [ -x "$bin/etcd" ] && [ -x "$bin/helm" ]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { log "Go is required to build the control plane (see README prerequisites)"; exit 1; }
mkdir -p "$bin.partial"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

# Stamp the release into the binaries, as Kubernetes' own build does, so that `kubectl version`
# and the apiserver's /version tell the truth instead of "v0.0.0-master".
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
K8S_LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  K8S_LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

build() { # dir, package, output
  local dir=$1 pkg=$2 out=$3 start=$SECONDS
  if [ -x "$bin.partial/$out" ]; then return; fi
  log "building $out ($pkg) ... (first time only; can take several minutes)"
  (cd "$here/$dir" && go build -trimpath -ldflags="$K8S_LDFLAGS" -o "$bin.partial/$out.tmp" "$pkg")
  mv "$bin.partial/$out.tmp" "$bin.partial/$out"
  log "built $out in $((SECONDS - start))s"
}

# Print progress while a long build runs so nobody thinks it hangs.
( while sleep 30; do log "still building ... ($(ls "$bin.partial" 2>/dev/null | grep -vc tmp) of 4 done)"; done ) &
ticker=$!
trap 'kill $ticker 2>/dev/null || true' EXIT

build etcd . etcd
build kube k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
build kube k8s.io/kubernetes/cmd/kubectl kubectl
if [ ! -x "$bin.partial/helm" ]; then
  log "installing helm $HELM_VERSION with go install ..."
  GOBIN="$bin.partial" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

rm -rf "$bin" && mv "$bin.partial" "$bin"
log "control-plane binaries ready in $bin"
echo "$bin"
