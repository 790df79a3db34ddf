#!/bin/sh
# L7 proxy loopback benchmark: direct-to-backend baseline vs through edge-l7,
# for HTTP/1.1 and h2c. Numbers compare runs on one machine; they are not a
# statement about network throughput. No pass/fail: this is for humans.
#
#   labs/bench/l7.sh                 # 5 s per run, 32 concurrent requests
#   SECS=10 CONNS=64 labs/bench/l7.sh
set -eu
cd "$(dirname "$0")/../.."
SECS="${SECS:-5}"
CONNS="${CONNS:-32}"
BACKENDS="${BACKENDS:-2}"
PROTO="${PROTO:-both}"
exec cargo run --release -q -p edge-l7 --example l7-bench -- \
  --secs "$SECS" --conns "$CONNS" --backends "$BACKENDS" --proto "$PROTO"
