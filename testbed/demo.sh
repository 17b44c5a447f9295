#!/usr/bin/env bash
# README's demo, in network namespaces, in two parts:
#  1. petrel peering with BIRD, FRR and GoBGP (IPv4 + IPv6): every session
#     Established, petrel's and each router's view;
#  2. petrel as the pod network: three nodes behind an FRR top-of-rack router
#     claim blocks from IP pools, pods are created through the real CNI chain
#     (ptp + petrel-ipam), and every pod pings every other node's pods over
#     IPv4 and IPv6 with no encapsulation; the ToR holds one route per block.
#   sudo testbed/demo.sh          # show and tear down
#   sudo testbed/demo.sh --keep   # leave the pod network running until Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."

keep=0
for arg in "$@"; do
    case "$arg" in
        --keep) keep=1 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "demo.sh: unknown argument $arg (use --keep)" >&2; exit 2 ;;
    esac
done

if [[ $(id -u) -ne 0 ]]; then
    echo "demo.sh: must run as root (network namespaces); try: sudo -E $0 $*" >&2
    exit 1
fi

# One line per step; build and install output only when a step fails.
log_dir=/tmp/petrel-demo-logs
mkdir -p "$log_dir"
step() {
    local what=$1 log="$log_dir/$2.log"
    shift 2
    printf '==== %s ... ' "$what"
    local start=$SECONDS
    if "$@" >"$log" 2>&1; then
        echo "ok ($((SECONDS - start)) s)"
    else
        echo "FAILED; its output ($log):"
        tail -n 40 "$log" >&2
        exit 1
    fi
}

# Only what the demo uses: BIRD, FRR, GoBGP, iproute2 and the CNI plugins
# (no Go, kubectl or buf: those are for .ci/test).
step "installing BIRD, FRR, GoBGP and the CNI plugins (apt)" setup bash .ci/setup-net
step "building petrel, petrel-ipam and the testbed (several minutes the first time)" build \
    cargo build --quiet -p petrel -p petrel-cni -p petrel-testbed --bins
target="${CARGO_TARGET_DIR:-target}"
export PETREL_BIN="${PETREL_BIN:-$(realpath "$target/debug/petrel")}"

echo "==== part 1: peering with BIRD, FRR and GoBGP"
"$target/debug/testbed" deploy testbed/topologies/demo/topology.clab.yaml --wait 60 --show --exit

echo
echo "==== part 2: the pod network (IPAM, CNI, routed pods)"
args=(deploy testbed/topologies/pods/topology.clab.yaml --wait 60 --pods 2)
if [[ $keep -eq 0 ]]; then
    args+=(--exit)
fi
exec "$target/debug/testbed" "${args[@]}"
