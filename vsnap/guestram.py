"""Guest RAM: the host memory behind the guest's pages, and Unicorn's view of it.

Guest RAM lives in mmaps of our own, handed to Unicorn with mem_map_ptr: a checkpoint then
reads guest memory as a view of that mapping, with no copy (copying 64 MiB out through
uc_mem_read cost more than writing it to disk), and a restore reads the image straight into
it. Each map() makes one mapping (a chunk); unmapping part of a chunk gives its pages back to
the host (MADV_DONTNEED) and marks that range dead, and the chunk goes when none of it is
left.
"""
from __future__ import annotations

import ctypes
import mmap
import os

from .abi import errno as E
from .errors import SyscallError
from .memory import PAGE

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
        self.buf = (ctypes.c_char * size).from_buffer(self.ram)
        self.address = ctypes.addressof(self.buf)
        self.dead: list[tuple[int, int]] = []  # unmapped ranges: Unicorn no longer uses them

    def live(self, addr: int, size: int) -> bool:
        return (self.base <= addr and addr + size <= self.base + self.size
                and all(addr + size <= lo or addr >= hi for lo, hi in self.dead))

    def live_parts(self, start: int, end: int) -> list[tuple[int, int]]:
        """The ranges of [start, end) that are in this chunk and not dead."""
        parts = [(max(start, self.base), min(end, self.base + self.size))]
        for lo, hi in self.dead:
            parts = [piece for a, b in parts
                     for piece in ((a, min(b, lo)), (max(a, hi), b)) if piece[0] < piece[1]]
        return [(a, b) for a, b in parts if a < b]

    def in_use(self) -> int:
        return self.size - sum(hi - lo for lo, hi in self.dead)


class UnicornMemory:
    """The real backend: Unicorn's page tables over our chunks. Bad addresses become EFAULT."""

    def __init__(self, uc, pages=None):
        import unicorn as U
        from unicorn.unicorn_py3.unicorn import uclib
        from .tlb import PageBook
        self._uc, self._UcError, self._uclib = uc, U.UcError, uclib
        self._chunks: list[Chunk] = []
        self.pages = PageBook() if pages is None else pages  # what Unicorn's TLB fill reads
        self._TLB_FLUSH, self._IO_WRITE = U.UC_CTL_TLB_FLUSH, U.UC_CTL_IO_WRITE
        self._perm = {0: U.UC_PROT_NONE}
        for p in range(1, 8):
            self._perm[p] = ((U.UC_PROT_READ if p & 1 else 0) | (U.UC_PROT_WRITE if p & 2 else 0)
                             | (U.UC_PROT_EXEC if p & 4 else 0))

    def map(self, start, size, prot):
        chunk = Chunk(start, size)
        self._uc.mem_map_ptr(start, size, self._perm[prot & 7], chunk.address)
        self._chunks.append(chunk)
        self.pages.set(start, start + size, prot & 7)

    def unmap(self, start, size):
        self._uc.mem_unmap(start, size)
        self.pages.set(start, start + size, None)
        for chunk in list(self._chunks):
            # only the chunk's live pages in the range: pages already dead there belong to
            # a newer chunk now. Dead is for good: a later map() of the range makes a new
            # chunk, so a stale view of this one is never taken for live memory.
            for lo, hi in chunk.live_parts(start, start + size):
                chunk.dead.append((lo, hi))
                if chunk.in_use() > 0:
                    chunk.ram.madvise(mmap.MADV_DONTNEED, lo - chunk.base, hi - lo)
            if chunk.in_use() <= 0:
                self._chunks.remove(chunk)  # Unicorn no longer points into it

    def _chunk(self, addr: int, size: int) -> Chunk | None:
        for chunk in self._chunks:
            if chunk.live(addr, size):
                return chunk
        return None

    def protect(self, start, size, prot):
        self._uc.mem_protect(start, size, self._perm[prot & 7])
        self.pages.set(start, start + size, prot & 7)
        # Unicorn's mem_protect keeps the TLB: a page that was readable, or written since
        # (its entry then skips the region check, see tlb.py), would stay so
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
