# syntax=docker/dockerfile:1
# The operator image: a static (musl) binary on distroless/static, running as a non-root user.
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t <registry>/mpu-relay-operator:0.1.0 --push .
#
# Each platform is compiled natively in its own builder (under QEMU when the machine's
# architecture differs; README "Container image" has the faster native-builder setup).

ARG RUST_VERSION=1.95
ARG ALPINE_VERSION=3.22

FROM rust:${RUST_VERSION}-alpine${ALPINE_VERSION} AS build
# musl-dev: ring (TLS and signing) compiles a little C and assembly.
RUN apk add --no-cache musl-dev
WORKDIR /src
# Only what the release binary is built from: no tests, no examples, no target/ from the host.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# musl targets link statically by default (no RUSTFLAGS crt-static: it would break proc-macros).
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_PROFILE_RELEASE_LTO=thin \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
ARG TARGETPLATFORM
# One target cache per platform: buildx builds both at once and they must not share it.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,id=target-${TARGETPLATFORM} \
    cargo build --release --locked --bin mpu-relay-operator \
 && install -D -m 0755 target/release/mpu-relay-operator /out/mpu-relay-operator \
 && /out/mpu-relay-operator --version \
 && if ldd /out/mpu-relay-operator 2>/dev/null | grep -q '=>'; then echo "not static" >&2; exit 1; fi

# distroless/static: no shell, no package manager; it ships /etc/ssl/certs/ca-certificates.crt,
# which the HTTP client's platform verifier needs to trust Alibaba Cloud's endpoints, and the
# `nonroot` user (65532), the same uid as the chart's podSecurityContext.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="mpu-relay-operator" \
      org.opencontainers.image.description="Kubernetes operator for Alibaba Cloud ApsaraVideo Live stream relay (MPU) tasks" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/mpu-relay-operator /usr/local/bin/mpu-relay-operator
USER 65532:65532
# /metrics, /healthz and /readyz.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/mpu-relay-operator"]
CMD ["run"]
