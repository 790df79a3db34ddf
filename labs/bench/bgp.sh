#!/usr/bin/env bash
# labs/bench/bgp.sh: how long FRR takes to hold ROUTES routes originated by
# edge's BGP speaker, beside GoBGP (and ExaBGP) originating the same routes,
# measured in the same run on the same machine.
#
#   edge-bench-spk (198.18.250.2, AS65010)  ──veth──  edge-bench-frr (198.18.250.1, AS65000)
#   one speaker at a time: edge | gobgp | exabgp      zebra + bgpd, fresh for every trial
#
# Each trial: start FRR, start the speaker, wait for the session to be
# Established, then hand the speaker all ROUTES /32s at once (t0) and poll
# FRR until `show bgp summary json` says pfxRcd == ROUTES (RIB) and until the
# kernel FIB in FRR's namespace holds ROUTES `proto bgp` routes (FIB).
#   edge:   t0 = just before Speaker::announce(all routes) (bgp/examples/bench_speaker.rs)
#   gobgp:  t0 = just before `gobgp mrt inject global FILE` (one gRPC AddPathStream
#           batch, CLI start-up included; 10,000 `gobgp global rib add` calls would
#           measure process spawns instead). The MRT file repeats the last 3,000
#           routes at its end: GoBGP 3.10's CLI exits before its stream is drained
#           and would otherwise lose the last few hundred (see bgp_mrt.py).
#   exabgp: t0 = just before the routes are written to its API pipe as
#           `announce attributes next-hop self nlri P1 P2 …` (500 prefixes a line)
# Times are medians over RUNS trials; ratio < 1 means edge is faster. FRR is
# polled every ~55 ms (a vtysh call takes ~35 ms here), which bounds the
# resolution of the RIB times.
#
# Needs root and the Debian packages frr, gobgpd, exabgp (labs/install-deps.sh).
# Everything lives in two namespaces named edge-bench-*; they, the processes
# started here and the work directory are removed on exit.
#
# Settings (environment): ROUTES=10000 RUNS=3 TIMEOUT=60 (seconds, per wait)
#   SPEAKERS="edge gobgp exabgp"  KEEP=1 (keep the work directory)
#   BUILD=0 (use the already built target/release/examples/bench_speaker)
set -euo pipefail
export LC_ALL=C # $EPOCHREALTIME must use a '.' decimal separator

ROUTES=${ROUTES:-10000}
RUNS=${RUNS:-3}
TIMEOUT=${TIMEOUT:-60}
SPEAKERS=${SPEAKERS:-"edge gobgp exabgp"}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FIRST=198.19.0.0 # ROUTES host routes from here: 198.19.0.0 … 198.19.39.15 for 10,000
NS_R=edge-bench-frr
NS_S=edge-bench-spk
R_IP=198.18.250.1
S_IP=198.18.250.2
R_AS=65000
S_AS=65010

die() {
	echo "bgp.sh: $*" >&2
	exit 1
}
[[ $EUID -eq 0 ]] || die "needs root (network namespaces, FRR)"
((ROUTES > 0 && ROUTES <= 65536)) || die "ROUTES must be 1..65536 (they come from 198.19.0.0/16)"
for b in vtysh /usr/lib/frr/zebra /usr/lib/frr/bgpd python3; do
	command -v "$b" >/dev/null || die "$b missing: run labs/install-deps.sh"
done
for s in $SPEAKERS; do
	case $s in
	edge) ;;
	gobgp) command -v gobgpd >/dev/null && command -v gobgp >/dev/null || die "gobgpd/gobgp missing" ;;
	exabgp) command -v exabgp >/dev/null || die "exabgp missing" ;;
	*) die "unknown speaker $s" ;;
	esac
done

# Short work directory: FRR's unix socket paths must fit 107 bytes.
W=$(mktemp -d /tmp/edge-bench-bgp.XXXXXX)
chmod 755 "$W"

# ---------------------------------------------------------------- cleanup
# Only PIDs we started, and only while their command line still names our
# work directory or binaries (a PID may have been reused).
STARTED=()
stop_pid() { # pid [grace-seconds]
	local pid=$1 grace=${2:-5} i
	[[ -n $pid && -d /proc/$pid ]] || return 0
	kill "$pid" 2>/dev/null || return 0
	for ((i = 0; i < grace * 20; i++)); do
		[[ -d /proc/$pid ]] || return 0
		sleep 0.05
	done
	kill -9 "$pid" 2>/dev/null || true
}
# Deleting a namespace does not stop its processes: stop what is left in
# ours (only this script starts processes there), then delete it.
ns_del() {
	local p
	ip netns pids "$1" &>/dev/null || return 0
	for p in $(ip netns pids "$1"); do kill "$p" 2>/dev/null || true; done
	sleep 0.2
	for p in $(ip netns pids "$1" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
	ip netns del "$1" 2>/dev/null || true
}
cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	for p in "${STARTED[@]}"; do
		[[ -r /proc/$p/cmdline ]] && stop_pid "$p" 2
	done
	frr_stop 2>/dev/null || true
	ns_del "$NS_S"
	ns_del "$NS_R"
	if [[ ${KEEP:-0} == 1 ]]; then echo "work directory kept: $W" >&2; else rm -rf "$W"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers
now_us() { # wall clock in microseconds, without forking
	local t=$EPOCHREALTIME
	echo $((10#${t%.*} * 1000000 + 10#${t#*.}))
}
# wait_for SECONDS DESCRIPTION COMMAND…: poll COMMAND until it succeeds.
wait_for() {
	local secs=$1 what=$2
	shift 2
	local end=$(($(now_us) + secs * 1000000))
	until "$@"; do
		(($(now_us) < end)) || die "timeout after ${secs}s waiting for $what (logs: KEEP=1 keeps $W)"
		sleep 0.02
	done
}
vty() { vtysh --vty_socket "$W/frr" "$@" 2>/dev/null; }
summary() { vty -c 'show bgp ipv4 unicast summary json'; }
pfx_rcvd() { summary | grep -o '"pfxRcd":[0-9]*' | head -n1 | cut -d: -f2; }
fib_count() { ip -n "$NS_R" -4 route show proto bgp | wc -l; }
frr_established() { summary | grep -q '"state":"Established"'; }
rib_full() { [[ $(pfx_rcvd) == "$ROUTES" ]]; }
fib_full() { (($(fib_count) >= ROUTES)); }
fib_empty() { (($(fib_count) == 0)); }

# ---------------------------------------------------------------- topology
ns_del "$NS_S" # leftovers of an interrupted run
ns_del "$NS_R"
ip netns add "$NS_R"
ip netns add "$NS_S"
for n in "$NS_R" "$NS_S"; do ip -n "$n" link set lo up; done
ip link add br-spk netns "$NS_R" type veth peer name spk-br netns "$NS_S"
ip -n "$NS_R" addr add "$R_IP/30" dev br-spk
ip -n "$NS_S" addr add "$S_IP/30" dev spk-br
ip -n "$NS_R" link set br-spk up
ip -n "$NS_S" link set spk-br up

# ---------------------------------------------------------------- FRR
frr_start() {
	local D=$W/frr
	rm -rf "$D"
	mkdir -p "$D"
	cat >"$D/zebra.conf" <<EOF
hostname bench-frr
log file $D/zebra.log
! LAB-FACTS: kernel nexthop groups lose ECMP after a flap in FRR 8.4
no zebra nexthop kernel enable
EOF
	# Fast timers; advertisement-interval 0 and no policy so nothing but
	# the speaker and FRR itself is timed.
	cat >"$D/bgpd.conf" <<EOF
hostname bench-frr
log file $D/bgpd.log
router bgp $R_AS
 bgp router-id $R_IP
 bgp log-neighbor-changes
 no bgp ebgp-requires-policy
 no bgp network import-check
 bgp bestpath as-path multipath-relax
 neighbor $S_IP remote-as $S_AS
 neighbor $S_IP timers 3 9
 neighbor $S_IP timers connect 1
 neighbor $S_IP advertisement-interval 0
 address-family ipv4 unicast
  maximum-paths 8
 exit-address-family
EOF
	chown -R frr:frr "$D"
	ip netns exec "$NS_R" /usr/lib/frr/zebra -d -f "$D/zebra.conf" -i "$D/zebra.pid" -z "$D/zserv.api" \
		--vty_socket "$D" -P 0 -u frr -g frr 2>>"$W/frr.stderr"
	ip netns exec "$NS_R" /usr/lib/frr/bgpd -d -f "$D/bgpd.conf" -i "$D/bgpd.pid" -z "$D/zserv.api" \
		--vty_socket "$D" -P 0 -u frr -g frr 2>>"$W/frr.stderr"
	wait_for "$TIMEOUT" "FRR bgpd to answer" eval "summary >/dev/null"
}
frr_stop() {
	local d p
	for d in bgpd zebra; do
		p=$(cat "$W/frr/$d.pid" 2>/dev/null) || continue
		grep -qa "$W/frr" "/proc/$p/cmdline" 2>/dev/null && stop_pid "$p" 10
	done
	# zebra removes its routes on exit; make sure the next trial starts at zero.
	ip -n "$NS_R" -4 route flush proto bgp 2>/dev/null || true
}

# ---------------------------------------------------------------- speakers
# Each start_* starts the speaker, waits for Established, hands it the routes
# and sets T0 (µs) to the moment just before that hand-over; SPK_PID is
# stopped after the trial.
SPK_PID=
T0=

EDGE_EX=$ROOT/target/release/examples/bench_speaker
start_edge() {
	local out=$W/edge.out
	: >"$out"
	ip netns exec "$NS_S" "$EDGE_EX" --peer "$R_IP" --peer-as "$R_AS" --local "$S_IP" --local-as "$S_AS" \
		--count "$ROUTES" --first "$FIRST" --timeout "$TIMEOUT" >"$out" 2>>"$W/edge.err" &
	SPK_PID=$!
	STARTED+=("$SPK_PID")
	wait_for "$TIMEOUT" "edge to announce" grep -q '^announce_ns' "$out"
	local ns
	ns=$(awk '/^announce_ns/ {print $2}' "$out")
	T0=$((ns / 1000))
}

start_gobgp() {
	cat >"$W/gobgpd.toml" <<EOF
[global.config]
  as = $S_AS
  router-id = "$S_IP"
  port = 179
  local-address-list = ["$S_IP"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "$R_IP"
    peer-as = $R_AS
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
  [neighbors.transport.config]
    local-address = "$S_IP"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
EOF
	ip netns exec "$NS_S" gobgpd -f "$W/gobgpd.toml" -p --pprof-disable --api-hosts 127.0.0.1:50051 \
		>>"$W/gobgpd.log" 2>&1 &
	SPK_PID=$!
	STARTED+=("$SPK_PID")
	wait_for "$TIMEOUT" "FRR session with GoBGP" frr_established
	T0=$(now_us)
	ip netns exec "$NS_S" gobgp mrt inject global "$W/routes.mrt" >>"$W/gobgp-inject.log" 2>&1 ||
		die "gobgp mrt inject failed: $(tail -n3 "$W/gobgp-inject.log")"
}

start_exabgp() {
	local cmd=$W/exabgp.cmd
	: >"$cmd"
	cat >"$W/exabgp.conf" <<EOF
process cmd { run /usr/bin/tail -n +1 -F $cmd; encoder text; }
neighbor $R_IP {
  router-id $S_IP; local-address $S_IP; local-as $S_AS; peer-as $R_AS; hold-time 9;
  family { ipv4 unicast; }
  api { processes [ cmd ]; }
}
EOF
	# The settings are environment variables whose names contain dots.
	ip netns exec "$NS_S" env exabgp.daemon.user=root exabgp.api.cli=false \
		exabgp.log.destination="$W/exabgp.log" exabgp "$W/exabgp.conf" >>"$W/exabgp.out" 2>&1 &
	SPK_PID=$!
	STARTED+=("$SPK_PID")
	wait_for "$TIMEOUT" "FRR session with ExaBGP" frr_established
	T0=$(now_us)
	cat "$W/exabgp.routes" >>"$cmd"
}
stop_speaker() {
	local kids
	# ExaBGP's `tail` helper is its child; stop it with its parent.
	kids=$(pgrep -P "$SPK_PID" 2>/dev/null || true)
	stop_pid "$SPK_PID" 5
	for k in $kids; do grep -qa "$W" "/proc/$k/cmdline" 2>/dev/null && stop_pid "$k" 2; done
	SPK_PID=
}

# ---------------------------------------------------------------- inputs
for s in $SPEAKERS; do
	case $s in
	edge)
		if [[ ${BUILD:-1} == 1 ]]; then
			# May wait for the shared target/ lock of other builds.
			echo "building the edge speaker driver (cargo build --release -p edge-bgp --example bench_speaker)…" >&2
			(cd "$ROOT" && cargo build --release -q -p edge-bgp --example bench_speaker) ||
				die "build failed"
		fi
		[[ -x $EDGE_EX ]] || die "$EDGE_EX missing (build it or drop BUILD=0)"
		;;
	gobgp) python3 "$ROOT/labs/bench/bgp_mrt.py" "$W/routes.mrt" "$FIRST" "$ROUTES" "$S_IP" ;;
	exabgp)
		python3 - "$FIRST" "$ROUTES" >"$W/exabgp.routes" <<'EOF'
import ipaddress, sys
first, n = ipaddress.ip_address(sys.argv[1]), int(sys.argv[2])
ps = [f"{first + i}/32" for i in range(n)]
for i in range(0, n, 500):
    print("announce attributes next-hop self nlri " + " ".join(ps[i:i + 500]))
EOF
		;;
	esac
done

# ---------------------------------------------------------------- trials
declare -A RIB FIB # RIB[speaker]="ms ms ms"
echo "bgp.sh: $ROUTES routes, $RUNS runs, speakers: $SPEAKERS ($(nproc) CPUs, $(date -u +%FT%TZ))"
read -r -a order <<<"$SPEAKERS"
for ((run = 1; run <= RUNS; run++)); do
	for s in "${order[@]}"; do
		frr_start
		"start_$s"
		wait_for "$TIMEOUT" "FRR to receive $ROUTES routes from $s" rib_full
		t_rib=$(now_us)
		wait_for "$TIMEOUT" "$ROUTES routes from $s in FRR's kernel FIB" fib_full
		t_fib=$(now_us)
		rib_ms=$(((t_rib - T0) / 1000))
		fib_ms=$(((t_fib - T0) / 1000))
		RIB[$s]+="$rib_ms "
		FIB[$s]+="$fib_ms "
		extra=
		if [[ $s == edge ]]; then
			# When the speaker had written every UPDATE to its socket.
			w=$(awk '/^written_ns/ {print $2}' "$W/edge.out")
			[[ -n $w ]] && extra="   (all UPDATEs written after $(((w / 1000 - T0) / 1000)) ms)"
		fi
		printf '  run %d %-7s RIB %6d ms   FIB %6d ms%s\n' "$run" "$s" "$rib_ms" "$fib_ms" "$extra"
		stop_speaker
		frr_stop
		wait_for "$TIMEOUT" "FRR's FIB to empty" fib_empty
	done
	order=("${order[@]:1}" "${order[0]}") # rotate: nobody always goes first
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }
echo
printf '%-8s %14s %14s   %s\n' speaker "RIB median ms" "FIB median ms" "all RIB / FIB ms"
declare -A MR MF
for s in $SPEAKERS; do
	MR[$s]=$(median <<<"${RIB[$s]}")
	MF[$s]=$(median <<<"${FIB[$s]}")
	printf '%-8s %14s %14s   %s/ %s\n' "$s" "${MR[$s]}" "${MF[$s]}" "${RIB[$s]}" "${FIB[$s]}"
done
echo
for s in $SPEAKERS; do
	[[ $s == edge ]] && continue
	[[ -n ${MR[edge]:-} ]] || break
	awk -v a="${MR[edge]}" -v b="${MR[$s]}" -v c="${MF[edge]}" -v d="${MF[$s]}" -v s="$s" \
		'BEGIN { printf "ratio edge/%s: RIB %.2f  FIB %.2f   (< 1: edge faster)\n", s, (b ? a / b : 0), (d ? c / d : 0) }'
done
