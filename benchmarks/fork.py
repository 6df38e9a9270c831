"""vsnap benchmark: the cost of forking a guest's hardware next to a native fork.

    PYTHONPATH=. .venv/bin/python benchmarks/fork.py [MiB ...]      (default: 1 16 64)
    PYTHONPATH=. .venv/bin/python benchmarks/fork.py --alternatives [MiB ...]

For each size, a process that touched that many MiB:
  native   benchmarks/forkrate.c (built with vsnap.build, run on the host): fork + _exit +
           waitpid, over and over for half a second; the time of one round.
  vsnap    a guest (tests/guests/forkfill.c stopped after its start-up) whose memory gets an
           extra mapping of that size with every page written; then cpufork.fork_hardware
           (new engine + the engine's state + memfork's copy of the touched pages), split into
           its parts, and the release of the child (its arenas unmapped, its engine closed);
           then forks into the arenas the previous child left (memfork.ArenaPool: a
           fork + exit loop). Minimum and median of REPEAT forks.
Then what one new engine costs (vsnap.cpu.Cpu(): Unicorn's uc_open, ring 3, the hooks, the
TLB book, the counter), and the host memory each engine keeps while it lives: a fork bomb
makes many.
With --alternatives: the ways of copying host memory for a child that memfork.py chose
between, each on the same amount of touched memory.
"""
from __future__ import annotations

import ctypes
import gc
import mmap
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from vsnap.build import build  # noqa: E402
from vsnap.cpu import Cpu  # noqa: E402
from vsnap.cpufork import fork_cpu, fork_hardware  # noqa: E402
from vsnap.kernel.core import Capture  # noqa: E402
from vsnap.machine import Machine  # noqa: E402
from vsnap.memfork import ArenaPool, fork_memory, release_memory  # noqa: E402
from vsnap.memory import PAGE  # noqa: E402

REPEAT = 7
ENGINES = 40


def native(prog: str, mib: int) -> float | None:
    """Seconds for one fork + _exit + waitpid of a process that touched `mib` MiB."""
    try:
        out = subprocess.run([prog, str(mib), "500"], capture_output=True, timeout=60,
                             check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return float(out[1]) / int(out[0])


def guest(prog: str, mib: int, root: str) -> Machine:
    m = Machine(prog, ["1"], root=root, console=Capture().console)
    assert m.advance(20_000) is None
    start = m.mem.find_free(mib << 20)
    m.mem.map(start, mib << 20, 3, "mmap")
    page = bytes(range(256)) * (PAGE // 256)
    m.mem.write_bulk(start, page * ((mib << 20) // PAGE))
    return m


def release(cpu, mem, pool=None) -> None:
    release_memory(mem, pool)  # to the pool, or unmapped once unreferenced
    del cpu, mem
    gc.collect()  # an engine is freed with its Python object (its hooks make cycles)


def ms(x: float) -> str:
    return f"{x * 1e3:.2f}"


def fork_costs(m: Machine) -> dict:
    """Each part's seconds over REPEAT rounds: fork into fresh arenas, its engine and memory
    parts, the release; then forks into the arenas the previous child left (ArenaPool)."""
    parts = {"fork": [], "engine": [], "memory": [], "release": [], "recycled": []}
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        cpu, mem = fork_hardware(m.cpu, m.mem, None)
        t1 = time.perf_counter()
        release(cpu, mem)
        t2 = time.perf_counter()
        parts["fork"].append(t1 - t0)
        parts["release"].append(t2 - t1)
        t0 = time.perf_counter()
        cpu = fork_cpu(m.cpu)
        t1 = time.perf_counter()
        mem = fork_memory(m.mem, cpu, None)
        t2 = time.perf_counter()
        parts["engine"].append(t1 - t0)
        parts["memory"].append(t2 - t1)
        release(cpu, mem)
    pool = ArenaPool(1 << 30)
    release(*fork_hardware(m.cpu, m.mem, pool), pool)
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        cpu, mem = fork_hardware(m.cpu, m.mem, pool)
        parts["recycled"].append(time.perf_counter() - t0)
        release(cpu, mem, pool)
    pool.clear()
    return parts


def resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def engines() -> tuple[list, int]:
    gc.collect()
    before = resident()
    cpus, times = [], []
    for _ in range(ENGINES):
        t0 = time.perf_counter()
        cpus.append(Cpu())
        times.append(time.perf_counter() - t0)
    grown = resident() - before
    del cpus
    gc.collect()
    return times, grown // ENGINES


# ------------------------------------------------------------------------------------------
# --alternatives: the ways of copying host memory that memfork.py chose between

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_NORESERVE, _FIXED, _POPULATE_WRITE = 0x4000, 0x10, 23
_RW = mmap.PROT_READ | mmap.PROT_WRITE


def _anon(size: int) -> int:
    a = _libc.mmap(None, size, _RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _NORESERVE, -1, 0)
    _libc.madvise(a, size, mmap.MADV_NOHUGEPAGE)  # as guestram.Arena
    return a


def _write_each_page(a: int, n: int) -> float:
    t0 = time.perf_counter()
    for p in range(0, n, PAGE):
        ctypes.memset(a + p, 1, 1)
    return time.perf_counter() - t0


def alternatives(mib: int) -> None:
    """Milliseconds (min of REPEAT) for copying `mib` MiB of touched memory for a child."""
    n = mib << 20
    src = _anon(n)
    ctypes.memset(src, 7, n)
    rows = {}

    def timed(name, setup, copy):
        ts = []
        for _ in range(REPEAT):
            dst = setup()
            t0 = time.perf_counter()
            copy(dst)
            ts.append(time.perf_counter() - t0)
            _libc.munmap(dst, n)
        rows[name] = min(ts)

    timed("memmove into fresh pages (memfork)", lambda: _anon(n),
          lambda d: ctypes.memmove(d, src, n))
    warm = lambda: (lambda d: (ctypes.memset(d, 0, n), d)[1])(_anon(n))  # noqa: E731
    timed("memmove into present pages (ArenaPool)", warm, lambda d: ctypes.memmove(d, src, n))
    timed("MADV_POPULATE_WRITE, then memmove", lambda: _anon(n),
          lambda d: (_libc.madvise(d, n, _POPULATE_WRITE), ctypes.memmove(d, src, n)))
    buf = (ctypes.c_char * n).from_address(src)
    timed("Python slice copy (bytes in between)", lambda: _anon(n),
          lambda d: ctypes.memmove(d, bytes(buf), n))
    # the host's copy-on-write without a host process: the parent's arena a memfd mapped
    # MAP_SHARED; at fork both map it MAP_PRIVATE, and each write after copies a page
    fd = os.memfd_create("alt", os.MFD_CLOEXEC)
    os.ftruncate(fd, n)
    a = _libc.mmap(None, n, _RW, mmap.MAP_SHARED | _NORESERVE, fd, 0)
    ctypes.memset(a, 7, n)
    t0 = time.perf_counter()
    _libc.mmap(a, n, _RW, mmap.MAP_PRIVATE | _FIXED | _NORESERVE, fd, 0)
    c = _libc.mmap(None, n, _RW, mmap.MAP_PRIVATE | _NORESERVE, fd, 0)
    rows["memfd MAP_PRIVATE twice: the fork"] = time.perf_counter() - t0
    loop = min(_write_each_page(src, n) for _ in range(3))  # the loop itself, no faults
    rows["  then the child writes each page once"] = _write_each_page(c, n) - loop
    rows["  then the parent writes each page once"] = _write_each_page(a, n) - loop
    for x in (a, c, src):
        _libc.munmap(x, n)
    os.close(fd)
    print(f"\ncopying {mib} MiB for a child, ms (min of {REPEAT}):")
    for name, t in rows.items():
        print(f"  {name:<42} {ms(t):>8}")


def main(argv: list[str]) -> None:
    if argv[:1] == ["--alternatives"]:
        for mib in [int(a) for a in argv[1:]] or [1, 16, 64]:
            alternatives(mib)
        return
    sizes = [int(a) for a in argv] or [1, 16, 64]
    t_start = time.perf_counter()
    forkrate = build(os.path.join(ROOT, "benchmarks", "forkrate.c"))
    forkfill = build(os.path.join(ROOT, "tests", "guests", "forkfill.c"))
    root = os.path.join(ROOT, "benchmarks")
    print(f"fork of a process that touched N MiB: one round, ms (min / median of {REPEAT})")
    print(f"{'MiB':>4}  {'native':>7}  {'vsnap fork':>14}  {'= engine':>12}  {'+ memory':>14}"
          f"  {'release':>12}  {'fork, recycled':>14}  {'vsnap/native':>12}")
    for mib in sizes:
        nat = native(forkrate, mib)
        m = guest(forkfill, mib, root)
        p = fork_costs(m)
        m.close()
        del m
        gc.collect()
        cell = {k: f"{ms(min(v))} / {ms(statistics.median(v))}" for k, v in p.items()}
        ratio = (f"{min(p['fork']) / nat:.0f}x, {min(p['recycled']) / nat:.0f}x" if nat
                 else "-")
        print(f"{mib:>4}  {ms(nat) if nat else 'n/a':>7}  {cell['fork']:>14}  "
              f"{cell['engine']:>12}  {cell['memory']:>14}  {cell['release']:>12}  "
              f"{cell['recycled']:>14}  {ratio:>12}")
    print("native: fork + _exit + waitpid of benchmarks/forkrate.c; release: the child's "
          "memory unmapped and its engine collected")
    times, per_engine = engines()
    print(f"\nnew engine (vsnap.cpu.Cpu()): {ms(min(times))} ms min, "
          f"{ms(statistics.median(times))} ms median of {ENGINES}; "
          f"host memory per live engine about {per_engine / 1024:.0f} KiB resident")
    print(f"(benchmark took {time.perf_counter() - t_start:.1f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
