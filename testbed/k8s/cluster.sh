#!/usr/bin/env bash
# A real Kubernetes cluster on one machine, in network namespaces: the control
# plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler), N
# nodes each with its own containerd, kubelet and kube-proxy, and an FRR
# top-of-rack router. For petrel's end-to-end tests and for trying petrel's
# manifests on real kubelets. Needs root.
#
#   testbed/k8s/cluster.sh up [--nodes N] [--dir DIR] [--image NAME=TARBALL]... [--image NAME]...
#                             [--watch-pid PID]
#       Builds what is missing (cached, like controlplane.sh), starts the
#       cluster and waits until every node has registered (and pods can be
#       created: the default ServiceAccount exists), then prints the
#       admin kubeconfig path as the last line of stdout:
#           kubectl --kubeconfig "$(testbed/k8s/cluster.sh up)" get nodes
#       Every node's containerd gets the pause and petrel-test:dev images
#       (testbed/k8s/images.sh) and each --image: NAME=TARBALL imports a
#       `docker save` or OCI archive, a bare NAME is saved from the local
#       Docker engine. Without any, petrel:dev is taken from Docker when it
#       has it. Running `up` again on a running cluster of the same size only
#       prints the path; on a broken or killed one it starts over. With
#       --watch-pid the cluster goes down by itself when that process exits
#       (tests pass their own pid).
#   testbed/k8s/cluster.sh down [--dir DIR]      stops everything, removes DIR
#   testbed/k8s/cluster.sh status [--dir DIR]    processes and nodes
#   testbed/k8s/cluster.sh env [--dir DIR]       `export KUBECONFIG=...` lines and more
#   testbed/k8s/cluster.sh exec NODE [--dir DIR] -- CMD...
#       runs CMD in a node's network and mount namespaces (`exec tor` and
#       `exec cp` in the router's and the control plane's network namespace)
#   testbed/k8s/cluster.sh load NAME=TARBALL|NAME... [--dir DIR]
#       imports images into every node of the running cluster
#   testbed/k8s/cluster.sh kill NODE [--dir DIR]
#       a power failure: kills every process of NODE (kubelet, containerd,
#       pods); its namespace and link stay, `down` still cleans up
#   testbed/k8s/cluster.sh build                  builds binaries and images
#
# Layout (all in namespaces named <id>-tor, <id>-cp, <id>-node1..N, where
# <id> is "pc" and a hash of DIR, so clusters in different DIRs coexist):
#
#   10.10.0.0/24   one L2 segment (a bridge in the ToR namespace)
#   10.10.0.1      ToR: FRR (zebra + bgpd), AS 65000, eBGP with every node
#   10.10.0.2      control plane: etcd, kube-apiserver on :6443, controller
#                  manager and scheduler; the host reaches the API server on a
#                  127.0.0.1 port (a socat pair through a Unix socket)
#   10.10.0.10+i   node i ("node<i>"): kubelet, containerd, kube-proxy
#                  (iptables mode), default route via the ToR, Node labels
#                  rack=rack1 and annotations petrel.dev/ipv4-address and
#                  petrel.dev/as-number (64512, as every node)
#   10.96.0.0/16   Service cluster IPs (the API server: 10.96.0.1)
#
# See testbed/k8s/README.md for what each node keeps private (mounts,
# cgroups, kernel tunables) and why.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PROG=cluster.sh
# shellcheck source=testbed/k8s/lib.sh
. "$HERE/lib.sh"

FABRIC=10.10.0
TOR_IP=$FABRIC.1
CP_IP=$FABRIC.2
TOR_AS=65000
NODE_AS=64512
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1
APISERVER_PORT=6443
NODE_BINARIES=(kubelet kube-proxy kube-controller-manager kube-scheduler)
FRR_DIR=/usr/lib/frr
# Where a node's overlays go (node.sh): DIR must not be below them.
OVERLAID=(/etc /opt /var/lib /var/log /run /var/run /sys /proc)

node_ip() { echo "$FABRIC.$((10 + ${1#node}))"; }

# ---------------------------------------------------------------- build

cmd_build() {
    local node_version b
    node_version=$(module_version "$HERE/node/go.mod" k8s.io/kubernetes)
    [[ $node_version == "$KUBE_VERSION" ]] ||
        die "testbed/k8s/node/go.mod has k8s.io/kubernetes $node_version, the API server $KUBE_VERSION: keep them equal"
    bash "$HERE/controlplane.sh" build >/dev/null
    for b in "${NODE_BINARIES[@]}"; do
        build_one "$HERE/node" "k8s.io/kubernetes/cmd/$b" "$BIN/$b" "$(kube_ldflags)"
    done
    echo "$BIN"
}

check_tools() {
    local t missing=()
    for t in containerd ctr runc socat jq nsenter unshare iptables openssl curl; do
        command -v "$t" >/dev/null || missing+=("$t")
    done
    [[ -x $FRR_DIR/zebra && -x $FRR_DIR/bgpd ]] || missing+=(frr)
    [[ -x /usr/lib/cni/ptp ]] || missing+=(containernetworking-plugins)
    [[ -x /bin/busybox ]] || missing+=(busybox-static)
    [[ -f $REPO/.ci/runc-wrapper ]] || missing+=(.ci/runc-wrapper)
    ((${#missing[@]} == 0)) || die "missing: ${missing[*]} (run .ci/setup-k8s-cluster)"
}

# ---------------------------------------------------------------- state

# The namespace prefix of DIR's cluster.
cluster_id() { echo "pc$(printf '%s' "$DIR" | sha256sum | cut -c1-6)"; }

load_state() {
    [[ -f $DIR/cluster ]] || return 1
    # shellcheck source=/dev/null
    . "$DIR/cluster"
}

netns_exists() { [[ -e /run/netns/$1 ]]; }

kubectl_admin() {
    [[ -n $KUBECTL ]] || KUBECTL=$(kubectl_cmd)
    "$KUBECTL" --kubeconfig "$DIR/admin.kubeconfig" "$@"
}

# Every daemon of the cluster runs (the answer to "is `up` already done?").
healthy() {
    load_state || return 1
    [[ -f $DIR/up ]] || return 1
    local f
    for f in "$DIR"/pids/*.pid "$DIR"/tor/zebra.pid "$DIR"/tor/bgpd.pid \
        "$DIR"/controlplane/etcd.pid "$DIR"/controlplane/kube-apiserver.pid; do
        [[ -f $f ]] && alive "$(cat "$f")" || return 1
    done
    local i d
    for ((i = 1; i <= NODES; i++)); do
        for d in init containerd kubelet kube-proxy; do
            f=$DIR/nodes/node$i/$d.pid
            [[ -f $f ]] && alive "$(cat "$f")" || return 1
        done
    done
    kubectl_admin get --raw /readyz >/dev/null 2>&1
}

# ---------------------------------------------------------------- network

netns_add() {
    ip netns add "$1"
    ip -n "$1" link set lo up
    ip netns exec "$1" sysctl -q -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
}

# attach NS IFNAME PORT IP: a veth from NS (IFNAME, address IP/24) to the
# ToR's bridge (port PORT). Both ends are created inside the namespaces.
attach() {
    local ns=$1 ifname=$2 port=$3 ip=$4
    ip -n "$ns" link add "$ifname" type veth peer name "$port" netns "$TOR"
    ip -n "$TOR" link set "$port" master br0 up
    ip -n "$ns" addr add "$ip/24" dev "$ifname"
    ip -n "$ns" link set "$ifname" up
    ip -n "$ns" route add default via "$TOR_IP"
}

setup_network() {
    local i
    netns_add "$TOR"
    ip -n "$TOR" link add br0 type bridge
    ip -n "$TOR" addr add "$TOR_IP/24" dev br0
    ip -n "$TOR" link set br0 up
    netns_add "$CP"
    ip -n "$CP" link add eth0 type veth peer name cp netns "$TOR"
    ip -n "$TOR" link set cp master br0 up
    ip -n "$CP" addr add "$CP_IP/24" dev eth0
    ip -n "$CP" link set eth0 up
    ip -n "$CP" route add default via "$TOR_IP"
    for ((i = 1; i <= NODES; i++)); do
        netns_add "$ID-node$i"
        attach "$ID-node$i" eth0 "node$i" "$(node_ip $i)"
    done
}

start_tor() {
    local d=$DIR/tor
    mkdir -p "$d"
    echo "! zebra of the cluster's ToR (cluster.sh)" >"$d/zebra.conf"
    cat >"$d/bgpd.conf" <<EOF
! The cluster's top-of-rack router (testbed/k8s/cluster.sh): eBGP with each
! node (AS $NODE_AS), ECMP over the nodes. Configured neighbors, not a listen
! range: FRR 8.4 kept a dynamic neighbor's graceful-restart stale routes
! after its restart time had run out.
frr defaults datacenter
hostname tor
log stdout informational
!
router bgp $TOR_AS
 bgp router-id $TOR_IP
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor NODES peer-group
 neighbor NODES remote-as external
$(for ((i = 1; i <= NODES; i++)); do echo " neighbor $(node_ip $i) peer-group NODES"; done)
 !
 address-family ipv4 unicast
  neighbor NODES activate
  maximum-paths 16
 exit-address-family
exit
EOF
    chown -R frr:frr "$d"
    local daemon
    for daemon in zebra bgpd; do
        ip netns exec "$TOR" setsid "$FRR_DIR/$daemon" -P 0 -f "$d/$daemon.conf" --vty_socket "$d" \
            -i "$d/$daemon.pid" -z "$d/zserv.api" --log stdout </dev/null >>"$DIR/logs/tor-$daemon.log" 2>&1 &
        if [[ $daemon == zebra ]]; then
            for _ in $(seq 100); do [[ -S $d/zserv.api ]] && break; sleep 0.1; done
            [[ -S $d/zserv.api ]] || die "zebra did not start (log: $DIR/logs/tor-zebra.log)"
        fi
    done
    for _ in $(seq 100); do [[ -s $d/bgpd.pid ]] && break; sleep 0.1; done
    [[ -s $d/bgpd.pid ]] || die "bgpd did not start (log: $DIR/logs/tor-bgpd.log)"
}

# ---------------------------------------------------------------- control plane

# spawn NAME NETNS CMD...: a daemon in NETNS ("" for the host), logged, pid
# in DIR/pids/NAME.pid.
spawn() {
    local name=$1 ns=$2
    shift 2
    if [[ -n $ns ]]; then
        setsid ip netns exec "$ns" "$@" </dev/null >>"$DIR/logs/$name.log" 2>&1 &
    else
        setsid "$@" </dev/null >>"$DIR/logs/$name.log" 2>&1 &
    fi
    echo $! >"$DIR/pids/$name.pid"
}

cp_user() {
    bash "$HERE/controlplane.sh" user "$@" --dir "$CPDIR"
}

start_control_plane() {
    local pki=$CPDIR/pki
    ip netns exec "$CP" bash "$HERE/controlplane.sh" start --dir "$CPDIR" \
        --apiserver-port "$APISERVER_PORT" --etcd-port 2379 --etcd-peer-port 2380 \
        --san "IP:$CP_IP,IP:$SERVICE_IP" \
        --apiserver-arg=--bind-address=0.0.0.0 \
        --apiserver-arg=--advertise-address="$CP_IP" \
        --apiserver-arg=--service-cluster-ip-range="$SERVICE_CIDR" \
        --apiserver-arg=--endpoint-reconciler-type=lease \
        --apiserver-arg=--authorization-mode=Node,RBAC \
        --apiserver-arg=--enable-admission-plugins=NodeRestriction \
        --apiserver-arg=--allow-privileged=true \
        --apiserver-arg=--kubelet-preferred-address-types=InternalIP \
        >/dev/null

    # The host's way in: 127.0.0.1:PORT -> Unix socket -> the API server.
    spawn apiserver-forward-in "$CP" socat "UNIX-LISTEN:$DIR/apiserver.sock,fork,unlink-early,mode=600" \
        "TCP:127.0.0.1:$APISERVER_PORT"
    local port attempt
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        spawn apiserver-forward-out "" socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" \
            "UNIX-CONNECT:$DIR/apiserver.sock"
        sleep 0.3
        alive "$(cat "$DIR/pids/apiserver-forward-out.pid")" && break
        ((attempt < 5)) || die "the API server forwarder did not start (log: $DIR/logs/apiserver-forward-out.log)"
    done
    mv "$(cp_user petrel-admin system:masters --server "https://127.0.0.1:$port")" "$DIR/admin.kubeconfig"
    for _ in $(seq 50); do kubectl_admin get --raw /readyz >/dev/null 2>&1 && break; sleep 0.2; done
    kubectl_admin get --raw /readyz >/dev/null || die "the API server does not answer through 127.0.0.1:$port"

    mkdir -p "$CPDIR/flexvolume"
    spawn kube-controller-manager "$CP" "$BIN/kube-controller-manager" \
        --kubeconfig "$(cp_user system:kube-controller-manager)" \
        --leader-elect=false --secure-port=0 \
        --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
        --use-service-account-credentials \
        --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --flex-volume-plugin-dir "$CPDIR/flexvolume" \
        --v "${PETREL_K8S_VERBOSITY:-1}"
    spawn kube-scheduler "$CP" "$BIN/kube-scheduler" \
        --kubeconfig "$(cp_user system:kube-scheduler)" \
        --leader-elect=false --secure-port=0 --v "${PETREL_K8S_VERBOSITY:-1}"
}

# ---------------------------------------------------------------- nodes

write_node_config() {
    local i=$1 node=node$1 nd ip pki=$CPDIR/pki
    nd=$DIR/nodes/$node
    ip=$(node_ip "$i")
    mkdir -p "$nd/logs" "$nd/kubelet" "$nd/containerd"
    mv "$(cp_user "system:node:$node" system:nodes --server "https://$CP_IP:$APISERVER_PORT")" "$nd/kubelet.kubeconfig"
    bash "$HERE/controlplane.sh" serving-cert "kubelet-$node" "IP:$ip,DNS:$node" --dir "$CPDIR" >/dev/null
    cat >"$nd/node.env" <<EOF
HOST_MNTNS='$(readlink /proc/self/ns/mnt)'
CGROUP_ROOT='/$ID-$node'
NODE_IP='$ip'
NODE_LABELS='rack=rack1'
BIN='$BIN'
EOF
    cat >"$nd/containerd.toml" <<EOF
# containerd of $node (testbed/k8s/cluster.sh). Debian's containerd 1.6.
version = 2
root = "$nd/containerd/root"
state = "/run/containerd"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$nd/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/library/petrel-pause:dev"
  disable_apparmor = true
  # Without CAP_SYS_RESOURCE (not in this host's bounding set) no process may
  # lower its oom_score_adj, and runc fails on the kubelet's -998 for the
  # sandbox ("failed to update /proc/self/oom_score_adj: Permission denied"):
  # keep every container's at or above containerd's own (0).
  restrict_oom_score_adj = true
  disable_hugetlb_controller = true
  tolerate_missing_hugetlb_controller = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$DIR/bin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
EOF
    cat >"$nd/kubelet.yaml" <<EOF
# kubelet of $node (testbed/k8s/cluster.sh)
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $pki/ca.crt
authorization:
  mode: Webhook
tlsCertFile: $pki/kubelet-$node.crt
tlsPrivateKeyFile: $pki/kubelet-$node.key
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
# The machine's cgroups are v1 (hybrid); each node has its own subtree.
cgroupDriver: cgroupfs
cgroupRoot: /$ID-$node
failCgroupV1: false
failSwapOn: false
# node.sh binds files with these values over /proc/sys in the node's mount
# namespace: the kubelet checks them instead of writing the host's.
protectKernelDefaults: true
oomScoreAdj: 0
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
hairpinMode: none
volumePluginDir: /var/lib/kubelet/volumeplugins
# Images come from tarballs, not a registry: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# All nodes share the host's disk: no disk-pressure evictions.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
serializeImagePulls: false
shutdownGracePeriod: 0s
EOF
    cat >"$nd/kube-proxy.yaml" <<EOF
# kube-proxy of $node (testbed/k8s/cluster.sh)
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $DIR/kube-proxy.kubeconfig
hostnameOverride: $node
mode: iptables
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
oomScoreAdj: 0
# Zero: leave the kernel's conntrack settings alone (nf_conntrack_max and
# the hash size are host-wide).
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
# NodePorts on the node's own address only.
nodePortAddresses: [primary]
iptables:
  localhostNodePorts: false
EOF
}

start_node() {
    local node=$1
    spawn "$node" "" nsenter --net="/run/netns/$ID-$node" -- \
        unshare --mount --uts --propagation private -- \
        bash "$HERE/node.sh" run "$node" --dir "$DIR"
}

# collect_images: DIR/images/*.tar from images.sh, --image and Docker.
collect_images() {
    mkdir -p "$DIR/images"
    local name tar
    while IFS='=' read -r name tar; do
        ln -sfn "$tar" "$DIR/images/${name//[:\/]/_}.tar"
    done < <(bash "$HERE/images.sh" build)
    local spec found_petrel=0
    for spec in "${IMAGES[@]}"; do
        name=${spec%%=*}
        [[ $name == petrel:* || $name == */petrel:* ]] && found_petrel=1
        if [[ $spec == *=* ]]; then
            tar=${spec#*=}
            [[ -f $tar ]] || die "--image $spec: no such file $tar"
            ln -sfn "$(realpath "$tar")" "$DIR/images/${name//[:\/]/_}.tar"
        else
            docker_save "$name" || die "--image $name: not in the local Docker engine"
        fi
    done
    if ((found_petrel == 0)); then
        docker_save petrel:dev ||
            log "no petrel:dev image (give --image petrel:dev=TARBALL, or build it with Docker): nodes run without it"
    fi
}

# docker_save NAME: saves NAME from the local Docker engine into DIR/images.
docker_save() {
    command -v docker >/dev/null && docker image inspect "$1" >/dev/null 2>&1 || return 1
    log "saving $1 from Docker"
    docker save -o "$DIR/images/${1//[:\/]/_}.tar" "$1"
}

wait_nodes() {
    local deadline=$(($(date +%s) + ${PETREL_K8S_START_TIMEOUT:-180})) i missing
    while :; do
        missing=()
        for ((i = 1; i <= NODES; i++)); do
            alive "$(cat "$DIR/pids/node$i.pid")" || {
                tail -n 20 "$DIR/nodes/node$i/logs/node.log" >&2 || true
                die "node$i's namespace init exited (logs in $DIR/nodes/node$i/logs)"
            }
            kubectl_admin get node "node$i" >/dev/null 2>&1 || missing+=("node$i")
        done
        ((${#missing[@]} == 0)) && break
        if (($(date +%s) > deadline)); then
            tail -n 20 "$DIR/nodes/${missing[0]}/logs/kubelet.log" >&2 || true
            die "not registered after ${PETREL_K8S_START_TIMEOUT:-180}s: ${missing[*]} (logs in $DIR/nodes/*/logs)"
        fi
        sleep 0.5
    done
    for ((i = 1; i <= NODES; i++)); do
        kubectl_admin annotate --overwrite node "node$i" \
            "petrel.dev/ipv4-address=$(node_ip "$i")/24" "petrel.dev/as-number=$NODE_AS" >/dev/null
    done
    # Pods are refused until the controller manager has made the namespace's
    # default ServiceAccount ("serviceaccount "default" not found").
    until kubectl_admin -n default get serviceaccount default >/dev/null 2>&1; do
        (($(date +%s) > deadline)) &&
            die "no ServiceAccount default/default after ${PETREL_K8S_START_TIMEOUT:-180}s (logs in $DIR/logs)"
        sleep 0.5
    done
}

# ---------------------------------------------------------------- commands

cmd_up() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (namespaces, mounts, cgroups)"
    [[ $NODES =~ ^[1-9][0-9]{0,2}$ ]] && ((NODES <= 200)) || die "--nodes must be 1..200"
    local d
    for d in "${OVERLAID[@]}"; do
        [[ $DIR/ != "$d"/* ]] || die "--dir $DIR is below $d, which every node overlays: choose another"
    done
    if healthy; then
        ((NODES == ${CLUSTER_NODES:-0})) || die "a cluster of $CLUSTER_NODES nodes runs in $DIR (run down first)"
        ((${#IMAGES[@]} == 0)) || cmd_load "${IMAGES[@]}"
        echo "$DIR/admin.kubeconfig"
        return 0
    fi
    if [[ -f $DIR/cluster ]]; then
        log "a previous cluster in $DIR is incomplete: tearing it down first"
        cmd_down
    elif [[ -e $DIR && -n $(ls -A "$DIR" 2>/dev/null) ]]; then
        die "$DIR exists and is no cluster directory; choose another --dir"
    fi
    check_tools
    local start
    start=$(date +%s%N)
    cmd_build >/dev/null
    mkdir -p "$DIR/logs" "$DIR/pids" "$DIR/bin" "$DIR/nodes"
    chmod 755 "$DIR"
    cat >"$DIR/cluster" <<EOF
CLUSTER_ID=$ID
CLUSTER_NODES=$NODES
CLUSTER_VERSION=$KUBE_VERSION
EOF
    snapshot_sysctls >"$DIR/host-sysctls"
    sed "s|^REAL_RUNC = .*|REAL_RUNC = \"$(command -v runc)\"|" "$REPO/.ci/runc-wrapper" >"$DIR/bin/runc"
    chmod 0755 "$DIR/bin/runc"
    collect_images

    setup_network
    start_tor
    start_control_plane
    mv "$(cp_user system:kube-proxy --server "https://$CP_IP:$APISERVER_PORT")" "$DIR/kube-proxy.kubeconfig"
    local i
    for ((i = 1; i <= NODES; i++)); do
        write_node_config "$i"
        start_node "node$i"
    done
    wait_nodes
    if [[ -n $WATCH_PID ]]; then
        # Runs `down` when WATCH_PID exits (also when it is killed).
        setsid bash -c '
            while [[ -r /proc/$1/stat ]] && ! grep -q ") Z " "/proc/$1/stat" 2>/dev/null; do sleep 1; done
            PETREL_WATCHDOG_PID=$$ exec bash "$2" down --dir "$3"
        ' watchdog "$WATCH_PID" "$HERE/cluster.sh" "$DIR" </dev/null >>"$DIR/logs/watchdog.log" 2>&1 &
        echo $! >"$DIR/watchdog.pid"
    fi
    touch "$DIR/up"
    log "cluster $ID up in $((($(date +%s%N) - start) / 1000000)) ms: $NODES nodes, Kubernetes $KUBE_VERSION; logs in $DIR/logs and $DIR/nodes/*/logs"
    echo "$DIR/admin.kubeconfig"
}

# The host's sysctls (its own network namespace's included), without the
# counters that change by themselves.
snapshot_sysctls() {
    sysctl -a 2>/dev/null | grep -Ev '^(net\.netfilter\.nf_conntrack_count|fs\.(dentry-state|inode-nr|inode-state|file-nr|quota\.[a-z_]+)|kernel\.(random\.[a-z_]+|ns_last_pid|pty\.nr)) ' | sort
}

# kill_netns NETNS [CGROUP_ROOT]: ends every process in the network namespace
# and, given a cgroup root of ours (/<id>-<node>), in that cgroup subtree of
# every hierarchy (frozen first, so none forks meanwhile), then removes those
# cgroups.
kill_netns() {
    local ns=$1 root=${2:-} h pids freezer=""
    if [[ -n $root ]]; then
        [[ $root =~ ^/pc[0-9a-f]{6}-node[0-9]+$ ]] || die "refusing to kill cgroup tree '$root'"
        freezer=/sys/fs/cgroup/freezer$root
        [[ -d $freezer ]] && echo FROZEN >"$freezer/freezer.state" 2>/dev/null || true
    fi
    for _ in $(seq 100); do
        pids=$(
            if [[ -n $root ]]; then
                for h in /sys/fs/cgroup/*"$root"; do
                    [[ -d $h ]] && find "$h" -name cgroup.procs -exec cat {} + 2>/dev/null
                done
            fi
            netns_exists "$ns" && ip netns pids "$ns" 2>/dev/null
        )
        pids=$(sort -u <<<"$pids" | grep -v '^$' || true)
        [[ -z $pids ]] && break
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        [[ -n $freezer && -d $freezer ]] && echo THAWED >"$freezer/freezer.state" 2>/dev/null || true
        sleep 0.1
    done
    [[ -z $pids ]] || log "processes left in $ns ${root:+and $root}: ${pids//$'\n'/ }"
    if [[ -n $root ]]; then
        for h in /sys/fs/cgroup/*"$root"; do
            [[ -d $h ]] && find "$h" -depth -type d -exec rmdir {} + 2>/dev/null || true
        done
    fi
}

cmd_down() {
    [[ -e $DIR ]] || return 0
    load_state || die "$DIR is not a cluster directory"
    local start i ns
    start=$(date +%s%N)
    rm -f "$DIR/up"
    # The watchdog runs `down` itself; don't kill the caller.
    if [[ -f $DIR/watchdog.pid && $(cat "$DIR/watchdog.pid") != "${PETREL_WATCHDOG_PID:-}" ]]; then
        stop_pid "$DIR/watchdog.pid"
    fi
    for ((i = 1; i <= CLUSTER_NODES; i++)); do
        kill_netns "$CLUSTER_ID-node$i" "/$CLUSTER_ID-node$i"
    done
    stop_pid "$DIR/pids/apiserver-forward-out.pid"
    kill_netns "$CLUSTER_ID-cp"
    kill_netns "$CLUSTER_ID-tor"
    if [[ -f $CPDIR/controlplane ]]; then
        bash "$HERE/controlplane.sh" stop --dir "$CPDIR"
    fi
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^$CLUSTER_ID-(tor|cp|node[0-9]+)$" || true); do
        ip netns del "$ns"
    done
    local changed
    if [[ -f $DIR/host-sysctls ]]; then
        changed=$(diff <(cat "$DIR/host-sysctls") <(snapshot_sysctls) | grep '^[<>]' || true)
        [[ -z $changed ]] || log "host sysctls changed while the cluster ran (not by design; check):"$'\n'"$changed"
    fi
    rm -rf "$DIR"
    log "cluster $CLUSTER_ID down in $((($(date +%s%N) - start) / 1000000)) ms"
}

cmd_status() {
    load_state || die "no cluster in $DIR"
    local f
    for f in "$DIR"/pids/*.pid "$DIR"/nodes/*/{init,containerd,kubelet,kube-proxy}.pid; do
        [[ -f $f ]] || continue
        printf '%-50s %s\n' "${f#"$DIR"/}" "$(alive "$(cat "$f")" && echo "running ($(cat "$f"))" || echo dead)"
    done
    kubectl_admin get nodes -o wide 2>&1 || true
}

cmd_env() {
    load_state || die "no cluster in $DIR"
    echo "export KUBECONFIG=$DIR/admin.kubeconfig"
    [[ -n $KUBECTL ]] || KUBECTL=$(kubectl_cmd)
    echo "export PETREL_KUBECTL=$KUBECTL"
    echo "export PETREL_CLUSTER_DIR=$DIR"
    echo "export PETREL_CLUSTER_ID=$CLUSTER_ID"
    echo "export PETREL_TOR_VTY=$DIR/tor   # vtysh --vty_socket \$PETREL_TOR_VTY -c 'show bgp summary'"
    echo "alias kubectl=$KUBECTL"
}

cmd_exec() {
    load_state || die "no cluster in $DIR"
    local node=$1 pid
    shift
    [[ ${1:-} == -- ]] && shift
    (($#)) || set -- bash
    case $node in
        tor | cp) exec ip netns exec "$CLUSTER_ID-$node" "$@" ;;
        node*)
            pid=$(cat "$DIR/nodes/$node/init.pid" 2>/dev/null || true)
            alive "$pid" || pid=$(cat "$DIR/nodes/$node/containerd.pid" 2>/dev/null || true)
            alive "$pid" || die "$node does not run"
            exec nsenter --target "$pid" --mount --uts --net -- "$@"
            ;;
        *) die "no node $node (node1..node$CLUSTER_NODES, tor, cp)" ;;
    esac
}

cmd_kill() {
    load_state || die "no cluster in $DIR"
    local node=$1
    [[ $node =~ ^node[0-9]+$ && -d $DIR/nodes/$node ]] || die "no node $node (node1..node$CLUSTER_NODES)"
    kill_netns "$CLUSTER_ID-$node" "/$CLUSTER_ID-$node"
    rm -f "$DIR/up"
    log "$node killed (every process of it, pods included)"
}

cmd_load() {
    load_state || die "no cluster in $DIR"
    local spec name tar tars=() i
    mkdir -p "$DIR/images"
    for spec in "$@"; do
        name=${spec%%=*}
        if [[ $spec == *=* ]]; then
            tar=$(realpath "${spec#*=}")
            ln -sfn "$tar" "$DIR/images/${name//[:\/]/_}.tar"
        else
            docker_save "$name" || die "$name: not in the local Docker engine"
            tar=$DIR/images/${name//[:\/]/_}.tar
        fi
        tars+=("$tar")
    done
    for ((i = 1; i <= CLUSTER_NODES; i++)); do
        log "node$i: importing ${*}"
        bash "$0" exec "node$i" --dir "$DIR" -- bash "$HERE/node.sh" load "${tars[@]}" --dir "$DIR"
    done
}

cmd=${1:-}
[[ -n $cmd ]] || die "usage: $0 up|down|status|env|exec|load|kill|build [--dir DIR] ..."
shift
DIR=${TMPDIR:-/tmp}/petrel-cluster
NODES=3
IMAGES=()
WATCH_PID=""
ARGS=()
while (($#)); do
    case $1 in
        --dir) DIR=$2; shift 2 ;;
        --nodes) NODES=$2; shift 2 ;;
        --image) IMAGES+=("$2"); shift 2 ;;
        --watch-pid) WATCH_PID=$2; shift 2 ;;
        --) ARGS+=("$@"); break ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
[[ $DIR == /* ]] || DIR=$PWD/$DIR
DIR=$(realpath -m "$DIR")
CPDIR=$DIR/controlplane
ID=$(cluster_id)
TOR=$ID-tor
CP=$ID-cp
KUBECTL=$(kubectl_cmd 2>/dev/null || true)

case $cmd in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    exec) ((${#ARGS[@]})) || die "usage: $0 exec NODE [--dir DIR] -- CMD..."; cmd_exec "${ARGS[@]}" ;;
    kill) ((${#ARGS[@]} == 1)) || die "usage: $0 kill NODE [--dir DIR]"; cmd_kill "${ARGS[0]}" ;;
    load) ((${#ARGS[@]})) || die "usage: $0 load NAME=TARBALL|NAME... [--dir DIR]"; cmd_load "${ARGS[@]}" ;;
    build) cmd_build ;;
    *) die "unknown command $cmd (up|down|status|env|exec|load|kill|build)" ;;
esac
