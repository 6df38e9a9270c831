"""Guest RAM: the host memory behind the guest's pages, and Unicorn's view of it.

Guest RAM lives in mmaps of our own, handed to Unicorn with mem_map_ptr: a checkpoint then
reads guest memory as a view of that mapping, with no copy (copying 64 MiB out through
uc_mem_read cost more than writing it to disk), and a restore reads the image straight into
it. Each map() makes one mapping (a chunk); unmapping part of a chunk gives its pages back to
the host (MADV_DONTNEED), and the chunk goes when none of it is left.
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


class Chunk:
    """One host mapping behind [base, base+size) of guest memory."""

    def __init__(self, base: int, size: int):
        self.base, self.size = base, size
        # private, not mmap's default MAP_SHARED: shared anonymous memory is shmem, whose
        # pages cost more to fault in (reading 64 MiB into it: 39 vs 31 ms here) and can
        # leave the page table while keeping their data (shmem swap), which would fool
        # touched_pages. (Huge pages were tried for restore: 17 ms when the host had free
        # 2 MiB blocks, 115-145 ms when it had to compact memory first.)
        self.ram = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        # no transparent huge pages: one touch would make 2 MiB present, and the budget
        # counts touched pages (the count must not depend on the host's THP setting)
        if hasattr(mmap, "MADV_NOHUGEPAGE"):
            try:
                self.ram.madvise(mmap.MADV_NOHUGEPAGE)
            except OSError:
                pass
        self.buf = (ctypes.c_char * size).from_buffer(self.ram)
        self.address = ctypes.addressof(self.buf)
        self.live = size  # bytes Unicorn still uses; the chunk goes at 0


class UnicornMemory:
    """The real backend: Unicorn's page tables over our chunks. Bad addresses become EFAULT.

    Which chunk holds which guest range is a sorted list of live segments (start, end,
    chunk), found by bisection: a guest with thousands of mappings has thousands of chunks.
    Unmapping part of a chunk gives its pages back to the host (MADV_DONTNEED); a later map()
    of the range makes a new chunk, so a stale view of the old one is never taken for live
    memory."""

    def __init__(self, uc):
        import unicorn as U
        from unicorn.unicorn_py3.unicorn import uclib
        self._uc, self._UcError, self._uclib = uc, U.UcError, uclib
        self._TLB_FLUSH, self._IO_WRITE = U.UC_CTL_TLB_FLUSH, U.UC_CTL_IO_WRITE
        self._segs: list[tuple[int, int, Chunk]] = []  # live, sorted, non-overlapping
        self._pagemap: int | None = None
        self._perm = {0: U.UC_PROT_NONE}
        for p in range(1, 8):
            self._perm[p] = ((U.UC_PROT_READ if p & 1 else 0) | (U.UC_PROT_WRITE if p & 2 else 0)
                             | (U.UC_PROT_EXEC if p & 4 else 0))

    def map(self, start, size, prot):
        chunk = Chunk(start, size)
        self._uc.mem_map_ptr(start, size, self._perm[prot & 7], chunk.address)
        self._segs.insert(bisect_left(self._segs, start, key=_first), (start, start + size,
                                                                       chunk))

    def _overlapping(self, start: int, end: int) -> tuple[int, int]:
        i = bisect_right(self._segs, start, key=_first) - 1
        if i < 0 or self._segs[i][1] <= start:
            i += 1
        return i, max(i, bisect_left(self._segs, end, key=_first))

    def unmap(self, start, size):
        self._uc.mem_unmap(start, size)
        end = start + size
        i, j = self._overlapping(start, end)
        keep = []
        for lo, hi, chunk in self._segs[i:j]:
            keep += [(a, b, chunk) for a, b in ((lo, start), (end, hi)) if a < b]
            a, b = max(lo, start), min(hi, end)
            chunk.live -= b - a
            if chunk.live > 0:
                chunk.ram.madvise(mmap.MADV_DONTNEED, a - chunk.base, b - a)
            # at 0 the chunk is dropped: Unicorn no longer points into it
        self._segs[i:j] = keep

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
        for lo, hi, chunk in self._segs:
            n = (hi - lo) // PAGE
            try:
                raw = os.pread(self._pagemap, n * 8, (chunk.address + lo - chunk.base) // PAGE * 8)
            except OSError:
                return None
            total += n - raw[7::8].translate(_TOUCHED).count(0)
        return total * PAGE

    def close(self) -> None:
        if self._pagemap is not None:
            os.close(self._pagemap)
            self._pagemap = None

    def _chunk(self, addr: int, size: int) -> Chunk | None:
        i = bisect_right(self._segs, addr, key=_first) - 1
        if i >= 0 and addr + size <= self._segs[i][1]:
            return self._segs[i][2]
        return None

    def protect(self, start, size, prot):
        self._uc.mem_protect(start, size, self._perm[prot & 7])
        # Unicorn keeps using the old permission of a page it has in its TLB (a read of a
        # page just made PROT_NONE succeeds) until the TLB is flushed
        self._uc.ctl(self._TLB_FLUSH, self._IO_WRITE)

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
        """Guest memory [addr, addr+size) itself, if it lies in one chunk."""
        chunk = self._chunk(addr, size)
        if chunk is None:
            return None
        return memoryview(chunk.ram)[addr - chunk.base:addr - chunk.base + size]

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
        chunk = self._chunk(addr, size)
        if chunk is not None:  # straight into guest RAM: one memcpy
            chunk.ram[addr - chunk.base:addr - chunk.base + size] = data
            return
        try:
            buf = (ctypes.c_char * size).from_buffer(data)
        except TypeError:  # a read-only buffer: one copy, then the same call
            buf = bytes(data)
        if self._uclib.uc_mem_write(self._uc._uch, addr, buf, size) != 0:
            raise SyscallError(E.EFAULT, f"write {size} bytes at {addr:#x}")
