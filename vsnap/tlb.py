"""Unicorn's TLB, filled from vsnap's books: what keeps guest stores on the fast path.

Unicorn's softmmu checks each store inline against its TLB; a store whose TLB entry is marked
"not dirty" goes through a C helper instead, which looks the address up in Unicorn's region
tree twice (flatview_translate, phys_page_find) and costs about 30 times the inline store. In
Unicorn 2.1 every writable page's entry starts "not dirty" (cpu_physical_memory_is_clean is
stubbed to true), and the first store clears it (notdirty_write -> tlb_set_dirty) unless

  * the entry allows exec: Unicorn's own TLB fill for x86 gives every page read, write and
    exec (the guest runs with paging off), so no entry ever lost the mark; or
  * any UC_HOOK_MEM_* hook covers the address (uc_mem_hook_installed), as a MEM_INVALID hook
    over all memory did.

So Unicorn runs with a virtual TLB (UC_TLB_VIRTUAL) whose fill hook gives each page what the
old fill gave, minus exec where the page is not executable, and cpu.py keeps no memory hook
installed. Unicorn's regions (mapped with the guest's permissions) still decide every fault.

The fill hook runs on every TLB miss, which a guest touching tens of MiB makes often: it is a
few lines of C (compiled once with `zig cc`, as counter.py's hook), reading the books from a
sorted array of (start, end, prot) that PageBook keeps in step with the guest's mappings. Where
no C compiler works, a Python hook does the same, slower (about 2 us a miss).
"""
from __future__ import annotations

import ctypes
import os
import sys
from bisect import bisect_right

import unicorn as U
from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib

PAGE_MASK = ~0xFFF & 0xFFFF_FFFF_FFFF_FFFF
PROT_EXEC = 4
_DATA = U.UC_PROT_READ | U.UC_PROT_WRITE

_C_SOURCE = b"""
#include <stdint.h>
struct entry { uint64_t paddr; int perms; };
struct book { uint64_t n; const uint64_t *runs; };  /* n runs of (start, end, prot) */
_Bool vsnap_tlb_fill(void *uc, uint64_t addr, int type, struct entry *e, struct book *b)
{
    uint64_t lo = 0, hi = b->n;              /* the last run with start <= addr */
    while (lo < hi) {
        uint64_t mid = (lo + hi) / 2;
        if (b->runs[3 * mid] <= addr) lo = mid + 1; else hi = mid;
    }
    int data_only = lo > 0 && addr < b->runs[3 * (lo - 1) + 1]
                    && !(b->runs[3 * (lo - 1) + 2] & %(exec)d) && type != %(fetch)d;
    (void)uc;
    e->paddr = addr & ~(uint64_t)0xfff;
    e->perms = data_only ? %(data)d : %(all)d;
    return 1;
}
""" % {b"exec": PROT_EXEC, b"fetch": U.UC_MEM_FETCH, b"data": _DATA, b"all": U.UC_PROT_ALL}


class _Book(ctypes.Structure):
    _fields_ = [("n", ctypes.c_uint64), ("runs", ctypes.c_void_p)]


class PageBook:
    """The permission of every mapped page, as sorted runs (start, end, prot), mirrored into
    an array the C hook reads. Changed only between emu_start calls or inside a system call,
    never while the hook runs."""

    def __init__(self):
        self.runs: list[tuple[int, int, int]] = []
        self.c = _Book(0, None)
        self._array = None  # keeps the published array alive

    def prot(self, addr: int) -> int | None:
        """PROT_* bits of the page at `addr`, None where nothing is mapped."""
        i = bisect_right(self.runs, (addr, 1 << 64)) - 1
        if i >= 0 and addr < self.runs[i][1]:
            return self.runs[i][2]
        return None

    def set(self, start: int, end: int, prot: int | None) -> None:
        """[start, end) gets `prot` (None: unmapped)."""
        runs = []
        for lo, hi, p in self.runs:
            if hi <= start or lo >= end:
                runs.append((lo, hi, p))
                continue
            if lo < start:
                runs.append((lo, start, p))
            if hi > end:
                runs.append((end, hi, p))
        if prot is not None:
            runs.append((start, end, prot))
        self.runs = sorted(runs)
        array = (ctypes.c_uint64 * max(1, 3 * len(runs)))(*(x for r in self.runs for x in r))
        self.c.n = 0  # never a count with the wrong array
        self.c.runs = ctypes.addressof(array)
        self.c.n = len(self.runs)
        self._array = array


def install(uc, book: PageBook):
    """Switch `uc` to the virtual TLB, filled from `book`; return what must stay alive."""
    uc.ctl_set_tlb_mode(U.UC_TLB_VIRTUAL)
    lib = _load_native()
    if lib is None:
        def fill(uc, address, access, entry, _ud):
            prot = book.prot(address)
            entry.paddr = address & PAGE_MASK
            entry.perms = (_DATA if prot is not None and not prot & PROT_EXEC
                           and access != U.UC_MEM_FETCH else U.UC_PROT_ALL)
            return True
        return uc.hook_add(U.UC_HOOK_TLB_FILL, fill)
    handle = uc_hook_h()
    fn = ctypes.cast(lib.vsnap_tlb_fill, ctypes.c_void_p)
    err = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), U.UC_HOOK_TLB_FILL, fn,
                            ctypes.cast(ctypes.pointer(book.c), ctypes.c_void_p),
                            ctypes.c_uint64(1), ctypes.c_uint64(0))
    if err:
        raise U.UcError(err)
    return handle


_native = None
_native_error: str | None = None


def _load_native():
    """The compiled hook, built on first use into vsnap's cache; None if that fails."""
    global _native, _native_error
    if _native is not None or _native_error is not None:
        return _native
    if os.environ.get("VSNAP_NO_NATIVE_TLB"):
        _native_error = "disabled by VSNAP_NO_NATIVE_TLB"
        return None
    import hashlib
    import subprocess  # only here: start-up time counts (issue 10)
    from .build import cache_dir, zig_command
    key = hashlib.sha256(_C_SOURCE + sys.platform.encode()).hexdigest()[:16]
    path = os.path.join(os.path.dirname(cache_dir()), f"tlb-{key}.so")
    try:
        if not os.path.exists(path):
            import shutil
            import tempfile
            with tempfile.TemporaryDirectory() as d:
                src = os.path.join(d, "tlb.c")
                with open(src, "wb") as f:
                    f.write(_C_SOURCE)
                tmp = os.path.join(d, "tlb.so")
                subprocess.run([*zig_command(), "cc", "-shared", "-O2", "-nostdlib", "-fPIC",
                                "-o", tmp, src], check=True, capture_output=True, timeout=300)
                part = f"{path}.{os.getpid()}.tmp"  # into the cache atomically
                shutil.copyfile(tmp, part)
                os.replace(part, path)
        _native = ctypes.CDLL(path)
    except (OSError, subprocess.SubprocessError) as e:
        _native_error = str(e)
        return None
    return _native
