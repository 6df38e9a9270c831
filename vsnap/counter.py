"""Counting instructions exactly, for --stats, budgets, --save-at and every property test.

Two ways, one interface (count, arm(limit), fault()):

* NativeCounter: a five-line C code hook (compiled once with `zig cc`, which vsnap depends on
  anyway, and cached) counts each instruction and stops the engine when the count reaches the
  limit, before the next instruction runs. About 75 M instructions/s, and exact everywhere.
* BlockCounter: the fallback where no C compiler works: a Python block hook adds each block's
  instruction count (decoded once with capstone). About 30 M/s; it stops only at block
  boundaries, so exact stops use Unicorn's own count= on top.

Only the CPU layer uses this module (it is part of cpu.py's job, in a file of its own).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

import unicorn as U
from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib

NEVER = (1 << 64) - 1

_C_SOURCE = b"""
#include <stdint.h>
struct counter { uint64_t count; uint64_t limit; int (*stop)(void *uc); };
void vsnap_count(void *uc, uint64_t address, uint32_t size, struct counter *c)
{
    (void)address; (void)size;
    if (c->count >= c->limit) { c->stop(uc); return; }   /* before this one runs */
    c->count++;
}
"""


class _Struct(ctypes.Structure):
    _fields_ = [("count", ctypes.c_uint64), ("limit", ctypes.c_uint64),
                ("stop", ctypes.c_void_p)]


_native_lib = None
_native_error: str | None = None


def _load_native():
    """The compiled hook, built on first use into vsnap's cache; None if that fails."""
    global _native_lib, _native_error
    if _native_lib is not None or _native_error is not None:
        return _native_lib
    if os.environ.get("VSNAP_NO_NATIVE_COUNTER"):
        _native_error = "disabled by VSNAP_NO_NATIVE_COUNTER"
        return None
    from .build import cache_dir, zig_command
    key = hashlib.sha256(_C_SOURCE + sys.platform.encode()).hexdigest()[:16]
    path = os.path.join(os.path.dirname(cache_dir()), f"count-{key}.so")
    try:
        if not os.path.exists(path):
            with tempfile.TemporaryDirectory() as d:
                src = os.path.join(d, "count.c")
                with open(src, "wb") as f:
                    f.write(_C_SOURCE)
                tmp = os.path.join(d, "count.so")
                subprocess.run([*zig_command(), "cc", "-shared", "-O2", "-nostdlib", "-fPIC",
                                "-o", tmp, src], check=True, capture_output=True, timeout=300)
                _move(tmp, path)
        _native_lib = ctypes.CDLL(path)
    except (OSError, subprocess.SubprocessError) as e:
        _native_error = str(e)
        return None
    return _native_lib


def _move(src: str, dst: str) -> None:
    """Into the cache atomically (the temporary folder may be another file system)."""
    tmp = dst + f".{os.getpid()}.tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


class NativeCounter:
    exact_stops = True

    def __init__(self, uc, lib):
        self._uc = uc
        self._c = _Struct(0, NEVER, ctypes.cast(uclib.uc_emu_stop, ctypes.c_void_p).value)
        self._handle = uc_hook_h()
        fn = ctypes.cast(lib.vsnap_count, ctypes.c_void_p)
        err = uclib.uc_hook_add(uc._uch, ctypes.byref(self._handle), U.UC_HOOK_CODE, fn,
                                ctypes.cast(ctypes.pointer(self._c), ctypes.c_void_p),
                                ctypes.c_uint64(1), ctypes.c_uint64(0))
        if err:
            raise U.UcError(err)

    @property
    def count(self) -> int:
        return self._c.count

    @count.setter
    def count(self, n: int) -> None:
        self._c.count = n

    def arm(self, limit: int | None) -> None:
        self._c.limit = NEVER if limit is None else limit

    def fault(self, rip: int) -> None:
        self._c.count -= 1  # counted before it ran; it did not complete

    def close(self) -> None:
        uclib.uc_hook_del(self._uc._uch, self._handle)


class BlockCounter:
    exact_stops = False
    _lengths: dict[bytes, int] = {}  # instructions in a block, by its bytes, for every machine

    def __init__(self, uc):
        from .trace import instruction_count
        self._uc, self.count, self.limit, self._last = uc, 0, None, (0, 0)
        self.hit_limit = False
        sizes: dict[tuple[int, int], int] = {}
        known = self._lengths

        def on_block(uc, address, size, _ud):
            key = (address, size)
            n = sizes.get(key)
            if n is None:
                code = bytes(uc.mem_read(address, size))
                n = known.get(code)
                if n is None:
                    n = known[code] = instruction_count(code, address)
                sizes[key] = n
            if self.limit is not None and self.count + n > self.limit:
                self.hit_limit = True  # stop before this block: it is not counted
                uc.emu_stop()
                return
            self.count += n
            self._last = key

        self._hook = uc.hook_add(U.UC_HOOK_BLOCK, on_block)

    def arm(self, limit: int | None) -> None:
        self.limit, self.hit_limit = limit, False

    def fault(self, rip: int) -> None:
        """Take back the instructions of the faulting block at and after rip."""
        from .trace import instruction_count
        start, size = self._last
        if start <= rip < start + size:
            code = bytes(self._uc.mem_read(rip, start + size - rip))
            self.count -= instruction_count(code, rip)

    def close(self) -> None:
        self._uc.hook_del(self._hook)


def make_counter(uc):
    lib = _load_native()
    return NativeCounter(uc, lib) if lib is not None else BlockCounter(uc)
