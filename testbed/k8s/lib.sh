# shellcheck shell=bash disable=SC2034
# Shared by controlplane.sh and cluster.sh (sourced, not run): versions from
# the go.mod files, cached Go builds, process and port helpers. The sourcing
# script sets PROG (its name, for messages) before sourcing.

K8S_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${PETREL_K8S_CACHE:-/var/cache/petrel/k8s}
GO_CACHE=${PETREL_GO_CACHE:-/var/cache/petrel/go}

die() { echo "${PROG:-k8s}: $*" >&2; exit 1; }
log() { echo "${PROG:-k8s}: $*" >&2; }

# module_version GO_MOD MODULE: the version of MODULE that GO_MOD requires.
module_version() {
    awk -v m="$2" '{ if ($1 == "require") { $1 = ""; $0 = substr($0, 2) } }
        $1 == m && $2 ~ /^v/ { print $2; exit }' "$1"
}

KUBE_VERSION=$(module_version "$K8S_HERE/apiserver/go.mod" k8s.io/kubernetes)
ETCD_VERSION=$(module_version "$K8S_HERE/etcd/go.mod" go.etcd.io/etcd/server/v3)
[[ -n $KUBE_VERSION && -n $ETCD_VERSION ]] || die "cannot read the versions from $K8S_HERE/{apiserver,etcd}/go.mod"
BIN=$CACHE/$KUBE_VERSION

go_cmd() {
    if [[ -n ${GO:-} ]]; then echo "$GO"
    elif command -v go >/dev/null 2>&1; then command -v go
    elif [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go
    else die "go not found (set GO=/path/to/go)"
    fi
}

# What Kubernetes' own build stamps in, so `--version` and /version tell the
# release.
kube_ldflags() {
    local minor=${KUBE_VERSION#v1.} v ldflags=""
    minor=${minor%%.*}
    for v in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
        ldflags+=" -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor"
        ldflags+=" -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
    done
    echo "$ldflags"
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

# alive PID: whether PID runs (a zombie whose parent has not reaped it yet
# counts as gone).
alive() {
    [[ -n $1 && -r /proc/$1/stat ]] && ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null
}

# ours PID: whether PID is a live process of ours (its command line names
# DIR), so a stale pid file never ends an unrelated process.
ours() {
    alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$DIR"
}

# stop_pid PIDFILE: SIGTERM, 10 s, SIGKILL, for a process of ours.
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

kubectl_cmd() {
    if [[ -n ${PETREL_KUBECTL:-} ]]; then echo "$PETREL_KUBECTL"
    elif [[ -x $CACHE/kubectl/bin/kubectl ]]; then echo "$CACHE/kubectl/bin/kubectl"
    elif command -v kubectl >/dev/null 2>&1; then command -v kubectl
    else die "kubectl not found: run .ci/setup-k8s or set PETREL_KUBECTL"
    fi
}
