#!/usr/bin/env bash
# Set up a fresh Debian 12 machine, build pgtrack and run the main job: the
# guest simulator on its embedded default (512 MiB guest, 2 vCPUs, ~30 s).
# Reserves 2 MiB hugepages for the guest while it runs (root), then gives
# them back. Arguments go to pgtrack-sim (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
if [ -d build ]; then meson setup --reconfigure build >/dev/null; else meson setup build >/dev/null; fi
ninja -C build >/dev/null

orig_hp=$(cat /proc/sys/vm/nr_hugepages)
want_hp=${PGT_HUGEPAGES:-300}
if [ "$(id -u)" = 0 ] && [ "$orig_hp" -lt "$want_hp" ]; then
  trap 'echo "$orig_hp" > /proc/sys/vm/nr_hugepages' EXIT
  echo "$want_hp" > /proc/sys/vm/nr_hugepages || true
fi
if [ -x build/tools/pgtrack-sim ]; then
  build/tools/pgtrack-sim "$@"
else
  build/tools/pgtrack-probe "$@"
fi
