#!/usr/bin/env bash
# `make image`: builds the operator image mpu-relay-operator:<crate version> with Debian's
# buildah (installed with apt-get when missing), from the repository's Dockerfile, without a
# daemon and without pulling any image: image/rootfs.sh builds the static binary and its root
# filesystem here, and buildah takes that directory as the Dockerfile's `build` stage.
#
# Writes, under ${CARGO_TARGET_DIR:-target}/image/:
#   mpu-relay-operator-<version>.oci.tar    the image (OCI archive: `podman load -i`, `skopeo copy`)
#   mpu-relay-operator-<version>.cdx.json   its SBOM (CycloneDX JSON, by cargo-cyclonedx)
# and leaves the image in the local containers storage as localhost/mpu-relay-operator:<version>.
#
#   IMAGE_BUILD_TARGET_DIR   cargo target dir of the static build (default: <target>/image-build;
#                            its own dir, so a `cargo test` running meanwhile never blocks it)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
log() { echo "[image] $*" >&2; }

version=$(sed -n '/^\[package\]/,/^\[/ s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
name=mpu-relay-operator
tag="localhost/$name:$version"
target=${CARGO_TARGET_DIR:-$root/target}
out="$target/image"
mkdir -p "$out"

if ! command -v buildah >/dev/null || ! command -v podman >/dev/null; then
  log "installing buildah and podman from Debian (apt-get; once)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends buildah podman >&2 \
    || { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends buildah podman >&2; }
fi

# The `build` stage of the Dockerfile, made here: <context>/out/rootfs.
context="$out/context"
CARGO_TARGET_DIR=${IMAGE_BUILD_TARGET_DIR:-$target/image-build} "$root/image/rootfs.sh" "$context/out"

revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
# Layer and config timestamps from the commit, so an unchanged tree gives the same image.
epoch=$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)
empty=$(mktemp -d)
trap 'rm -rf "$empty"' EXIT
log "buildah build -t $tag (Dockerfile, build stage from $context)"
case "$(uname -m)" in
  x86_64) platform=linux/amd64 ;;
  aarch64) platform=linux/arm64 ;;
  *) platform=linux/$(uname -m) ;;
esac
buildah build --quiet --layers=false --identity-label=false --timestamp "$epoch" \
  --build-context "build=$context" --build-arg "TARGETPLATFORM=$platform" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  -f "$root/Dockerfile" -t "$tag" "$empty" >&2

archive="$out/$name-$version.oci.tar"
rm -f "$archive"
podman save --quiet --format oci-archive -o "$archive" "$tag"

# The SBOM: every crate compiled into the binary, for the image's target and features.
cyclonedx=$(env -u CARGO_TARGET_DIR "$root/tests/tools/build.sh" cargo-cyclonedx)
triple=$(rustc -vV | sed -n 's/^host: //p')
read -r -a features <<< "$("$root/image/rootfs.sh" --cargo-features)"
sbom="$out/$name-$version.cdx.json"
(
  cd "$root"
  "$cyclonedx" cyclonedx --format json --spec-version 1.5 --target "$triple" \
    --override-filename "$name-sbom" "${features[@]}" >&2
)
mv "$root/$name-sbom.json" "$sbom"
# cargo-cyclonedx writes one per workspace member; the simulator and the signing crate's own
# are not the image's (the signer is in the operator's SBOM as its dependency).
rm -f "$root"/crates/*/"$name-sbom.json"

size=$(podman image inspect --format '{{.Size}}' "$tag")
log "built $tag: $((size / 1024)) KiB ($(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1e6 }') MB)"
log "image archive: $archive"
log "SBOM: $sbom"
echo "$tag"
