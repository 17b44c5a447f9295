#!/usr/bin/env bash
# One node of the one-machine cluster: containerd, kubelet and kube-proxy in
# the node's own network and mount namespaces. cluster.sh starts it as
#
#   nsenter --net=/run/netns/NETNS unshare --mount --uts --propagation private -- \
#       testbed/k8s/node.sh run NODE --dir DIR --host-mntns ID
#
# and it stays in the foreground as the node's "init": it sets the mounts up,
# starts the daemons, imports the images and waits. Everything the daemons
# write at fixed paths lands in the node's own directory (DIR/nodes/NODE):
#
#   /etc, /opt, /var/lib, /var/log   overlays on the host's directories, their
#                                    upper layers in DIR/nodes/NODE/fs (the
#                                    CNI conf and bin dirs, /var/lib/kubelet
#                                    device plugins, /var/lib/cni,
#                                    /var/log/pods and /var/log/containers,
#                                    petrel's /var/lib/petrel)
#   /run                             a private tmpfs (containerd's socket and
#                                    state, /run/netns of the pods, petrel's
#                                    API socket in /var/run/petrel)
#   /sys                             sysfs of the node's network namespace,
#                                    the host's cgroup hierarchies under it
#   the kubelet's kernel tunables    vm.overcommit_memory, vm.panic_on_oom,
#                                    kernel.panic, kernel.panic_on_oops,
#                                    kernel.keys.root_max{keys,bytes}: files
#                                    of the node bound over /proc/sys, holding
#                                    the values the kubelet wants, so it finds
#                                    them set (protectKernelDefaults) and the
#                                    host's stay as they are
#
# Its processes and the pods' live in the node's own cgroup tree
# (CGROUP_ROOT in DIR/nodes/NODE/node.env, the kubelet's cgroupRoot) in
# every hierarchy, so cluster.sh finds and ends them all.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROG=node.sh
# shellcheck source=testbed/k8s/lib.sh
. "$HERE/lib.sh"

# The values kubelet's setupKernelTunables wants (pkg/kubelet/cm); with
# protectKernelDefaults it only checks them.
KUBELET_SYSCTLS=(
    vm/overcommit_memory=1
    vm/panic_on_oom=0
    kernel/panic=10
    kernel/panic_on_oops=1
    kernel/keys/root_maxkeys=1000000
    kernel/keys/root_maxbytes=25000000
)

# Host directories the node sees through its own overlay.
OVERLAYS=(/etc /opt /var/lib /var/log)

# assert_private_mntns HOST_ID: refuses to go on in the host's mount namespace
# (the mounts below would then change the host).
assert_private_mntns() {
    local mine
    mine=$(readlink /proc/self/ns/mnt)
    [[ $mine != "$1" && $mine != "$(readlink /proc/1/ns/mnt)" ]] ||
        die "not in a private mount namespace (refusing to mount over the host's /etc, /var, /run)"
}

setup_mounts() {
    local nd=$1 d name
    mount --make-rprivate /
    # /run first: it also holds the cgroup tree while /sys is replaced.
    mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
    mkdir -p /run/lock /run/.cgroup
    mount --rbind /sys/fs/cgroup /run/.cgroup
    mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
    mount --move /run/.cgroup /sys/fs/cgroup
    rmdir /run/.cgroup
    for d in "${OVERLAYS[@]}"; do
        name=${d#/}
        name=${name//\//-}
        mkdir -p "$nd/fs/$name.upper" "$nd/fs/$name.work"
        mount -t overlay overlay -o "lowerdir=$d,upperdir=$nd/fs/$name.upper,workdir=$nd/fs/$name.work" "$d"
    done
    local kv key value file
    mkdir -p "$nd/sysctl"
    for kv in "${KUBELET_SYSCTLS[@]}"; do
        key=${kv%%=*}
        value=${kv#*=}
        file=$nd/sysctl/${key//\//.}
        echo "$value" >"$file"
        mount --bind "$file" "/proc/sys/$key"
    done
    # The CNI plugins: Debian's reference plugins (ptp, host-local,
    # loopback, ...) where the DaemonSet and containerd expect them.
    mkdir -p /opt/cni/bin /etc/cni/net.d
    for d in /usr/lib/cni/*; do
        ln -sfn "$d" "/opt/cni/bin/$(basename "$d")"
    done
}

# join_cgroup ROOT: moves this process into ROOT/system in every hierarchy
# (the daemons it starts follow), creating ROOT with the parent's cpusets.
join_cgroup() {
    local root=$1 h
    for h in /sys/fs/cgroup/*/; do
        h=${h%/}
        [[ -f $h/cgroup.procs ]] || continue
        mkdir -p "$h$root/system"
        if [[ -f $h/cpuset.cpus ]]; then
            cat "$h/cpuset.cpus" >"$h$root/cpuset.cpus"
            cat "$h/cpuset.mems" >"$h$root/cpuset.mems"
            cat "$h/cpuset.cpus" >"$h$root/system/cpuset.cpus"
            cat "$h/cpuset.mems" >"$h$root/system/cpuset.mems"
        fi
        echo $$ >"$h$root/system/cgroup.procs"
    done
}

# wait_socket PATH PID NAME: until PATH is a socket, or NAME (PID) died.
wait_socket() {
    for _ in $(seq 300); do
        [[ -S $1 ]] && return 0
        alive "$2" || die "$3 exited (log: $LOGS/$3.log)"
        sleep 0.1
    done
    die "$3 did not create $1 in 30 s (log: $LOGS/$3.log)"
}

start() {
    local name=$1
    shift
    "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
    echo $! >"$ND/$name.pid"
}

cmd_run() {
    local node=$1
    ND=$DIR/nodes/$node
    LOGS=$ND/logs
    [[ -f $ND/node.env ]] || die "$ND/node.env missing (cluster.sh writes it)"
    # shellcheck source=/dev/null
    . "$ND/node.env"
    assert_private_mntns "$HOST_MNTNS"
    mkdir -p "$LOGS"
    exec >>"$LOGS/node.log" 2>&1
    log "node $node: setting up mounts"
    setup_mounts "$ND"
    # Its own UTS namespace: hostNetwork pods see the node's name.
    hostname "$node"
    join_cgroup "$CGROUP_ROOT"
    readlink /proc/self/ns/mnt >"$ND/mntns"
    echo $$ >"$ND/init.pid"

    start containerd containerd --config "$ND/containerd.toml"
    wait_socket /run/containerd/containerd.sock "$(cat "$ND/containerd.pid")" containerd
    local image
    for image in "$DIR"/images/*.tar; do
        [[ -f $image ]] || continue
        log "importing $(basename "$image")"
        ctr --address /run/containerd/containerd.sock --namespace k8s.io images import "$image" >>"$LOGS/images.log" 2>&1 ||
            die "importing $image failed (log: $LOGS/images.log)"
    done
    start kubelet "$BIN/kubelet" --config "$ND/kubelet.yaml" --kubeconfig "$ND/kubelet.kubeconfig" \
        --hostname-override "$node" --node-ip "$NODE_IP" --node-labels "$NODE_LABELS" \
        --v "${PETREL_K8S_VERBOSITY:-1}"
    start kube-proxy "$BIN/kube-proxy" --config "$ND/kube-proxy.yaml" --v "${PETREL_K8S_VERBOSITY:-1}"
    log "node $node: containerd $(cat "$ND/containerd.pid"), kubelet $(cat "$ND/kubelet.pid"), kube-proxy $(cat "$ND/kube-proxy.pid")"
    touch "$ND/started"
    # Stay as the holder of the mount namespace; report a daemon that dies.
    local pid daemon
    while :; do
        for daemon in containerd kubelet kube-proxy; do
            pid=$(cat "$ND/$daemon.pid" 2>/dev/null || true)
            if [[ -n $pid ]] && ! alive "$pid"; then
                log "node $node: $daemon ($pid) exited; see $LOGS/$daemon.log"
                rm -f "$ND/$daemon.pid"
            fi
        done
        sleep 2
    done
}

# cmd_load TARBALL...: imports images into this node's running containerd
# (cluster.sh runs it in the node's namespaces).
cmd_load() {
    local image
    for image in "$@"; do
        ctr --address /run/containerd/containerd.sock --namespace k8s.io images import "$image" >&2 ||
            die "importing $image failed"
    done
}

cmd=${1:-}
shift || true
DIR=""
ARGS=()
while (($#)); do
    case $1 in
        --dir) DIR=$2; shift 2 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
[[ -n $DIR ]] || die "--dir is required"
case $cmd in
    run) ((${#ARGS[@]} == 1)) || die "usage: $0 run NODE --dir DIR"; cmd_run "${ARGS[0]}" ;;
    load) cmd_load "${ARGS[@]}" ;;
    *) die "usage: $0 run NODE --dir DIR | load TARBALL... --dir DIR" ;;
esac
