"""Guest RAM: the host memory behind the guest's pages, and Unicorn's view of it.

Guest RAM lives in mmaps of our own, handed to Unicorn with mem_map_ptr: a checkpoint then
reads guest memory as a view of that mapping, with no copy (copying 64 MiB out through
uc_mem_read cost more than writing it to disk), and a restore reads the image straight into
it. The mappings are arenas: one per gigabyte of guest address space in use (see Arena).
"""
from __future__ import annotations

import ctypes
import mmap
import os
from bisect import bisect_left, bisect_right
from operator import itemgetter

from .abi import errno as E
from .errors import SyscallError
from .memory import PAGE

_first = itemgetter(0)

# /proc/self/pagemap: one 64-bit entry per page; bit 63 "present in RAM", bit 62 "swapped"
_TOUCHED = bytes(1 if b & 0xC0 else 0 for b in range(256))


def touched_pages(view: memoryview) -> bytes | None:
    """One byte per page of `view` (page-aligned guest RAM): 1 where the page has held data
    (it is in RAM or swapped out), 0 where it never has since it was mapped or given back,
    so it reads as zeros. None where the host cannot say.

    A checkpoint skips the 0 pages without reading them: reading an untouched page makes the
    host map it (about 3 us a page here), and most of a guest's 8 MiB stack is untouched."""
    if mmap.PAGESIZE != PAGE or len(view) % PAGE:
        return None
    try:
        host = ctypes.addressof(ctypes.c_char.from_buffer(view))
        fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except (TypeError, ValueError, OSError):
        return None
    try:
        n = len(view) // PAGE
        raw = os.pread(fd, n * 8, host // PAGE * 8)
    except OSError:
        return None
    finally:
        os.close(fd)
    return raw[7::8].translate(_TOUCHED) if len(raw) == n * 8 else None


ARENA_SHIFT = 30
ARENA = 1 << ARENA_SHIFT      # guest memory is backed in aligned slots of this size
_MAP_NORESERVE = 0x4000       # Linux's value (Python's mmap module does not name it)


class Arena:
    """Host memory behind the guest range [base, base + ARENA): guest address g lives at host
    address + (g - base), so guest pages that are neighbours are neighbours on the host too,
    and Unicorn can see a run of them, made by many mmaps, as one region. Reserved, not
    committed: a page costs host memory only once touched."""

    def __init__(self, base: int):
        self.base = base
        # private, not mmap's default MAP_SHARED: shared anonymous memory is shmem, whose
        # pages cost more to fault in (reading 64 MiB into it: 39 vs 31 ms here) and can
        # leave the page table while keeping their data (shmem swap), which would fool
        # touched_pages. (Huge pages were tried for restore: 17 ms when the host had free
        # 2 MiB blocks, 115-145 ms when it had to compact memory first.)
        self.ram = mmap.mmap(-1, ARENA, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
                             | _MAP_NORESERVE)
        # no transparent huge pages: one touch would make 2 MiB present, and the budget
        # counts touched pages (the count must not depend on the host's THP setting)
        if hasattr(mmap, "MADV_NOHUGEPAGE"):
            try:
                self.ram.madvise(mmap.MADV_NOHUGEPAGE)
            except OSError:
                pass
        self.buf = (ctypes.c_char * ARENA).from_buffer(self.ram)
        self.address = ctypes.addressof(self.buf)
        self.used = 0  # bytes of it the guest has mapped; the arena goes at 0


class UnicornMemory:
    """The real backend: Unicorn's page tables over our arenas. Bad addresses become EFAULT.

    Unicorn's regions are kept as few as they can be: each is a maximal run of mapped pages
    with one permission inside one arena (mapping a page beside a region of the same
    permission remaps the two as one). Unicorn's cost per mem_map grows steeply with its
    number of regions (4,096 one-page regions: 20 s to map, 15 s to unmap, here), and a
    program's thousands of small mmaps are mostly neighbours with the same permission.
    `_regions` is exactly Unicorn's list, sorted: every change goes through _remap."""

    def __init__(self, uc):
        import unicorn as U
        from unicorn.unicorn_py3.unicorn import uclib
        self._uc, self._UcError, self._uclib = uc, U.UcError, uclib
        self._TLB_FLUSH, self._IO_WRITE = U.UC_CTL_TLB_FLUSH, U.UC_CTL_IO_WRITE
        self._arenas: dict[int, Arena] = {}
        self._regions: list[tuple[int, int, int]] = []  # (start, end, prot), as Unicorn has
        self._pagemap: int | None = None
        self._perm = {0: U.UC_PROT_NONE}
        for p in range(1, 8):
            self._perm[p] = ((U.UC_PROT_READ if p & 1 else 0) | (U.UC_PROT_WRITE if p & 2 else 0)
                             | (U.UC_PROT_EXEC if p & 4 else 0))

    @staticmethod
    def _slots(start: int, end: int):
        """[start, end) cut at arena boundaries: (arena index, lo, hi)."""
        while start < end:
            i = start >> ARENA_SHIFT
            hi = min(end, (i + 1) << ARENA_SHIFT)
            yield i, start, hi
            start = hi

    def _host(self, addr: int) -> int:
        arena = self._arenas[addr >> ARENA_SHIFT]
        return arena.address + addr - arena.base

    def _remap(self, start: int, end: int, prot: int | None) -> None:
        """Give [start, end) permission `prot` (None: unmap it), then make the regions around
        it maximal again."""
        # the regions that overlap [start, end) or touch it
        i = bisect_left(self._regions, start, key=_first) - 1
        if i < 0 or self._regions[i][1] < start:
            i += 1
        j = bisect_right(self._regions, end, key=_first)
        old = self._regions[i:j]
        pieces = []
        for lo, hi, p in old:
            pieces += [(a, b, p) for a, b in ((lo, min(hi, start)), (max(lo, end), hi)) if a < b]
        if prot is not None:
            pieces += [(lo, hi, prot) for _, lo, hi in self._slots(start, end)]
        pieces.sort()
        new: list[tuple[int, int, int]] = []
        for lo, hi, p in pieces:
            if (new and new[-1][1] == lo and new[-1][2] == p
                    and (lo - 1) >> ARENA_SHIFT == lo >> ARENA_SHIFT):
                new[-1] = (new[-1][0], hi, p)
            else:
                new.append((lo, hi, p))
        if new == old:
            return
        a = b = 0  # regions that stay as they are, at either end, are left alone
        while a < min(len(old), len(new)) and old[a] == new[a]:
            a += 1
        while b < min(len(old), len(new)) - a and old[-1 - b] == new[-1 - b]:
            b += 1
        for lo, hi, _ in old[a:len(old) - b]:
            self._uc.mem_unmap(lo, hi - lo)
        for lo, hi, p in new[a:len(new) - b]:
            self._uc.mem_map_ptr(lo, hi - lo, self._perm[p & 7], self._host(lo))
        self._regions[i:j] = new
        # Unicorn keeps using a page's old permission while the page is in its TLB
        self._uc.ctl(self._TLB_FLUSH, self._IO_WRITE)

    def map(self, start, size, prot):
        for i, lo, hi in self._slots(start, start + size):
            arena = self._arenas.get(i)
            if arena is None:
                arena = self._arenas[i] = Arena(i << ARENA_SHIFT)
            arena.used += hi - lo
        self._remap(start, start + size, prot)

    def unmap(self, start, size):
        self._remap(start, start + size, None)
        for i, lo, hi in self._slots(start, start + size):
            arena = self._arenas[i]
            arena.used -= hi - lo
            if arena.used <= 0:
                del self._arenas[i]  # Unicorn no longer points into it
            else:  # give the pages back: a later map of them reads zeros
                arena.ram.madvise(mmap.MADV_DONTNEED, lo - arena.base, hi - lo)

    def protect(self, start, size, prot):
        self._remap(start, start + size, prot)

    def touched_bytes(self) -> int | None:
        """Bytes of guest RAM that have held data since mapped (see touched_pages): what
        the memory budget counts, as Linux's overcommit counts pages, not reservations."""
        if mmap.PAGESIZE != PAGE:
            return None
        if self._pagemap is None:
            try:
                self._pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
        total = 0
        for lo, hi, _ in self._regions:
            n = (hi - lo) // PAGE
            try:
                raw = os.pread(self._pagemap, n * 8, self._host(lo) // PAGE * 8)
            except OSError:
                return None
            total += n - raw[7::8].translate(_TOUCHED).count(0)
        return total * PAGE

    def regions(self) -> int:
        """How many regions Unicorn has (benchmarks and tests look)."""
        return len(self._regions)

    def close(self) -> None:
        if self._pagemap is not None:
            os.close(self._pagemap)
            self._pagemap = None

    def read(self, addr, size):
        try:
            return bytes(self._uc.mem_read(addr, size))
        except self._UcError:
            raise SyscallError(E.EFAULT, f"read {size} bytes at {addr:#x}") from None

    def write(self, addr, data):
        try:
            self._uc.mem_write(addr, data)
        except self._UcError:
            raise SyscallError(E.EFAULT, f"write {len(data)} bytes at {addr:#x}") from None

    # Bulk copies for checkpoints: the binding's mem_read zero-fills a ctypes buffer and then
    # copies it into a bytearray (two passes over 64 MiB); these make one.
    def view(self, addr: int, size: int) -> memoryview | None:
        """Guest memory [addr, addr+size) itself, if it lies in one arena."""
        arena = self._arenas.get(addr >> ARENA_SHIFT)
        if arena is None or (addr + size - 1) >> ARENA_SHIFT != addr >> ARENA_SHIFT:
            return None
        return memoryview(arena.ram)[addr - arena.base:addr - arena.base + size]

    def read_bulk(self, addr: int, size: int):
        """A view of guest memory itself when [addr, addr+size) lies in one of our mappings
        (the caller must be done with it before the guest runs again), else a copy."""
        view = self.view(addr, size)
        if view is not None:
            return view
        out = bytearray(size)
        buf = (ctypes.c_char * size).from_buffer(out)
        if self._uclib.uc_mem_read(self._uc._uch, addr, buf, size) != 0:
            raise SyscallError(E.EFAULT, f"read {size} bytes at {addr:#x}")
        return out

    def write_bulk(self, addr: int, data) -> None:
        """`data` is any buffer: no copy is made on the way into Unicorn if it is writable."""
        size = len(data)
        arena = self._arenas.get(addr >> ARENA_SHIFT)
        if size and arena is not None and (addr + size - 1) >> ARENA_SHIFT == addr >> ARENA_SHIFT:
            arena.ram[addr - arena.base:addr - arena.base + size] = data  # one memcpy
            return
        try:
            buf = (ctypes.c_char * size).from_buffer(data)
        except TypeError:  # a read-only buffer: one copy, then the same call
            buf = bytes(data)
        if self._uclib.uc_mem_write(self._uc._uch, addr, buf, size) != 0:
            raise SyscallError(E.EFAULT, f"write {size} bytes at {addr:#x}")
