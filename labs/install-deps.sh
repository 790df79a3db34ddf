#!/usr/bin/env bash
# Installs the Debian packages that the lab and the test suite use, if any is
# missing. Idempotent and quiet when everything is there. Needs root.
set -euo pipefail

PKGS=(
  frr bird2 gobgpd exabgp        # real BGP peers
  iproute2 nftables iputils-ping # namespaces, veth, routes, nft dataplane
  dnsutils curl socat procps psmisc
  clang-14 llvm-14 libbpf-dev bpftool libelf-dev linux-libc-dev  # XDP programs
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages (${missing[*]}) and not root; run as root" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
