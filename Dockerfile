# The petrel image: the agent and CLI (`petrel`) and the CNI IPAM plugin
# (`petrel-ipam`). Build from the repository root:
#
#   docker build -t petrel:0.1.0 .
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin petrel --bin petrel-ipam

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates iproute2 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/petrel /src/target/release/petrel-ipam /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/petrel"]
