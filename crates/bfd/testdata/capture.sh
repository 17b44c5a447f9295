#!/usr/bin/env bash
# Regenerate the FRR/BIRD packet vectors of tests/vectors.rs.
#
# Runs FRR bfdd (with zebra) in one private network namespace and BIRD 2
# `protocol bfd` in another, joined by a veth pair (IPv4 and IPv6, 300 ms x 3
# on both sides), captures UDP 3784 with tcpdump, takes the FRR peer
# administratively down and up again, then disables BIRD. Prints one line per
# packet: time, source, TTL, ports, state, flags and the BFD payload in hex.
# Namespaces, daemons and files are unique to this run and removed on exit.
# Needs root and the Debian packages frr, bird2, tcpdump, python3.
set -euo pipefail
tag="pbfd$$"
A="$tag-a"
B="$tag-b"
dir="$(mktemp -d "/tmp/$tag.XXXX")"
TCPDUMP=""
cleanup() {
    for f in "$dir"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
    [ -n "$TCPDUMP" ] && kill "$TCPDUMP" 2>/dev/null || true
    sleep 0.5
    for n in "$A" "$B"; do
        ip netns pids "$n" 2>/dev/null | xargs -r kill 2>/dev/null || true
        ip netns del "$n" 2>/dev/null || true
    done
    rm -rf "$dir"
}
trap cleanup EXIT

ip netns add "$A"
ip netns add "$B"
ip -n "$A" link add va type veth peer name vb netns "$B"
ip -n "$A" addr add 10.99.0.1/24 dev va
ip -n "$A" addr add fd99::1/64 dev va nodad
ip -n "$B" addr add 10.99.0.2/24 dev vb
ip -n "$B" addr add fd99::2/64 dev vb nodad
for n in "$A" "$B"; do ip -n "$n" link set lo up; done
ip -n "$A" link set va up
ip -n "$B" link set vb up

printf '!\n' >"$dir/zebra.conf"
cat >"$dir/bfdd.conf" <<'C'
bfd
 peer 10.99.0.2 local-address 10.99.0.1 interface va
  receive-interval 300
  transmit-interval 300
 !
 peer fd99::2 local-address fd99::1 interface va
  receive-interval 300
  transmit-interval 300
 !
!
C
cat >"$dir/bird.conf" <<'C'
router id 10.99.0.2;
protocol device {}
protocol bfd {
  interface "vb" { interval 300 ms; multiplier 3; };
  neighbor 10.99.0.1 dev "vb";
  neighbor fd99::1 dev "vb";
}
C
chown -R frr:frr "$dir"

ip netns exec "$A" tcpdump -i va -U -w "$dir/cap.pcap" udp port 3784 2>/dev/null &
TCPDUMP=$!
sleep 1
frr="--vty_socket $dir -z $dir/zserv.api -P 0 -d"
# shellcheck disable=SC2086
ip netns exec "$A" /usr/lib/frr/zebra $frr -f "$dir/zebra.conf" -i "$dir/zebra.pid" --log file:"$dir/zebra.log"
sleep 1
# shellcheck disable=SC2086
ip netns exec "$A" /usr/lib/frr/bfdd $frr -f "$dir/bfdd.conf" -i "$dir/bfdd.pid" --bfdctl "$dir/bfdd.sock" --log file:"$dir/bfdd.log"
sleep 3
ip netns exec "$B" bird -c "$dir/bird.conf" -s "$dir/bird.ctl" -P "$dir/bird.pid"
sleep 8
peer=(-c 'configure terminal' -c bfd -c 'peer 10.99.0.2 local-address 10.99.0.1 interface va')
vtysh --vty_socket "$dir" "${peer[@]}" -c shutdown
sleep 3
vtysh --vty_socket "$dir" "${peer[@]}" -c 'no shutdown'
sleep 4
ip netns exec "$B" birdc -s "$dir/bird.ctl" disable bfd1 >/dev/null
sleep 3
kill "$TCPDUMP"
wait "$TCPDUMP" 2>/dev/null || true
TCPDUMP=""

python3 - "$dir/cap.pcap" <<'PY'
import ipaddress, struct, sys
data = open(sys.argv[1], "rb").read()
off, t0 = 24, None
while off < len(data):
    sec, usec, incl, _ = struct.unpack("<IIII", data[off:off + 16])
    pkt = data[off + 16:off + 16 + incl]
    off += 16 + incl
    t0 = t0 if t0 is not None else sec + usec / 1e6
    ethertype = struct.unpack("!H", pkt[12:14])[0]
    if ethertype == 0x0800:
        ihl = (pkt[14] & 0xF) * 4
        ttl, src, udp = pkt[22], ipaddress.ip_address(pkt[26:30]), 14 + ihl
    elif ethertype == 0x86DD:
        ttl, src, udp = pkt[21], ipaddress.ip_address(pkt[22:38]), 54
    else:
        continue
    sport, dport = struct.unpack("!HH", pkt[udp:udp + 4])
    bfd = pkt[udp + 8:]
    state = ["AdminDown", "Down", "Init", "Up"][bfd[1] >> 6]
    flags = "".join(c for c, b in zip("PFCADM", (32, 16, 8, 4, 2, 1)) if bfd[1] & b)
    print(f"{sec + usec / 1e6 - t0:7.3f} {src} ttl={ttl} {sport}->{dport} {state} {flags} {bfd.hex()}")
PY
