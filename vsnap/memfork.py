"""fork's memory: a child AddressSpace on a new engine, the same bytes, private from then on.

    child_mem = fork_memory(parent_mem, child_cpu)   # fork (cpufork.fork_hardware calls it)
    release_memory(mem)                              # exit or execve: the arenas to POOL

The child gets the parent's VMAs, brk, budget and page permissions (the books: memory.py's
fork_books), and a copy of every page the parent has touched, in arenas of its own handed to
the child's engine with mem_map_ptr (guestram.py). From then on a store by either engine is
never seen by the other, with three exceptions that are Linux's too:

* MAP_SHARED anonymous memory stays shared: the child's arena maps the same memfd pages
  (sharedmem.py), so each sees the other's stores at once;
* MAP_PRIVATE file mappings: the child has its own copy-on-write state (the pages either
  process had made its own are copied; the pages still shared with the file hold the file's
  bytes in both, and the first write in either makes that process's page its own, alone);
* untouched pages are not copied: they read as zeros in both (the budget's count of touched
  pages is the same in the child as in the parent, which is what Linux's fork gives RSS,
  except for shared memory: its pages count in the child once it touches them, as on Linux).

How the copy is made, and why. One memmove per run of touched pages, the runs read from
/proc/self/pagemap as guestram.touched_pages reads them for checkpoints: untouched pages cost
nothing, a touched one a memcpy, plus the host's page fault and zeroing of the child's fresh
page, which is most of it. An ArenaPool (below) keeps the arenas of processes that are gone,
pages and all, and the next fork copies into those: no fault, no zeroing.
Measured with `PYTHONPATH=. .venv/bin/python benchmarks/fork.py` (2 cores shared with other
work, load average about 4; min / median of 7, ms):

    touched  native fork+exit+wait  vsnap fork    = engine + memory   into recycled arenas
    1 MiB         0.36              1.34 / 1.52     0.47     0.90         0.90 / 0.98
    16 MiB        1.22             13.90 / 14.03    0.44    12.45         2.39 / 2.46
    64 MiB        4.72             36.63 / 54.99    0.44    36.35        11.35 / 11.65

(release of a child: its arenas unmapped and engine collected, 3 / 5 / 8 ms; engine: 0.4 ms
min, about 1.2 ms median when many are made in a row, 1.6 MiB resident per live engine.)
The ways of copying it was chosen from, `benchmarks/fork.py --alternatives 64` (64 MiB, ms):

    memmove into fresh pages (this module)          30-51
    memmove into pages already there (ArenaPool)     6-7
    MADV_POPULATE_WRITE on the run, then memmove    29-39 (no better: the zeroing stays)
    Python slice copy (a bytes object between)      76
    a memfd mapped MAP_PRIVATE twice (the host's copy-on-write, no host process):
        the fork 3 ms, then 60 ms for the child's first write of every page and 99 ms for
        the parent's: the copy is only put off, and page by page it costs more.

The memfd way is not taken for more reasons than speed: (1) a second fork of the same parent
finds its memory split between the frozen file and its private copies, which Linux cannot
stack: it would copy everything into a new memfd anyway; (2) pages of a private file
mapping that a process has not faulted in are absent from its page table although they hold
data, and vsnap's checkpoints and memory budget read "absent" as "zeros, untouched"
(guestram.touched_pages): a checkpoint would silently lose them.
So a fork copies. A fork followed by execve pays for a copy it throws away: a vfork or
posix_spawn (CLONE_VM | CLONE_VFORK) should not copy at all (the child borrows the parent's
memory until it execs or exits), and a lazy copy (pages without permission in the child's
books, copied at the first TLB miss) would help plain fork+exec, at a Python call per page
touched after the fork: neither is done here.
"""
from __future__ import annotations

import ctypes
import mmap
import os
from bisect import bisect_right

from .guestram import ARENA, ARENA_SHIFT, Arena, UnicornMemory
from .memory import PAGE, AddressSpace

_PRESENT = bytes(1 if b & 0xC0 else 0 for b in range(256))  # pagemap: in RAM or swapped


def _present(pagemap_fd: int, host: int, n: int, first: int):
    """(lo, hi) runs of the n pages from host address `host` that are in RAM (or swapped),
    as offsets from `first` (the address of the first page in whatever frame the caller
    counts in)."""
    raw = os.pread(pagemap_fd, n * 8, host // PAGE * 8)
    if len(raw) != n * 8:
        raise OSError("short read of /proc/self/pagemap")
    t = raw[7::8].translate(_PRESENT)
    i = t.find(1)
    while i >= 0:
        j = t.find(0, i)
        if j < 0:
            j = n
        yield first + i * PAGE, first + j * PAGE
        i = t.find(1, j)


def touched_runs(backend: UnicornMemory, pagemap_fd: int):
    """(arena, first, end) for each maximal run of touched pages in the backend's mapped
    spans: what a fork must copy."""
    for arena, first, n in backend._spans():
        for lo, hi in _present(pagemap_fd, arena.address + first - arena.base, n, first):
            yield arena, lo, hi


def _without(lo: int, hi: int, holes: list):
    """[lo, hi) minus the sorted, disjoint ranges `holes` (start, end, ...)."""
    i = max(0, bisect_right(holes, lo, key=lambda h: h[0]) - 1)
    for h in holes[i:]:
        if h[0] >= hi:
            break
        if h[1] <= lo:
            continue
        if h[0] > lo:
            yield lo, h[0]
        lo = max(lo, h[1])
    if lo < hi:
        yield lo, hi


class ArenaPool:
    """Arenas of processes that are gone (exit, execve), kept with their host pages for the
    next fork to copy into.

    Copying into fresh host pages costs the host a page fault and a zeroed page each: about
    two thirds of a fork's copy (64 MiB: memcpy into fresh pages 28 ms, into pages already
    there 10 ms, on a quiet host). A recycled arena has pages already there; the ones the
    fork does not overwrite are given back first (MADV_DONTNEED), so every page that is not
    copied still reads as zeros and the budget's count of touched pages stays exact.
    Kept: at most `max_bytes` of present pages in all; beyond it an arena is unmapped."""

    def __init__(self, max_bytes: int = 256 << 20):
        self.max_bytes = max_bytes
        self.kept = 0                   # bytes of present pages in the pool
        self._free: list[Arena] = []    # each with .present: sorted (lo, hi) arena offsets

    def give(self, backend: UnicornMemory) -> None:
        """Every arena of a backend whose process is gone (its engine will not run again;
        its books are emptied). Shared memory is let go (sharedmem.py)."""
        if backend._shared:
            backend._unshare(0, 1 << 64)
        spans = list(backend._spans())
        fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        try:
            for arena, first, n in spans:
                arena.present = list(_present(fd, arena.address + first - arena.base, n,
                                              first - arena.base))
        finally:
            os.close(fd)
        for arena in backend._arenas.values():
            backend._uc.mem_unmap(arena.base, ARENA)
            size = sum(hi - lo for lo, hi in getattr(arena, "present", None) or ())
            if getattr(arena, "present", None) is not None \
                    and self.kept + size <= self.max_bytes:
                self._free.append(arena)
                self.kept += size
        backend._arenas.clear()
        backend.pages.set(0, 1 << 63, None)

    def take(self, base: int) -> Arena:
        """An arena for guest addresses [base, base + ARENA): a kept one, or a new one."""
        if not self._free:
            return Arena(base)
        # the one that served the same addresses first: the same layout leaves the fewest
        # pages to give back
        at = next((k for k in range(len(self._free) - 1, -1, -1)
                   if self._free[k].base == base), len(self._free) - 1)
        arena = self._free.pop(at)
        self.kept -= sum(hi - lo for lo, hi in arena.present)
        arena.base, arena.used = base, 0
        return arena

    def clear(self) -> None:
        self._free.clear()
        self.kept = 0


POOL = ArenaPool()


def _subtract(runs: list, minus: list):
    """Sorted disjoint (lo, hi) runs minus sorted disjoint (lo, hi) runs."""
    j = 0
    for lo, hi in runs:
        while j < len(minus) and minus[j][1] <= lo:
            j += 1
        k = j
        while lo < hi:
            if k == len(minus) or minus[k][0] >= hi:
                yield lo, hi
                break
            if minus[k][0] > lo:
                yield lo, minus[k][0]
            lo = max(lo, minus[k][1])
            k += 1


def release_memory(mem: AddressSpace, pool: ArenaPool | None = POOL) -> None:
    """The process whose memory this is has exited or exec'd: its host descriptors go and
    its arenas go to `pool` for the next fork (None: unmapped). The address space is not
    used again."""
    mem.close()
    if pool is not None:
        pool.give(mem.backend)
    else:
        mem.backend._arenas.clear()


def fork_backend(parent: UnicornMemory, uc, pages, pool: ArenaPool | None = POOL
                 ) -> UnicornMemory:
    """A new backend for engine `uc` (its books `pages`, the Cpu's): arenas of its own with a
    copy of the parent's touched pages, the parent's shared memory mapped too, and the
    parent's page permissions. Arenas come from `pool` where it has some."""
    child = UnicornMemory(uc, pages)
    ALL = child._ALL
    for i, arena in parent._arenas.items():
        mine = child._arenas[i] = pool.take(arena.base) if pool else Arena(arena.base)
        mine.used = arena.used
        uc.mem_map_ptr(mine.base, ARENA, ALL, mine.address)
    shared = parent.shared_ranges()
    fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        runs: dict[int, list] = {i: [] for i in parent._arenas}
        for arena, lo, hi in touched_runs(parent, fd):
            runs[arena.base >> ARENA_SHIFT].append((lo - arena.base, hi - arena.base))
    finally:
        os.close(fd)
    for i, arena in parent._arenas.items():
        mine = child._arenas[i]
        stale = getattr(mine, "present", None)
        if stale:  # a recycled arena's pages that this copy will not overwrite
            for lo, hi in _subtract(stale, runs[i]):
                mine.ram.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        mine.present = None
        for lo, hi in runs[i]:
            for a, b in _without(lo + arena.base, hi + arena.base, shared) if shared \
                    else ((lo + arena.base, hi + arena.base),):
                ctypes.memmove(mine.address + a - mine.base, arena.address + a - arena.base,
                               b - a)
    for lo, hi, shm, offset in shared:
        child.share(lo, hi - lo, shm, offset)
    for lo, hi, prot in parent._runs:
        pages.set(lo, hi, prot)
    return child


def fork_memory(parent: AddressSpace, cpu, pool: ArenaPool | None = POOL) -> AddressSpace:
    """The child's address space on `cpu` (a new vsnap.cpu.Cpu, e.g. cpufork.fork_cpu's):
    the same VMAs, contents, permissions and touched pages, private from now on except
    MAP_SHARED anonymous memory. Wired to the CPU as Machine wires a new process's (page
    permissions, copy-on-write of file pages, MAP_GROWSDOWN, code changes)."""
    backend = fork_backend(parent.backend, cpu.uc, cpu.pages, pool)
    child = parent.fork_books(backend)
    cpu.page_prot = backend.page_prot
    cpu.on_write_fault = child.write_fault
    cpu.on_unmapped = child.grow_down
    child.on_code_change = cpu.code_changed
    return child
