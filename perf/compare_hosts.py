#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Compare two `pgtrack-bench dirty --json` results (two hosts, or two kernel
builds): primitive by primitive, B / A, naming the one that moved most, then
the ratios and the host settings that differ.

    perf/compare_hosts.py A.json B.json

Results without a "primitives" section (older runs) are compared on costs
derived from their cells instead (writer ns/page over untracked, harvest ns per
region page), marked "derived"; both kinds are derived for every input so old
and new runs can be put side by side.
"""
import json
import math
import sys


def cell(d, method, backing, frac, writers, size=None):
    best = None
    for c in d.get("results", []):
        if (c.get("bench") == "dirty" and c.get("method") == method
                and c.get("backing") == backing and c.get("status") == "ok"
                and abs(c.get("dirty_fraction", -1) - frac) < 1e-9
                and c.get("writers") == writers
                and (size is None or c.get("size") == size)):
            if best is None or c["size"] > best["size"]:
                best = c
    return best


def fault_cost(d, method, backing="anon", frac=0.1, writers=1):
    c, u = cell(d, method, backing, frac, writers), cell(d, "untracked", backing, frac, writers)
    if not c or not u or c.get("writer_ns_per_page") is None:
        return None
    return c["writer_ns_per_page"] - u["writer_ns_per_page"]


def harvest_per_page(d, method, backing, frac):
    c = cell(d, method, backing, frac, 1)
    if not c or not c.get("harvest_median_ns"):
        return None
    return c["harvest_median_ns"] / c["region_pages"]


def derived(d):
    """Per-page costs read off the cells (largest size measured)."""
    out = {
        "derived_wp_async_fault_4k (uffd-async writer - untracked, 10%, 1 writer)":
            fault_cost(d, "uffd-async"),
        "derived_mprotect_fault_4k (10%, 1 writer)": fault_cost(d, "mprotect"),
        "derived_uffd_sync_fault_4k (10%, 1 writer, handler same cpu)": fault_cost(d, "uffd-sync"),
        "derived_uffd_sync_fault_4k_2w (10%, 2 writers, one cross-cpu)":
            fault_cost(d, "uffd-sync", writers=2),
        "derived_engine_harvest_per_page_4k (1%)": harvest_per_page(d, "uffd-async", "anon", 0.01),
        "derived_raw_scan_per_page_4k (1%)": harvest_per_page(d, "raw-ioctl", "anon", 0.01),
        "derived_pagemap_read_per_page_4k (1%)": harvest_per_page(d, "pagemap-read", "anon", 0.01),
        "derived_engine_harvest_per_page_2m (1%)":
            harvest_per_page(d, "uffd-async", "hugetlb", 0.01),
        "derived_pagemap_read_per_page_2m (1%)":
            harvest_per_page(d, "pagemap-read", "hugetlb", 0.01),
    }
    return {k: v for k, v in out.items() if v is not None}


def costs(d):
    p = {k: v for k, v in (d.get("primitives") or {}).items()
         if isinstance(v, (int, float)) and not isinstance(v, bool)}
    p.update(derived(d))
    return p


def fmt(v):
    return "-" if v is None else ("%.4g" % v)


def compare_costs(a, b):
    ca, cb = costs(a), costs(b)
    rows = []
    for k in sorted(set(ca) | set(cb)):
        va, vb = ca.get(k), cb.get(k)
        r = vb / va if va and vb and va > 0 and vb > 0 else None
        rows.append((k, va, vb, r))
    w = max([len(r[0]) for r in rows] + [10])
    print("%-*s %12s %12s %9s" % (w, "cost (ns)", "A", "B", "B/A"))
    for k, va, vb, r in rows:
        print("%-*s %12s %12s %9s" % (w, k, fmt(va), fmt(vb), fmt(r)))
    moved = [(abs(math.log(r)), k, r) for k, _, _, r in rows if r]
    if moved:
        _, k, r = max(moved)
        print("\nmoved most: %s (B/A = %.3g)" % (k, r))
    return rows


def compare_ratios(a, b):
    ra, rb = a.get("ratios", {}), b.get("ratios", {})
    print("\n%-28s %10s %10s %10s %10s" % ("ratio", "A", "B", "B pred.", "B trusted"))
    for k in sorted(set(ra) | set(rb)):
        va = (ra.get(k) or {}).get("value")
        vb = (rb.get(k) or {}).get("value")
        pb = (rb.get(k) or {}).get("predicted_from_primitives")
        tb = (rb.get(k) or {}).get("trusted")
        print("%-28s %10s %10s %10s %10s" % (k, fmt(va), fmt(vb), fmt(pb), tb))


def flat(prefix, o, out):
    if isinstance(o, dict):
        for k, v in o.items():
            flat(prefix + "." + k if prefix else k, v, out)
    elif not isinstance(o, list):
        out[prefix] = o
    return out


def compare_hosts(a, b):
    ha, hb = flat("", a.get("host", {}), {}), flat("", b.get("host", {}), {})
    ha["build_type"], hb["build_type"] = a.get("build_type"), b.get("build_type")
    skip = ("load_", "free_hugepages", "steal_percent", "busy_percent")
    diff = [k for k in sorted(set(ha) | set(hb))
            if ha.get(k) != hb.get(k) and not k.startswith(skip)]
    print("\nhost settings that differ:" if diff else "\nhost settings: no difference")
    for k in diff:
        print("  %s:\n    A: %s\n    B: %s" % (k, ha.get(k, "(absent)"), hb.get(k, "(absent)")))
    for name, h in (("A", ha), ("B", hb)):
        print("load %s: start %s end %s steal %% %s busy %% %s" % (
            name, h.get("load_start"), h.get("load_end"), h.get("steal_percent"),
            h.get("busy_percent")))


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        a = json.load(f)
    with open(argv[2]) as f:
        b = json.load(f)
    print("A: %s\nB: %s\n" % (argv[1], argv[2]))
    compare_costs(a, b)
    compare_ratios(a, b)
    compare_hosts(a, b)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
