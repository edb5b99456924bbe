#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""pgtrack-probe --json prints one JSON object with at least the keys the
foundation issue names, userfaultfd.features as a list of names; bad options
exit 2 with a usage message; --root on a missing tree fails cleanly."""
import json
import subprocess
import sys

exe = sys.argv[1]
n = 0


def ok(cond, what):
    global n
    n += 1
    print(("ok %d - %s" if cond else "not ok %d - %s") % (n, what))
    return cond


print("1..8")
p = subprocess.run([exe, "--json"], capture_output=True, text=True, timeout=60)
doc = None
try:
    doc = json.loads(p.stdout)
except ValueError as e:
    print("# not JSON: %s" % e)
ok(p.returncode == 0 and isinstance(doc, dict), "--json prints one JSON object")
doc = doc or {}
keys = ["kernel", "userfaultfd", "pagemap_scan", "soft_dirty", "thp", "hugepages",
        "numa_nodes", "arch", "simd"]
missing = [k for k in keys if k not in doc]
if missing:
    print("# missing keys: %s" % missing)
ok(not missing, "has " + ", ".join(keys))
feats = doc.get("userfaultfd", {}).get("features")
ok(isinstance(feats, list) and all(isinstance(f, str) for f in feats),
   "userfaultfd.features is a list of names")
ok(isinstance(doc.get("simd"), list) and isinstance(doc.get("hugepages"), list),
   "simd and hugepages are lists")
cal = doc.get("calibration", {})
if cal.get("source") in ("measured", "cached"):
    costs = [cal.get(k) for k in ("wp_async_fault_ns", "mprotect_fault_ns", "scan_clean_ns",
                                  "pagemap_read_ns")]
    good = all(isinstance(c, (int, float)) and c >= 0 for c in costs) and \
        isinstance(cal.get("method_1g_4k"), str) and isinstance(cal.get("method_1g_2m"), str)
else:
    # no costs: the reason must be given
    good = cal.get("source") == "none" and cal.get("error") is not None
ok(good, "calibration: costs and the AUTO choice, or why there are none")
ob = doc.get("offload_backends")
ok(isinstance(ob, list) and {b.get("name") for b in ob} >=
   {"sim", "kvm-ring", "vhost-log", "vfio", "iommufd", "chmu"} and
   all(isinstance(b.get("available"), bool) and b.get("reason") for b in ob),
   "offload_backends lists every backend with availability and a reason")
p = subprocess.run([exe, "--no-such-option"], capture_output=True, text=True, timeout=60)
ok(p.returncode == 2 and "sage" in p.stderr, "a bad option: usage on stderr, exit 2")
p = subprocess.run([exe, "--root", "/nonexistent-pgtrack-root"], capture_output=True,
                   text=True, timeout=60)
ok(p.returncode != 0 and p.stderr.strip() != "", "a missing --root tree: an error, non-zero exit")

