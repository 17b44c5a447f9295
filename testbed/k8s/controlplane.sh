#!/usr/bin/env bash
# A real Kubernetes control plane (etcd + kube-apiserver) on loopback, for
# petrel's tests and for trying `kubectl apply` without a cluster.
#
#   testbed/k8s/controlplane.sh start [--dir DIR] [--etcd-port P] [--etcd-peer-port P]
#                                     [--apiserver-port P] [--watch-pid PID]
#                                     [--san SAN,...] [--apiserver-arg ARG]...
#       Builds the binaries when they are missing (cached, see below), creates
#       a CA, serving and client certificates and a service-account signing
#       key under DIR, starts etcd and kube-apiserver bound to 127.0.0.1 on
#       free ports, waits for /readyz and prints the admin kubeconfig path
#       (the only line on stdout). With --watch-pid the control plane stops
#       by itself when that process exits. --san adds subject alternative
#       names to the API server's certificate (`IP:10.10.0.2,DNS:cp`); each
#       --apiserver-arg is one `--flag=value` for kube-apiserver that replaces
#       the default of that flag (`--apiserver-arg=--bind-address=0.0.0.0`);
#       both are kept for `apiserver start`. testbed/k8s/cluster.sh runs the script this way
#       inside a network namespace.
#   testbed/k8s/controlplane.sh stop [--dir DIR]       stops it and removes DIR
#   testbed/k8s/controlplane.sh env [--dir DIR]        prints `export KUBECONFIG=...` lines
#   testbed/k8s/controlplane.sh user NAME [GROUP...] [--dir DIR]
#       writes a kubeconfig for a client-certificate user NAME in GROUPs
#       (for RBAC tests, e.g. `user system:node:worker-1 system:nodes`), prints its path;
#       --server URL puts another address of the API server in it
#   testbed/k8s/controlplane.sh serving-cert NAME SAN,... [--dir DIR]
#       a serving certificate signed by the cluster's CA (pki/NAME.crt and
#       .key, e.g. a kubelet's), prints the certificate's path
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
PROG=controlplane.sh
# shellcheck source=testbed/k8s/lib.sh
. "$HERE/lib.sh"
APISERVER=$BIN/kube-apiserver
ETCD=$BIN/etcd-$ETCD_VERSION

cmd_build() {
    mkdir -p "$CACHE"
    build_one "$HERE/etcd" go.etcd.io/etcd/server/v3 "$ETCD"
    build_one "$HERE/apiserver" k8s.io/kubernetes/cmd/kube-apiserver "$APISERVER" "$(kube_ldflags)"
    echo "$BIN"
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
    local file=$1 cert=$2 user=$3 server=${SERVER:-}
    [[ -n $server ]] || server=https://127.0.0.1:$(cat "$DIR/apiserver.port")
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: petrel-test
  cluster:
    server: $server
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
    local ep ap extra=() args=() a
    ep=$(cat "$DIR/etcd.port")
    ap=$(cat "$DIR/apiserver.port")
    [[ -f $DIR/apiserver.args ]] && mapfile -t extra <"$DIR/apiserver.args"
    # The defaults, as --flag=value; a flag given with --apiserver-arg
    # replaces its default (list flags such as --authorization-mode would
    # otherwise add up).
    for a in --etcd-servers="http://127.0.0.1:$ep" \
        --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$ap" \
        --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
        --client-ca-file="$PKI/ca.crt" \
        --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority="$PKI/ca.crt" \
        --service-account-issuer=https://kubernetes.default.svc \
        --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
        --service-cluster-ip-range=10.0.0.0/24 --endpoint-reconciler-type=none \
        --authorization-mode=RBAC --profiling=false --v="${PETREL_K8S_VERBOSITY:-1}"; do
        printf '%s\n' "${extra[@]}" | grep -q -- "^${a%%=*}=" || args+=("$a")
    done
    setsid "$APISERVER" "${args[@]}" "${extra[@]}" </dev/null >>"$DIR/logs/kube-apiserver.log" 2>&1 &
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
        "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc${SANS:+,$SANS}"
    if ((${#APISERVER_ARGS[@]})); then
        printf '%s\n' "${APISERVER_ARGS[@]}" >"$DIR/apiserver.args"
    fi
    sign admin "/O=system:masters/CN=petrel-admin"
    # The API server's client certificate towards kubelets (logs, exec).
    sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
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

cmd_serving_cert() {
    [[ -f $DIR/admin.kubeconfig ]] || die "no control plane in $DIR (run: $0 start)"
    local name=$1 san=$2
    [[ $name =~ ^[A-Za-z0-9._-]+$ ]] || die "invalid certificate name $name"
    [[ $san =~ ^[A-Za-z0-9:.,_-]+$ ]] || die "invalid subject alternative names $san"
    sign "$name" "/CN=$name" "$san"
    echo "$PKI/$name.crt"
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
[[ -n $cmd ]] || die "usage: $0 start|stop|env|user|serving-cert|apiserver|build|kubectl [--dir DIR] ..."
shift
DIR=${TMPDIR:-/tmp}/petrel-k8s
ARGS=()
APISERVER_ARGS=()
SANS=""
while (($#)); do
    case $1 in
        --dir) DIR=$2; shift 2 ;;
        --etcd-port) ETCD_PORT=$2; shift 2 ;;
        --etcd-peer-port) ETCD_PEER_PORT=$2; shift 2 ;;
        --apiserver-port) APISERVER_PORT=$2; shift 2 ;;
        --watch-pid) WATCH_PID=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --san) SANS=$2; shift 2 ;;
        --apiserver-arg) APISERVER_ARGS+=("$2"); shift 2 ;;
        --apiserver-arg=*) APISERVER_ARGS+=("${1#--apiserver-arg=}"); shift ;;
        --server) SERVER=$2; shift 2 ;;
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
    serving-cert) ((${#ARGS[@]} == 2)) || die "usage: $0 serving-cert NAME SAN,..."; cmd_serving_cert "${ARGS[@]}" ;;
    build) cmd_build ;;
    kubectl) kubectl_cmd ;;
    *) die "unknown command $cmd (start|stop|env|user|serving-cert|apiserver|build|kubectl)" ;;
esac
