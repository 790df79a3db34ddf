#!/usr/bin/env bash
# labs/bench/dns.sh: authoritative DNS throughput and latency with dnsperf,
# edge's GSLB against gdnsd (geoip plugin, same data), Knot and NSD (static
# zone), in the same run on the same machine.
#
# Goal (issue): edge's GSLB qps >= gdnsd's geoip qps, with p99 no worse.
#
# What runs:
#   * every server and dnsperf inside one private network namespace
#     (edge-bench-dns, loopback only), one server at a time;
#   * the server pinned to CPU 0 (`taskset -c 0`), dnsperf to CPU 1;
#   * the same query file, duration, client count and outstanding-query
#     limit for each server:
#       - pass "max":  as fast as dnsperf can send, without -v (qps = server
#                      throughput, plus the server's CPU time per answer);
#       - pass "rate": RATE qps for every server with -v (latency of every
#                      response at equal load: p99 comes from this pass).
#   * queries (dnsperf -B, raw messages, so each can carry its own ECS option):
#       www.edge.example A  ECS 198.18.1.0/24   (NL, lab.mmdb) -> ams 198.51.100.10
#       www.edge.example A  ECS 198.18.2.0/24   (US)           -> nyc 198.51.100.20
#       www.edge.example A  ECS 203.0.113.0/24  (DE)           -> ams
#       www.edge.example A  ECS 2001:db8:a::/48 (BR)           -> nyc
#       www.edge.example A  no ECS (resolver 127.0.0.1, not in the db)
#
# The servers:
#   edge   dns/examples/bench_server: edge-dns's DnsServer built like `edge run`
#          builds it (topology [dns] section, GSLB www.edge.example over VIPs
#          ams-web/nyc-web, policy health,drain,geo,latency,weight, GeoIP
#          labs/geoip/lab.mmdb, 2-worker tokio runtime, metrics on) but with
#          response rate limiting OFF and every site up. `edge run` itself
#          cannot be benchmarked: it always enables RRL (50 responses/s per
#          client /24, not configurable in the topology), so one load
#          generator would measure the limiter (see the report/README).
#   gdnsd  geoip plugin, the same lab.mmdb, city-auto-mode (auto_dc_coords =
#          the sites' coordinates from the topology: great-circle nearest, as
#          edge's geo filter), service_types up (always healthy), ECS on.
#   knot   static zone (www A 198.51.100.10), one UDP worker.
#   nsd    the same static zone, server-count 1.
# The script checks with dig that edge and gdnsd give the same answer for
# every ECS subnet before it measures.
#
# Needs root (network namespace). Installs dnsperf gdnsd knot nsd with apt
# if missing. Builds the edge server (cargo build --release -p edge-dns
# --example bench_server) unless BUILD=0.
#
# The machine is shared (other builds and tests may run on CPU 0 too), so the
# servers take turns over ROUNDS rounds (order rotated each round) and the
# table shows medians per server; the load average is printed with them.
#
# Reading pass max: when every server lands near the same qps, dnsperf on CPU 1
# is the limit, not the servers (on the 2-core dev VM it tops out around
# 130-160k qps). The servers then differ in how much of CPU 0 they need per
# answer ("cpu µs/q", user + system time of the server's processes, most of it
# the kernel's UDP send and receive); compare "best qps" across runs, the
# medians move with whatever else runs.
#
# Settings (environment): DURATION=5 (s per server, pass and round) ROUNDS=3 CLIENTS=8
#   OUTSTANDING=100 (dnsperf -q) RATE=50000 (qps for the "rate" pass; 0 skips it)
#   SERVERS="edge gdnsd knot nsd" KEEP=1 (keep the work directory)
#   PERF=1 (perf record -g of the server during each pass, into the work
#     directory as SERVER.PASS.ROUND.perf; use it with KEEP=1)
#   EDGE_WORKERS=2 (tokio worker threads of the edge server; `edge run` uses 2;
#     the UDP receive loop runs on a thread of its own, DnsOptions::udp_threads,
#     so the workers only serve TCP here)
#   EDGE_UDP_LOOPS (receive loops per UDP socket of the edge server; default:
#     DnsOptions::udp_loops, as `edge run`)
#   EDGE_UDP_BATCH (datagrams per recvmmsg/sendmmsg; default:
#     DnsOptions::udp_batch, as `edge run`)
#   EDGE_UDP_IN_RUNTIME=1 (run the UDP loops as tasks of the tokio runtime, as
#     before DnsOptions::udp_threads: on one CPU the 2 workers steal the loop
#     from each other, ~50k context switches/s)
#   EDGE_MODE=example | run: `run` benchmarks the product binary instead,
#     `target/release/edge run` (node ams-e1 serves DNS; node nyc-e1 runs
#     --no-listeners beside it so the health bus reports both sites up). Today
#     that measures edge's RRL (50 responses/s per /24), not the server.
set -euo pipefail
export LC_ALL=C

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-8}
OUTSTANDING=${OUTSTANDING:-100}
RATE=${RATE:-50000}
SERVERS=${SERVERS:-"edge gdnsd knot nsd"}
EDGE_WORKERS=${EDGE_WORKERS:-2}
EDGE_MODE=${EDGE_MODE:-example}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NS=edge-bench-dns
SERVER_CPU=0
CLIENT_CPU=1
# One loopback address and port per server, so a leftover of one can never
# answer for another.
declare -A ADDR=([edge]=127.0.0.71 [gdnsd]=127.0.0.72 [knot]=127.0.0.73 [nsd]=127.0.0.74)
declare -A PORT=([edge]=5301 [gdnsd]=5302 [knot]=5303 [nsd]=5304)
AMS=198.51.100.10
NYC=198.51.100.20

die() {
	echo "dns.sh: $*" >&2
	exit 1
}
[[ $EUID -eq 0 ]] || die "needs root (network namespace, apt)"
(($(nproc) >= 2)) || die "needs 2 CPUs (server on CPU $SERVER_CPU, dnsperf on CPU $CLIENT_CPU)"

# ---------------------------------------------------------------- packages
need=()
for p in dnsperf:dnsperf gdnsd:gdnsd knotd:knot nsd:nsd dig:bind9-dnsutils python3:python3; do
	command -v "${p%%:*}" >/dev/null || need+=("${p#*:}")
done
if ((${#need[@]})); then
	echo "installing ${need[*]}…" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
fi

case $EDGE_MODE in
example)
	EDGE_BIN=$ROOT/target/release/examples/bench_server
	BUILD_CMD=(cargo build --release -q -p edge-dns --example bench_server)
	;;
run)
	EDGE_BIN=$ROOT/target/release/edge
	BUILD_CMD=(cargo build --release -q -p edge)
	;;
*) die "EDGE_MODE must be example or run" ;;
esac
if [[ ${BUILD:-1} == 1 && " $SERVERS " == *" edge "* ]]; then
	# May wait for the shared target/ lock of other builds.
	echo "building edge (${BUILD_CMD[*]})…" >&2
	(cd "$ROOT" && "${BUILD_CMD[@]}") || die "build failed"
fi

W=$(mktemp -d /tmp/edge-bench-dns.XXXXXX)
chmod 755 "$W"

# ---------------------------------------------------------------- cleanup
SRV_PID=
SRV_PID2= # EDGE_MODE=run: the second edge node
stop_pid() {
	local pid=$1 i
	[[ -n $pid && -d /proc/$pid ]] || return 0
	kill "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		[[ -d /proc/$pid ]] || return 0
		sleep 0.05
	done
	kill -9 "$pid" 2>/dev/null || true
}
stop_server() {
	stop_pid "$SRV_PID"
	stop_pid "$SRV_PID2"
	SRV_PID= SRV_PID2=
}
# Deleting a namespace does not stop its processes: stop what is left in
# ours (only this script starts processes there), then delete it.
ns_del() {
	local p
	ip netns pids "$NS" &>/dev/null || return 0
	for p in $(ip netns pids "$NS"); do kill "$p" 2>/dev/null || true; done
	sleep 0.2
	for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
	ip netns del "$NS" 2>/dev/null || true
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_server
	ns_del
	if [[ ${KEEP:-0} == 1 ]]; then echo "work directory kept: $W" >&2; else rm -rf "$W"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ns_del # leftovers of an interrupted run
ip netns add "$NS"
ip -n "$NS" link set lo up
inns() { ip netns exec "$NS" "$@"; }

# ---------------------------------------------------------------- data
# The edge topology: two sites (the GSLB candidates), the lab GeoIP db.
GEOIP=$ROOT/labs/geoip/lab.mmdb
[[ -r $GEOIP ]] || die "$GEOIP missing"
cat >"$W/edge.toml" <<EOF
name = "dnsbench"

# Used by EDGE_MODE=run only (two nodes gossip on loopback).
[bus]
seeds = ["ams-e1", "nyc-e1"]
interval = "500ms"

[sites.ams]
location = { lat = 52.37, lon = 4.90, country = "NL" }
[[sites.ams.nodes]]
name = "ams-e1"
router_id = "198.18.255.1"
asn = 65011
addresses = ["127.0.0.1/8"]
admin = "127.0.0.1:19181"
gossip = "127.0.0.1:19461"

[sites.nyc]
location = { lat = 40.71, lon = -74.01, country = "US" }
[[sites.nyc.nodes]]
name = "nyc-e1"
router_id = "198.18.255.2"
asn = 65021
addresses = ["127.0.0.1/8"]
admin = "127.0.0.1:19182"
gossip = "127.0.0.1:19462"

[vips.dns]
prefixes = ["${ADDR[edge]}/32"]
sites = ["ams"]
[vips.ams-web]
prefixes = ["$AMS/32"]
sites = ["ams"]
[vips.nyc-web]
prefixes = ["$NYC/32"]
sites = ["nyc"]

# No health check: backends count as up, so both sites stay GSLB candidates.
[pools.web]
backends = [
  { name = "ams-b1", site = "ams", address = "127.0.0.1", port = 19080 },
  { name = "nyc-b1", site = "nyc", address = "127.0.0.1", port = 19080 },
]
[services.ams-web]
vip = "ams-web"
pool = "web"
l7 = [{ port = 18080 }]
[services.nyc-web]
vip = "nyc-web"
pool = "web"
l7 = [{ port = 18080 }]

[dns]
vip = "dns"
port = ${PORT[edge]}
geoip = "$GEOIP"

[[dns.zones]]
origin = "edge.example."
ttl = 300
ns = ["ns1.edge.example."]
soa = { mname = "ns1.edge.example.", rname = "hostmaster.edge.example.", serial = 1 }
records = [
  { name = "ns1", type = "A", value = "203.0.113.53" },
  { name = "anycast", type = "A", value = "203.0.113.10" },
  { name = "anycast", type = "AAAA", value = "2001:db8:ffff::10" },
]

[[dns.gslb]]
name = "www.edge.example."
vips = ["ams-web", "nyc-web"]
ttl = 20
answers = 1
policy = ["health", "drain", "geo", "latency", "weight"]
EOF

# The static zone for Knot and NSD (and gdnsd, with www as a DYNA record).
zone() { # $1 = the www line
	cat <<EOF
\$ORIGIN edge.example.
\$TTL 300
@	SOA ns1.edge.example. hostmaster.edge.example. 1 3600 600 86400 300
@	NS ns1.edge.example.
ns1	A 203.0.113.53
anycast	A 203.0.113.10
anycast	AAAA 2001:db8:ffff::10
$1
EOF
}
mkdir -p "$W/zones"
zone "www	20 A $AMS" >"$W/zones/edge.example.zone"

# gdnsd: geoip plugin in city-auto-mode over the same database.
G=$W/gdnsd
mkdir -p "$G/geoip" "$G/zones"
cp "$GEOIP" "$G/geoip/lab.mmdb"
zone "www	20 DYNA geoip!www" >"$G/zones/edge.example"
cat >"$G/config" <<EOF
options => {
  listen => [ ${ADDR[gdnsd]}:${PORT[gdnsd]} ]
  udp_threads => 1
  tcp_threads => 1
  run_dir => $G/run
  state_dir => $G/state
}
plugins => {
  geoip => {
    maps => {
      bench => {
        geoip2_db => lab.mmdb
        datacenters => [ams, nyc]
        auto_dc_coords => { ams => [52.37, 4.90], nyc => [40.71, -74.01] }
      }
    }
    resources => {
      www => {
        map => bench
        service_types => up
        dcmap => { ams => $AMS, nyc => $NYC }
      }
    }
  }
}
EOF

# Knot: one UDP worker (the server has one CPU anyway), no journal.
K=$W/knot
mkdir -p "$K"
cat >"$K/knot.conf" <<EOF
server:
    rundir: "$K"
    listen: ${ADDR[knot]}@${PORT[knot]}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: warning
database:
    storage: "$K/db"
template:
  - id: default
    storage: "$W/zones"
    journal-content: none
    zonefile-sync: -1
zone:
  - domain: edge.example.
    file: "$W/zones/edge.example.zone"
EOF

# NSD: one server process, no database file, everything under $W.
N=$W/nsd
mkdir -p "$N"
cat >"$N/nsd.conf" <<EOF
server:
    ip-address: ${ADDR[nsd]}@${PORT[nsd]}
    server-count: 1
    username: ""
    database: ""
    zonesdir: "$W/zones"
    pidfile: "$N/nsd.pid"
    xfrdfile: "$N/xfrd.state"
    zonelistfile: "$N/zone.list"
    xfrdir: "$N"
    logfile: "$N/nsd.log"
    verbosity: 0
    # Debian's NSD has response rate limiting on (200 qps per /24) by default;
    # one load generator would measure the limiter.
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: edge.example.
    zonefile: "$W/zones/edge.example.zone"
EOF

# dnsperf -B input: 2-byte length + DNS message, EDNS with an optional ECS.
python3 - "$W/queries.bin" <<'EOF'
import ipaddress, struct, sys

def query(qid, name, ecs):
    header = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 1)  # RD=0, 1 question, 1 additional (OPT)
    qname = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    options = b""
    if ecs:
        net = ipaddress.ip_network(ecs)
        addr = net.network_address.packed[: (net.prefixlen + 7) // 8]
        data = struct.pack("!HBB", 1 if net.version == 4 else 2, net.prefixlen, 0) + addr
        options = struct.pack("!HH", 8, len(data)) + data  # option 8 = ECS (RFC 7871)
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, len(options)) + options
    msg = header + qname + struct.pack("!HH", 1, 1) + opt
    return struct.pack("!H", len(msg)) + msg

with open(sys.argv[1], "wb") as f:
    for i, ecs in enumerate(["198.18.1.0/24", "198.18.2.0/24", "203.0.113.0/24", "2001:db8:a::/48", None]):
        f.write(query(i, "www.edge.example.", ecs))
EOF

# ---------------------------------------------------------------- servers
start_server() { # name
	local s=$1 log=$W/$1.log
	case $s in
	edge)
		[[ -x $EDGE_BIN ]] || die "$EDGE_BIN missing (build it or drop BUILD=0)"
		if [[ $EDGE_MODE == run ]]; then
			# The nyc node only reports its site up over the bus (no DNS, no
			# listeners, VIPs left off lo); it sits on dnsperf's CPU, idle.
			inns taskset -c $CLIENT_CPU "$EDGE_BIN" run --config "$W/edge.toml" --node nyc-e1 \
				--no-listeners --no-vip-on-lo >"$W/edge-nyc.log" 2>&1 &
			SRV_PID2=$!
			inns taskset -c $SERVER_CPU "$EDGE_BIN" run --config "$W/edge.toml" --node ams-e1 >"$log" 2>&1 &
		else
			inns taskset -c $SERVER_CPU "$EDGE_BIN" --config "$W/edge.toml" \
				--listen "${ADDR[edge]}:${PORT[edge]}" --workers "$EDGE_WORKERS" \
				${EDGE_UDP_LOOPS:+--udp-loops "$EDGE_UDP_LOOPS"} ${EDGE_UDP_BATCH:+--udp-batch "$EDGE_UDP_BATCH"} \
				${EDGE_UDP_IN_RUNTIME:+--udp-in-runtime} >"$log" 2>&1 &
		fi
		;;
	gdnsd) inns taskset -c $SERVER_CPU gdnsd -c "$G" start >"$log" 2>&1 & ;;
	knot) inns taskset -c $SERVER_CPU knotd -c "$K/knot.conf" -s "$K/knot.sock" >"$log" 2>&1 & ;;
	nsd) inns taskset -c $SERVER_CPU nsd -d -c "$N/nsd.conf" >"$log" 2>&1 & ;;
	esac
	SRV_PID=$!
	local i
	for ((i = 0; i < 200; i++)); do
		[[ -d /proc/$SRV_PID ]] || die "$s exited: $(tail -n5 "$log")"
		# Ready once it answers; `edge run` also needs the nyc site up (bus).
		if [[ -n $(answer "$s" "") && ($s != edge || $EDGE_MODE != run ||
			$(answer "$s" 198.18.2.0/24) == "$NYC ") ]]; then return 0; fi
		sleep 0.05
	done
	die "$s did not answer within 10 s: $(tail -n5 "$log")"
}
answer() { # server ecs → the A record(s)
	local opt=()
	[[ -n $2 ]] && opt=(+subnet="$2")
	inns dig +short +time=1 +tries=1 "${opt[@]}" @"${ADDR[$1]}" -p "${PORT[$1]}" www.edge.example A 2>/dev/null |
		grep -E '^[0-9.]+$' | tr '\n' ' ' || true
}

# Same answers from edge and gdnsd for every geo query (else it is not "same data").
verify() { # server
	local s=$1 e want got
	for e in 198.18.1.0/24:$AMS 198.18.2.0/24:$NYC 203.0.113.0/24:$AMS 2001:db8:a::/48:$NYC; do
		want=${e##*:}
		[[ $s == knot || $s == nsd ]] && want=$AMS # static zone
		got=$(answer "$s" "${e%:*}")
		[[ $got == "$want " ]] || die "$s answers '$got' for ECS ${e%:*}, expected $want"
	done
	echo "  $s: no-ECS answer $(answer "$s" "")(geo answers verified)"
}

# ---------------------------------------------------------------- measure
# CPU time (user + system, clock ticks) of every process in the namespace:
# the server(s) only, when dnsperf is not running.
ns_ticks() {
	local p t=0
	for p in $(ip netns pids "$NS" 2>/dev/null); do
		# Fields after the ")" of the command name: utime is the 12th, stime the 13th.
		t=$((t + $(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)))
	done
	echo "$t"
}
TICK=$(getconf CLK_TCK)

# run_dnsperf server pass → "qps avg_ms p99_ms lost server_cpu_us_per_query"
run_dnsperf() {
	local s=$1 pass=$2 out=$W/$1.$2
	local extra=()
	# Pass max runs without -v: dnsperf writing a line per response is
	# the bottleneck otherwise. Pass rate uses -v, one line per response
	# with its latency, for the percentiles.
	if [[ $pass == rate ]]; then extra=(-Q "$RATE" -v); fi
	local t0 t1 perf_pid=
	t0=$(ns_ticks)
	if [[ ${PERF:-0} == 1 ]]; then
		# The namespace holds only the server now (dnsperf starts below).
		perf record -q -g -o "$W/$s.$pass.$round.perf" -p "$(ip netns pids "$NS" | paste -sd,)" \
			-- sleep "$((DURATION > 2 ? DURATION - 1 : 1))" >/dev/null 2>&1 &
		perf_pid=$!
	fi
	inns taskset -c $CLIENT_CPU dnsperf -B -d "$W/queries.bin" -s "${ADDR[$s]}" -p "${PORT[$s]}" \
		-l "$DURATION" -c "$CLIENTS" -q "$OUTSTANDING" -t 2 "${extra[@]}" >"$out.v" 2>"$out.err" ||
		die "dnsperf against $s failed: $(tail -n3 "$out.err")"
	[[ -n $perf_pid ]] && wait "$perf_pid" || true
	t1=$(ns_ticks)
	local qps avg lost done p99=0
	qps=$(awk '/Queries per second:/ {print $4}' "$out.v")
	avg=$(awk '/Average Latency \(s\):/ {print $4 * 1000}' "$out.v")
	lost=$(awk '/Queries lost:/ {print $3}' "$out.v")
	done=$(awk '/Queries completed:/ {print $3}' "$out.v")
	if [[ $pass == rate ]]; then
		p99=$(awk '/^> / {print $NF}' "$out.v" | sort -g |
			awk '{a[NR] = $1} END {i = int(NR * 0.99); if (i < 1) i = 1; printf "%.3f", a[i] * 1000}')
	fi
	grep -v '^> ' "$out.v" >"$out.summary" && rm -f "$out.v" # keep the summary, not 1M lines
	echo "$qps $avg $p99 $lost $(awk -v t=$((t1 - t0)) -v hz="$TICK" -v n="$done" 'BEGIN {printf "%.2f", n ? t * 1e6 / hz / n : 0}')"
}

echo "dns.sh: ${DURATION}s per server, pass and round, $ROUNDS rounds, $CLIENTS clients, $OUTSTANDING outstanding, server on CPU $SERVER_CPU (edge: $EDGE_WORKERS tokio workers), dnsperf on CPU $CLIENT_CPU"
echo "  $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A R # R[server.pass]="qps avg p99 lost cpu" lines, one per round
passes=(max)
((RATE > 0)) && passes+=(rate)
read -r -a order <<<"$SERVERS"
for ((round = 1; round <= ROUNDS; round++)); do
	for s in "${order[@]}"; do
		start_server "$s"
		((round == 1)) && verify "$s"
		for p in "${passes[@]}"; do
			R[$s.$p]+="$(run_dnsperf "$s" "$p")"$'\n'
		done
		stop_server
	done
	order=("${order[@]:1}" "${order[0]}") # rotate: nobody always goes first
	echo "  round $round done, load average $(cut -d' ' -f1-3 /proc/loadavg)"
done
# median of column $1 of the lines on stdin
median() { awk -v c="$1" 'NF {print $c}' | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
# Highest qps of any round: noise from other work only ever lowers qps, so
# the best round is the closest to each server's capacity on a shared machine.
best() { awk 'NF && $1 > m {m = $1} END {print m + 0}'; }
declare -A M # M[server.pass]="qps avg p99 lost cpu" medians (lost: total)
for k in "${!R[@]}"; do
	M[$k]="$(median 1 <<<"${R[$k]}") $(median 2 <<<"${R[$k]}") $(median 3 <<<"${R[$k]}") $(awk '{t += $4} END {print t + 0}' <<<"${R[$k]}") $(median 5 <<<"${R[$k]}")"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else printf "-"}'; }
echo
for p in "${passes[@]}"; do
	if [[ $p == max ]]; then
		echo "pass max (unthrottled, no per-response output; the latency is mostly queueing), medians of $ROUNDS:"
	else
		echo "pass rate ($RATE qps offered to every server, latency per response), medians of $ROUNDS:"
	fi
	printf '  %-6s %10s %9s %9s %6s %10s %11s   %s\n' server qps "avg ms" "p99 ms" lost "best qps" "cpu µs/q" "qps per round"
	for s in $SERVERS; do
		read -r qps avg p99 lost cpu <<<"${M[$s.$p]}"
		[[ $p == max ]] && p99=-
		printf '  %-6s %10.0f %9.3f %9s %6s %10.0f %11.2f   %s\n' "$s" "$qps" "$avg" "$p99" "$lost" \
			"$(best <<<"${R[$s.$p]}")" "$cpu" "$(awk 'NF {printf "%.0f ", $1}' <<<"${R[$s.$p]}")"
	done
	if [[ -n ${M[edge.$p]:-} ]]; then
		read -r eq _ ep _ ec <<<"${M[edge.$p]}"
		eb=$(best <<<"${R[edge.$p]}")
		for s in $SERVERS; do
			[[ $s == edge ]] && continue
			read -r q _ p99 _ c <<<"${M[$s.$p]}"
			if [[ $p == max ]]; then
				printf '  edge/%-6s qps %s  best qps %s  server cpu per query %s\n' "$s" "$(ratio "$eq" "$q")" \
					"$(ratio "$eb" "$(best <<<"${R[$s.$p]}")")" "$(ratio "$ec" "$c")"
			else
				printf '  edge/%-6s p99 %s  server cpu per query %s\n' "$s" "$(ratio "$ep" "$p99")" "$(ratio "$ec" "$c")"
			fi
		done
	fi
	echo
done
echo "qps ratio > 1: edge answers more; p99 and cpu ratios < 1: edge's tail is shorter, edge spends less CPU per answer;"
echo "best qps = highest round (least disturbed by other work). cpu µs/q: user + system time of the server per answered query."
