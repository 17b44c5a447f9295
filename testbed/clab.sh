#!/usr/bin/env bash
# Runs a testbed topology under real containerlab (Docker containers),
# the same file that `testbed deploy` runs in network namespaces.
#
#   testbed/clab.sh deploy TOPOLOGY [--name NAME] [--wait SECS]
#       containerlab deploy; wait until every BGP session of every node is
#       Established (default 90 s; --wait 0 does not wait), then `show`.
#       On a timeout it prints the sessions that are not up and the nodes'
#       logs, and fails (the lab stays for a look; `destroy` removes it).
#   testbed/clab.sh show TOPOLOGY [--name NAME]
#       one line per BGP session of every node, then each daemon's own view:
#       `petrel peers` (petrel), `vtysh -c 'show bgp summary'` (FRR),
#       `birdc show protocols` (BIRD), `gobgp neighbor` (GoBGP).
#   testbed/clab.sh destroy TOPOLOGY [--name NAME]
#       containerlab destroy --cleanup, and puts back the host sysctls that
#       containerlab changes on deploy (net.ipv4.conf.{all,default}.rp_filter)
#       once no containerlab lab is left.
#
# NAME is the lab's name (default: the topology's `name`); containers are
# clab-NAME-<node>. Tests use a unique NAME per run. Needs root, a running
# Docker engine (.ci/setup-docker), containerlab and the lab images:
# `sudo .ci/setup-clab` provides all three. containerlab is $CONTAINERLAB,
# else `containerlab` on PATH, else the one .ci/setup-clab built. Lab
# directories go to $CLAB_LABDIR_BASE (default ${TMPDIR:-/tmp}/petrel-clab),
# never next to the topology.
set -euo pipefail

export CLAB_VERSION_CHECK=disable
export CLAB_LABDIR_BASE=${CLAB_LABDIR_BASE:-${TMPDIR:-/tmp}/petrel-clab}
STATE=${PETREL_CLAB_STATE:-/run/petrel/clab}
RP_FILTER=(net.ipv4.conf.all.rp_filter net.ipv4.conf.default.rp_filter)

die() { echo "clab.sh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

containerlab_bin() {
    if [[ -n ${CONTAINERLAB:-} ]]; then echo "$CONTAINERLAB"
    elif command -v containerlab >/dev/null 2>&1; then command -v containerlab
    else
        local c
        c=$(ls -d "${PETREL_CACHE:-/var/cache/petrel}"/clab/v*/containerlab 2>/dev/null | sort -V | tail -1)
        [[ -n $c ]] || die "containerlab not found: run sudo .ci/setup-clab (or set CONTAINERLAB)"
        echo "$c"
    fi
}

# The lab's containers: "node container" lines.
containers() {
    docker ps -a --filter "label=containerlab=$NAME" \
        --format '{{.Label "clab-node-name"}} {{.Names}}' | sort
}

# The topology containerlab deploys: TOPO named NAME, relative bind paths
# made absolute (relative to TOPO's directory, as containerlab reads them), in
# $CLAB_LABDIR_BASE, with the directories binds from __clabDir__/ need (the
# lab's directory is $CLAB_LABDIR_BASE/clab-NAME). containerlab 0.60's destroy finds a lab by the name in
# its topology file, not by --name, so a lab named otherwise needs this copy.
LAB_TOPOLOGY=$(cat <<'PY'
import os, sys, yaml
src, name, out, labdir = sys.argv[1:5]
base = os.path.dirname(os.path.abspath(src))
with open(src) as f:
    doc = yaml.safe_load(f)
doc["name"] = name
topo = doc.get("topology") or {}
def absolute(bind):
    host, sep, rest = bind.partition(":")
    if sep and not host.startswith(("/", "~", "__clab")):
        host = os.path.normpath(os.path.join(base, host))
    if host.startswith("__clabDir__/"):
        # containerlab checks that bind sources exist: make the lab
        # directory's (e.g. an IPAM directory its nodes share).
        os.makedirs(os.path.join(labdir, host[len("__clabDir__/"):]), exist_ok=True)
    return host + sep + rest
for section in [topo.get("defaults")] + list((topo.get("kinds") or {}).values()) \
        + list((topo.get("nodes") or {}).values()):
    if isinstance(section, dict) and section.get("binds"):
        section["binds"] = [absolute(b) for b in section["binds"]]
with open(out + ".tmp", "w") as f:
    f.write(f"# {os.path.abspath(src)} as lab {name}, written by testbed/clab.sh\n")
    yaml.safe_dump(doc, f, sort_keys=False)
os.replace(out + ".tmp", out)
PY
)

lab_topology() {
    mkdir -p "$CLAB_LABDIR_BASE"
    LAB_TOPO=$CLAB_LABDIR_BASE/$NAME.clab.yaml
    python3 -c "$LAB_TOPOLOGY" "$TOPO" "$NAME" "$LAB_TOPO" "$CLAB_LABDIR_BASE/clab-$NAME"
}

# The BGP daemon a container runs (petrel, frr, bird, gobgp), found by its CLI.
daemon_of() {
    docker exec "$1" sh -c 'for c in petrel:petrel vtysh:frr birdc:bird gobgp:gobgp; do
        command -v ${c%:*} >/dev/null 2>&1 && { echo ${c#*:}; exit; }; done; echo none' 2>/dev/null || echo none
}

# Reads a daemon's session output on stdin; prints "peer address state".
PARSE=$(cat <<'EOF'
import json, sys
daemon, text = sys.argv[1], sys.stdin.read()
rows = []
if daemon == "petrel":
    for p in json.loads(text or "[]"):
        rows.append((p.get("name", ""), p.get("address", ""), p.get("state", "")))
elif daemon == "frr":
    for addr, n in (json.loads(text or "{}") or {}).items():
        if isinstance(n, dict) and "bgpState" in n:
            rows.append((n.get("nbrDesc") or addr, addr, n["bgpState"]))
elif daemon == "bird":
    cur = None
    for line in text.splitlines():
        cols = line.split()
        if line[:1] not in (" ", "\t") and len(cols) >= 4 and cols[1] == "BGP":
            cur = [cols[0], "", " ".join(cols[5:]) or cols[3]]
            rows.append(cur)
        elif cur is not None and line.strip().startswith("Neighbor address:"):
            cur[1] = line.split(":", 1)[1].strip()
        elif cur is not None and line.strip().startswith("BGP state:"):
            cur[2] = line.split(":", 1)[1].strip()
elif daemon == "gobgp":
    names = {1: "Idle", 2: "Connect", 3: "Active", 4: "OpenSent", 5: "OpenConfirm", 6: "Established"}
    for p in json.loads(text or "[]") or []:
        addr = (p.get("conf") or {}).get("neighbor_address", "")
        st = (p.get("state") or {}).get("session_state", "")
        if isinstance(st, int):
            st = names.get(st, str(st))
        else:
            st = str(st).lower().replace("session_state_", "")
            st = {"openconfirm": "OpenConfirm", "opensent": "OpenSent"}.get(st, st.capitalize())
        rows.append((addr, addr, st))
for r in rows:
    print(*(c or "-" for c in r))
EOF
)

# sessions CONTAINER DAEMON: "peer address state" lines (none if it runs no BGP).
sessions() {
    local out
    case $2 in
        petrel) out=$(docker exec "$1" petrel peers -o json 2>/dev/null) || return 0 ;;
        frr) out=$(docker exec "$1" vtysh -c 'show bgp neighbors json' 2>/dev/null) || return 0 ;;
        bird) out=$(docker exec "$1" birdc show protocols all 2>/dev/null) || return 0 ;;
        gobgp) out=$(docker exec "$1" gobgp -j neighbor 2>/dev/null) || return 0 ;;
        *) return 0 ;;
    esac
    python3 -c "$PARSE" "$2" <<<"$out"
}

# Every session of the lab: "node daemon peer address state".
all_sessions() {
    local node c d
    while read -r node c; do
        d=$(daemon_of "$c")
        sessions "$c" "$d" | sed "s/^/$node $d /"
    done < <(containers)
}

cmd_show() {
    local rows total up node c d
    [[ -n $(containers) ]] || die "no containers of lab $NAME"
    rows=$(all_sessions)
    total=$(grep -c . <<<"$rows" || true)
    up=$(awk '$5 == "Established"' <<<"$rows" | grep -c . || true)
    echo "==== lab $NAME: $(containers | wc -l) nodes, $total BGP session ends (one per node and peer), $up Established"
    { echo "NODE DAEMON PEER ADDRESS STATE"; echo "$rows"; } | column -t
    while read -r node c; do
        d=$(daemon_of "$c")
        case $d in
            petrel) echo; echo "==== $node: petrel peers"; docker exec "$c" petrel peers ;;
            frr) echo; echo "==== $node: vtysh -c 'show bgp summary'"; docker exec "$c" vtysh -c 'show bgp summary' ;;
            bird) echo; echo "==== $node: birdc show protocols"; docker exec "$c" birdc show protocols ;;
            gobgp) echo; echo "==== $node: gobgp neighbor"; docker exec "$c" gobgp neighbor ;;
        esac
    done < <(containers)
}

# wait_established SECS: until every session is Established; 1 on timeout.
wait_established() {
    local deadline=$((SECONDS + $1)) rows down
    while :; do
        rows=$(all_sessions)
        down=$(awk '$5 != "Established"' <<<"$rows")
        if [[ -n $rows && -z $down ]]; then
            echo "clab.sh: all $(grep -c . <<<"$rows") BGP session ends Established (each session is seen from both ends when both run BGP here) after $((SECONDS - start))s" >&2
            return 0
        fi
        if ((SECONDS >= deadline)); then
            echo "clab.sh: not every BGP session is Established after $1s:" >&2
            { echo "NODE DAEMON PEER ADDRESS STATE"; echo "${down:-(no sessions at all)}"; } | column -t >&2
            local node c
            while read -r node c; do
                echo "---- $node log (last 30 lines)" >&2
                docker logs --tail 30 "$c" 2>&1 | sed 's/^/    /' >&2
            done < <(containers)
            return 1
        fi
        sleep 1
    done
}

# The host sysctls containerlab sets on deploy: saved before the first lab,
# restored after the last (labs may overlap).
save_host_state() {
    mkdir -p "$STATE/labs"
    if [[ ! -e $STATE/sysctl.saved ]]; then
        sysctl "${RP_FILTER[@]}" | sed 's/ = /=/' >"$STATE/sysctl.saved"
    fi
    touch "$STATE/labs/$NAME"
}

restore_host_state() {
    rm -f "$STATE/labs/$NAME"
    if [[ -e $STATE/sysctl.saved && -z $(ls -A "$STATE/labs" 2>/dev/null) ]] &&
        [[ -z $(docker ps -aq --filter label=containerlab) ]]; then
        local kv
        while read -r kv; do
            [[ $(sysctl -n "${kv%%=*}") == "${kv#*=}" ]] || {
                echo "clab.sh: restoring $kv" >&2
                sysctl -q -w "$kv"
            }
        done <"$STATE/sysctl.saved"
        rm -f "$STATE/sysctl.saved"
    fi
}

cmd_deploy() {
    local img missing=()
    for img in $(sed -n 's/^[[:space:]]*image:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$TOPO" | sort -u); do
        docker image inspect "$img" >/dev/null 2>&1 || missing+=("$img")
    done
    ((${#missing[@]} == 0)) || die "images missing: ${missing[*]} (no registry here: build them with sudo .ci/setup-clab)"
    mkdir -p "$CLAB_LABDIR_BASE"
    local log=$CLAB_LABDIR_BASE/$NAME.deploy.log
    start=$SECONDS
    exec 8>"$STATE.lock"
    flock 8
    save_host_state
    flock -u 8
    lab_topology
    if ! "$CLAB" deploy -t "$LAB_TOPO" >"$log" 2>&1; then
        grep -v 'DOCKER-USER' "$log" >&2
        die "containerlab deploy failed (log $log); remove what it left with: $0 destroy $TOPO --name $NAME"
    fi
    grep -E 'level=(error|fatal)' "$log" >&2 && die "containerlab deploy reported errors (log $log)"
    echo "clab.sh: deployed lab $NAME ($(containers | wc -l) containers) in $((SECONDS - start))s; containerlab log $log" >&2
    if ((WAIT > 0)); then
        wait_established "$WAIT" || die "lab $NAME is still up: look, then $0 destroy $TOPO --name $NAME"
    fi
    cmd_show
}

cmd_destroy() {
    local log=$CLAB_LABDIR_BASE/$NAME.destroy.log
    lab_topology
    "$CLAB" destroy -t "$LAB_TOPO" --cleanup >"$log" 2>&1 ||
        { cat "$log" >&2; die "containerlab destroy failed (log $log)"; }
    [[ -z $(containers) ]] || die "containers of lab $NAME are left: $(containers | awk '{print $2}' | tr '\n' ' ')"
    exec 8>"$STATE.lock"
    flock 8
    restore_host_state
    flock -u 8
    rm -f "$log" "$CLAB_LABDIR_BASE/$NAME.deploy.log" "$LAB_TOPO" "$CLAB_LABDIR_BASE/.$NAME.clab.yaml.bak"
    echo "clab.sh: destroyed lab $NAME"
}

(($# >= 2)) || usage
cmd=$1 TOPO=$2
shift 2
[[ -f $TOPO ]] || die "no topology file $TOPO"
NAME="" WAIT=90
while (($#)); do
    case $1 in
        --name) NAME=${2:?--name needs a value}; shift 2 ;;
        --wait) WAIT=${2:?--wait needs seconds}; shift 2 ;;
        *) usage ;;
    esac
done
[[ -n $NAME ]] || NAME=$(sed -n 's/^name:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$TOPO" | head -1)
[[ -n $NAME ]] || die "$TOPO has no name: and no --name was given"
[[ $(id -u) -eq 0 ]] || die "must run as root (containerlab creates containers and links)"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
    die "no Docker engine answers: start one with sudo .ci/setup-docker"
CLAB=$(containerlab_bin)
mkdir -p "$(dirname "$STATE")"
case $cmd in
    deploy) cmd_deploy ;;
    show) cmd_show ;;
    destroy) cmd_destroy ;;
    *) usage ;;
esac
