#!/usr/bin/env bash
# The container images of the one-machine cluster, built locally as OCI
# image-layout tarballs (no registry, no Docker): `ctr images import` loads
# them into each node's containerd.
#
#   testbed/k8s/images.sh build     builds what is missing, prints one
#                                   `NAME=TARBALL` line per image
#
#   petrel-pause:dev   the pods' sandbox: a static `pause` built from
#                      testbed/k8s/pause (Go, standard library only)
#   petrel-test:dev    Debian's busybox-static with every applet linked: a
#                      shell, ping, wget, nc, ip and httpd. Its command serves
#                      the pod's hostname on port 8080 (`wget -qO- POD:8080`)
#                      and exits at SIGTERM. (busybox 1.35's `wget -T`
#                      crashes with SIGSEGV: use `timeout 5 wget ...`.)
#
# Names are as `docker save` writes them (docker.io/library/NAME:TAG), so a
# pod spec says `image: petrel-test:dev`. The tarballs are reproducible (file
# times, owners and order fixed) and cached in
# ${PETREL_K8S_CACHE:-/var/cache/petrel/k8s}/images/, keyed by their inputs:
# busybox-static's package version and the pause source.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROG=images.sh
# shellcheck source=testbed/k8s/lib.sh
. "$HERE/lib.sh"
IMAGES=$CACHE/images
BUSYBOX=/bin/busybox

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# A deterministic tar of directory $1 into $2.
det_tar() {
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=posix \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        -C "$1" -cf "$2" .
}

# oci_archive REF ROOTFS CONFIG OUT: an OCI image layout with one layer (the
# directory ROOTFS) and the image config CONFIG (the `config` object of an
# image configuration, as JSON), named REF, tarred into OUT.
oci_archive() {
    local ref=$1 rootfs=$2 config=$3 out=$4 work
    work=$(mktemp -d "$IMAGES/.build.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    mkdir -p "$work/oci/blobs/sha256"
    det_tar "$rootfs" "$work/layer.tar"
    local diff_id layer layer_size
    diff_id=$(sha256 "$work/layer.tar")
    gzip -n -9 "$work/layer.tar"
    layer=$(sha256 "$work/layer.tar.gz")
    layer_size=$(stat -c %s "$work/layer.tar.gz")
    mv "$work/layer.tar.gz" "$work/oci/blobs/sha256/$layer"

    jq -cn --argjson config "$config" --arg diff "sha256:$diff_id" '{
        architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z",
        config: $config,
        rootfs: {type: "layers", diff_ids: [$diff]},
        history: [{created: "1970-01-01T00:00:00Z", created_by: "testbed/k8s/images.sh"}]
    }' >"$work/config.json"
    local cfg cfg_size
    cfg=$(sha256 "$work/config.json")
    cfg_size=$(stat -c %s "$work/config.json")
    mv "$work/config.json" "$work/oci/blobs/sha256/$cfg"

    jq -cn --arg cfg "sha256:$cfg" --argjson cfg_size "$cfg_size" \
        --arg layer "sha256:$layer" --argjson layer_size "$layer_size" '{
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cfg, size: $cfg_size},
        layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $layer, size: $layer_size}]
    }' >"$work/manifest.json"
    local man man_size
    man=$(sha256 "$work/manifest.json")
    man_size=$(stat -c %s "$work/manifest.json")
    mv "$work/manifest.json" "$work/oci/blobs/sha256/$man"

    jq -cn --arg man "sha256:$man" --argjson man_size "$man_size" --arg ref "$ref" '{
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [{
            mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $man, size: $man_size,
            annotations: {"io.containerd.image.name": $ref, "org.opencontainers.image.ref.name": ($ref | sub("^.*:"; ""))}
        }]
    }' >"$work/oci/index.json"
    echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
    det_tar "$work/oci" "$out.tmp.$$"
    mv -f "$out.tmp.$$" "$out"
}

# The pause binary, cached by the hash of its source.
build_pause() {
    local key out
    key=$(cat "$HERE/pause/go.mod" "$HERE/pause/main.go" | sha256sum | cut -c1-16)
    out=$CACHE/pause/pause-$key
    build_one "$HERE/pause" . "$out"
    echo "$out"
}

image_pause() {
    local bin key out root
    bin=$(build_pause)
    key=$(sha256 "$bin" | cut -c1-16)
    out=$IMAGES/petrel-pause-$key.tar
    if [[ ! -f $out ]]; then
        root=$(mktemp -d "$IMAGES/.root.XXXXXX")
        install -m 0755 "$bin" "$root/pause"
        oci_archive docker.io/library/petrel-pause:dev "$root" \
            '{"Entrypoint": ["/pause"], "User": "65535:65535"}' "$out"
        rm -rf "$root"
    fi
    echo "petrel-pause:dev=$out"
}

image_test() {
    [[ -x $BUSYBOX ]] || die "$BUSYBOX missing (Debian's busybox-static; run .ci/setup-k8s-cluster)"
    local version key out root applet
    version=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || "$BUSYBOX" | head -1)
    key=$(printf '%s\n' "$version" "$(sha256 "$BUSYBOX")" "$(sha256 "$0")" | sha256sum | cut -c1-16)
    out=$IMAGES/petrel-test-$key.tar
    if [[ ! -f $out ]]; then
        root=$(mktemp -d "$IMAGES/.root.XXXXXX")
        mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,www}
        chmod 1777 "$root/tmp"
        install -m 0755 "$BUSYBOX" "$root/bin/busybox"
        # Every applet, at the path busybox itself names (bin/sh, usr/bin/wget, ...).
        while read -r applet; do
            [[ $applet == bin/busybox || -e $root/$applet ]] && continue
            ln -s /bin/busybox "$root/$applet"
        done < <("$BUSYBOX" --list-full)
        printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
        printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
        oci_archive docker.io/library/petrel-test:dev "$root" '{
            "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh", "-c", "hostname > /www/index.html; trap \"exit 0\" TERM INT; httpd -f -p 8080 -h /www & wait"],
            "ExposedPorts": {"8080/tcp": {}}
        }' "$out"
        rm -rf "$root"
    fi
    echo "petrel-test:dev=$out"
}

cmd_build() {
    command -v jq >/dev/null || die "jq missing (run .ci/setup-k8s-cluster)"
    mkdir -p "$IMAGES"
    exec 8>"$IMAGES/.lock"
    flock 8
    image_pause
    image_test
    flock -u 8
}

case ${1:-} in
    build) cmd_build ;;
    *) die "usage: $0 build" ;;
esac
