# syntax=docker/dockerfile:1
# The berth image: one static binary that is the registry (`berth serve`), the
# operator (`berth operator`) and the GC client its CronJob runs (`berth gc`).
#
#   docker build -t berth:0.1.0 .
#
# Stage 1 builds a statically linked binary (glibc's static libc, the same
# cargo flags as a local static build); stage 2 holds that binary and nothing
# else but distroless' /etc/passwd, CA certificates and time zones.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# With an explicit --target, RUSTFLAGS apply to berth and its dependencies but
# not to build scripts and proc-macros, which must stay dynamic.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eux; \
    target="$(rustc -vV | sed -n 's/^host: //p')"; \
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --bin berth --target "$target"; \
    cp "target/$target/release/berth" /berth; \
    /berth --version; \
    mkdir -p /rootfs/var/lib/registry

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /berth /berth
# Where `berth serve` keeps its data in the image (a volume in Kubernetes).
COPY --from=build --chown=65532:65532 /rootfs/var/lib/registry /var/lib/registry
ENV BERTH_ROOT=/var/lib/registry
USER 65532:65532
EXPOSE 5000 8080
ENTRYPOINT ["/berth"]
CMD ["serve"]
