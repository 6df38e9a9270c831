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
    """The real backend: guest RAM in arenas, the permission of every page in our books, and
    Unicorn asking the books on each TLB miss. Bad addresses become EFAULT.

    Unicorn runs with a virtual TLB (cpu.py): each arena is one Unicorn region, mapped at its
    guest address (physical = virtual), and Unicorn's TLB-fill hook reads a page's permission
    from the books (tlb.py: a C hook over `pages`, Python's page_prot() only for what the
    books refuse). So mmap, munmap and mprotect cost Unicorn nothing but a TLB flush.
    Mapping every VMA as a Unicorn region of its own cost steeply more with their number
    (Unicorn's mem_map with 4,096 regions: 20 s to map them, 15 s to unmap, here).
    `_runs` is the books: maximal runs (start, end, prot) of mapped pages, sorted."""

    def __init__(self, uc, pages=None):
        import unicorn as U
        from unicorn.unicorn_py3.unicorn import uclib
        from .tlb import PageBook
        self._uc, self._UcError, self._uclib = uc, U.UcError, uclib
        self._TLB_FLUSH, self._IO_WRITE = U.UC_CTL_TLB_FLUSH, U.UC_CTL_IO_WRITE
        self._ALL = U.UC_PROT_ALL
        self._arenas: dict[int, Arena] = {}
        # the books: the Cpu's, which its C TLB-fill hook reads (tlb.py), or our own
        self.pages = PageBook() if pages is None else pages
        self._runs = self.pages.runs  # the same list, changed in place
        self._pagemap: int | None = None
        # MAP_SHARED anonymous memory: (start, end, SharedMemory, its offset at start), sorted,
        # each within one arena (sharedmem.py)
        self._shared: list = []

    @staticmethod
    def _slots(start: int, end: int):
        """[start, end) cut at arena boundaries: (arena index, lo, hi)."""
        while start < end:
            i = start >> ARENA_SHIFT
            hi = min(end, (i + 1) << ARENA_SHIFT)
            yield i, start, hi
            start = hi

    def page_prot(self, addr: int) -> int | None:
        """The permission of the page at `addr` (PROT_* bits), None where nothing is mapped:
        what Unicorn's TLB-fill hook asks."""
        i = bisect_right(self._runs, addr, key=_first) - 1
        if i >= 0 and addr < self._runs[i][1]:
            return self._runs[i][2]
        return None

    def _mapped(self, start: int, end: int) -> bool:
        """Is all of [start, end) mapped?"""
        i = bisect_right(self._runs, start, key=_first) - 1
        if i < 0:
            return False
        while i < len(self._runs) and self._runs[i][0] <= start:
            if self._runs[i][1] >= end:
                return True
            start = self._runs[i][1]
            i += 1
        return False

    def _remap(self, start: int, end: int, prot: int | None) -> None:
        """Give [start, end) permission `prot` (None: unmap it) in the books (tlb.PageBook,
        which the C fill hook reads too); flush Unicorn's TLB where a page lost a permission
        (one that gained one is looked up again on the access it lacked)."""
        if self.pages.set(start, end, prot):
            self._uc.ctl(self._TLB_FLUSH, self._IO_WRITE)

    def map(self, start, size, prot):
        for i, lo, hi in self._slots(start, start + size):
            arena = self._arenas.get(i)
            if arena is None:
                arena = self._arenas[i] = Arena(i << ARENA_SHIFT)
                self._uc.mem_map_ptr(arena.base, ARENA, self._ALL, arena.address)
            arena.used += hi - lo
        self._remap(start, start + size, prot)

    def unmap(self, start, size):
        self._remap(start, start + size, None)
        if self._shared:
            self._unshare(start, start + size)
        for i, lo, hi in self._slots(start, start + size):
            arena = self._arenas[i]
            arena.used -= hi - lo
            if arena.used <= 0:
                self._uc.mem_unmap(arena.base, ARENA)
                del self._arenas[i]  # Unicorn no longer points into it
            else:  # give the pages back: a later map of them reads zeros
                arena.ram.madvise(mmap.MADV_DONTNEED, lo - arena.base, hi - lo)

    def protect(self, start, size, prot):
        self._remap(start, start + size, prot)

    # shared anonymous memory (sharedmem.py) ---------------------------------------------------
    def share(self, start: int, size: int, shm=None, offset: int = 0):
        """The mapped pages [start, start+size) become `shm`'s pages from `offset` on (a new
        SharedMemory when None: a fresh MAP_SHARED anonymous mapping); another engine that
        shares them with the same `shm` sees every store at once. Returns the SharedMemory."""
        from .sharedmem import SharedMemory
        if shm is None:
            shm = SharedMemory(size)
        self._unshare(start, start + size)
        for i, lo, hi in self._slots(start, start + size):
            arena = self._arenas[i]
            shm.attach(arena.address + lo - arena.base, offset + lo - start, hi - lo)
            self._shared.insert(bisect_left(self._shared, lo, key=_first),
                                (lo, hi, shm, offset + lo - start))
        return shm

    def _unshare(self, start: int, end: int) -> None:
        """Pages in [start, end) that were shared become private zero pages again."""
        keep = []
        for lo, hi, shm, off in self._shared:
            a, b = max(lo, start), min(hi, end)
            if a >= b:
                keep.append((lo, hi, shm, off))
                continue
            arena = self._arenas[a >> ARENA_SHIFT]
            shm.detach(arena.address + a - arena.base, b - a)
            keep += [(x, y, shm, off + x - lo) for x, y in ((lo, a), (b, hi)) if x < y]
        self._shared[:] = keep

    def move_shared(self, old: int, new: int, size: int) -> bool:
        """mremap: the shared memory under [old, old+size) is put under [new, new+size)
        too (the same pages: whoever else maps them still shares them). False if none of
        [old, old+size) was shared."""
        found = [(max(lo, old), min(hi, old + size), shm, off + max(lo, old) - lo)
                 for lo, hi, shm, off in self._shared if lo < old + size and hi > old]
        for lo, hi, shm, off in found:
            self.share(new + lo - old, hi - lo, shm, off)
        return bool(found)

    def shared_ranges(self) -> list:
        """(start, end, SharedMemory, offset) of each stretch of shared anonymous memory."""
        return list(self._shared)

    def touched_bytes(self) -> int | None:
        """Bytes of guest RAM that have held data since mapped (see touched_pages): what
        the memory budget counts, as Linux's overcommit counts pages, not reservations.
        One read of /proc/self/pagemap per arena, over the span it has mapped: pages
        unmapped in between were given back, so they do not count."""
        if mmap.PAGESIZE != PAGE:
            return None
        if self._pagemap is None:
            try:
                self._pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
        total = 0
        for arena, first, n in self._spans():
            try:
                raw = os.pread(self._pagemap, n * 8,
                               (arena.address + first - arena.base) // PAGE * 8)
            except OSError:
                return None
            total += n - raw[7::8].translate(_TOUCHED).count(0)
        return total * PAGE

    def _spans(self):
        """(arena, first mapped address, pages to its last mapped page) for each arena."""
        for arena in self._arenas.values():
            end = arena.base + ARENA
            i = bisect_right(self._runs, arena.base, key=_first) - 1
            if i < 0 or self._runs[i][1] <= arena.base:
                i += 1
            j = bisect_left(self._runs, end, key=_first) - 1
            if j >= i:
                first = max(arena.base, self._runs[i][0])
                yield arena, first, (min(end, self._runs[j][1]) - first) // PAGE

    def scan_pages(self) -> int:
        """Pages touched_bytes reads the state of: what a check of the budget costs."""
        return sum(n for _, _, n in self._spans())

    def runs(self) -> int:
        """How many runs of one permission the books hold (tests look)."""
        return len(self._runs)

    def forget_code(self, start: int, end: int) -> None:
        """Bytes in [start, end) changed behind Unicorn's back (its own mem_write does not
        drop translated code either): drop the code it translated from them. The pages must
        be executable by then: Unicorn looks them up through the TLB."""
        self._uc.ctl_remove_cache(start, end)

    def close(self) -> None:
        if self._pagemap is not None:
            os.close(self._pagemap)
            self._pagemap = None

    def read(self, addr, size):
        if not self._mapped(addr, addr + size):
            raise SyscallError(E.EFAULT, f"read {size} bytes at {addr:#x}")
        arena = self._arenas.get(addr >> ARENA_SHIFT)
        if arena is not None and (addr + size - 1) >> ARENA_SHIFT == addr >> ARENA_SHIFT:
            return arena.ram[addr - arena.base:addr - arena.base + size]  # the RAM itself
        try:
            return bytes(self._uc.mem_read(addr, size))
        except self._UcError:
            raise SyscallError(E.EFAULT, f"read {size} bytes at {addr:#x}") from None

    def write(self, addr, data):
        if not self._mapped(addr, addr + len(data)):
            raise SyscallError(E.EFAULT, f"write {len(data)} bytes at {addr:#x}")
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
