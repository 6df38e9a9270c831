"""Counting instructions exactly, for --stats, budgets, --save-at and every property test.

What "an instruction" is, for the whole project: one execution of an instruction by Unicorn's
translator, the unit its per-instruction hook fires on. Each iteration of a `rep`-prefixed
string instruction is one instruction (Unicorn runs a `rep` instruction one iteration per pass,
and a `rep` that finds rcx = 0 runs once more to see it), where hardware counts the whole `rep`
as one retired instruction. An instruction that faults (or traps into the kernel as a CPU
exception) is not counted: the count is what completed before it. The definition is named by
COUNTING, which images record.

Two counters with one interface (count, arm(limit), fault(rip), cut(next), tail()):

* BlockCounter (the normal one): a C block hook (compiled once with `zig cc`, which vsnap needs
  anyway, and cached) adds each translated block's instruction count, found in a table keyed by
  (address, size). A block not in the table costs one call into Python, which asks Unicorn for
  its own count of the block (its translation, through uc_ctl) where the guest cannot write the
  code, and decodes the bytes with capstone's library elsewhere (about 1 us against 10 us a
  block). Blocks on pages the guest can
  write are never kept in the table (the guest may rewrite them; Unicorn retranslates, and so
  must the count), and the table is emptied whenever
  executable memory is mapped, unmapped, reprotected or written by vsnap (on_code_change). To
  stop at exactly instruction k it stops before the block that would cross k and runs the rest
  of that block with a per-instruction hook on just that block (tail()). Every run counts
  (the guest's clock follows the count, clock.py); it costs about 0.8x a bare engine's speed
  on compute.c (benchmarks/run.py).
* InsnCounter: the per-instruction reference, a C code hook counting every instruction (about
  25x slower); tests compare the two, and VSNAP_COUNTER=insn selects it.

Only the CPU layer uses this module (it is part of cpu.py's job, in a file of its own).
"""
from __future__ import annotations

import ctypes
import os
from typing import Callable

import unicorn as U
from unicorn.unicorn_py3.unicorn import uclib

from . import nativehooks
from .insncount import count_code

NEVER = (1 << 64) - 1
COUNTING = "unicorn-insn-1"  # the definition above; images made under another are refused
TABLE_BITS = 16              # 65,536 blocks (BITS in the C source); emptied when half full

_C_SOURCE = b"""
#include <stdint.h>
#define BITS 16
#define SLOTS (1u << BITS)
struct entry { uint64_t address; uint32_t size; uint32_t n; };
struct counter {
    uint64_t count, limit;
    int (*stop)(void *uc);
    uint64_t (*miss)(uint64_t address, uint32_t size);  /* n << 1 | 1 if it may be kept */
    volatile uint32_t stop_request;  /* cpu.stop(): stop before the next block */
    uint32_t mode;                   /* 0 blocks, 1 the tail of one block, instruction by one */
    struct entry *last;              /* the block counted last */
    struct entry held;               /* the block not entered: it would cross the limit */
    struct entry scratch;            /* the last block, when it is not kept in the table */
    uint32_t used, pad;
    int (*ctl)(void *uc, int control, ...);  /* uc_ctl, and its request for a block */
    int64_t request;
    struct entry table[SLOTS];
};
struct uc_tb { uint64_t pc; uint16_t icount; uint16_t size; };

/* Unicorn's count of the block being entered, from its translation (the block hook runs at
   the start of the block, in the CPU state the block was found under), or -1 where what
   Unicorn gives back is not this block. Only for code the guest cannot write (miss() asks):
   elsewhere the block may be a one-instruction one after a store into code, which Unicorn
   would not find under its usual flags, and would translate anew here. */
int64_t vsnap_engine_count(void *uc, uint64_t address, uint32_t size, struct counter *c)
{
    struct uc_tb tb;
    if (!c->ctl || !size || c->ctl(uc, (int)c->request, address, &tb) != 0) return -1;
    return tb.pc == address && tb.size == size ? tb.icount : -1;
}

/* A block's first slot: by its address, 4 bytes of code to a slot, so that blocks that are
   neighbours in the code (a hot loop's) share cache lines. A hashed slot gave each block a
   line of its own somewhere in the 1 MiB table, and that load missed the cache so often that
   vsnap_block was 28% of a counted bash run. A block that starts where another does (other
   size) or within 4 bytes of it takes the next free slot (8 bytes a slot was 2-3% slower). */
static inline uint64_t slot(uint64_t a, uint32_t s)
{
    (void)s;
    return (a >> 2) & (SLOTS - 1);
}

void vsnap_forget(struct counter *c)
{
    for (uint32_t i = 0; i < SLOTS; i++) c->table[i].size = 0;
    c->used = 0;
}

/* put counts known from elsewhere (knownblocks.py) into the table; a block already there
   stays as it is */
void vsnap_seed(struct counter *c, const struct entry *add, uint32_t count)
{
    for (uint32_t i = 0; i < count && c->used < SLOTS / 2; i++) {
        if (add[i].size == 0) continue;
        for (uint64_t h = slot(add[i].address, add[i].size);; h = (h + 1) & (SLOTS - 1)) {
            struct entry *e = &c->table[h];
            if (e->size == 0) { *e = add[i]; c->used++; break; }
            if (e->address == add[i].address && e->size == add[i].size) break;
        }
    }
}

__attribute__((noinline))
static void slow(void *uc, uint64_t address, uint32_t size, struct counter *c)
{
    struct entry *e;
    uint32_t n;
    if (c->stop_request) { c->stop(uc); return; }
    if (c->mode) return;  /* the tail: the instruction hook counts */
    for (uint64_t h = slot(address, size);; h = (h + 1) & (SLOTS - 1)) {
        e = &c->table[h];
        if (e->size == 0) {
            uint64_t r = c->miss(address, size);
            n = (uint32_t)(r >> 1);
            if ((r & 1) && size) {
                if (c->used >= SLOTS / 2) {
                    vsnap_forget(c);
                    e = &c->table[slot(address, size)];
                }
                c->used++;
            } else {
                e = &c->scratch;
            }
            e->address = address; e->size = size; e->n = n;
            break;
        }
        if (e->address == address && e->size == size) { n = e->n; break; }
    }
    if (c->count + n > c->limit) {  /* stop before it: the tail runs what fits */
        c->held = *e;
        c->stop(uc);
        return;
    }
    c->count += n;
    c->last = e;
}

void vsnap_block(void *uc, uint64_t address, uint32_t size, struct counter *c)
{
    struct entry *e = &c->table[slot(address, size)];
    if (__builtin_expect(!(c->stop_request | c->mode) && e->address == address
                         && e->size == size, 1)) {
        uint64_t k = c->count + e->n;
        if (__builtin_expect(k <= c->limit, 1)) { c->count = k; c->last = e; return; }
    }
    slow(uc, address, size, c);
}

void vsnap_insn(void *uc, uint64_t address, uint32_t size, struct counter *c)
{
    (void)address; (void)size;
    if (c->count >= c->limit || c->stop_request) { c->stop(uc); return; }  /* before it runs */
    c->count++;
}
"""

_MISS = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint32)


class _Entry(ctypes.Structure):
    _fields_ = [("address", ctypes.c_uint64), ("size", ctypes.c_uint32), ("n", ctypes.c_uint32)]


class _Struct(ctypes.Structure):
    _fields_ = [("count", ctypes.c_uint64), ("limit", ctypes.c_uint64),
                ("stop", ctypes.c_void_p), ("miss", _MISS),
                ("stop_request", ctypes.c_uint32), ("mode", ctypes.c_uint32),
                ("last", ctypes.POINTER(_Entry)), ("held", _Entry), ("scratch", _Entry),
                ("used", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("ctl", ctypes.c_void_p), ("request", ctypes.c_int64),
                ("table", _Entry * (1 << TABLE_BITS))]


_native_error: str | None = None


def _load_native():
    """The compiled hooks (nativehooks.py); None if they cannot be built."""
    global _native_error
    lib, _native_error = nativehooks.load("count", _C_SOURCE)
    return lib


class _Native:
    """What both C counters share: the struct, the stop function, hook handles."""

    def __init__(self, uc, lib):
        self._uc, self._lib = uc, lib
        self._c = _Struct()
        self._c.limit = NEVER
        self._c.stop = ctypes.cast(uclib.uc_emu_stop, ctypes.c_void_p).value
        self._c.miss = _MISS(lambda a, s: 0)
        self._c.ctl = ctypes.cast(uclib.uc_ctl, ctypes.c_void_p).value
        # UC_CTL_READ_WRITE(UC_CTL_TB_REQUEST_CACHE, 2): the block at an address, 2 arguments
        self._c.request = (U.UC_CTL_IO_READ_WRITE << 30) | (2 << 26) | U.UC_CTL_TB_REQUEST_CACHE
        self._hooks: list = []

    def _add(self, kind: int, fn, begin: int = 1, end: int = 0):
        handle = nativehooks.add_hook(self._uc, kind, fn, ctypes.pointer(self._c), begin, end)
        self._hooks.append(handle)
        return handle

    def _del(self, handle) -> None:
        uclib.uc_hook_del(self._uc._uch, handle)
        self._hooks.remove(handle)

    @property
    def count(self) -> int:
        return self._c.count

    @count.setter
    def count(self, n: int) -> None:
        self._c.count = n

    def arm(self, limit: int | None) -> None:
        self._c.limit = NEVER if limit is None else limit
        self._c.held.size = 0

    def stopped_for_no_reason(self) -> bool:
        """The engine came back though no stop was asked for and no limit reached (cpu.py
        says what that means)."""
        c = self._c
        return not c.stop_request and c.count < c.limit and not self.tail_pending()

    def request_stop(self) -> None:
        """Stop before the next block (from any thread): a block the engine enters only to
        find the stop request would otherwise be counted without running."""
        self._c.stop_request = 1

    def clear_stop(self) -> None:
        self._c.stop_request = 0

    def code_changed(self) -> None:
        pass

    def close(self) -> None:
        for h in list(self._hooks):
            self._del(h)


class InsnCounter(_Native):
    """The reference: a C hook before every instruction."""

    def __init__(self, uc, lib):
        super().__init__(uc, lib)
        self.error = None
        self._add(U.UC_HOOK_CODE, lib.vsnap_insn)

    def tail_pending(self) -> bool:
        return False

    def use_known(self, known) -> None:
        pass  # it counts every instruction as it runs: no table to seed

    def fault(self, rip: int, trap: bool = False) -> None:
        self._c.count -= 1  # counted before it ran; it did not complete

    def cut(self, next_rip: int) -> None:
        pass  # a hook moved rip on: every instruction was counted as it started


class BlockCounter(_Native):
    """Counting per translated block; see the module docstring."""

    def __init__(self, uc, lib, cacheable: Callable[[int, int], bool], known=None):
        super().__init__(uc, lib)
        mem_read = uc.mem_read
        self._cacheable = cacheable
        # counts other machines learned for the same text (knownblocks.py): put into the
        # table at the first miss after it was emptied (then the text is mapped)
        self._known = known
        self._fresh = known is not None

        self.error: BaseException | None = None

        engine_count = lib.vsnap_engine_count
        engine_count.restype = ctypes.c_int64
        engine_count.argtypes = (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32,
                                 ctypes.c_void_p)
        uch, cptr = uc._uch, ctypes.addressof(self._c)

        def miss(address: int, size: int) -> int:
            try:
                self._abandoned(address, size)
                seeded = self._fresh and self._seed()
                keep = cacheable(address, size)
                # Unicorn's own count where the code cannot change (about 1 us; capstone
                # costs about 10 us a block more)
                n = engine_count(uch, address, size, cptr) if keep else -1
                code = None
                if n < 0:
                    code = bytes(mem_read(address, size))
                    n = count_code(code, address)
                if keep and self._known is not None:
                    self._known.learned(address, size, n,
                                  code if code is not None else bytes(mem_read(address, size)))
                # just seeded: the slot the C code holds for this block may be taken now,
                # so this one count goes to the scratch entry (the next miss keeps it)
                return n << 1 | (1 if keep and not seeded else 0)
            except BaseException as e:  # never unwind through the engine: stop before the
                self.error = e          # next block, and cpu.run raises it (never a wrong
                self._c.stop_request = 1  # count in silence)
                return 0
        self._c.miss = _MISS(miss)
        self._add(U.UC_HOOK_BLOCK, lib.vsnap_block)
        self._tail_hook = None

    def _abandoned(self, address: int, size: int) -> None:
        """A store into the block being executed makes Unicorn abandon it there, run the
        store again as a block of its own and translate the rest anew. That new block starts
        inside the last one and ends short of it, which a block in read-only code never does
        (only code the guest can write changes under a running block): take back what the
        last block did not run, keeping the store once for its first, abandoned try, as the
        per-instruction hook counts it."""
        last = self._last()
        if last is None:
            return
        start, length, n = last
        if start <= address < start + length and address + size < start + length \
                and not self._cacheable(start, length):
            before = count_code(bytes(self._uc.mem_read(start, address - start)), start)
            self._c.count = self._c.count - n + before + 1
            self._c.last = None

    def _last(self) -> tuple[int, int, int] | None:
        """(address, size, count) of the block counted last, if one is."""
        last = self._c.last
        if not last:
            return None
        e = last.contents
        return (e.address, e.size, e.n) if e.size else None

    def use_known(self, known) -> None:
        self._known = known
        self._fresh = known is not None

    def _seed(self) -> bool:
        """Put what is known about the text as it is now into the emptied table."""
        self._fresh = False
        seeded = False
        for buf, count in self._known.seed():
            self._lib.vsnap_seed(ctypes.byref(self._c), buf, count)
            seeded = True
        return seeded

    def code_changed(self) -> None:
        """Executable memory changed under the engine: forget every block."""
        self._lib.vsnap_forget(ctypes.byref(self._c))
        if self._known is not None:
            self._known.invalidate()
            self._fresh = True

    def tail_pending(self) -> bool:
        """The last run stopped before a block that would cross the limit, short of it."""
        c = self._c
        return c.held.size != 0 and c.count < c.limit

    def tail(self) -> tuple[int, int]:
        """Arm the per-instruction hook on just the held block; return its range."""
        c = self._c
        start, end = c.held.address, c.held.address + c.held.size
        self._uc.ctl_remove_cache(start, end)  # retranslate it with the instruction hook
        self._tail_hook = self._add(U.UC_HOOK_CODE, self._lib.vsnap_insn, start, end - 1)
        c.mode = 1
        c.held.size = 0
        return start, end

    def end_tail(self, span: tuple[int, int]) -> None:
        c = self._c
        c.mode = 0
        if self._tail_hook is not None:
            self._del(self._tail_hook)
            self._tail_hook = None
            self._uc.ctl_remove_cache(*span)  # and back to full speed there

    def fault(self, rip: int, trap: bool = False) -> None:
        """The instruction at rip did not complete (a fault) or completed as a trap (rip is
        after it): the count is the instructions before it."""
        c = self._c
        if c.mode:  # the tail counts each instruction as it starts
            c.count -= 1
            return
        last = self._last()
        if last and last[0] <= rip <= last[0] + last[1]:
            start = last[0]
            before = count_code(bytes(self._uc.mem_read(start, rip - start)), start)
            c.count = c.count - last[2] + before - (1 if trap else 0)
            c.last = None

    def cut(self, next_rip: int) -> None:
        """A hook moved rip to next_rip inside the current block (rdtsc is served by a hook
        that skips the instruction): the rest of the block does not run from here."""
        c = self._c
        if c.mode:
            return
        last = self._last()
        if last and last[0] < next_rip <= last[0] + last[1]:
            start = last[0]
            done = count_code(bytes(self._uc.mem_read(start, next_rip - start)), start)
            c.count = c.count - last[2] + done
            c.last = None


def make_counter(uc, cacheable: Callable[[int, int], bool], known=None):
    """The block counter, or the reference with VSNAP_COUNTER=insn; a one-line error when
    the C hooks cannot be built (zig is part of vsnap's toolchain)."""
    lib = _load_native()
    if lib is None:
        from .errors import GuestStopped
        raise GuestStopped(f"vsnap: cannot build the instruction counter ({_native_error}); "
                           f"counting needs zig (python -m pip install ziglang)", 2)
    if os.environ.get("VSNAP_COUNTER") == "insn":
        return InsnCounter(uc, lib)
    return BlockCounter(uc, lib, cacheable, known)
