#!/usr/bin/env bash
# Install what pgtrack needs to build, test and cross-test on Debian 12.
# Idempotent; quiet when everything is already there.
set -euo pipefail

need_root() { [ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (apt-get, hugepages)" >&2; exit 1; }; }

PKGS=(meson ninja-build pkg-config gcc clang libclang-rt-14-dev
      libnuma-dev libhwloc-dev hwloc-nox libcmocka-dev libdpdk-dev
      libjson-c-dev libmicrohttpd-dev)
PKGS+=(libroaring-dev)   # pgtrack-bench kernels: the CRoaring comparison (optional)
CROSS_PKGS=(gcc-aarch64-linux-gnu qemu-user-static
            libcmocka-dev:arm64 libnuma-dev:arm64 libhwloc-dev:arm64 libjson-c-dev:arm64
            libmicrohttpd-dev:arm64)
VM_PKGS=(qemu-system-x86 qemu-system-arm busybox-static cpio)

want=("${PKGS[@]}")
case "${1:-}" in
  --all) want+=("${CROSS_PKGS[@]}" "${VM_PKGS[@]}") ;;
  --cross) want+=("${CROSS_PKGS[@]}") ;;
  "") ;;
  *) echo "usage: setup.sh [--cross|--all]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

need_root
if printf '%s\n' "${missing[@]}" | grep -q ':arm64'; then
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
fi
echo "setup.sh: installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
