#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Smoke test of `pgtrack-bench offload --quick --json`: one JSON object with
results and every offload ratio (value/goal/met). Timings are not judged."""
import json
import subprocess
import sys

RATIOS = {
    "ingest_vs_100gbe_64b": True,
    "ring_harvest_65536_us_p99": True,
    "ingest_vs_100gbe_64b_16g": False,  # not run with --quick
    "ring_harvest_65536_us_p99_16g": False,
    "vfio_merge_vs_or": True,
    "vhost_merge_vs_or": True,
    "vhost_xchg_merge_vs_or": False,  # the exchange path, reported, no goal
}


def fail(msg):
    print("not ok 1 - %s" % msg)
    sys.exit(1)


def main():
    print("1..1")
    cmd = [sys.argv[1], "offload", "--quick", "--json"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=280)
    if p.returncode:
        sys.stderr.write(p.stderr)
        fail("exit status %d" % p.returncode)
    try:
        doc = json.loads(p.stdout)
    except ValueError as e:
        fail("output is not JSON: %s" % e)
    res = doc.get("results")
    if not isinstance(res, list) or not res:
        fail("no results")
    for e in res:
        if e.get("status") not in ("ok", "skipped"):
            fail("bad status in %r" % e)
        if e["status"] != "ok" and not e.get("reason"):
            fail("skipped without a reason: %r" % e)
    ratios = doc.get("ratios", {})
    for k, has_goal in RATIOS.items():
        r = ratios.get(k)
        if not isinstance(r, dict) or any(f not in r for f in ("value", "goal", "goal_op", "met")):
            fail("ratio %s missing or incomplete" % k)
        if has_goal and r["goal"] is None:
            fail("ratio %s has no goal" % k)
    print("# " + ", ".join("%s=%s" % (k, ratios[k]["value"]) for k in RATIOS))
    print("ok 1 - offload --quick --json")


if __name__ == "__main__":
    main()
