# syntax=docker/dockerfile:1
# The operator image: one static binary on an empty base (`FROM scratch`), running as the
# non-root user 65532, with CA certificates and nothing else (no shell, no package manager).
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=0.1.0 -t <registry>/mpu-relay-operator:0.1.0 --push .
#
# `make image` builds this same file with Debian's buildah, without pulling anything: it runs
# image/rootfs.sh on the machine and hands its output in as the `build` stage
# (`--build-context build=<dir>`), so both images have exactly the same files.
# Each platform is compiled natively in its own builder (under QEMU when the machine's
# architecture differs; README "Container image" has the faster native-builder setup).

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Only what the release binary is built from: no tests, no examples, no target/ from the host.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY image ./image
ARG TARGETPLATFORM
# One target cache per platform: buildx builds both at once and they must not share it.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,id=target-${TARGETPLATFORM} \
    image/rootfs.sh /out

FROM scratch
# The crate version (Cargo.toml) and the git commit; `make image` sets both.
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="mpu-relay-operator" \
      org.opencontainers.image.description="Kubernetes operator for Alibaba Cloud ApsaraVideo Live stream relay (MPU) tasks" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# /usr/local/bin/mpu-relay-operator, /etc/ssl/certs/ca-certificates.crt, /etc/passwd,
# /etc/group, /etc/nsswitch.conf (image/rootfs.sh).
COPY --from=build /out/rootfs/ /
# The same uid as the chart's podSecurityContext.
USER 65532:65532
# /metrics, /healthz and /readyz.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/mpu-relay-operator"]
CMD ["run"]
