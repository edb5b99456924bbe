#!/usr/bin/env bash
# Set up a fresh Debian 12 machine and pass every test pgtrack has:
#   1. native gcc build, all suites (unit, integration, stress, fuzz);
#   2. clang with ASan+UBSan, all suites;
#   3. clang with TSan, the threaded tests (run_tsan);
#   4. clang libFuzzer builds of the fuzz targets, 3 s each (run_fuzz);
#   5. aarch64 cross build, unit suites under qemu-aarch64-static.
# Reserves the 2 MiB hugepages the tests need and gives them back at exit.
# Ends with one line "pgtrack tests: N passed, N failed, N skipped".
# Environment: PGT_QUICK=1 runs only the native build; PGT_HUGEPAGES (600).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

./scripts/setup.sh --all

orig_hp=$(cat /proc/sys/vm/nr_hugepages)
want_hp=${PGT_HUGEPAGES:-600}
restore_hp() { echo "$orig_hp" > /proc/sys/vm/nr_hugepages 2>/dev/null || true; }
if [ "$orig_hp" -lt "$want_hp" ]; then
  trap restore_hp EXIT
  echo "$want_hp" > /proc/sys/vm/nr_hugepages || echo "test.sh: cannot reserve hugepages (hugetlb tests will skip)"
fi
echo "test.sh: hugepages $(cat /proc/sys/vm/nr_hugepages) reserved, kernel $(uname -r)"

logs=()
status=0
run() { # name, builddir, meson setup args..., -- , meson test args...
  local name=$1 dir=$2 t0=$SECONDS; shift 2
  local setup=() testargs=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do setup+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  testargs=("$@")
  echo "=== $name"
  if [ -d "$dir" ]; then meson setup --reconfigure "$dir" "${setup[@]}" >/dev/null
  else meson setup "$dir" "${setup[@]}" >/dev/null; fi
  ninja -C "$dir" >/dev/null
  if ! meson test -C "$dir" --print-errorlogs "${testargs[@]}"; then status=1; fi
  logs+=("$dir/meson-logs/testlog.json")
  echo "=== $name: $((SECONDS - t0)) s"
}

# ThreadSanitizer (issue 11): clang -fsanitize=thread builds only the
# threaded tests (harvest vs writers, fault handlers, views, release, shard
# workers, fault injection, the soak, concurrent bitmap takes, the vhost log
# swap against a back-end thread) and runs them small. No suppressions: a report is a
# failure (exit 66). PGT_TSAN=0 leaves it out.
run_tsan() {
  local dir=build-tsan t0=$SECONDS
  local tests=(atomicity oracle soak dirty touch release faults shard bitmap offload)
  local targets=(tests/stress_atomicity tests/stress_oracle tests/stress_soak
                 tests/test_dirty tests/test_touch tests/test_release tests/test_faults
                 tests/test_shard tests/test_bitmap tests/test_offload)
  local setup=(-Db_sanitize=thread -Db_lundef=false -Ddpdk=disabled -Dnuma=enabled
               -Dhwloc=enabled -Dtools=disabled)
  echo "=== clang tsan"
  [ -d "$dir" ] && setup+=(--reconfigure)
  CC=clang meson setup "$dir" "${setup[@]}" >/dev/null
  ninja -C "$dir" "${targets[@]}" >/dev/null
  if ! TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" PGT_STRESS_ROUNDS=50 \
      PGT_STRESS_MB=32 PGT_SOAK_SECONDS=3 meson test -C "$dir" --no-rebuild \
      --print-errorlogs --num-processes 1 --timeout-multiplier 4 "${tests[@]}"; then
    status=1
  fi
  logs+=("$dir/meson-logs/testlog.json")
  echo "=== clang tsan: $((SECONDS - t0)) s"
}

# libFuzzer (issue 11): every fuzz target (tests/fuzz, tests/attach) built
# with clang -fsanitize=fuzzer,address, the library instrumented too, each
# run PGT_FUZZ_SECONDS (3) from its seed corpus; new inputs go to a scratch
# directory, crashes to build-fuzz/crash-*. PGT_FUZZ=0 leaves it out.
run_fuzz() {
  local dir=build-fuzz t0=$SECONDS secs=${PGT_FUZZ_SECONDS:-3} f t name scratch
  local setup=(-Dfuzz=true -Db_sanitize=address -Db_lundef=false
               -Dc_args=-fsanitize=fuzzer-no-link -Ddpdk=disabled -Dnuma=enabled
               -Dhwloc=enabled -Dtools=enabled)
  local targets=()
  echo "=== clang libfuzzer"
  [ -d "$dir" ] && setup+=(--reconfigure)
  CC=clang meson setup "$dir" "${setup[@]}" >/dev/null
  for f in tests/fuzz/fuzz_*.c tests/attach/fuzz_*.c; do
    name=$(basename "$f" .c)
    [ "$name" = fuzz_driver ] || targets+=("${f%/*}/${name}_libfuzzer")
  done
  ninja -C "$dir" "${targets[@]}" >/dev/null
  for t in "${targets[@]}"; do
    name=$(basename "$t" _libfuzzer)
    scratch=$(mktemp -d)
    if ASAN_OPTIONS=detect_leaks=1 "$dir/$t" -max_total_time="$secs" -runs=5000000 \
        -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$dir/crash-$name-" \
        "$scratch" "${t%/*}/corpus/$name" >"$dir/$name.log" 2>&1; then
      echo "ok $name: $(grep -o '^Done [0-9]* runs' "$dir/$name.log" | \
        grep -o '[0-9][0-9]*' || echo '?') runs in ${secs} s"
    else
      echo "FAIL $name (log: $dir/$name.log)"; tail -30 "$dir/$name.log"; status=1
    fi
    rm -rf "$scratch"
  done
  echo "=== clang libfuzzer: $((SECONDS - t0)) s"
}

# CI time (< 20 min on a fresh 2-core machine): 300 oracle/atomicity rounds
# per case natively (on this kernel build a write-protect round trip costs
# ~14 us, so 1000 rounds took 250 s), a quarter under ASan; PGT_STRESS_ROUNDS
# and PGT_SOAK_SECONDS raise them for a longer run on demand.
export PGT_STRESS_ROUNDS=${PGT_STRESS_ROUNDS:-300}
run "gcc native" build -Ddpdk=enabled -Dnuma=enabled -Dhwloc=enabled -Dtools=enabled -- \
    --num-processes 1 --no-suite vm
if [ "${PGT_QUICK:-0}" != 1 ]; then
  PGT_STRESS_ROUNDS=$((PGT_STRESS_ROUNDS / 4)) PGT_SOAK_SECONDS=${PGT_SOAK_SECONDS:-5} CC=clang run "clang asan+ubsan" build-clang -Db_sanitize=address,undefined -Db_lundef=false \
      -Ddpdk=enabled -Dnuma=enabled -Dhwloc=enabled -- --num-processes 1 --timeout-multiplier 3
  if [ "${PGT_TSAN:-1}" != 0 ]; then run_tsan; fi
  if [ "${PGT_FUZZ:-1}" != 0 ]; then run_fuzz; fi
  run "aarch64 cross (qemu-user)" build-arm --cross-file cross/aarch64-linux-gnu.ini -Ddpdk=disabled \
      -- --num-processes 2 --suite unit --suite fuzz --timeout-multiplier 4
fi

# The VM matrix (tests/vm): the suites again in QEMU guests on Debian's 6.1
# kernels, x86_64 (soft-dirty), x86_64 with two NUMA nodes, arm64. PGT_VM=0
# leaves it out. Its table goes to build/vm-matrix.md.
if [ "${PGT_QUICK:-0}" != 1 ] && [ "${PGT_VM:-1}" != 0 ]; then
  echo "=== VM matrix (QEMU guests)"
  cp build/meson-logs/testlog.json build/meson-logs/testlog-host.json
  if ! meson test -C build --print-errorlogs --suite vm --num-processes 1; then status=1; fi
  cp build/meson-logs/testlog.json build/meson-logs/testlog-vm.json
  cp build/meson-logs/testlog-host.json build/meson-logs/testlog.json
  python3 tests/vm/report.py --build-root build --quiet || true
  logs+=("build/meson-logs/testlog-vm.json")
  [ -f build/vm-matrix.md ] && cat build/vm-matrix.md
fi

python3 - "${logs[@]}" <<'PY'
# Count every TAP subtest (ok / ok # SKIP / not ok); tests without TAP count once.
import json, re, sys
p = f = s = 0
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        t = json.loads(line)
        subs = [l for l in t.get("stdout", "").splitlines() if re.match(r"(not )?ok \d", l)]
        if not subs or t["result"] in ("TIMEOUT", "ERROR") and not subs:
            r = t["result"]
            if r in ("OK", "EXPECTEDFAIL"): p += 1
            elif r == "SKIP": s += 1
            else: f += 1
            continue
        for l in subs:
            if l.startswith("not ok"): f += 1
            elif "# SKIP" in l: s += 1
            else: p += 1
        if t["result"] not in ("OK", "SKIP") and not any(l.startswith("not ok") for l in subs):
            f += 1  # crashed or timed out after its last subtest
print(f"pgtrack tests: {p} passed, {f} failed, {s} skipped")
PY
exit $status
