#!/usr/bin/env bash
# Builds the containerlab images locally, with no container registry:
#
#   testbed/images/build.sh base|petrel|frr|bird|gobgp|all [--bin-dir DIR]
#                           [--base IMAGE] [--from-source]
#
#   base    petrel-base:<codename>: Debian (the host's release) made with
#           `debootstrap --variant=minbase` from the apt mirror the host uses,
#           plus ca-certificates, iproute2, iputils-ping and procps (`sysctl` in
#           topologies' exec lines), `docker import`ed.
#           The root filesystem tarball is cached in
#           $PETREL_CACHE/images/, named by a hash of its inputs (release,
#           apt sources, packages, this recipe), so it is made once (about
#           90 s) and imported in seconds afterwards.
#   petrel  petrel:dev from the repository's Dockerfile (`--target prebuilt`)
#           on petrel-base: the release binaries of --bin-dir DIR (default
#           $CARGO_TARGET_DIR/release, else target/release), stripped here;
#           built with `cargo build --release` when DIR lacks them.
#   frr, bird, gobgp
#           petrel-frr:dev, petrel-bird:dev, petrel-gobgp:dev: Debian's FRR,
#           BIRD 2 and GoBGP on petrel-base (router.Dockerfile, with the
#           entrypoint of testbed/images/<name>/), from the same apt sources.
#   all     all of the above.
#
#   --base IMAGE   build on IMAGE (e.g. debian:bookworm-slim, from a registry)
#                  instead of making petrel-base; the image builds then
#                  install their packages from IMAGE's own apt sources.
#   --from-source  petrel:dev from the Dockerfile's default target, which
#                  compiles petrel in a Rust image (needs a registry).
#
# Needs a running Docker engine (.ci/setup-docker) and root. Rebuilds reuse
# Docker's layer cache: a second run takes seconds.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${PETREL_CACHE:-/var/cache/petrel}/images
# Bump when the base recipe below changes in a way its inputs do not show.
BASE_RECIPE=4
BASE_PACKAGES=ca-certificates,iproute2,iputils-ping,procps
CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
BASE_IMAGE=petrel-base:$CODENAME
DOCKER=${DOCKER:-docker}

CLEANUP=()
trap 'rm -rf "${CLEANUP[@]}"' EXIT
log() { echo "build.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[[ -n $CODENAME ]] || die "no VERSION_CODENAME in /etc/os-release"
$DOCKER version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
    die "no Docker engine answers (start one with .ci/setup-docker)"

# The Debian entries of the host's apt sources (deb822), for the image's
# /etc/apt/sources.list.d/debian.sources; the first URI is debootstrap's mirror.
debian_sources() {
    python3 - "$CODENAME" <<'EOF'
import glob, re, sys
codename = sys.argv[1]
keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
entries = []  # (uri, suite, components)

def add(types, uris, suites, comps, signed_by):
    if "deb" not in types or (signed_by and signed_by != keyring):
        return
    for uri in uris:
        for suite in suites:
            if suite == codename or suite.startswith(codename + "-"):
                entries.append((uri.rstrip("/"), suite, comps))

for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^(deb)\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$", line)
        if m:
            opts = m.group(2) or ""
            sb = re.search(r"signed-by=(\S+?)\]?(\s|$)", opts)
            add(["deb"], [m.group(3)], [m.group(4)], m.group(5).split(), sb.group(1) if sb else "")

for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    text = open(path).read()
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            k, v = line.split(":", 1)
            fields[k.strip().lower()] = v.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        add(fields.get("types", "").split(), fields.get("uris", "").split(),
            fields.get("suites", "").split(), fields.get("components", "main").split(),
            fields.get("signed-by", ""))

if not entries:
    sys.exit(f"no Debian {codename} entries in the host's apt sources")
for uri, suite, comps in entries:
    print(f"Types: deb\nURIs: {uri}\nSuites: {suite}\nComponents: {' '.join(comps)}\nSigned-By: {keyring}\n")
EOF
}

image_label() { $DOCKER image inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }

build_base() {
    local sources mirror key tarball
    sources=$(debian_sources)
    mirror=$(awk '/^URIs:/ { print $2; exit }' <<<"$sources")
    key=$(printf '%s\n' "$BASE_RECIPE" "$CODENAME" "$BASE_PACKAGES" "$sources" | sha256sum | cut -c1-16)
    if [[ $(image_label "$BASE_IMAGE" dev.petrel.base-key) == "$key" ]]; then
        log "$BASE_IMAGE is up to date ($key)"
        return 0
    fi
    tarball=$CACHE/debian-$CODENAME-minbase-$key.tar.gz
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.base.lock"
    flock 9
    if [[ ! -s $tarball ]]; then
        bash "$ROOT/.ci/apt-install" debootstrap
        local rootfs start
        start=$(date +%s)
        rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
        CLEANUP+=("$rootfs" "$rootfs.log")
        log "debootstrap $CODENAME (minbase + $BASE_PACKAGES) from $mirror"
        nice -n 10 debootstrap --variant=minbase --include="$BASE_PACKAGES" \
            "$CODENAME" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 ||
            { tail -20 "$rootfs.log" >&2; die "debootstrap failed"; }
        rm -f "$rootfs/etc/apt/sources.list"
        printf '%s\n' "$sources" >"$rootfs/etc/apt/sources.list.d/debian.sources"
        # No recommends, no documentation (but the copyright files), no
        # caches: in this layer nor in the layers built on it.
        cat >"$rootfs/etc/apt/apt.conf.d/90petrel-slim" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
APT
        printf 'path-exclude /usr/share/%s\n' 'doc/*' 'man/*' 'info/*' 'lintian/*' 'locale/*' \
            >"$rootfs/etc/dpkg/dpkg.cfg.d/90petrel-nodoc"
        echo 'path-include /usr/share/doc/*/copyright' >>"$rootfs/etc/dpkg/dpkg.cfg.d/90petrel-nodoc"
        find "$rootfs/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
        find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
        rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/lintian/* \
            "$rootfs"/usr/share/locale/*
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
            "$rootfs"/var/log/*.log "$rootfs"/var/cache/ldconfig/aux-cache
        tar --numeric-owner -C "$rootfs" -czf "$tarball.tmp" .
        mv -f "$tarball.tmp" "$tarball"
        rm -rf "$rootfs" "$rootfs.log"
        log "made $tarball in $(($(date +%s) - start))s"
    fi
    flock -u 9
    $DOCKER import \
        --change "LABEL dev.petrel.base-key=$key" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        "$tarball" "$BASE_IMAGE" >/dev/null
    log "imported $BASE_IMAGE from $tarball"
}

# build_router NAME: petrel-NAME:dev from router.Dockerfile with the Debian
# package of the daemon and the files of testbed/images/NAME/.
build_router() {
    local name=$1 packages
    case $name in
        frr) packages=frr ;;
        bird) packages=bird2 ;;
        gobgp) packages=gobgpd ;;
    esac
    [[ -n $EXTERNAL_BASE ]] || build_base
    log "building petrel-$name:dev ($packages) on $BASE_IMAGE"
    # Host network for apt only: the base's sources are the host's mirror.
    $DOCKER build -q --network host --build-arg "BASE=$BASE_IMAGE" --build-arg "PACKAGES=$packages" \
        -f "$HERE/router.Dockerfile" -t "petrel-$name:dev" "$HERE/$name" >/dev/null
}

build_petrel() {
    local bin_dir=${1:-}
    if ((FROM_SOURCE)); then
        log "building petrel:dev from source on $BASE_IMAGE"
        # BuildKit: the legacy builder would build the `prebuilt` stage too.
        DOCKER_BUILDKIT=1 $DOCKER build -q --network host --build-arg "RUNTIME_IMAGE=$BASE_IMAGE" \
            -t petrel:dev "$ROOT" >/dev/null
        check_petrel
        return
    fi
    if [[ -z $bin_dir ]]; then
        local target=${CARGO_TARGET_DIR:-$ROOT/target}
        [[ $target == /* ]] || target=$ROOT/$target
        bin_dir=$target/release
        if [[ ! -x $bin_dir/petrel || ! -x $bin_dir/petrel-ipam ]]; then
            log "building release binaries into $bin_dir"
            (cd "$ROOT" && cargo build --release --locked --bin petrel --bin petrel-ipam)
        fi
    fi
    local b
    for b in petrel petrel-ipam; do
        [[ -x $bin_dir/$b ]] || die "$bin_dir/$b missing"
    done
    [[ -n $EXTERNAL_BASE ]] || build_base
    local ctx
    ctx=$(mktemp -d)
    CLEANUP+=("$ctx")
    for b in petrel petrel-ipam; do
        strip -o "$ctx/$b" "$bin_dir/$b"
    done
    log "building petrel:dev from $bin_dir (stripped: petrel $(stat -c %s "$ctx/petrel") bytes, petrel-ipam $(stat -c %s "$ctx/petrel-ipam") bytes)"
    # petrel-base already has what the runtime stage installs: no network.
    local network=none
    [[ -z $EXTERNAL_BASE ]] || network=host
    $DOCKER build -q --network "$network" --target prebuilt --build-arg "RUNTIME_IMAGE=$BASE_IMAGE" \
        -f "$ROOT/Dockerfile" -t petrel:dev "$ctx" >/dev/null
    check_petrel
}

# The image runs: the version, and the agent's usage (as the DaemonSet runs it).
check_petrel() {
    $DOCKER run --rm --network none petrel:dev --version >&2
    $DOCKER run --rm --network none petrel:dev agent --help >/dev/null ||
        die "petrel:dev: \`petrel agent --help\` failed"
}

what=${1:-}
shift || true
bin_dir="" EXTERNAL_BASE="" FROM_SOURCE=0
while (($#)); do
    case $1 in
        --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
        --base) EXTERNAL_BASE=${2:?--base needs an image}; BASE_IMAGE=$EXTERNAL_BASE; shift 2 ;;
        --from-source) FROM_SOURCE=1; shift ;;
        *) die "unknown argument $1" ;;
    esac
done
case $what in
    base) [[ -z $EXTERNAL_BASE ]] || die "--base IMAGE replaces petrel-base: nothing to build"; build_base ;;
    petrel) build_petrel "$bin_dir" ;;
    frr|bird|gobgp) build_router "$what" ;;
    all)
        [[ -n $EXTERNAL_BASE ]] || build_base
        for r in frr bird gobgp; do build_router "$r"; done
        build_petrel "$bin_dir"
        ;;
    *) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
$DOCKER image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^petrel(-[a-z]+)?:' >&2 || true
