"""Unicorn's TLB, filled from vsnap's books: what keeps guest stores on the fast path.

Unicorn runs with a virtual TLB (UC_TLB_VIRTUAL): on each TLB miss it asks a fill hook for the
page's physical address (= its virtual one; guest RAM is in arenas, guestram.py) and its
permissions. The books of page permissions (PageBook: maximal sorted runs (start, end, prot))
decide; a refusal faults the guest. PageBook.prot is what the CPU may do, which is narrower
than the mapping's protection where vsnap must decide first: a copy-on-write page still shared
with its file has no write, a page past the end of its file has nothing (filemap.py).

Why C, and why exact permissions. Unicorn's softmmu checks each store inline against its TLB; a
store whose entry is marked "not dirty" goes through a C helper instead, which looks the address
up in Unicorn's region tree twice (flatview_translate, phys_page_find) and costs about 30 times
the inline store. In Unicorn 2.1 every writable page's entry starts "not dirty"
(cpu_physical_memory_is_clean is stubbed to true), and the first store clears it
(notdirty_write -> tlb_set_dirty) unless the entry allows exec or any UC_HOOK_MEM_* hook covers
the address (uc_mem_hook_installed). So a data page's entry must not allow exec (the books'
exact permissions do that: Unicorn's own x86 fill gives every page exec), and cpu.py keeps no
memory hook installed. The fill runs on every TLB miss, which a guest touching tens of MiB makes
often: a Python hook made memhash 3x slower than this C one (benchmarks/README.md).

So the C hook (compiled once with `zig cc`, as counter.py's hook) answers every access the books
allow, and calls back into Python (`slow`, cpu.py's Cpu._on_tlb_fill) only for the rest: a
refusal (fault), a write to a copy-on-write page (made private first), an unmapped address (a
MAP_GROWSDOWN mapping may grow), a page past the end of its file (SIGBUS). Where no C compiler
works, the Python hook does all of it, slower (about 2 us a miss).

The TLB's size. Unicorn's starts with 256 entries (1 MiB of guest memory) and is resized only
when it is flushed: doubled if over 70% of it was used since the last flush. vsnap flushes it
only when a page loses a permission, so a guest that works over tens of MiB without system
calls kept 256 entries and missed on most pages it came back to (memhash: 41 misses a page).
The C hook counts its fills and flushes the TLB itself (uc_ctl from inside the fill, which
QEMU's callers allow: they look their entry up again after a fill, since a fill may resize)
after twice the TLB's size in fills, up to TLB_MAX entries: memhash N=1,000,000 0.94 -> 0.71 s.

Unicorn itself looks up emu_start's end address (2**64 - 1) when a hook stops it; a refusal
there would fault the guest, so that page is given a page of its own (END_PHYS, never the
guest's: the guest's addresses are below 2**47).
"""
from __future__ import annotations

import ctypes
import os
from bisect import bisect_left, bisect_right
from operator import itemgetter

import unicorn as U
from unicorn.unicorn_py3.unicorn import HOOK_TLB_FILL_CFUNC, uccallback, uclib

from . import nativehooks

END_PAGE = 0xFFFF_FFFF_FFFF_F000
END_PHYS = 1 << 47
_first = itemgetter(0)
# Unicorn's TLB starts with 256 entries and changes size only when it is flushed (doubled if
# over 70% of it was used since the last flush, shrunk if under 30% for 100 ms); the C fill
# hook flushes it after twice its size in fills, up to TLB_MAX entries (32 bytes each).
TLB_FIRST = 256
TLB_MAX = 1 << 15

# PROT_* bits and UC_PROT_* bits are the same (read 1, write 2, exec 4); the C source and the
# Python hook both use them as they are (checked here, not assumed)
assert (U.UC_PROT_READ, U.UC_PROT_WRITE, U.UC_PROT_EXEC) == (1, 2, 4)

_C_SOURCE = b"""
#include <stdint.h>
struct entry { uint64_t paddr; uint32_t perms; };
typedef _Bool (*fill_fn)(void *uc, uint64_t addr, int type, struct entry *e, void *data);
typedef int (*ctl_fn)(void *uc, int control, ...);
/* n runs of (start, end, prot), sorted; slow decides what the runs do not allow. Growing the
   TLB: after `grow_after` fills since the last flush, flush (Unicorn doubles a TLB it finds
   over 70%% used when it flushes it), up to `grow_max` fills between two flushes. */
struct book { uint64_t n; const uint64_t *runs; fill_fn slow; void *data;
              ctl_fn ctl; int64_t flush; uint64_t fills, grow_after, grow_max, misses; };
_Bool vsnap_tlb_fill(void *uc, uint64_t addr, int type, struct entry *e, struct book *b)
{
    b->misses++;
    if (++b->fills >= b->grow_after && b->ctl) {
        b->ctl(uc, (int)b->flush);
        b->fills = 0;
        if (b->grow_after < b->grow_max) b->grow_after *= 2;
    }
    uint64_t lo = 0, hi = b->n;              /* the last run with start <= addr */
    while (lo < hi) {
        uint64_t mid = (lo + hi) / 2;
        if (b->runs[3 * mid] <= addr) lo = mid + 1; else hi = mid;
    }
    int need = type == %(read)d ? 1 : type == %(write)d ? 2 : type == %(fetch)d ? 4 : 0;
    if (lo > 0 && addr < b->runs[3 * (lo - 1) + 1] && (b->runs[3 * (lo - 1) + 2] & need)) {
        e->paddr = addr & ~(uint64_t)0xfff;
        e->perms = (uint32_t)(b->runs[3 * (lo - 1) + 2] & 7);
        return 1;
    }
    if ((addr & ~(uint64_t)0xfff) == %(end_page)dull) {
        e->paddr = %(end_phys)dull;
        e->perms = 7;
        return 1;
    }
    return b->slow ? b->slow(uc, addr, type, e, b->data) : 0;
}
""" % {b"read": U.UC_MEM_READ, b"write": U.UC_MEM_WRITE, b"fetch": U.UC_MEM_FETCH,
       b"end_page": END_PAGE, b"end_phys": END_PHYS}


class _Book(ctypes.Structure):
    _fields_ = [("n", ctypes.c_uint64), ("runs", ctypes.c_void_p),
                ("slow", ctypes.c_void_p), ("data", ctypes.c_void_p),
                ("ctl", ctypes.c_void_p), ("flush", ctypes.c_int64), ("fills", ctypes.c_uint64),
                ("grow_after", ctypes.c_uint64), ("grow_max", ctypes.c_uint64),
                ("misses", ctypes.c_uint64)]


class PageBook:
    """The permission the CPU has on every mapped page: maximal runs (start, end, prot) of one
    permission, sorted (`runs`, a list changed only in place), mirrored into an array the C
    hook reads. Changed only between emu_start calls or inside a hook, never while the C hook
    runs (Unicorn is single-threaded here)."""

    def __init__(self):
        self.runs: list[tuple[int, int, int]] = []
        self.c = _Book(0, None, None, None, None, 0, 0, TLB_FIRST * 2, TLB_MAX * 2, 0)
        self._cap = 0
        self._array = None  # the published array, kept alive here
        self._grow(64)

    def _grow(self, cap: int) -> None:
        array = (ctypes.c_uint64 * (3 * cap))()
        if self._array is not None:
            ctypes.memmove(array, self._array, 24 * self.c.n)
        self._array, self._cap = array, cap
        self.c.runs = ctypes.addressof(array)

    def prot(self, addr: int) -> int | None:
        """PROT_* bits of the page at `addr`, None where nothing is mapped."""
        i = bisect_right(self.runs, addr, key=_first) - 1
        if i >= 0 and addr < self.runs[i][1]:
            return self.runs[i][2]
        return None

    def set(self, start: int, end: int, prot: int | None) -> bool:
        """[start, end) gets `prot` (None: unmapped), keeping the runs maximal. True if a page
        there lost a permission (Unicorn's TLB must then be flushed; a page that gained one
        is looked up again on the access it lacked)."""
        runs = self.runs
        i = bisect_left(runs, start, key=_first) - 1  # runs overlapping or touching
        if i < 0 or runs[i][1] < start:
            i += 1
        j = bisect_right(runs, end, key=_first)
        pieces = []
        lost = False
        for lo, hi, p in runs[i:j]:
            pieces += [(a, b, p) for a, b in ((lo, min(hi, start)), (max(lo, end), hi)) if a < b]
            if lo < end and hi > start and (prot is None or p & ~prot):
                lost = True
        if prot is not None:
            pieces.append((start, end, prot))
        pieces.sort()
        new: list[tuple[int, int, int]] = []
        for lo, hi, p in pieces:
            if new and new[-1][1] == lo and new[-1][2] == p:
                new[-1] = (new[-1][0], hi, p)
            else:
                new.append((lo, hi, p))
        runs[i:j] = new
        self._publish(i, j, new)
        return lost

    def _publish(self, i: int, j: int, new: list) -> None:
        """The array gets the list's change: entries [i, j) became `new` (a memmove of the
        tail, not a rebuild: thousands of mappings change it one page at a time)."""
        n_old = self.c.n
        n = n_old + len(new) - (j - i)
        if n > self._cap:
            self._grow(max(n, 2 * self._cap))
        base = ctypes.addressof(self._array)
        if n != n_old and n_old > j:
            ctypes.memmove(base + 24 * (i + len(new)), base + 24 * j, 24 * (n_old - j))
        a = self._array
        for k, (lo, hi, p) in enumerate(new, i):
            a[3 * k], a[3 * k + 1], a[3 * k + 2] = lo, hi, p
        self.c.n = n


def install(uc, book: PageBook, slow=None):
    """Switch `uc` to the virtual TLB, filled from `book`; `slow(uc, address, access, entry)`
    (entry with .paddr and .perms) decides what the book does not allow (None: refuse it).
    Maps END_PHYS. Returns what must stay alive as long as `uc`."""
    uc.ctl_set_tlb_mode(U.UC_TLB_VIRTUAL)
    uc.mem_map(END_PHYS, 0x1000, U.UC_PROT_ALL)
    lib = _load_native()
    if lib is None:
        def fill(uc, address, access, entry, _ud):
            prot = book.prot(address)
            if prot is not None and prot & {U.UC_MEM_READ: 1, U.UC_MEM_WRITE: 2,
                                            U.UC_MEM_FETCH: 4}.get(access, 0):
                entry.paddr, entry.perms = address & ~0xFFF, prot & 7
                return True
            if address & ~0xFFF == END_PAGE:
                entry.paddr, entry.perms = END_PHYS, U.UC_PROT_ALL
                return True
            return bool(slow and slow(uc, address, access, entry))
        return uc.hook_add(U.UC_HOOK_TLB_FILL, fill)
    keep = []
    if slow is not None:
        # the binding's own wrapper: an exception in `slow` is kept and raised by emu_start
        @uccallback(uc, HOOK_TLB_FILL_CFUNC)
        def on_miss(uc, address, access, entry, _data):
            return slow(uc, address, access, entry.contents)
        keep.append(on_miss)
        book.c.slow = ctypes.cast(on_miss, ctypes.c_void_p)
    book.c.ctl = ctypes.cast(uclib.uc_ctl, ctypes.c_void_p)
    book.c.flush = (U.UC_CTL_IO_WRITE << 30) | U.UC_CTL_TLB_FLUSH
    keep.append(nativehooks.add_hook(uc, U.UC_HOOK_TLB_FILL, lib.vsnap_tlb_fill,
                                     ctypes.pointer(book.c)))
    return keep


_native_error: str | None = None


def _load_native():
    """The compiled hook (nativehooks.py); None if it cannot be built or is switched off."""
    global _native_error
    if os.environ.get("VSNAP_NO_NATIVE_TLB"):
        _native_error = "disabled by VSNAP_NO_NATIVE_TLB"
        return None
    lib, _native_error = nativehooks.load("tlb", _C_SOURCE)
    return lib
