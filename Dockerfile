# The petrel image: the agent and CLI (`petrel`, the entrypoint) and the CNI
# IPAM plugin (`petrel-ipam`), run as manifests/daemonset.yaml shows.
#
# From source, in the repository root (needs the two public base images):
#
#   docker build -t petrel:dev .
#
# From release binaries built elsewhere (CI builds petrel once): a build
# context holding nothing but stripped `petrel` and `petrel-ipam`:
#
#   docker build --target prebuilt -f Dockerfile -t petrel:dev DIR
#
# testbed/images/build.sh petrel does that, on a local Debian base image.
# The base images are build arguments: RUST_IMAGE (to build) and
# RUNTIME_IMAGE (a Debian or Ubuntu image to run). The runtime needs /bin/sh,
# cp and mv (the install-cni init container), ip (iproute2), ping, sysctl
# (procps, for lab topologies' exec lines) and CA certificates; they are
# installed when the base lacks them.
#
# The default target needs BuildKit (Docker's default builder since 23.0;
# DOCKER_BUILDKIT=1 on older engines): the legacy builder builds every stage
# before the target, `prebuilt` too. Stages are ordered so that either
# builder builds `--target prebuilt` without compiling anything.
ARG RUST_IMAGE=rust:1.89-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUNTIME_IMAGE} AS runtime
RUN set -eu; \
    missing=""; \
    for p in ca-certificates iproute2 iputils-ping procps; do \
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"; \
    done; \
    if [ -n "$missing" ]; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing; \
        rm -rf /var/lib/apt/lists/*; \
    fi
ENTRYPOINT ["/usr/local/bin/petrel"]
CMD ["--help"]

FROM runtime AS prebuilt
COPY petrel petrel-ipam /usr/local/bin/

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# Stripped: the agent and the CNI plugin (exec'd for every pod) stay small.
ENV CARGO_PROFILE_RELEASE_STRIP=true
RUN cargo build --release --locked --bin petrel --bin petrel-ipam

FROM runtime
COPY --from=build /src/target/release/petrel /src/target/release/petrel-ipam /usr/local/bin/
