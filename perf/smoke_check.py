#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Smoke test of pgtrack-bench: run `--quick --json`, check that stdout is one
JSON object with results and every ratio key (value/goal/met). Timings are not
judged: they mean nothing on a shared CI machine."""
import json
import subprocess
import sys

RATIOS = {
    "engine_vs_raw_ioctl": True,
    "pagemap_read_vs_engine_2m": True,
    "pagemap_read_vs_engine_4k": False,  # reported, no goal
    "mprotect_vs_engine": True,
    "uffd_sync_vs_engine": True,
    "ns_per_dirty_page": True,
    "touch_engine_vs_raw": True,
    "release_engine_vs_raw": True,
}
NUMA_RATIOS = {"shard_merge_overhead": True}
RESULT_KEYS = ("method", "backing", "size", "placement", "status")


TEST = 1


def fail(msg):
    print("not ok %d - %s" % (TEST, msg))
    sys.exit(1)


DIRTY_RATIOS = ("engine_vs_raw_ioctl", "pagemap_read_vs_engine_2m",
                "pagemap_read_vs_engine_4k", "mprotect_vs_engine", "uffd_sync_vs_engine")
PRIMITIVES = ("write_plain_4k", "wp_async_fault_4k", "scan_clean_4k", "scan_written_4k",
              "pagemap_read_4k", "mprotect_fault_4k", "uffd_sync_fault_same_cpu")


def check_dirty_extras(doc, ratios):
    """Primitive costs next to the ratios, trust flags, the run's load."""
    prim = doc.get("primitives")
    if not isinstance(prim, dict):
        fail("no primitives object")
    for k in PRIMITIVES:
        if k not in prim:
            fail("primitive %s missing" % k)
    for k in DIRTY_RATIOS:
        r = ratios[k]
        if "trusted" not in r or not isinstance(r.get("primitives"), dict):
            fail("ratio %s without trusted/primitives" % k)
    for e in doc["results"]:
        if e.get("bench") == "dirty" and e["status"] == "ok" and "writer_spread" not in e:
            fail("dirty result without writer_spread: %r" % e)
    host = doc.get("host", {})
    for k in ("steal_percent", "busy_percent", "mitigations", "kernel_config"):
        if k not in host:
            fail("host without %s" % k)


def check(cmd, ratio_keys, result_keys):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=280)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        fail("%s exited with %d" % (" ".join(cmd), p.returncode))
    try:
        doc = json.loads(p.stdout)
    except ValueError as e:
        fail("output is not JSON: %s" % e)
    if not isinstance(doc, dict):
        fail("output is not one JSON object")
    res = doc.get("results")
    if not isinstance(res, list) or not res:
        fail("no results list")
    for e in res:
        for k in result_keys:
            if k not in e:
                fail("result without %r: %r" % (k, e))
        if e["status"] not in ("ok", "skipped", "error"):
            fail("bad status %r" % e["status"])
        if e["status"] != "ok" and not e.get("reason"):
            fail("non-ok result without a reason: %r" % e)
    ratios = doc.get("ratios")
    if not isinstance(ratios, dict):
        fail("no ratios object")
    for k, has_goal in ratio_keys.items():
        r = ratios.get(k)
        if not isinstance(r, dict):
            fail("ratio %s missing" % k)
        for f in ("value", "goal", "goal_op", "met"):
            if f not in r:
                fail("ratio %s has no %s" % (k, f))
        if has_goal and r["goal"] is None:
            fail("ratio %s has no goal" % k)
        if r["value"] is not None and r["met"] is None and has_goal:
            fail("ratio %s has a value but no met" % k)
    if any(e.get("bench") == "dirty" for e in res):
        check_dirty_extras(doc, ratios)
    ok = sum(1 for e in res if e["status"] == "ok")
    print("# %d results (%d ok), ratios: %s" % (
        len(res), ok, ", ".join("%s=%s" % (k, ratios[k]["value"]) for k in ratio_keys)))
    print("ok %d - %s" % (TEST, " ".join(cmd[1:])))


def main():
    global TEST
    print("1..2")
    check([sys.argv[1], "--quick", "--json"], RATIOS, RESULT_KEYS)
    TEST = 2
    check([sys.argv[1], "numa", "--quick", "--json"], NUMA_RATIOS, ("status",))


if __name__ == "__main__":
    main()
