#!/usr/bin/env python3
"""Write an MRT TABLE_DUMP_V2 file (RFC 6396) holding COUNT IPv4 /32 routes.

Used by labs/bench/bgp.sh so GoBGP can take all routes in one batch:
`gobgp mrt inject global FILE` streams them into gobgpd over the gRPC
AddPathStream API. That is GoBGP's fastest bulk path that needs nothing but
the Debian packages (no Go toolchain, no generated gRPC stubs); 10,000 calls of
`gobgp global rib add` would time process start-ups, not GoBGP.

usage: bgp_mrt.py OUT FIRST_IP COUNT NEXT_HOP [PAD]

PAD (default 3000): the records of the last PAD routes are written once more
after all COUNT routes. GoBGP 3.10's `gobgp mrt inject` exits before its
gRPC stream is drained, so gobgpd never sees the last few hundred records
(measured: 223 to 818 of 10,000 lost, varying run to run). Repeating the
tail makes every route arrive; the repeats come after all COUNT routes, are
identical paths, and add no prefixes to the router's count.
"""

import ipaddress
import struct
import sys
import time

MRT_TABLE_DUMP_V2 = 13
PEER_INDEX_TABLE = 1
RIB_IPV4_UNICAST = 2


def mrt(subtype: int, body: bytes, ts: int) -> bytes:
    return struct.pack("!IHHI", ts, MRT_TABLE_DUMP_V2, subtype, len(body)) + body


def attr(flags: int, code: int, value: bytes) -> bytes:
    return struct.pack("!BBB", flags, code, len(value)) + value


def main() -> None:
    out, first, count, next_hop = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    pad = int(sys.argv[5]) if len(sys.argv) > 5 else 3000
    first_ip = ipaddress.ip_address(first)
    nh = ipaddress.ip_address(next_hop)
    ts = int(time.time())
    # One peer (ourselves): AS4 bit set, IPv4 peer address.
    peer = struct.pack("!B4s4sI", 0x02, nh.packed, nh.packed, 65010)
    index = struct.pack("!4sH", nh.packed, 0) + struct.pack("!H", 1) + peer
    chunks = [mrt(PEER_INDEX_TABLE, index, ts)]
    # ORIGIN IGP, empty AS_PATH (locally originated), NEXT_HOP.
    attrs = attr(0x40, 1, b"\x00") + attr(0x40, 2, b"")
    if first_ip.version != 4 or nh.version != 4:
        sys.exit("bgp_mrt.py: IPv4 only")
    attrs += attr(0x40, 3, nh.packed)
    subtype, plen = RIB_IPV4_UNICAST, 32
    for seq in range(count):
        p = ipaddress.ip_address(int(first_ip) + seq)
        entry = struct.pack("!HIH", 0, ts, len(attrs)) + attrs
        body = struct.pack("!IB", seq, plen) + p.packed + struct.pack("!H", 1) + entry
        chunks.append(mrt(subtype, body, ts))
    ribs = chunks[1:]
    chunks += ribs[len(ribs) - min(pad, len(ribs)):]
    with open(out, "wb") as f:
        f.write(b"".join(chunks))


if __name__ == "__main__":
    main()
