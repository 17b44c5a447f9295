#!/usr/bin/env bash
# README's demo: petrel peering with BIRD, FRR and GoBGP (IPv4 + IPv6) in
# network namespaces. Builds, deploys the `demo` topology, waits until every
# session is Established, prints petrel's and each router's view, tears down.
#   sudo testbed/demo.sh          # show and tear down
#   sudo testbed/demo.sh --keep   # leave it running until Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."

keep=0
for arg in "$@"; do
    case "$arg" in
        --keep) keep=1 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "demo.sh: unknown argument $arg (use --keep)" >&2; exit 2 ;;
    esac
done

if [[ $(id -u) -ne 0 ]]; then
    echo "demo.sh: must run as root (network namespaces); try: sudo -E $0 $*" >&2
    exit 1
fi

bash .ci/setup
cargo build --bin petrel
cargo build -p petrel-testbed --bin testbed
target="${CARGO_TARGET_DIR:-target}"
export PETREL_BIN="${PETREL_BIN:-$(realpath "$target/debug/petrel")}"

args=(deploy testbed/topologies/demo/topology.clab.yaml --wait 60 --show)
if [[ $keep -eq 0 ]]; then
    args+=(--exit)
fi
exec "$target/debug/testbed" "${args[@]}"
