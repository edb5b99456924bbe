#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run pgtrack's tests in a QEMU (TCG) guest booted on another kernel.

One invocation runs one cell of the matrix (a kernel, an architecture, a
machine shape) and prints TAP for meson: one line per test of every program
that ran in the guest, named "<cell>/<program>/<test>".

Steps: fetch the cell's Debian kernel package into a cache (apt-get download +
dpkg-deb, never installed on the host); build the guest programs in a
separate meson build for the cell's architecture; pack them, their shared
libraries and busybox into an initramfs whose /init (init.sh) runs them; boot
QEMU and parse the serial console; write results/<cell>.json and regenerate
the matrix table (report.py).

A kernel or tool that cannot be had is a skip with the reason ("1..0 # SKIP").
A guest that does not boot, hangs or dies is a failure with its console shown.

Environment:
  PGT_VM_CACHE          kernel/busybox cache (default /var/cache/pgtrack-vm if
                        writable, else <build>/tests/vm/cache)
  PGT_VM_TIMEOUT_MULT   multiply every guest timeout (default 1)
  PGT_VM_ONLY           comma list of program names to run (debugging)
  PGT_TEST_SCALE        passed to the guest tests (default 0.1)
"""

import argparse
import fcntl
import glob
import gzip
import json
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# One entry per matrix cell. "expect" are vm_kcaps facts the kernel must show
# (proof that the guest is the kernel the cell claims); "dirty" is the
# tracker pgtrack's probe should choose there.
NUMA2 = ['-object', 'memory-backend-ram,id=m0,size=512M',
         '-object', 'memory-backend-ram,id=m1,size=512M',
         '-numa', 'node,nodeid=0,cpus=0,memdev=m0',
         '-numa', 'node,nodeid=1,cpus=1,memdev=m1']
CELLS = {
    'x86_64-6.1': dict(
        arch='x86_64', kernel='6.1', qemu_extra=[],
        expect=['softdirty=1', 'uffd_missing=1', 'uffd_wp=1', 'wp_async=0',
                'pagemap_scan=0', 'mprotect=1', 'nodes=1'],
        dirty='soft-dirty'),
    'x86_64-6.1-numa2': dict(
        arch='x86_64', kernel='6.1', qemu_extra=NUMA2,
        expect=['softdirty=1', 'uffd_wp=1', 'pagemap_scan=0', 'nodes=2',
                'numa_move=1'],
        dirty='soft-dirty'),
    'arm64-6.1': dict(
        arch='aarch64', kernel='6.1', qemu_extra=[],
        expect=['softdirty=0', 'uffd_missing=1', 'uffd_wp=0', 'wp_async=0',
                'pagemap_scan=0', 'mprotect=1', 'nodes=1'],
        dirty='mprotect'),
}

ARCHES = {
    'x86_64': dict(
        deb='amd64', flavour='amd64', triplet='x86_64-linux-gnu',
        qemu='qemu-system-x86_64',
        machine=['-accel', 'tcg', '-cpu', 'max'],
        console='ttyS0', cross=None),
    'aarch64': dict(
        deb='arm64', flavour='arm64', triplet='aarch64-linux-gnu',
        qemu='qemu-system-aarch64',
        # pauth-impdef: QEMU's default pointer-auth algorithm costs 3x
        machine=['-accel', 'tcg', '-M', 'virt', '-cpu', 'max,pauth-impdef=on'],
        console='ttyAMA0', cross='aarch64-linux-gnu.ini'),
}

GUEST_MEM = '1G'
GUEST_CPUS = 2
HUGEPAGES = 64          # 2 MiB pages reserved in the guest
BOOT_TIMEOUT = 180      # seconds from QEMU start to READY (TCG on a busy host)
SLACK = 60              # host watchdog beyond a program's guest timeout
CELL_BUDGET = 1500      # whole cell, below the meson timeout

ANSI = re.compile(r'\x1b\[[0-9;?=]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>c]')
TAP_TEST = re.compile(r'^(ok|not ok)\b\s*(\d+)?\s*(?:-\s*)?(.*?)\s*'
                      r'(?:#\s*(SKIP|TODO)\S*\s*(.*))?$', re.I)
TAP_PLAN = re.compile(r'^1\.\.(\d+)\s*(?:#\s*(?:SKIP\S*)?\s*(.*))?$', re.I)


class Skip(Exception):
    """The cell cannot run here (missing package or tool): a meson SKIP."""


class Fail(Exception):
    """The cell could not be set up (build broken): a failure with a log."""

    def __init__(self, msg, log=''):
        super().__init__(msg)
        self.log = log


class Tap:
    """TAP for meson, plus the same results kept for the JSON summary."""

    def __init__(self, cell):
        self.cell = cell
        self.n = 0
        self.counts = {'pass': 0, 'fail': 0, 'skip': 0}

    @staticmethod
    def clean(s):
        return ' '.join(s.replace('#', ' ').split())

    def diag(self, msg):
        for line in str(msg).splitlines() or ['']:
            print('# ' + line, flush=True)

    def result(self, ok, name, skip=None):
        self.n += 1
        name = self.clean(f'{self.cell}/{name}')
        if skip is not None:
            self.counts['skip'] += 1
            print(f'ok {self.n} {name} # SKIP {self.clean(skip) or "skipped"}',
                  flush=True)
            return 'skip'
        self.counts['pass' if ok else 'fail'] += 1
        print(f'{"ok" if ok else "not ok"} {self.n} {name}', flush=True)
        return 'pass' if ok else 'fail'


def run(cmd, **kw):
    kw.setdefault('stdout', subprocess.PIPE)
    kw.setdefault('stderr', subprocess.STDOUT)
    kw.setdefault('text', True)
    return subprocess.run(cmd, check=False, **kw)


class Lock:
    def __init__(self, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, 'w')

    def __enter__(self):
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *a):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def cache_root(build):
    env = os.environ.get('PGT_VM_CACHE')
    if env:
        return Path(env)
    sysdir = Path('/var/cache/pgtrack-vm')
    try:
        sysdir.mkdir(parents=True, exist_ok=True)
        if os.access(sysdir, os.W_OK):
            return sysdir
    except OSError:
        pass
    return build / 'tests' / 'vm' / 'cache'


def host_deb_arch():
    r = run(['dpkg', '--print-architecture'])
    return r.stdout.strip() if r.returncode == 0 else ''


def apt_name(pkg, deb_arch):
    return pkg if deb_arch == host_deb_arch() else f'{pkg}:{deb_arch}'


def deb_fetch(pkg, deb_arch, members, dest):
    """apt-get download @pkg and extract @members (tar globs) into @dest."""
    if not shutil.which('apt-get') or not shutil.which('dpkg-deb'):
        raise Skip('apt-get/dpkg-deb not available to fetch ' + pkg)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        os.chmod(tmp, 0o755)    # apt's _apt user downloads into it
        r = run(['apt-get', 'download', '-q', apt_name(pkg, deb_arch)], cwd=tmp)
        debs = glob.glob(os.path.join(tmp, '*.deb'))
        if r.returncode or not debs:
            hint = ''
            if deb_arch != host_deb_arch():
                hint = (f' (is the {deb_arch} architecture added and apt-get '
                        'update run? scripts/setup.sh --all does it)')
            raise Skip(f'cannot download {apt_name(pkg, deb_arch)}{hint}: ' +
                       ' '.join(r.stdout.split()[-30:]))
        x = tmp + '/x'
        os.mkdir(x)
        tar = subprocess.Popen(['dpkg-deb', '--fsys-tarfile', debs[0]],
                               stdout=subprocess.PIPE)
        r = run(['tar', '-x', '-C', x, '--wildcards'] + members,
                stdin=tar.stdout)
        tar.wait()
        if r.returncode or tar.returncode:
            raise Skip(f'cannot unpack {debs[0]}: {r.stdout.strip()}')
        dest.mkdir(parents=True, exist_ok=True)
        for m in members:
            for f in glob.glob(os.path.join(x, m)):
                shutil.copy2(f, dest / os.path.basename(f))


def fetch_kernel(cache, arch, series):
    """Return the path of the vmlinuz of the newest Debian linux-image-@series."""
    a = ARCHES[arch]
    meta = apt_name(f'linux-image-{a["flavour"]}', a['deb'])
    r = run(['apt-cache', 'depends', meta])
    m = re.search(r'Depends:\s*(linux-image-[^\s:]+)', r.stdout)
    kdir = cache / 'kernels'
    with Lock(cache / 'kernels.lock'):
        if r.returncode or not m:
            # Offline: fall back on what an earlier run left in the cache.
            old = sorted(kdir.glob(f'linux-image-{series}*-{a["flavour"]}/vmlinuz-*'))
            if old:
                return old[-1]
            raise Skip(f'cannot resolve {meta} with apt-cache '
                       f'(add the {a["deb"]} architecture and apt-get update; '
                       f'scripts/setup.sh --all does): {r.stdout.strip()[-200:]}')
        pkg = m.group(1)
        if not pkg.startswith(f'linux-image-{series}'):
            raise Skip(f'{meta} now depends on {pkg}, not a {series} kernel: '
                       'update CELLS in tests/vm/vmtest.py')
        dest = kdir / pkg
        found = sorted(dest.glob('vmlinuz-*'))
        if not found:
            deb_fetch(pkg, a['deb'], ['./boot/vmlinuz-*', './boot/config-*'], dest)
            found = sorted(dest.glob('vmlinuz-*'))
        if not found:
            raise Skip(f'{pkg} has no /boot/vmlinuz')
        return found[-1]


def is_static(path):
    r = run(['readelf', '-lW', str(path)])
    return r.returncode == 0 and 'INTERP' not in r.stdout


def fetch_busybox(cache, arch):
    a = ARCHES[arch]
    if a['deb'] == host_deb_arch():
        for p in ('/bin/busybox', '/usr/bin/busybox'):
            if os.path.exists(p) and is_static(p):
                return Path(p)
    dest = cache / f'busybox-{a["deb"]}'
    with Lock(cache / 'busybox.lock'):
        if not (dest / 'busybox').exists():
            deb_fetch('busybox-static', a['deb'], ['./bin/busybox'], dest)
    if not (dest / 'busybox').exists():
        raise Skip(f'busybox-static:{a["deb"]} has no /bin/busybox')
    return dest / 'busybox'


# ---------------------------------------------------------------- guest build

def guest_build(src, build, arch, tap):
    """Configure (once) the guest build for @arch; return its directory."""
    a = ARCHES[arch]
    gdir = build / 'tests' / 'vm' / f'guest-{arch}'
    args = ['meson', 'setup', str(gdir), str(src), '--buildtype=debugoptimized',
            '-Ddpdk=disabled', '-Dperf=false', '-Dwerror=false', '-Dtests=enabled']
    if a['cross']:
        cross = src / 'cross' / a['cross']
        if not cross.exists():
            raise Skip(f'no cross file {cross}')
        args += ['--cross-file', str(cross)]
        # Debian has no <triplet>-pkg-config wrapper unless pkg-config's
        # cross support is installed; point plain pkg-config at the
        # multiarch .pc files instead.
        if not shutil.which(f'{a["triplet"]}-pkg-config') and \
           'pkg_config_libdir' not in cross.read_text():
            extra = build / 'tests' / 'vm' / f'pkgconfig-{arch}.ini'
            extra.parent.mkdir(parents=True, exist_ok=True)
            extra.write_text(
                "[binaries]\npkgconfig = 'pkg-config'\n[properties]\n"
                f"pkg_config_libdir = ['/usr/lib/{a['triplet']}/pkgconfig', "
                "'/usr/share/pkgconfig']\n")
            args += ['--cross-file', str(extra)]
        if not shutil.which(f'{a["triplet"]}-gcc'):
            raise Skip(f'{a["triplet"]}-gcc not installed (scripts/setup.sh --all)')
    # Always reconfigure: the build files use fs.exists() for tests that are
    # still being written, and meson does not notice a file appearing.
    if (gdir / 'build.ninja').exists():
        args.insert(2, '--reconfigure')
    tap.diag(f'configuring guest build {gdir}')
    r = run(args)
    if r.returncode:
        shutil.rmtree(gdir, ignore_errors=True)
        raise Fail(f'meson setup of the {arch} guest build failed', r.stdout)
    return gdir


def introspect(gdir, what):
    r = run(['meson', 'introspect', str(gdir), '--' + what], stderr=subprocess.DEVNULL)
    if r.returncode:
        raise Fail(f'meson introspect --{what} failed', r.stdout)
    return json.loads(r.stdout)


def read_programs(src, cell, cdef):
    """Parse tests/vm/programs.txt into entries for @cell."""
    entries, skips, envs = [], {}, {}

    def for_cell(spec):
        return spec == '*' or any(s in (cell, cdef['arch']) for s in spec.split(','))

    for lineno, line in enumerate((HERE / 'programs.txt').read_text().splitlines(), 1):
        f = shlex.split(line, comments=True)
        if not f:
            continue
        kind = f[0]
        if kind == 'program' and len(f) >= 6:
            if for_cell(f[4]):
                entries.append(dict(kind='program', name=f[1], proto=f[2],
                                    timeout=int(f[3]), target=f[5], args=f[6:]))
        elif kind == 'suite' and len(f) == 4:
            if for_cell(f[3]):
                entries.append(dict(kind='suite', suite=f[1],
                                    mult=float(f[2].lstrip('x'))))
        elif kind == 'skip' and len(f) >= 4:
            if for_cell(f[2]):
                skips[f[1]] = ' '.join(f[3:])
        elif kind == 'env' and len(f) >= 4 and all('=' in x for x in f[3:]):
            if for_cell(f[2]):
                envs.setdefault(f[1], {}).update(x.split('=', 1) for x in f[3:])
        else:
            raise Fail(f'programs.txt:{lineno}: cannot parse "{line}"')
    return entries, skips, envs


def plan_programs(src, gdir, cell, cdef):
    """Resolve programs.txt against the guest build: a list of programs."""
    entries, skips, envs = read_programs(src, cell, cdef)
    targets = introspect(gdir, 'targets')
    tests = introspect(gdir, 'tests')
    by_path = {}
    for t in targets:
        for fn in t.get('filename', []):
            by_path[os.path.relpath(fn, gdir)] = fn
    only = [s for s in os.environ.get('PGT_VM_ONLY', '').split(',') if s]
    progs = []
    for e in entries:
        if e['kind'] == 'program':
            args = []
            for a in e['args']:
                args += cdef['expect'] if a == '@expect' else [a]
            progs.append(dict(name=e['name'], proto=e['proto'],
                              timeout=e['timeout'], exe=by_path.get(e['target']),
                              target=e['target'], args=args, env={}))
            continue
        for t in tests:
            if e['suite'] not in t.get('suite', []) and \
               f'pgtrack:{e["suite"]}' not in t.get('suite', []):
                continue
            exe = t['cmd'][0]
            progs.append(dict(
                name=f'{e["suite"]}/{t["name"]}', proto=t.get('protocol', 'exitcode'),
                timeout=int((t.get('timeout') or 30) * e['mult']),
                exe=exe if os.path.relpath(exe, gdir) in by_path else None,
                target=os.path.relpath(exe, gdir), args=t['cmd'][1:],
                env=t.get('env') or {}))
    # Tools the tests drive (pgtrack-numa, pgtrack-sim) go into every guest.
    extras = sorted(fn for t in targets if t.get('type') == 'executable'
                    for fn in t.get('filename', [])
                    if os.path.relpath(fn, gdir).startswith('tools/'))
    for p in progs:
        base = p['name'].split('/')[-1]
        p['skip'] = skips.get(p['name'], skips.get(base))
        # env lines: suite-wide first, the program's own last
        for key in (p['name'].split('/')[0], base, p['name']):
            p['env'].update(envs.get(key, {}))
        if only and p['name'] not in only and base not in only:
            p['skip'] = 'not in PGT_VM_ONLY'
    return progs, extras


def build_programs(gdir, progs, extras, tap):
    want = sorted({os.path.relpath(p['exe'], gdir) for p in progs
                   if p['exe'] and not p['skip']} |
                  {os.path.relpath(e, gdir) for e in extras})
    if not want:
        return ''
    t0 = time.time()
    # -k 0: one broken test must not keep the others out of the guest
    r = run(['nice', '-n', '10', 'ninja', '-C', str(gdir), '-k', '0', '-j', '1'] + want)
    tap.diag(f'guest build: {len(want)} programs in {time.time() - t0:.0f} s')
    return r.stdout if r.returncode else ''


# ---------------------------------------------------------------- initramfs

def elf_info(path):
    r = run(['readelf', '-dlW', str(path)], stderr=subprocess.DEVNULL)
    interp = re.search(r'Requesting program interpreter: ([^\]]+)\]', r.stdout)
    needed = re.findall(r'\(NEEDED\)\s+Shared library: \[([^\]]+)\]', r.stdout)
    return (interp.group(1) if interp else None), needed


def lib_dirs(arch):
    t = ARCHES[arch]['triplet']
    if ARCHES[arch]['deb'] == host_deb_arch():
        return [f'/lib/{t}', f'/usr/lib/{t}', '/lib64', '/usr/lib64', '/lib', '/usr/lib']
    return [f'/usr/{t}/lib', f'/usr/lib/{t}', f'/lib/{t}', f'/usr/{t}/lib64']


def resolve_libs(exes, arch):
    """Shared libraries (name -> host path) and interpreters the programs need."""
    dirs = lib_dirs(arch)
    libs, interps, missing = {}, set(), set()
    todo = list(exes)
    seen = set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        interp, needed = elf_info(f)
        if interp:
            interps.add(interp)
        for n in needed:
            if n in libs:
                continue
            for d in dirs:
                cand = os.path.join(d, n)
                if os.path.exists(cand):
                    libs[n] = os.path.realpath(cand)
                    todo.append(libs[n])
                    break
            else:
                missing.add(n)
    return libs, interps, missing


def strip_copy(arch, src_path, dst):
    """Copy a program without its debug info (a third of the image)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    strip = 'strip' if ARCHES[arch]['deb'] == host_deb_arch() else \
        f'{ARCHES[arch]["triplet"]}-strip'
    if not shutil.which(strip) or \
       run([strip, '--strip-debug', '-o', str(dst), str(src_path)]).returncode:
        shutil.copy2(src_path, dst)


def make_initramfs(work, arch, busybox, progs, extras, cell, src, gdir, scale):
    """Pack busybox, /init, the programs and what they need. Programs keep
    their absolute guest-build paths, next to meson-info and tools/, because
    tests find tools and the source tree relative to /proc/self/exe."""
    stage = work / 'root'
    shutil.rmtree(stage, ignore_errors=True)
    for d in ('bin', 'pgt/lib'):
        (stage / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, stage / 'bin' / 'busybox')
    shutil.copy2(HERE / 'init.sh', stage / 'init')
    os.chmod(stage / 'init', 0o755)

    def put(path):
        dst = stage / str(path).lstrip('/')
        if not dst.exists():
            strip_copy(arch, path, dst)

    run_progs = [p for p in progs if p['exe'] and not p['skip'] and os.path.exists(p['exe'])]
    exes = [p['exe'] for p in run_progs] + [e for e in extras if os.path.exists(e)]
    libs, interps, missing = resolve_libs(exes, arch)
    for name, path in libs.items():
        shutil.copy2(path, stage / 'pgt' / 'lib' / name)
    for interp in interps:
        host = interp
        if ARCHES[arch]['deb'] != host_deb_arch():
            # The loader must come from the same glibc build as libc.so.6
            # (Debian has two arm64 glibcs: the cross one and libc6:arm64).
            dirs = lib_dirs(arch)
            if 'libc.so.6' in libs:
                dirs.insert(0, os.path.dirname(libs['libc.so.6']))
            host = next((os.path.join(d, os.path.basename(interp)) for d in dirs
                         if os.path.exists(os.path.join(d, os.path.basename(interp)))), None)
        if host and os.path.exists(host):
            dst = stage / interp.lstrip('/')
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.realpath(host), dst)
        else:
            missing.add(interp)
    for e in exes:
        put(e)
    info = gdir / 'meson-info' / 'meson-info.json'
    if info.exists():
        (stage / str(info.parent).lstrip('/')).mkdir(parents=True, exist_ok=True)
        shutil.copy2(info, stage / str(info).lstrip('/'))
    # Tests find fixtures through PGT_SRCDIR, compiled in as the host path.
    fixtures = src / 'tests' / 'fixtures'
    if fixtures.is_dir():
        shutil.copytree(fixtures, stage / str(fixtures).lstrip('/'), dirs_exist_ok=True)

    lines = []
    for p in run_progs:
        for a in p['args']:     # data files a test is given (a corpus, a library)
            if os.path.isabs(a) and os.path.isfile(a) and \
               (a.startswith(str(gdir) + '/') or a.startswith(str(src) + '/')):
                put(a)
        env = dict(p['env'])
        env.update(LD_LIBRARY_PATH='/pgt/lib', PGT_VM=cell, PGT_TEST_SCALE=scale)
        env.setdefault('CMOCKA_MESSAGE_OUTPUT', 'TAP')
        envs = ' '.join(f'{k}={v}' for k, v in sorted(env.items())
                        if not re.search(r'[\s|]', f'{k}{v}'))
        args = ' '.join(shlex.quote(a) for a in p['args'])
        if '|' in args or '\n' in args:
            raise Fail(f'{p["name"]}: arguments cannot contain | or newlines')
        lines.append(f'{p["name"]}|{p["guest_timeout"]}|{envs}|{p["exe"]} {args}')
    (stage / 'pgt' / 'list').write_text('\n'.join(lines) + '\n')
    (stage / 'pgt' / 'config').write_text(f'HUGEPAGES={HUGEPAGES}\n')

    files = run(['find', '.', '-print0'], cwd=stage).stdout
    cpio = subprocess.run(['cpio', '--null', '-o', '-H', 'newc', '--quiet'],
                          cwd=stage, input=files.encode(), stdout=subprocess.PIPE,
                          check=True).stdout
    out = work / 'initramfs.gz'
    with gzip.open(out, 'wb', compresslevel=1) as f:
        f.write(cpio)
    return out, missing, len(cpio)


# ---------------------------------------------------------------- the guest

def _die_with_parent():
    """In the QEMU child: get SIGKILL when the harness dies, however it dies."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Console:
    """QEMU's serial console: lines with deadlines, all kept in a log file."""

    def __init__(self, cmd, logpath):
        self.log = open(logpath, 'w')
        self.lines = []
        self.buf = b''
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        # meson kills the harness on its timeout: take the guest along
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.eof = False

    def _on_signal(self, sig, frame):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        sys.exit(128 + sig)

    def readline(self, deadline):
        """Next line, or None at EOF or when @deadline (time.time()) passes."""
        while True:
            if b'\n' in self.buf:
                raw, self.buf = self.buf.split(b'\n', 1)
                line = ANSI.sub('', raw.decode('utf-8', 'replace')).replace('\r', '')
                self.log.write(line + '\n')
                self.log.flush()
                self.lines.append(line)
                return line
            if self.eof:
                if self.buf:
                    self.buf += b'\n'
                    continue
                return None
            left = deadline - time.time()
            if left <= 0:
                return None
            if self.sel.select(timeout=min(left, 5)):
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    self.eof = True
                self.buf += chunk

    def stop(self, grace):
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        # drain what is left for the log
        while self.readline(time.time()) is not None:
            pass
        self.log.close()
        return self.proc.returncode

    def tail(self, n=60):
        return self.lines[-n:]


def qemu_cmd(cell, cdef, kernel, initrd):
    a = ARCHES[cdef['arch']]
    append = (f'console={a["console"]} quiet loglevel=3 panic=-1 '
              'mitigations=off rdinit=/init')
    return ([a['qemu']] + a['machine'] +
            ['-m', GUEST_MEM, '-smp', str(GUEST_CPUS)] + cdef['qemu_extra'] +
            ['-nodefaults', '-no-reboot', '-display', 'none', '-monitor', 'none',
             '-serial', 'stdio', '-kernel', str(kernel), '-initrd', str(initrd),
             '-append', append])


def parse_tap(out_lines):
    """cmocka/TAP stdout -> (tests, plan, plan_skip_reason)."""
    tests, plan, plan_skip, notes = [], None, None, []
    for line in out_lines:
        s = line.strip()
        m = TAP_PLAN.match(s)
        if m:
            plan = int(m.group(1))
            if plan == 0:
                plan_skip = m.group(2) or (notes[-1] if notes else 'no tests')
            continue
        m = TAP_TEST.match(s)
        if m:
            ok, _, desc, directive, reason = m.groups()
            if directive and directive.upper() == 'SKIP':
                res = 'skip'
                if not desc and reason:
                    # cmocka: "not ok 3 # SKIP <test name>", reason noted before
                    desc, reason = reason, ''
                reason = reason or (notes[-1] if notes else '')
            elif directive:     # TODO: an expected failure, not a pass
                res = 'skip'
                reason = 'TODO ' + (reason or '')
            else:
                res = 'pass' if ok.lower() == 'ok' else 'fail'
            tests.append(dict(name=desc or f'test {len(tests) + 1}', result=res,
                              reason=reason or ''))
            notes = []
            continue
        if s.lower().startswith('bail out!'):
            tests.append(dict(name='bail out', result='fail', reason=s))
        elif s.startswith('#'):
            notes.append(s.lstrip('# ').strip())
    return tests, plan, plan_skip


def report_program(tap, p, rc, secs, out, err, kmsg):
    """Turn one guest program's run into TAP lines; return its result record."""
    rec = dict(name=p['name'], rc=rc, secs=secs, tests=[])
    facts = {}
    for line in out:
        if line.startswith('# fact '):
            k, _, v = line[7:].partition('=')
            facts[k] = v.split(' (')[0].strip()
    if facts:
        rec['facts'] = facts
    if p['name'] == 'probe':
        rec['stdout'] = '\n'.join(out)
    timed_out = rc == 137 and secs >= p['guest_timeout'] - 1
    for line in out:
        tap.diag(f'  {line}')
    for line in err:
        tap.diag(f'  stderr: {line}')
    for line in kmsg:
        tap.diag(f'  kernel: {line}')

    def add(name, res, reason=''):
        rec['tests'].append(dict(name=name, result=res, reason=reason))
        tap.result(res == 'pass', name, skip=reason if res == 'skip' else None)

    if p['proto'] == 'tap':
        tests, plan, plan_skip = parse_tap(out)
        for t in tests:
            add(f'{p["name"]}/{t["name"]}', t['result'], t['reason'])
        if not tests and (plan_skip is not None or rc == 77):
            add(p['name'], 'skip', plan_skip or (err[-1] if err else 'exit 77'))
        elif timed_out:
            add(f'{p["name"]} (timed out after {secs:.0f} s in the guest)', 'fail')
        elif plan is not None and len(tests) < plan:
            add(f'{p["name"]} (ran {len(tests)} of {plan} tests, exit {rc})', 'fail')
        elif plan is None and rc != 77:
            add(f'{p["name"]} (no TAP plan, exit {rc})', 'fail')
        elif rc not in (0, 77) and not any(t['result'] == 'fail' for t in tests):
            add(f'{p["name"]} (exit status {rc})', 'fail')
    else:
        if rc == 77:
            reason = next((l for l in reversed(err + out) if l.strip()), 'exit 77')
            add(p['name'], 'skip', reason)
        elif timed_out:
            add(f'{p["name"]} (timed out after {secs:.0f} s in the guest)', 'fail')
        else:
            add(p['name'] if rc == 0 else f'{p["name"]} (exit status {rc})',
                'pass' if rc == 0 else 'fail')
    return rec


def run_guest(tap, cell, cdef, kernel, initrd, progs, logpath, deadline):
    """Boot, follow the markers, report. Returns (records, timings, ready facts)."""
    cmd = qemu_cmd(cell, cdef, kernel, initrd)
    tap.diag('qemu: ' + ' '.join(shlex.quote(c) for c in cmd))
    t0 = time.time()
    con = Console(cmd, logpath)
    records, info = [], {}
    pending = [p for p in progs if p.get('guest_timeout')]
    by_name = {p['name']: p for p in pending}
    state, cur = 'boot', None
    out, err, kmsg = [], [], []
    wait_until = min(deadline, t0 + BOOT_TIMEOUT)
    problem = None

    while True:
        line = con.readline(wait_until)
        if line is None:
            if con.eof:
                problem = 'guest stopped' + (f' during {cur["name"]}' if cur else
                                             ' before it was ready' if state == 'boot'
                                             else ' before it said DONE')
            elif time.time() >= deadline:
                problem = f'cell budget of {CELL_BUDGET} s exhausted'
            else:
                problem = ('no READY from the guest within '
                           f'{BOOT_TIMEOUT} s' if state == 'boot' else
                           f'{cur["name"]} hung (no END within its timeout)' if cur
                           else 'guest silent between programs')
            break
        if line.startswith('@@O|') and cur:
            out.append(line[4:])
            continue
        if line.startswith('@@E|') and cur:
            err.append(line[4:])
            continue
        if line.startswith('@@K|') and cur:
            kmsg.append(line[4:])
            continue
        if line.startswith('@@D|') and cur:
            kmsg.append('timeout: ' + line[4:])
            continue
        m = re.search(r'@@PGT-VM (READY|BEGIN|END|DONE)\s*(.*)$', line)
        if not m:
            continue
        what, rest = m.groups()
        if what == 'READY':
            info = dict(kv.split('=', 1) for kv in rest.split() if '=' in kv)
            info['boot_s'] = round(time.time() - t0, 1)
            tap.diag(f'guest ready after {info["boot_s"]} s: {rest}')
            ok = info.get('kernel', '').startswith(cdef['kernel'] + '.')
            tap.result(ok, f'boot (kernel {info.get("kernel", "?")})')
            records.append(dict(name='boot', rc=0, secs=info['boot_s'],
                                tests=[dict(name='boot', result='pass' if ok else 'fail',
                                            reason='')]))
            state = 'ready'
            wait_until = min(deadline, time.time() + 60)
        elif what == 'BEGIN':
            cur = by_name.get(rest.strip())
            if cur is None:
                continue
            out, err, kmsg = [], [], []
            wait_until = min(deadline, time.time() + cur['guest_timeout'] + SLACK)
        elif what == 'END' and cur:
            kv = dict(x.split('=', 1) for x in rest.split()[1:] if '=' in x)
            rc = int(kv.get('rc', -1))
            secs = int(kv.get('cs', 0)) / 100.0
            tap.diag(f'{cur["name"]}: exit {rc} in {secs:.1f} s')
            records.append(report_program(tap, cur, rc, secs, out, err, kmsg))
            pending.remove(cur)
            cur = None
            wait_until = min(deadline, time.time() + 60)
        elif what == 'DONE':
            info['done_s'] = round(time.time() - t0, 1)
            state = 'done'
            break

    rc = con.stop(grace=30 if state == 'done' else 0)
    info['total_s'] = round(time.time() - t0, 1)
    if problem:
        tap.diag(f'PROBLEM: {problem}; console log {logpath}, last lines:')
        for line in con.tail(80):
            tap.diag('  | ' + line)
        if state == 'boot':
            tap.result(False, f'boot ({problem})')
            records.append(dict(name='boot', rc=-1, secs=0,
                                tests=[dict(name='boot', result='fail', reason=problem)]))
        for p in pending:
            why = problem if p is cur else f'not run: {problem}'
            tap.result(False, f'{p["name"]} ({why})')
            records.append(dict(name=p['name'], rc=-1, secs=0,
                                tests=[dict(name=p['name'], result='fail', reason=why)]))
    elif rc not in (0, None):
        tap.diag(f'qemu exited with status {rc} after DONE')
    info['problem'] = problem
    return records, info


DIRTY_NAMES = ['auto', 'uffd-async', 'soft-dirty', 'uffd-sync', 'mprotect', 'none']


def _find_key(obj, keys):
    """First value of any of @keys anywhere in a JSON object tree."""
    if isinstance(obj, dict):
        for k in keys:
            if k in obj:
                return obj[k]
        for v in obj.values():
            r = _find_key(v, keys)
            if r is not None:
                return r
    elif isinstance(obj, list):
        for v in obj:
            r = _find_key(v, keys)
            if r is not None:
                return r
    return None


def probe_choice(text):
    """pgtrack-probe --json output -> {'dirty': name, 'touch': name, 'json': obj}."""
    try:
        obj = json.loads(text)
    except ValueError:
        start = text.find('{')
        try:
            obj = json.loads(text[start:]) if start >= 0 else None
        except ValueError:
            obj = None
    if not isinstance(obj, (dict, list)):
        return None
    dirty = _find_key(obj, ['best_dirty_method', 'dirty_method', 'dirty_tracker'])
    if isinstance(dirty, int) and 0 <= dirty < len(DIRTY_NAMES):
        dirty = DIRTY_NAMES[dirty]
    touch = _find_key(obj, ['touch_method', 'touch_tracker', 'touch_tracking'])
    if isinstance(touch, bool):
        touch = 'uffd-missing' if touch else 'none'
    return dict(dirty=dirty if isinstance(dirty, str) else None,
                touch=touch if isinstance(touch, str) else None, json=obj)


def probe_summary(records):
    """Facts from vm_kcaps and the choice of pgtrack-probe, from program output."""
    out = {}
    for r in records:
        if r.get('facts'):
            out['facts'] = r['facts']
        if r['name'] == 'probe' and r.get('stdout'):
            out['probe'] = probe_choice(r['stdout'])
    return out


def _get(obj, *path):
    for k in path:
        if not isinstance(obj, dict) or k not in obj:
            return None
        obj = obj[k]
    return obj


def check_probe(tap, cdef, summary):
    """pgtrack's probe must tell the truth the raw measurements found, and pick
    the tracker this cell is meant to exercise."""
    facts, probe = summary.get('facts'), summary.get('probe')
    if not probe or not facts:
        return []
    j = probe['json']
    feats = _get(j, 'userfaultfd', 'features') or []
    checks = [
        ('soft_dirty', _get(j, 'soft_dirty', 'available'), facts.get('softdirty') == '1'),
        ('pagemap_scan', _get(j, 'pagemap_scan', 'available'),
         facts.get('pagemap_scan') == '1' and facts.get('wp_async') == '1'),
        ('uffd write-protect', 'pagefault_flag_wp' in feats if feats else None,
         facts.get('uffd_wp') == '1'),
        ('numa_nodes', _get(j, 'numa_nodes'), int(facts.get('nodes', -1))),
        ('touch_tracking', _get(j, 'touch_tracking'), facts.get('uffd_missing') == '1'),
        ('best_dirty_method', probe.get('dirty'), cdef['dirty']),
    ]
    tests = []
    for what, got, want in checks:
        name = f'probe/{what} is {want}'
        if got is None:
            res = tap.result(True, name, skip=f'pgtrack-probe --json has no {what}')
        else:
            res = tap.result(got == want, name if got == want else f'{name} (probe says {got})')
        tests.append(dict(name=name, result=res, reason=''))
    return [dict(name='probe-check', rc=0, secs=0, tests=tests)]


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--cell', required=True, choices=sorted(CELLS))
    ap.add_argument('--source-root', type=Path, default=HERE.parent.parent)
    ap.add_argument('--build-root', type=Path, required=True)
    opts = ap.parse_args()
    src, build = opts.source_root.resolve(), opts.build_root.resolve()
    cell, cdef = opts.cell, CELLS[opts.cell]
    arch = cdef['arch']
    tap = Tap(cell)
    t_start = time.time()
    deadline = t_start + CELL_BUDGET
    vmdir = build / 'tests' / 'vm'
    work = vmdir / 'work' / cell
    work.mkdir(parents=True, exist_ok=True)
    (vmdir / 'logs').mkdir(parents=True, exist_ok=True)
    (vmdir / 'results').mkdir(parents=True, exist_ok=True)
    result = dict(cell=cell, arch=arch, started=time.strftime('%Y-%m-%d %H:%M:%S'),
                  status='run')
    mult = float(os.environ.get('PGT_VM_TIMEOUT_MULT', '1'))
    scale = os.environ.get('PGT_TEST_SCALE', '0.1')

    try:
        with Lock(vmdir / 'vm.lock'):
            for tool in (ARCHES[arch]['qemu'], 'cpio', 'readelf'):
                if not shutil.which(tool):
                    raise Skip(f'{tool} not installed (scripts/setup.sh --all)')
            cache = cache_root(build)
            kernel = fetch_kernel(cache, arch, cdef['kernel'])
            busybox = fetch_busybox(cache, arch)
            tap.diag(f'kernel {kernel}, busybox {busybox}')

            t0 = time.time()
            gdir = guest_build(src, build, arch, tap)
            progs, extras = plan_programs(src, gdir, cell, cdef)
            build_log = build_programs(gdir, progs, extras, tap)
            result['build_s'] = round(time.time() - t0, 1)

            pre = []
            for p in progs:
                p['guest_timeout'] = None
                why = p['skip'] or (None if p['exe'] else
                                    f'{p["target"]} is not built in this tree')
                if why:
                    tap.result(True, p['name'], skip=why)
                    pre.append(dict(name=p['name'], rc=None, secs=0, tests=[
                        dict(name=p['name'], result='skip', reason=why)]))
                elif not os.path.exists(p['exe']):
                    tap.result(False, f'{p["name"]} (failed to build for {arch})')
                    pre.append(dict(name=p['name'], rc=None, secs=0, tests=[
                        dict(name=p['name'], result='fail', reason='build failed')]))
                else:
                    p['guest_timeout'] = max(5, int(p['timeout'] * mult))
            if build_log:
                tap.diag('guest build errors:')
                tap.diag('\n'.join(build_log.splitlines()[-60:]))

            initrd, missing, size = make_initramfs(work, arch, busybox, progs, extras,
                                                   cell, src, gdir, scale)
            tap.diag(f'initramfs {size >> 20} MiB uncompressed, '
                     f'{initrd.stat().st_size >> 20} MiB gz')
            if missing:
                tap.diag('WARNING: shared libraries not found on the host: ' +
                         ', '.join(sorted(missing)))

            records, info = run_guest(tap, cell, cdef, kernel, initrd, progs,
                                      vmdir / 'logs' / f'{cell}.console.log', deadline)
            records += check_probe(tap, cdef, probe_summary(records))
            result.update(status='ran', kernel_pkg=kernel.parent.name,
                          guest=info, programs=pre + records)
    except Skip as e:
        print(f'1..0 # SKIP {tap.clean(str(e))}', flush=True)
        result.update(status='skip', reason=str(e))
        write_result(vmdir, result, tap, t_start)
        return 0
    except Fail as e:
        tap.diag(e.log)
        tap.result(False, f'setup ({e})')
        result.update(status='fail', reason=str(e))
    except Exception as e:  # a harness bug must still be a visible failure
        import traceback
        tap.diag(traceback.format_exc())
        tap.result(False, f'harness error ({type(e).__name__}: {e})')
        result.update(status='fail', reason=f'harness error: {e}')

    print(f'1..{tap.n}', flush=True)
    write_result(vmdir, result, tap, t_start)
    return 0


def write_result(vmdir, result, tap, t_start):
    result['counts'] = tap.counts
    result['wall_s'] = round(time.time() - t_start, 1)
    result.update(probe_summary(result.get('programs', [])))
    path = vmdir / 'results' / f'{result["cell"]}.json'
    path.write_text(json.dumps(result, indent=1) + '\n')
    tap.diag(f'cell {result["cell"]}: {tap.counts["pass"]} passed, '
             f'{tap.counts["fail"]} failed, {tap.counts["skip"]} skipped '
             f'in {result["wall_s"]} s; results in {path}')
    r = run([sys.executable, str(HERE / 'report.py'), '--build-root',
             str(vmdir.parent.parent)])
    if r.returncode:
        tap.diag('report.py failed: ' + r.stdout)


if __name__ == '__main__':
    sys.exit(main())
