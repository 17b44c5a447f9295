#!/usr/bin/env bash
# A real Kubernetes control plane (etcd + kube-apiserver) on loopback, for
# petrel's tests and for trying `kubectl apply` without a cluster.
#
#   testbed/k8s/controlplane.sh start [--dir DIR] [--etcd-port P] [--etcd-peer-port P]
#                                     [--apiserver-port P] [--watch-pid PID]
#       Builds the binaries when they are missing (cached, see below), creates
#       a CA, serving and client certificates and a service-account signing
#       key under DIR, starts etcd and kube-apiserver bound to 127.0.0.1 on
#       free ports, waits for /readyz and prints the admin kubeconfig path
#       (the only line on stdout). With --watch-pid the control plane stops
#       by itself when that process exits.
#   testbed/k8s/controlplane.sh stop [--dir DIR]       stops it and removes DIR
#   testbed/k8s/controlplane.sh env [--dir DIR]        prints `export KUBECONFIG=...` lines
#   testbed/k8s/controlplane.sh user NAME [GROUP...] [--dir DIR]
#       writes a kubeconfig for a client-certificate user NAME in GROUPs
#       (for RBAC tests, e.g. `user system:node:worker-1 system:nodes`), prints its path
#   testbed/k8s/controlplane.sh apiserver kill|stop|start [--dir DIR]
#       an API server outage: kill (SIGKILL) or stop it, then start it again
#       with the same flags and port (etcd and its data stay)
#   testbed/k8s/controlplane.sh build                  builds/caches the binaries, prints their dir
#   testbed/k8s/controlplane.sh kubectl                prints the kubectl to use
#
# DIR defaults to ${TMPDIR:-/tmp}/petrel-k8s. Binaries are cached in
# ${PETREL_K8S_CACHE:-/var/cache/petrel/k8s}/<kubernetes version>/ and the Go
# module and build caches in ${PETREL_GO_CACHE:-/var/cache/petrel/go}; the
# versions come from testbed/k8s/{apiserver,etcd}/go.mod. kubectl is
# $PETREL_KUBECTL, else the one .ci/setup-k8s installed into the cache, else
# `kubectl` on PATH.
#
# Try it:
#   eval "$(testbed/k8s/controlplane.sh start >/dev/null && testbed/k8s/controlplane.sh env)"
#   kubectl apply -f manifests/crds.yaml && kubectl apply -f manifests/examples/
#   testbed/k8s/controlplane.sh stop
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${PETREL_K8S_CACHE:-/var/cache/petrel/k8s}
GO_CACHE=${PETREL_GO_CACHE:-/var/cache/petrel/go}

die() { echo "controlplane.sh: $*" >&2; exit 1; }
log() { echo "controlplane.sh: $*" >&2; }

# module_version GO_MOD MODULE: the version of MODULE that GO_MOD requires.
module_version() {
    awk -v m="$2" '{ if ($1 == "require") { $1 = ""; $0 = substr($0, 2) } }
        $1 == m && $2 ~ /^v/ { print $2; exit }' "$1"
}

KUBE_VERSION=$(module_version "$HERE/apiserver/go.mod" k8s.io/kubernetes)
ETCD_VERSION=$(module_version "$HERE/etcd/go.mod" go.etcd.io/etcd/server/v3)
[[ -n $KUBE_VERSION && -n $ETCD_VERSION ]] || die "cannot read the versions from $HERE/{apiserver,etcd}/go.mod"
BIN=$CACHE/$KUBE_VERSION
APISERVER=$BIN/kube-apiserver
ETCD=$BIN/etcd-$ETCD_VERSION

go_cmd() {
    if [[ -n ${GO:-} ]]; then echo "$GO"
    elif command -v go >/dev/null 2>&1; then command -v go
    elif [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go
    else die "go not found (set GO=/path/to/go)"
    fi
}

# build_one MODULE_DIR PACKAGE OUTPUT [LDFLAGS]: builds PACKAGE with the
# module in MODULE_DIR unless OUTPUT exists. A lock makes concurrent callers
# wait for one build instead of racing.
build_one() {
    local moddir=$1 pkg=$2 out=$3 ldflags=${4:-}
    [[ -x $out ]] && return 0
    mkdir -p "$(dirname "$out")" "$GO_CACHE"
    exec 9>"$CACHE/.build.lock"
    flock 9
    if [[ ! -x $out ]]; then
        local go start
        go=$(go_cmd)
        start=$(date +%s)
        log "building $pkg into $out (slow the first time: Go modules download and compile)"
        (
            cd "$moddir"
            export GOPATH=$GO_CACHE GOMODCACHE=$GO_CACHE/mod GOCACHE=$GO_CACHE/build
            export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0
            nice -n 10 "$go" build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp.$$" "$pkg"
        ) || { rm -f "$out.tmp.$$"; flock -u 9; die "building $pkg failed"; }
        mv -f "$out.tmp.$$" "$out"
        log "built $out in $(($(date +%s) - start))s"
    fi
    flock -u 9
}

cmd_build() {
    mkdir -p "$CACHE"
    build_one "$HERE/etcd" go.etcd.io/etcd/server/v3 "$ETCD"
    # What Kubernetes' own build stamps in, so /version tells the release.
    local minor=${KUBE_VERSION#v1.}
    minor=${minor%%.*}
    local v ldflags=""
    for v in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
        ldflags+=" -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor"
        ldflags+=" -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
    done
    build_one "$HERE/apiserver" k8s.io/kubernetes/cmd/kube-apiserver "$APISERVER" "$ldflags"
    echo "$BIN"
}

kubectl_cmd() {
    if [[ -n ${PETREL_KUBECTL:-} ]]; then echo "$PETREL_KUBECTL"
    elif [[ -x $CACHE/kubectl/bin/kubectl ]]; then echo "$CACHE/kubectl/bin/kubectl"
    elif command -v kubectl >/dev/null 2>&1; then command -v kubectl
    else die "kubectl not found: run .ci/setup-k8s or set PETREL_KUBECTL"
    fi
}

port_in_use() { ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }

# Below the ephemeral range (32768+), so no outgoing connection takes the
# port before the server binds it.
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((10000 + RANDOM % 22000))
        port_in_use "$p" || { echo "$p"; return; }
    done
    die "no free TCP port found on 127.0.0.1"
}

# sign NAME SUBJECT [SAN]: a key and a certificate signed by the CA.
sign() {
    local name=$1 subj=$2 san=${3:-} ext
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "$subj" 2>/dev/null
    ext=$PKI/$name.ext
    if [[ -n $san ]]; then
        printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' "$san" >"$ext"
    else
        printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n' >"$ext"
    fi
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
        -CAcreateserial -days 3650 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
    rm -f "$PKI/$name.csr" "$ext"
}

# kubeconfig FILE CERT_NAME USER: a kubeconfig for a client certificate.
kubeconfig() {
    local file=$1 cert=$2 user=$3 port
    port=$(cat "$DIR/apiserver.port")
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: petrel-test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority: $PKI/ca.crt
users:
- name: $user
  user:
    client-certificate: $PKI/$cert.crt
    client-key: $PKI/$cert.key
contexts:
- name: $user@petrel-test
  context:
    cluster: petrel-test
    user: $user
current-context: $user@petrel-test
EOF
}

# alive PID: whether PID runs (a zombie whose parent has not reaped it yet
# counts as gone).
alive() {
    [[ -n $1 && -r /proc/$1/stat ]] && ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null
}

# ours PID: whether PID is a live process of this control plane (its command
# line names DIR), so a stale pid file never ends an unrelated process.
ours() {
    alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$DIR"
}

stop_pid() {
    local pidfile=$1 pid
    [[ -f $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if ours "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do alive "$pid" || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

cmd_stop() {
    [[ -d $DIR ]] || return 0
    [[ -f $DIR/controlplane ]] || die "$DIR is not a control plane directory"
    # The watchdog calls `stop` itself; don't kill the caller.
    if [[ -f $DIR/watchdog.pid && $(cat "$DIR/watchdog.pid") != "${PETREL_WATCHDOG_PID:-}" ]]; then
        stop_pid "$DIR/watchdog.pid"
    fi
    stop_pid "$DIR/kube-apiserver.pid"
    stop_pid "$DIR/etcd.pid"
    if [[ ${KEEP:-0} == 1 ]]; then
        log "stopped; kept $DIR (logs in $DIR/logs)"
    else
        rm -rf "$DIR"
    fi
}

wait_ready() {
    local port=$1 deadline=$(($(date +%s) + ${PETREL_K8S_START_TIMEOUT:-120}))
    while (($(date +%s) < deadline)); do
        for p in etcd kube-apiserver; do
            alive "$(cat "$DIR/$p.pid")" || {
                tail -n 30 "$DIR/logs/$p.log" >&2 || true
                return 1
            }
        done
        if [[ $(curl -s --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
            "https://127.0.0.1:$port/readyz" 2>/dev/null) == ok ]]; then
            return 0
        fi
        sleep 0.3
    done
    log "kube-apiserver not ready after ${PETREL_K8S_START_TIMEOUT:-120}s; its /readyz says:"
    curl -s --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
        "https://127.0.0.1:$port/readyz?verbose" >&2 || true
    tail -n 30 "$DIR/logs/kube-apiserver.log" >&2 || true
    return 1
}

# launch_apiserver: starts kube-apiserver in the background with the ports in
# DIR (also to restart it after `apiserver kill|stop`); appends to its log.
launch_apiserver() {
    local ep ap
    ep=$(cat "$DIR/etcd.port")
    ap=$(cat "$DIR/apiserver.port")
    setsid "$APISERVER" \
        --etcd-servers "http://127.0.0.1:$ep" \
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$ap" \
        --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
        --client-ca-file "$PKI/ca.crt" \
        --service-account-issuer https://kubernetes.default.svc \
        --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
        --service-cluster-ip-range 10.0.0.0/24 --endpoint-reconciler-type none \
        --authorization-mode RBAC --profiling=false --v "${PETREL_K8S_VERBOSITY:-1}" \
        </dev/null >>"$DIR/logs/kube-apiserver.log" 2>&1 &
    echo $! >"$DIR/kube-apiserver.pid"
}

# cmd_apiserver kill|stop|start: an API server outage for tests. `kill` is a
# crash (SIGKILL), `stop` a clean shutdown; `start` brings it back with the
# same flags, certificates and port, and waits until it is ready. etcd keeps
# running, so no state is lost.
cmd_apiserver() {
    [[ -f $DIR/admin.kubeconfig ]] || die "no control plane in $DIR (run: $0 start)"
    local pid
    case ${1:-} in
        kill)
            pid=$(cat "$DIR/kube-apiserver.pid" 2>/dev/null || true)
            if ours "$pid"; then
                kill -KILL "$pid"
                while alive "$pid"; do sleep 0.05; done
            fi
            rm -f "$DIR/kube-apiserver.pid"
            ;;
        stop) stop_pid "$DIR/kube-apiserver.pid" ;;
        start)
            pid=$(cat "$DIR/kube-apiserver.pid" 2>/dev/null || true)
            if ours "$pid"; then
                die "kube-apiserver already runs (pid $pid)"
            fi
            launch_apiserver
            wait_ready "$(cat "$DIR/apiserver.port")" || die "kube-apiserver did not become ready (logs in $DIR/logs)"
            ;;
        *) die "usage: $0 apiserver kill|stop|start [--dir DIR]" ;;
    esac
}

cmd_start() {
    if [[ -f $DIR/controlplane ]] && [[ -f $DIR/kube-apiserver.pid ]] && ours "$(cat "$DIR/kube-apiserver.pid")"; then
        die "a control plane already runs in $DIR (stop it first)"
    fi
    if [[ -e $DIR && ! -f $DIR/controlplane ]] && [[ -n $(ls -A "$DIR" 2>/dev/null) ]]; then
        die "$DIR exists and is not a control plane directory; choose another --dir"
    fi
    cmd_build >/dev/null
    command -v openssl >/dev/null || die "openssl not found"
    rm -rf "$DIR"
    mkdir -p "$DIR/logs" "$PKI" "$DIR/etcd"
    chmod 700 "$DIR"
    echo "$KUBE_VERSION etcd $ETCD_VERSION" >"$DIR/controlplane"

    # Certificates: a CA, the apiserver's serving certificate, an admin
    # client (system:masters) and the service-account signing key.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -subj "/CN=petrel-test-ca" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    sign apiserver "/CN=kube-apiserver" \
        "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    sign admin "/O=system:masters/CN=petrel-admin"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
    openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"

    local attempt
    for attempt in 1 2 3; do
        local ep=${ETCD_PORT:-$(free_port)} epp=${ETCD_PEER_PORT:-$(free_port)} ap=${APISERVER_PORT:-$(free_port)}
        echo "$ap" >"$DIR/apiserver.port"
        echo "$ep" >"$DIR/etcd.port"
        rm -rf "$DIR/etcd/data"
        setsid "$ETCD" --name petrel-test --data-dir "$DIR/etcd/data" \
            --listen-client-urls "http://127.0.0.1:$ep" --advertise-client-urls "http://127.0.0.1:$ep" \
            --listen-peer-urls "http://127.0.0.1:$epp" --initial-advertise-peer-urls "http://127.0.0.1:$epp" \
            --initial-cluster "petrel-test=http://127.0.0.1:$epp" \
            --unsafe-no-fsync --log-level warn \
            </dev/null >"$DIR/logs/etcd.log" 2>&1 &
        echo $! >"$DIR/etcd.pid"
        launch_apiserver
        if wait_ready "$ap"; then
            break
        fi
        stop_pid "$DIR/kube-apiserver.pid"
        stop_pid "$DIR/etcd.pid"
        if ((attempt == 3)) || ! grep -qs 'address already in use' "$DIR/logs/etcd.log" "$DIR/logs/kube-apiserver.log"; then
            KEEP=1 cmd_stop
            die "the control plane did not start (logs in $DIR/logs)"
        fi
        log "a port was taken meanwhile; retrying with other ports"
        ETCD_PORT='' ETCD_PEER_PORT='' APISERVER_PORT=''
    done

    kubeconfig "$DIR/admin.kubeconfig" admin petrel-admin
    if [[ -n ${WATCH_PID:-} ]]; then
        # Stops the control plane when WATCH_PID exits (also when it is
        # killed), so a crashed test run leaves nothing behind.
        setsid bash -c '
            while [[ -r /proc/$1/stat ]] && ! grep -q ") Z " "/proc/$1/stat" 2>/dev/null; do sleep 1; done
            PETREL_WATCHDOG_PID=$$ exec bash "$2" stop --dir "$3"
        ' watchdog "$WATCH_PID" "$HERE/controlplane.sh" "$DIR" </dev/null >"$DIR/logs/watchdog.log" 2>&1 &
        echo $! >"$DIR/watchdog.pid"
    fi
    log "kube-apiserver $KUBE_VERSION ready on https://127.0.0.1:$(cat "$DIR/apiserver.port") (etcd $ETCD_VERSION); logs in $DIR/logs"
    echo "$DIR/admin.kubeconfig"
}

cmd_env() {
    [[ -f $DIR/admin.kubeconfig ]] || die "no control plane in $DIR (run: $0 start)"
    echo "export KUBECONFIG=$DIR/admin.kubeconfig"
    echo "export PETREL_KUBECTL=$(kubectl_cmd)"
    echo "alias kubectl=$(kubectl_cmd)"
}

cmd_user() {
    [[ -f $DIR/admin.kubeconfig ]] || die "no control plane in $DIR (run: $0 start)"
    local name=$1 subj safe
    shift
    [[ $name =~ ^[A-Za-z0-9:._@-]+$ ]] || die "invalid user name $name"
    subj=""
    for g in "$@"; do
        [[ $g =~ ^[A-Za-z0-9:._@-]+$ ]] || die "invalid group name $g"
        subj+="/O=$g"
    done
    subj+="/CN=$name"
    safe=user-${name//[:@]/_}
    sign "$safe" "$subj"
    kubeconfig "$DIR/$safe.kubeconfig" "$safe" "$name"
    echo "$DIR/$safe.kubeconfig"
}

cmd=${1:-}
[[ -n $cmd ]] || die "usage: $0 start|stop|env|user|build|kubectl [--dir DIR] ..."
shift
DIR=${TMPDIR:-/tmp}/petrel-k8s
ARGS=()
while (($#)); do
    case $1 in
        --dir) DIR=$2; shift 2 ;;
        --etcd-port) ETCD_PORT=$2; shift 2 ;;
        --etcd-peer-port) ETCD_PEER_PORT=$2; shift 2 ;;
        --apiserver-port) APISERVER_PORT=$2; shift 2 ;;
        --watch-pid) WATCH_PID=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
[[ $DIR == /* ]] || DIR=$PWD/$DIR
PKI=$DIR/pki

case $cmd in
    start) cmd_start ;;
    stop) cmd_stop ;;
    env) cmd_env ;;
    user) ((${#ARGS[@]})) || die "usage: $0 user NAME [GROUP...]"; cmd_user "${ARGS[@]}" ;;
    apiserver) cmd_apiserver "${ARGS[@]}" ;;
    build) cmd_build ;;
    kubectl) kubectl_cmd ;;
    *) die "unknown command $cmd (start|stop|env|user|apiserver|build|kubectl)" ;;
esac
