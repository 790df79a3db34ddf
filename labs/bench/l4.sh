#!/usr/bin/env bash
# L4 benchmark: connections/s and throughput through the xdp, nftables and
# userspace dataplanes of edge-l4 and through HAProxy `mode tcp`, on one lab
# topology, in one run. Prints a table and ratios to userspace and to HAProxy. Not a test:
# nothing here asserts a number. Needs root; HAProxy is skipped if absent
# (apt-get install haproxy).
#
#   client (c0 198.18.101.2) ══ (e0 198.18.101.1) edge ── lan0 198.19.101.1 ─┐ br0 (ns sw)
#                              backends b1 198.19.101.11, b2 198.19.101.12 ──┘
#   VIP 203.0.113.10:8080 on the backends' lo (DSR for xdp); on the edge's
#   lo only for the proxies (userspace, HAProxy), which terminate TCP there.
#
# Load: `l4bench load` from the client: `conn` mode = connect, read the
# backend's greeting, close (conn/s); `bulk` mode = client → backend writes
# of 64 KiB (Gbit/s; the direction that crosses every dataplane, since DSR
# replies bypass the edge). The client veth has TSO/GSO and checksum
# offload off for every run: generic XDP drops GSO frames larger than the
# MTU, native XDP forwards CHECKSUM_PARTIAL frames with bad checksums
# (LAB-FACTS §4). So the forwarding dataplanes carry MTU-sized segments end
# to end, while the proxies re-segment towards the backends with TSO: bulk
# figures favour the proxies on veth, unlike on real NICs.
#
# Usage: labs/bench/l4.sh [seconds per measurement, default 3]
set -euo pipefail

SECS=${1:-3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
P="edge-l4b$$"
C=$P-c; E=$P-e; S=$P-s; B1=$P-b1; B2=$P-b2
VIP=203.0.113.10; PORT=8080
WORK=$(mktemp -d /tmp/l4bench.XXXXXX)
PIDS=()

cleanup() {
  exec 3>&- 2>/dev/null || true
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for n in $C $E $S $B1 $B2; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || { echo "l4.sh: needs root" >&2; exit 1; }
for t in ip nft ethtool; do command -v $t >/dev/null || { echo "l4.sh: needs $t" >&2; exit 1; }; done

echo "building l4bench (release)..." >&2
(cd "$ROOT" && cargo build -q --release -p edge-l4 --features xdp,nftables,userspace --example l4bench)
BIN=$ROOT/target/release/examples/l4bench

for n in $C $E $S $B1 $B2; do ip netns add $n; ip -n $n link set lo up; done
ip link add c0 netns $C type veth peer name e0 netns $E
ip -n $S link add br0 type bridge; ip -n $S link set br0 up
i=0
for n in $E $B1 $B2; do
  ip link add lan0 netns $n type veth peer name p$i netns $S
  ip -n $S link set p$i master br0 up; ip -n $n link set lan0 up; i=$((i+1))
done
ip -n $C link set c0 up; ip -n $E link set e0 up
ip -n $C addr add 198.18.101.2/24 dev c0; ip -n $E addr add 198.18.101.1/24 dev e0
ip -n $E addr add 198.19.101.1/24 dev lan0
ip -n $B1 addr add 198.19.101.11/24 dev lan0; ip -n $B2 addr add 198.19.101.12/24 dev lan0
ip -n $C route add 203.0.113.0/24 via 198.18.101.1
for b in $B1 $B2; do
  ip -n $b addr add $VIP/32 dev lo
  ip -n $b route add 198.18.101.0/24 via 198.19.101.1
  ip netns exec $b sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
done
ip netns exec $E sysctl -qw net.ipv4.ip_forward=1
for n in $C $E; do
  ip netns exec $n sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65000"
done
ip netns exec $C ethtool -K c0 tx off tso off gso off >/dev/null
# Native XDP_REDIRECT into lan0 needs GRO (or an XDP program) on its peer.
ip netns exec $S ethtool -K p0 gro on >/dev/null

ip netns exec $B1 "$BIN" serve --name b1 --port $PORT >"$WORK/b1.log" 2>&1 & PIDS+=($!)
ip netns exec $B2 "$BIN" serve --name b2 --port $PORT >"$WORK/b2.log" 2>&1 & PIDS+=($!)
sleep 0.3
# Backends answer (and are in the edge's neighbour table) before any run.
for ip in 198.19.101.11 198.19.101.12; do
  for _ in $(seq 50); do
    ip netns exec $E bash -c "exec 9<>/dev/tcp/$ip/$PORT" 2>/dev/null && break
    sleep 0.1
  done
done

measure() { # name -> "conn/s Gbit/s"
  local conn bulk
  ip netns exec $C "$BIN" load --target $VIP:$PORT --mode conn --secs 1 --threads 2 >/dev/null # warm-up
  conn=$(ip netns exec $C "$BIN" load --target $VIP:$PORT --mode conn --secs "$SECS" --threads 4)
  bulk=$(ip netns exec $C "$BIN" load --target $VIP:$PORT --mode bulk --secs "$SECS" --threads 2)
  echo "$1|$conn|$bulk" >>"$WORK/results"
  echo "  $1: $conn, $bulk" >&2
}

run_node() { # kind
  local kind=$1 fifo=$WORK/ctl.$1
  if [[ $kind == userspace* ]]; then ip -n $E addr add $VIP/32 dev lo; fi
  mkfifo "$fifo"
  ip netns exec $E "$BIN" node --kind "$kind" --uplink e0 --vip $VIP --port $PORT \
    --backend 198.19.101.11:$PORT --backend 198.19.101.12:$PORT <"$fifo" >"$WORK/node.$kind.log" 2>&1 &
  local pid=$!
  exec 3>"$fifo"
  for _ in $(seq 300); do grep -q ready "$WORK/node.$kind.log" && break; sleep 0.1; done
  if grep -q ready "$WORK/node.$kind.log"; then
    measure "$kind"
  else
    echo "  $kind: did not start: $(cat "$WORK/node.$kind.log")" >&2
  fi
  exec 3>&-   # EOF on the node's stdin: it removes what it programmed
  wait $pid || true
  if [[ $kind == userspace* ]]; then ip -n $E addr del $VIP/32 dev lo; fi
}

: >"$WORK/results"
echo "measuring ${SECS}s per figure..." >&2
# userspace: splice(2) relay (the default); userspace-buffered: two copies.
for kind in xdp xdp-native nftables userspace userspace-buffered; do run_node $kind; done

if command -v haproxy >/dev/null; then
  ip -n $E addr add $VIP/32 dev lo
  cat >"$WORK/haproxy.cfg" <<CFG
global
  # Below the FD limit of this environment (20000): HAProxy refuses to
  # start when maxconn needs more descriptors than it may open.
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend l4
  bind $VIP:$PORT
  default_backend pool
backend pool
  balance roundrobin
  server b1 198.19.101.11:$PORT
  server b2 198.19.101.12:$PORT
CFG
  ip netns exec $E haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 & HP=$!
  sleep 0.5
  if kill -0 $HP 2>/dev/null; then
    measure haproxy
    kill $HP 2>/dev/null || true
  else
    echo "  haproxy: did not start: $(tail -3 "$WORK/haproxy.log")" >&2
  fi
  wait $HP 2>/dev/null || true
  ip -n $E addr del $VIP/32 dev lo
else
  echo "  haproxy: not installed (apt-get install haproxy), skipped" >&2
fi

echo
printf '%-18s %10s %8s %10s %10s %10s %10s\n' dataplane conn/s Gbit/s "conn÷us" "Gbit÷us" "conn÷hap" "Gbit÷hap"
first() { awk -F'|' -v k="$1" -v f="$2" '$1==k{split($f,a," "); print a[1]}' "$WORK/results"; }
us_conn=$(first userspace 2); us_bulk=$(first userspace 3)
hp_conn=$(first haproxy 2); hp_bulk=$(first haproxy 3)
while IFS='|' read -r name conn bulk; do
  c=${conn%% *}; g=${bulk%% *}
  awk -v n="$name" -v c="$c" -v g="$g" -v uc="${us_conn:-0}" -v ug="${us_bulk:-0}" \
    -v hc="${hp_conn:-0}" -v hg="${hp_bulk:-0}" 'BEGIN {
    rc = (uc > 0) ? sprintf("%.2f", c / uc) : "-"; rg = (ug > 0) ? sprintf("%.2f", g / ug) : "-";
    hc2 = (hc > 0) ? sprintf("%.2f", c / hc) : "-"; hg2 = (hg > 0) ? sprintf("%.2f", g / hg) : "-";
    printf "%-18s %10s %8s %10s %10s %10s %10s\n", n, c, g, rc, rg, hc2, hg2 }'
done <"$WORK/results"
echo "(errors per run in the lines above; 2 vCPUs shared by client, edge and backends)"
