#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the VM matrix table (markdown) from the last run's results.

Reads <build>/tests/vm/results/<cell>.json (written by vmtest.py) and, for the
host row, the last <build>/meson-logs/testlog.json plus a fresh run of
vm_kcaps and pgtrack-probe on this machine. Writes <build>/vm-matrix.md and
prints it.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vmtest  # noqa: E402  (same directory)


def facts_of(lines):
    facts = {}
    for line in lines:
        s = line.strip()
        if s.startswith('# fact '):
            k, _, v = s[7:].partition('=')
            facts[k] = v.split(' (')[0]
    return facts


def suggested(facts):
    """What the kernel facts say the probe should pick, for rows without a probe."""
    if not facts:
        return '?', '?'
    if facts.get('wp_async') == '1' and facts.get('pagemap_scan') == '1':
        dirty = 'uffd-async'
    elif facts.get('softdirty') == '1':
        dirty = 'soft-dirty'
    elif facts.get('uffd_wp') == '1':
        dirty = 'uffd-sync'
    elif facts.get('mprotect') == '1':
        dirty = 'mprotect'
    else:
        dirty = 'none'
    touch = 'uffd-missing' if facts.get('uffd_missing') == '1' else 'none'
    return dirty, touch


def trackers(probe, facts):
    if probe and probe.get('dirty'):
        return probe['dirty'], probe.get('touch') or '?'
    d, t = suggested(facts)
    return f'({d})', f'({t})'


def yn(facts, key):
    v = facts.get(key)
    return {'1': 'yes', '0': 'no'}.get(v, '?')


def host_row(build):
    """The host kernel: today's build and its last meson test run."""
    facts, probe = {}, None
    kc = build / 'tests' / 'vm' / 'vm_kcaps'
    if kc.exists():
        r = subprocess.run([str(kc)], stdout=subprocess.PIPE, text=True, check=False)
        facts = facts_of(r.stdout.splitlines())
    pr = build / 'tools' / 'pgtrack-probe'
    if pr.exists():
        r = subprocess.run([str(pr), '--json'], stdout=subprocess.PIPE, text=True,
                           check=False)
        probe = vmtest.probe_choice(r.stdout)
    counts = {'pass': 0, 'fail': 0, 'skip': 0}
    when = 'no run yet'
    ran = 0
    suites = set()
    log = build / 'meson-logs' / 'testlog.json'
    if log.exists():
        when = time.strftime('%Y-%m-%d %H:%M', time.localtime(log.stat().st_mtime))
        for line in log.read_text().splitlines():
            try:
                t = json.loads(line)
            except ValueError:
                continue
            if ':vm / ' in t.get('name', ''):
                continue
            ran += 1
            if ':' in t.get('name', '') and ' / ' in t['name']:
                suites.add(t['name'].split(':', 1)[1].split(' / ')[0])
            tests, _, plan_skip = vmtest.parse_tap((t.get('stdout') or '').splitlines())
            if tests:
                for x in tests:
                    counts[x['result']] += 1
            else:
                res = t.get('result')
                counts['pass' if res in ('OK', 'EXPECTEDFAIL') else
                       'skip' if res == 'SKIP' else 'fail'] += 1
    if suites:
        when += ' (' + ', '.join(sorted(suites)) + ')'
    if not ran:
        counts = {'pass': '-', 'fail': '-', 'skip': '-'}
        when = 'no host suites in the last run'
    return dict(cell='host', kernel=facts.get('kernel', '?'), arch=facts.get('arch', '?'),
                facts=facts, probe=probe, counts=counts, when=when, time='-')


def cell_row(res):
    g = res.get('guest') or {}
    facts = res.get('facts') or {}
    kernel = facts.get('kernel') or g.get('kernel') or res.get('kernel_pkg', '?')
    if res.get('status') == 'skip':
        kernel = 'skipped: ' + res.get('reason', '')[:80]
    t = f'{g.get("boot_s", "?")} / {res.get("wall_s", "?")}' if g else \
        f'- / {res.get("wall_s", "?")}'
    return dict(cell=res['cell'], kernel=kernel, arch=res.get('arch', '?'), facts=facts,
                probe=res.get('probe'), counts=res.get('counts', {}),
                when=res.get('started', '?'), time=t)


def render(rows):
    out = ['| cell | kernel | arch | NUMA nodes | soft-dirty | uffd-WP | WP-async | '
           'PAGEMAP_SCAN | dirty tracker | touch tracker | pass | fail | skip | '
           'boot / total s | run |',
           '|' + '---|' * 15]
    for r in rows:
        f = r['facts']
        dirty, touch = trackers(r['probe'], f)
        c = r['counts']
        out.append('| ' + ' | '.join(str(x) for x in [
            r['cell'], r['kernel'], r['arch'], f.get('nodes', '?'),
            yn(f, 'softdirty'), yn(f, 'uffd_wp'), yn(f, 'wp_async'),
            yn(f, 'pagemap_scan'), dirty, touch, c.get('pass', 0), c.get('fail', 0),
            c.get('skip', 0), r['time'], r['when']]) + ' |')
    out.append('')
    out.append('Trackers are what `pgtrack-probe --json` chose in that kernel; in '
               'parentheses where the probe is not built yet, what the measured '
               'kernel facts (tests/vm/vm_kcaps) imply. Counts are TAP test cases; '
               'the host row counts the last `meson test` of the normal suites.')
    return '\n'.join(out) + '\n'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build-root', type=Path, required=True)
    ap.add_argument('--quiet', action='store_true')
    opts = ap.parse_args()
    build = opts.build_root.resolve()
    rows = []
    for cell in vmtest.CELLS:
        p = build / 'tests' / 'vm' / 'results' / f'{cell}.json'
        if p.exists():
            rows.append(cell_row(json.loads(p.read_text())))
        else:
            rows.append(dict(cell=cell, kernel='not run', arch=vmtest.CELLS[cell]['arch'],
                             facts={}, probe=None, counts={}, when='-', time='-'))
    rows.append(host_row(build))
    md = render(rows)
    (build / 'vm-matrix.md').write_text(md)
    if not opts.quiet:
        print(md, end='')
    return 0


if __name__ == '__main__':
    sys.exit(main())
