#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""pgtrack attached to an unmodified QEMU, checked against a real guest.

Boots Debian's 6.1 kernel (the VM matrix's kernel cache and busybox, see
tests/vm/vmtest.py) under qemu-system-x86_64 (TCG) with
LD_PRELOAD=libpgtrack-attach.so, and prints TAP for meson.

Run "memfd" (memory-backend-memfd, virtio-balloon with free page reporting):
  1. the library finds the 512 MiB backend by the command line's size and
     tracks it with uffd WP-async (the host kernel's best tracker);
  2. the guest writer (guest_writer.c) dirties a 64 MiB buffer at 20 MiB/s,
     then 0, then 80 MiB/s; in each phase pgtrack's dirty rate (its byte
     counter over 2.6 s) must be within +-15 % of the rate (the zero phase:
     below ZERO_LIMIT), and QEMU's own estimate (calc-dirty-rate,
     page-sampling, 1 s) is taken in the same window and reported;
  3. the guest frees the buffer; free page reporting makes QEMU discard it;
     pgtrack's released memory must grow by what QEMU discarded (+-15 %).
Run "anon" (QEMU's default anonymous RAM, a balloon without reporting):
  4. the balloon inflates by BALLOON_MIB: pgtrack's released memory must
     follow QEMU's balloon size (query-balloon) within +-10 %, and come back
     down when it deflates;
  5. pgtrack-numa --pid shows pgtrack's lines for the QEMU;
  6. QEMU enables background-snapshot (it registers guest RAM with its own
     userfaultfd): pgtrack steps aside with a message, QEMU's snapshot
     completes, and pgtrack tracks again afterwards. With
     PGT_ATTACH_STEP_ASIDE=no the same QEMU command fails (the proof that the
     two really collide).

Results also go to <build>/tests/attach/attach-results.json and .md.
Environment: PGT_VM_CACHE as for tests/vm; PGT_ATTACH_KEEP=1 keeps the
work directory.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / 'vm'))
import vmtest  # noqa: E402  (the VM matrix: kernel cache, busybox, console)

MIB = 1 << 20
BUFFER_MIB = 64
PHASES = [(20, 6), (0, 6), (80, 6)]      # MiB/s, seconds (the phases)
TOLERANCE = 0.15
# The writer's zero phase: the guest kernel itself still writes (timers,
# scheduler, the writer's own stack: about 1.3 MiB/s at 100 ms sampling
# here); +-15 % of the smallest non-zero phase.
ZERO_LIMIT = TOLERANCE * min(r for r, _ in PHASES if r)
SETTLE_S = 1.0                            # into a phase before measuring
BALLOON_MIB = 128
MODULES = ['virtio_ring', 'virtio', 'virtio_pci_legacy_dev', 'virtio_pci_modern_dev',
           'virtio_pci', 'virtio_balloon']
APPEND = 'console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off rdinit=/init'


class Qmp:
    """A QMP client on QEMU's unix socket: commands, replies, events kept."""

    def __init__(self, path, deadline):
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.sock.settimeout(30)
        self.f = self.sock.makefile('rw')
        self.events = []
        self._read()            # greeting
        self.cmd('qmp_capabilities')

    def _read(self):
        line = self.f.readline()
        if not line:
            raise OSError('QMP connection closed')
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {'execute': name}
        if args:
            msg['arguments'] = args
        self.f.write(json.dumps(msg) + '\n')
        self.f.flush()
        while True:
            r = self._read()
            if 'event' in r:
                self.events.append(r)
                continue
            if 'error' in r:
                raise RuntimeError(f'{name}: {r["error"].get("desc", r["error"])}')
            return r.get('return')

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Guest:
    """One QEMU with the attach library preloaded."""

    def __init__(self, ctx, name, qemu_args, writer_args, env):
        self.ctx, self.name = ctx, name
        self.work = ctx.work / name
        shutil.rmtree(self.work, ignore_errors=True)
        (self.work / 'state').mkdir(parents=True)
        self.qmp_path = self.work / 'qmp.sock'
        self.ctl_path = self.work / 'ctl.sock'
        initrd = make_initramfs(ctx, self.work, writer_args)
        penv = {'LD_PRELOAD': str(ctx.lib), 'PGT_ATTACH_PORT': '0',
                'PGT_ATTACH_DIR': str(self.work / 'state')}
        penv.update(env)
        cmd = (['env'] + [f'{k}={v}' for k, v in penv.items()] +
               ['qemu-system-x86_64', '-accel', 'tcg', '-cpu', 'max', '-smp', '1'] +
               qemu_args +
               ['-qmp', f'unix:{self.qmp_path},server=on,wait=off',
                # the guest's /dev/ttyS1: the host tells the writer when to start
                '-chardev', f'socket,id=ctl,path={self.ctl_path},server=on,wait=off',
                '-device', 'isa-serial,chardev=ctl',
                '-nodefaults', '-no-reboot', '-display', 'none', '-monitor', 'none',
                '-serial', 'stdio', '-kernel', str(ctx.kernel), '-initrd', str(initrd),
                '-append', APPEND])
        ctx.tap.diag(f'{name}: ' + ' '.join(shlex.quote(c) for c in cmd))
        self.t0 = time.time()
        self.con = vmtest.Console(cmd, ctx.logs / f'attach-{name}.console.log')
        self.qmp = None
        self.port = None

    def expect(self, pattern, timeout):
        """The next console line matching @pattern (a regex), or None."""
        deadline = time.time() + timeout
        while True:
            line = self.con.readline(deadline)
            if line is None:
                return None
            if 'pgtrack-attach[' in line:
                self.ctx.tap.diag(f'  qemu: {line}')
            m = re.search(pattern, line)
            if m:
                return m

    def go(self):
        """Let the guest writer start."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.ctl_path))
            s.sendall(b'go\n')
            time.sleep(0.2)

    def state_file(self):
        files = list((self.work / 'state').glob('attach-*.json'))
        if not files:
            return None
        try:
            return json.loads(files[0].read_text())
        except ValueError:
            return None     # renamed in place: never half, but may vanish

    def connect(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.state_file()
            if st and st.get('http_port'):
                self.port = st['http_port']
                break
            time.sleep(0.2)
        self.qmp = Qmp(self.qmp_path, deadline)
        return self.port is not None

    def attach_json(self):
        with urllib.request.urlopen(f'http://127.0.0.1:{self.port}/json', timeout=10) as r:
            return json.load(r)

    def metrics(self):
        with urllib.request.urlopen(f'http://127.0.0.1:{self.port}/metrics', timeout=10) as r:
            return r.read().decode()

    def region(self):
        d = self.attach_json()
        return d, (d['regions'][0] if d.get('regions') else None)

    def wait_state(self, want, timeout):
        deadline = time.time() + timeout
        d = None
        while time.time() < deadline:
            d = self.attach_json()
            if d['state'] == want:
                return d
            time.sleep(0.25)
        return d

    def pid(self):
        st = self.state_file()
        return st['pid'] if st else None

    def stop(self):
        if self.qmp:
            try:
                self.qmp.cmd('quit')
            except (OSError, RuntimeError):
                pass
            self.qmp.close()
        rc = self.con.stop(grace=20)
        return rc


def make_initramfs(ctx, work, writer_args):
    stage = work / 'root'
    for d in ('bin', 'pgt/mod'):
        (stage / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(ctx.busybox, stage / 'bin' / 'busybox')
    shutil.copy2(HERE / 'guest_init.sh', stage / 'init')
    os.chmod(stage / 'init', 0o755)
    shutil.copy2(ctx.writer, stage / 'pgt' / 'attach-writer')
    for m in ctx.modules:
        shutil.copy2(m, stage / 'pgt' / 'mod' / m.name)
    (stage / 'pgt' / 'modules').write_text(''.join(m.name + '\n' for m in ctx.modules))
    (stage / 'pgt' / 'writer-args').write_text(writer_args + '\n')
    out = work / 'initramfs.gz'
    with open(out, 'wb') as f:
        find = subprocess.Popen(['find', '.'], cwd=stage, stdout=subprocess.PIPE)
        cpio = subprocess.Popen(['cpio', '-o', '-H', 'newc', '--quiet'], cwd=stage,
                                stdin=find.stdout, stdout=subprocess.PIPE)
        gz = subprocess.Popen(['gzip', '-1'], stdin=cpio.stdout, stdout=f)
        find.stdout.close()
        cpio.stdout.close()
        if gz.wait() or cpio.wait() or find.wait():
            raise vmtest.Fail('cannot pack the initramfs')
    return out


def kernel_modules(cache, kernel):
    """The virtio balloon driver and what it needs, from the kernel's own
    package (Debian builds them as modules: CONFIG_VIRTIO_BALLOON=m), in
    load order. Checked against each module's depends= and vermagic."""
    pkg = kernel.parent.name
    dest = kernel.parent / 'modules'
    with vmtest.Lock(cache / 'kernels.lock'):
        if not all((dest / f'{m}.ko').exists() for m in MODULES):
            vmtest.deb_fetch(pkg, 'amd64', ['./lib/modules/*/kernel/drivers/virtio/virtio*.ko'],
                             dest)
    release = kernel.name[len('vmlinuz-'):]
    have, order = set(), []
    for m in MODULES:
        path = dest / f'{m}.ko'
        if not path.exists():
            raise vmtest.Skip(f'{pkg} has no {m}.ko')
        data = path.read_bytes()
        dep = re.search(rb'\0depends=([^\0]*)\0', data)
        ver = re.search(rb'\0vermagic=([^\0 ]*)', data)
        if not ver or ver.group(1).decode() != release:
            raise vmtest.Fail(f'{m}.ko is not built for {release}')
        for d in (dep.group(1).decode().split(',') if dep and dep.group(1) else []):
            if d not in have:
                raise vmtest.Fail(f'{m}.ko needs {d}, not loaded before it')
        have.add(m)
        order.append(path)
    return order


class Ctx:
    pass


def close_to(got, want, tol):
    return abs(got - want) <= tol * want


def mib(v):
    return v / MIB


def poll_dirty_rate(qmp, deadline):
    while time.time() < deadline:
        r = qmp.cmd('query-dirty-rate')
        if r.get('status') == 'measured':
            return r.get('dirty-rate')
        time.sleep(0.1)
    return None


def measure_phase(g, rate):
    """pgtrack's counter over the middle of a phase, and QEMU's estimate
    (two 1 s page-sampling measurements) in the same window."""
    time.sleep(SETTLE_S)
    d1, r1 = g.region()
    t1 = time.time()
    qemu = []
    for _ in range(2):
        g.qmp.cmd('calc-dirty-rate', **{'calc-time': 1, 'sample-pages': 4096,
                                        'mode': 'page-sampling'})
        time.sleep(1.1)
        v = poll_dirty_rate(g.qmp, time.time() + 5)
        if v is not None:
            qemu.append(v)
    d2, r2 = g.region()
    t2 = time.time()
    pg = (r2['dirty_bytes_total'] - r1['dirty_bytes_total']) / (t2 - t1) / MIB
    unique_1s = next((w['bytes'] for w in r2.get('written_bytes', [])
                      if w['within_seconds'] == 1), None)
    return dict(rate=rate, pgtrack=round(pg, 2), window_s=round(t2 - t1, 2),
                qemu=qemu, qemu_mean=round(sum(qemu) / len(qemu), 1) if qemu else None,
                pgtrack_unique_1s=round(unique_1s / MIB, 1) if unique_1s is not None else None,
                discards_during=r2['vmm_discarded_bytes'] - r1['vmm_discarded_bytes'])


def rss_of(pid, start):
    """Rss of the mapping starting at @start in /proc/pid/smaps, bytes."""
    hdr = re.compile(r'^([0-9a-f]+)-([0-9a-f]+) ')
    inside = False
    with open(f'/proc/{pid}/smaps') as f:
        for line in f:
            m = hdr.match(line)
            if m:
                inside = int(m.group(1), 16) == start
                continue
            if inside and line.startswith('Rss:'):
                return int(line.split()[1]) * 1024
    return None


def wait_stable(g, key, quiet_s, timeout):
    """Poll the region's @key until it stops changing for @quiet_s."""
    deadline = time.time() + timeout
    last, since = None, time.time()
    while time.time() < deadline:
        _, r = g.region()
        if r[key] != last:
            last, since = r[key], time.time()
        elif time.time() - since >= quiet_s:
            break
        time.sleep(0.5)
    return g.region()


def run_memfd(ctx):
    tap, res = ctx.tap, {}
    args = f'{BUFFER_MIB} ' + ' '.join(f'{r}:{s}' for r, s in PHASES)
    g = Guest(ctx, 'memfd', ['-m', '512M', '-object', 'memory-backend-memfd,id=mem0,size=512M',
                             '-machine', 'pc,memory-backend=mem0',
                             '-device', 'virtio-balloon-pci,id=balloon0,free-page-reporting=on'],
              args, {})
    try:
        m = g.expect(r'@@A READY (.*)', 180)
        tap.result(m is not None and 'balloon=1' in m.group(1),
                   f'memfd: guest boots with the virtio balloon driver '
                   f'({m.group(1) if m else "no READY"})')
        if not m:
            return res
        res['boot_s'] = round(time.time() - g.t0, 1)
        ok = g.connect()
        d, r = g.region() if ok else ({}, None)
        tap.result(bool(r) and d['state'] == 'attached' and r['size'] == 512 * MIB and
                   r['backing'] == 'memfd',
                   f'memfd: attached to the 512 MiB memory-backend-memfd '
                   f'({d.get("state")}: {d.get("message")})')
        if not r:
            return res
        res['method'] = r['dirty_method']
        if not g.expect(r'@@A WAIT', 60):
            tap.result(False, 'memfd: the writer waits for the host')
            return res
        # boot-time free page reporting discards most of the guest's RAM:
        # the discarded pages changed (they read as zero now) and pgtrack
        # counts them as written; let it end before measuring anything
        wait_stable(g, 'vmm_discarded_bytes', 3, 40)
        _, b1 = g.region()
        t1 = time.time()
        time.sleep(2)
        _, b2 = g.region()
        res['idle'] = round((b2['dirty_bytes_total'] - b1['dirty_bytes_total']) /
                            (time.time() - t1) / MIB, 2)
        tap.diag(f'guest idle before the writer: pgtrack {res["idle"]} MiB/s')
        g.go()
        if not g.expect(r'@@W populated', 120):
            tap.result(False, 'memfd: the writer populated its buffer')
            return res
        res['phases'] = []
        for i, (rate, secs) in enumerate(PHASES, 1):
            if not g.expect(rf'@@W phase {i} rate=', 60):
                tap.result(False, f'memfd: phase {i} started')
                return res
            p = measure_phase(g, rate)
            m = g.expect(rf'@@W phase {i} end pages=(\d+) secs=([\d.]+)', secs + 30)
            if m:
                p['writer'] = round(int(m.group(1)) * 4096 / float(m.group(2)) / MIB, 2)
            res['phases'].append(p)
            tap.diag(f'phase {i}: writer {rate} MiB/s (achieved {p.get("writer")}), pgtrack '
                     f'{p["pgtrack"]} MiB/s over {p["window_s"]} s, pgtrack unique per 1 s '
                     f'{p["pgtrack_unique_1s"]} MiB, QEMU page-sampling {p["qemu"]} MB/s, '
                     f'discards in the window {p["discards_during"]} B')
            if rate:
                ok = close_to(p['pgtrack'], rate, TOLERANCE)
                tap.result(ok, f'memfd: phase {i} ({rate} MiB/s): pgtrack {p["pgtrack"]} MiB/s '
                           f'within {TOLERANCE:.0%}')
            else:
                tap.result(p['pgtrack'] < ZERO_LIMIT,
                           f'memfd: phase {i} (writer idle): pgtrack {p["pgtrack"]} MiB/s '
                           f'below {ZERO_LIMIT} MiB/s')
            tap.result(len(p['qemu']) == 2,
                       f'memfd: phase {i}: QEMU calc-dirty-rate measured in the same window '
                       f'({p["qemu"]} MB/s)')
        # free page reporting: the buffer goes back to the host
        d0, r0 = g.region()
        rss0 = rss_of(d0['pid'], r0['start'])
        if not g.expect(r'@@W freed', 60):
            tap.result(False, 'memfd: the writer freed its buffer')
            return res
        time.sleep(3)   # the guest reports after 2 s
        d1, r1 = wait_stable(g, 'vmm_discarded_bytes', 3, 30)
        rss1 = rss_of(d1['pid'], r1['start'])
        disc = r1['vmm_discarded_bytes'] - r0['vmm_discarded_bytes']
        rel = r1['released_bytes'] - r0['released_bytes']
        res['fpr'] = dict(discarded_mib=round(mib(disc), 1), released_mib=round(mib(rel), 1),
                          rss_drop_mib=round(mib(rss0 - rss1), 1) if rss0 and rss1 else None)
        tap.diag(f'free page reporting: QEMU discarded {mib(disc):.1f} MiB, pgtrack released '
                 f'+{mib(rel):.1f} MiB, host RSS of guest RAM -{mib(rss0 - rss1):.1f} MiB')
        tap.result(disc >= BUFFER_MIB * MIB // 2,
                   f'memfd: free page reporting gave back at least half the freed '
                   f'{BUFFER_MIB} MiB ({mib(disc):.1f} MiB discarded by QEMU)')
        tap.result(disc > 0 and close_to(rel, disc, TOLERANCE),
                   f'memfd: pgtrack released +{mib(rel):.1f} MiB for {mib(disc):.1f} MiB QEMU '
                   f'discarded (within {TOLERANCE:.0%})')
    finally:
        rc = g.stop()
        files = list((g.work / 'state').glob('attach-*.json'))
        tap.result(rc == 0 and not files,
                   f'memfd: QEMU exits cleanly (status {rc}) and the state file is gone')
    return res


def balloon_actual(g):
    return g.qmp.cmd('query-balloon')['actual']


def wait_balloon(g, target, timeout):
    deadline = time.time() + timeout
    a = balloon_actual(g)
    while time.time() < deadline and a != target:
        time.sleep(0.25)
        a = balloon_actual(g)
    return a


def run_anon(ctx):
    tap, res = ctx.tap, {}
    ram = 384 * MIB
    g = Guest(ctx, 'anon', ['-m', '384M', '-device', 'virtio-balloon-pci,id=balloon0'], '', {})
    try:
        m = g.expect(r'@@A READY (.*)', 180)
        tap.result(m is not None and 'balloon=1' in m.group(1),
                   f'anon: guest boots with the virtio balloon driver '
                   f'({m.group(1) if m else "no READY"})')
        if not m or not g.connect():
            return res
        d, r = g.region()
        tap.result(bool(r) and d['state'] == 'attached' and r['size'] == ram and
                   r['backing'] == 'anon',
                   f'anon: attached to QEMU\'s default 384 MiB anonymous RAM ({d.get("message")})')
        if not r:
            return res
        g.expect(r'@@A IDLE', 30)
        _, r0 = wait_stable(g, 'released_bytes', 2, 15)
        # inflate
        target = ram - BALLOON_MIB * MIB
        g.qmp.cmd('balloon', value=target)
        actual = wait_balloon(g, target, 90)
        time.sleep(1.5)     # one age epoch: the rescan counts the last REMOVE events
        _, r1 = wait_stable(g, 'released_bytes', 2, 15)
        ballooned = ram - actual
        rel = r1['released_bytes'] - r0['released_bytes']
        disc = r1['vmm_discarded_bytes'] - r0['vmm_discarded_bytes']
        res['inflate'] = dict(balloon_mib=mib(ballooned), released_mib=round(mib(rel), 1),
                              discarded_mib=round(mib(disc), 1))
        tap.diag(f'inflate: QEMU balloon {mib(ballooned):.1f} MiB (query-balloon), pgtrack '
                 f'released +{mib(rel):.1f} MiB, QEMU discarded {mib(disc):.1f} MiB')
        tap.result(actual == target, f'anon: the balloon reached {mib(target):.0f} MiB '
                   f'(actual {mib(actual):.1f} MiB)')
        tap.result(ballooned > 0 and close_to(rel, ballooned, 0.10),
                   f'anon: pgtrack released +{mib(rel):.1f} MiB for a {mib(ballooned):.1f} MiB '
                   f'balloon (within 10%)')
        # pgtrack-numa sees pgtrack's lines in this QEMU
        numa_check(ctx, g, res)
        # deflate
        g.qmp.cmd('balloon', value=ram)
        actual = wait_balloon(g, ram, 90)
        time.sleep(1.5)
        _, r2 = wait_stable(g, 'released_bytes', 2, 15)
        back = r1['released_bytes'] - r2['released_bytes']
        res['deflate'] = dict(balloon_mib=mib(ram - actual), released_mib=round(mib(
            r2['released_bytes'] - r0['released_bytes']), 1),
            reclaimed_mib=round(mib(r2['reclaimed_bytes'] - r1['reclaimed_bytes']), 1))
        tap.diag(f'deflate: balloon {mib(ram - actual):.1f} MiB, pgtrack released now '
                 f'+{res["deflate"]["released_mib"]} MiB over the start, '
                 f'{res["deflate"]["reclaimed_mib"]} MiB reclaimed (QEMU MADV_WILLNEED)')
        tap.result(actual == ram and close_to(back, rel, 0.10),
                   f'anon: deflated, pgtrack released memory back down by {mib(back):.1f} MiB')
        step_aside(ctx, g, res)
    finally:
        rc = g.stop()
        tap.result(rc == 0, f'anon: QEMU exits cleanly (status {rc})')
    return res


def numa_check(ctx, g, res):
    tap = ctx.tap
    if not ctx.numa_tool:
        tap.result(True, 'anon: pgtrack-numa --pid', skip='pgtrack-numa not built')
        return
    pid = g.pid()
    r = subprocess.run([str(ctx.numa_tool), '--pid', str(pid), '--json'],
                       capture_output=True, text=True, timeout=60)
    ok, line = False, ''
    try:
        j = json.loads(r.stdout)
        tr = [x.get('tracked') for x in j.get('guest', []) if x.get('tracked')]
        ok = bool(tr) and tr[0].get('source') == 'attach' and tr[0].get('released', 0) > 0
    except ValueError:
        j = None
    t = subprocess.run([str(ctx.numa_tool), '--pid', str(pid)], capture_output=True, text=True,
                       timeout=60)
    line = next((x.strip() for x in t.stdout.splitlines() if 'pgtrack' in x and 'released' in x),
                '')
    res['numa_line'] = line
    tap.diag('pgtrack-numa --pid: ' + line)
    tap.result(ok and bool(line) and r.returncode == 0,
               'anon: pgtrack-numa --pid shows pgtrack\'s touched, dirty and released lines')


def enable_background_snapshot(g):
    """QEMU registers guest RAM with its userfaultfd to check it can: its
    error, or None."""
    try:
        g.qmp.cmd('migrate-set-capabilities',
                  capabilities=[{'capability': 'background-snapshot', 'state': True}])
        return None
    except RuntimeError as e:
        return str(e)


def step_aside(ctx, g, res):
    tap = ctx.tap
    err = enable_background_snapshot(g)
    d = g.attach_json()
    res['step_aside'] = dict(qemu_error=err, state=d['state'], message=d['message'])
    tap.diag(f'background-snapshot: QEMU {"refused: " + err if err else "accepted"}; pgtrack '
             f'{d["state"]}: {d["message"]}')
    tap.result(err is None and d['state'] == 'stepped-aside' and d['steps_aside'] >= 1 and
               'userfaultfd' in d['message'],
               'anon: QEMU registers guest RAM for background-snapshot; pgtrack steps aside '
               'with a message')
    if err:
        return
    out = g.work / 'snapshot.bin'
    g.qmp.cmd('migrate', uri=f'exec:cat > {shlex.quote(str(out))}')
    deadline, st = time.time() + 120, None
    while time.time() < deadline:
        st = g.qmp.cmd('query-migrate').get('status')
        if st in ('completed', 'failed', 'cancelled'):
            break
        time.sleep(0.5)
    size = out.stat().st_size if out.exists() else 0
    res['step_aside']['snapshot'] = dict(status=st, bytes=size)
    tap.result(st == 'completed' and size > 0,
               f'anon: QEMU\'s background snapshot completes ({st}, {mib(size):.0f} MiB)')
    d = g.wait_state('attached', 30)
    tap.result(d['state'] == 'attached',
               f'anon: pgtrack tracks again once QEMU let go ({d["state"]}: {d["message"]})')
    out.unlink(missing_ok=True)


def hold_check(ctx):
    """PGT_ATTACH_STEP_ASIDE=no: QEMU's registration must now fail."""
    tap = ctx.tap
    g = Guest(ctx, 'hold', ['-m', '256M'], '', {'PGT_ATTACH_STEP_ASIDE': 'no'})
    try:
        if not g.expect(r'@@A READY', 180) or not g.connect():
            tap.result(False, 'hold: guest boots')
            return {}
        g.wait_state('attached', 30)
        err = enable_background_snapshot(g)
        tap.diag(f'hold: QEMU {"refused: " + err if err else "accepted"}')
        tap.result(err is not None, 'hold: without stepping aside QEMU\'s background-snapshot '
                   'fails (its userfaultfd registration collides with pgtrack\'s)')
        return dict(qemu_error=err)
    finally:
        g.stop()


def report(ctx, results):
    out = ctx.vmdir
    (out / 'attach-results.json').write_text(json.dumps(results, indent=1) + '\n')
    lines = ['| phase | writer (achieved) | pgtrack | pgtrack unique per 1 s '
             '| QEMU calc-dirty-rate |',
             '|---|---|---|---|---|']
    for p in results.get('memfd', {}).get('phases', []):
        lines.append(f'| {p["rate"]} MiB/s | {p.get("writer")} MiB/s | {p["pgtrack"]} MiB/s | '
                     f'{p["pgtrack_unique_1s"]} MiB | {p["qemu"]} MB/s |')
    (out / 'attach-results.md').write_text('\n'.join(lines) + '\n')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--source-root', type=Path, required=True)
    ap.add_argument('--build-root', type=Path, required=True)
    ap.add_argument('--lib', type=Path, required=True)
    ap.add_argument('--writer', type=Path, required=True)
    ap.add_argument('--numa-tool', type=Path)
    ap.add_argument('--only', default='memfd,anon,hold')
    o = ap.parse_args()
    ctx = Ctx()
    ctx.tap = vmtest.Tap('attach')
    build = o.build_root.resolve()
    ctx.vmdir = build / 'tests' / 'attach'
    ctx.work = ctx.vmdir / 'work'
    ctx.logs = ctx.vmdir / 'logs'
    ctx.logs.mkdir(parents=True, exist_ok=True)
    ctx.lib, ctx.writer = o.lib.resolve(), o.writer.resolve()
    ctx.numa_tool = o.numa_tool.resolve() if o.numa_tool and o.numa_tool.exists() else None
    only = o.only.split(',')
    results = {}
    try:
        if os.uname().machine != 'x86_64':
            raise vmtest.Skip('the guest writer is built for this host: x86_64 hosts only')
        for tool in ('qemu-system-x86_64', 'cpio', 'gzip'):
            if not shutil.which(tool):
                raise vmtest.Skip(f'{tool} not installed (scripts/setup.sh --all)')
        with vmtest.Lock(ctx.vmdir / 'attach.lock'):
            cache = vmtest.cache_root(build)
            ctx.kernel = vmtest.fetch_kernel(cache, 'x86_64', '6.1')
            ctx.busybox = vmtest.fetch_busybox(cache, 'x86_64')
            ctx.modules = kernel_modules(cache, ctx.kernel)
            ctx.tap.diag(f'kernel {ctx.kernel}, modules {[m.name for m in ctx.modules]}')
            if 'memfd' in only:
                results['memfd'] = run_memfd(ctx)
            if 'anon' in only:
                results['anon'] = run_anon(ctx)
            if 'hold' in only:
                results['hold'] = hold_check(ctx)
            if not os.environ.get('PGT_ATTACH_KEEP'):
                shutil.rmtree(ctx.work, ignore_errors=True)
    except vmtest.Skip as e:
        print(f'1..0 # SKIP {ctx.tap.clean(str(e))}', flush=True)
        return 0
    except vmtest.Fail as e:
        ctx.tap.diag(e.log)
        ctx.tap.result(False, f'setup ({e})')
    except Exception as e:  # a harness bug is a failure, shown
        import traceback
        ctx.tap.diag(traceback.format_exc())
        ctx.tap.result(False, f'harness error ({type(e).__name__}: {e})')
    report(ctx, results)
    print(f'1..{ctx.tap.n}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
