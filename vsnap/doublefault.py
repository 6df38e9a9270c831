"""Why a guest that catches two divide errors got SIGSEGV, and the third hung vsnap.

QEMU's x86 CPU remembers the exception it is delivering (CPUX86State.old_exception) so that
a second one raised while delivering the first becomes a double fault (#DF, vector 8), and a
third a triple fault, which resets the machine. Delivery ends with old_exception = -1
("successfully delivered"). Unicorn hands exceptions to an interrupt hook instead of
delivering them, so that reset never runs: after one #DE (or #GP, #TS, #NP, #SS), the next
contributory exception of the whole run came out as #DF (vector 8: SIGSEGV), and the one after
that as a triple fault (the engine halts: vsnap hung). Linux delivers each one afresh.

vsnap delivers the exception itself (as a signal), so it also does what the end of delivery
does: old_exception = -1, written into the engine's saved context and restored. Unicorn has no
API for the field; its place in the context is found once, by experiment, in a scratch engine:
the one 32-bit field that goes from -1 to 0 when a #DE is raised. If that experiment does not
find exactly one such field (another Unicorn), vsnap says so instead of guessing.
"""
from __future__ import annotations

import ctypes

import unicorn as U

_offset: int | None = None
_error: str | None = None


def _find_offset() -> int | None:
    global _offset, _error
    if _offset is not None or _error is not None:
        return _offset
    uc = U.Uc(U.UC_ARCH_X86, U.UC_MODE_64)
    uc.mem_map(0x1000, 0x1000)
    uc.mem_write(0x1000, bytes.fromhex("31c9f7f1"))  # xor ecx, ecx; div ecx
    uc.hook_add(U.UC_HOOK_INTR, lambda uc, vector, _ud: uc.emu_stop())
    before = _context_bytes(uc.context_save())
    uc.emu_start(0x1000, 0x2000)
    after = _context_bytes(uc.context_save())
    found = [i for i in range(0, len(before) - 3, 4)
             if before[i:i + 4] == b"\xff\xff\xff\xff" and after[i:i + 4] == b"\0\0\0\0"]
    if len(found) == 1:
        _offset = found[0]
    else:
        _error = (f"vsnap: this Unicorn ({U.__version__}) keeps the CPU's exception state where "
                  f"vsnap cannot find it ({len(found)} candidates); a second divide error or "
                  f"general-protection fault in one run would become a double fault")
    return _offset


def _context_bytes(ctx) -> bytes:
    return ctypes.string_at(ctx.context, ctx.size)


def exception_delivered(uc) -> None:
    """The guest was handed the CPU exception just raised (as a signal): the engine may
    raise the next one afresh, as after a delivery on real hardware. (Where the field could
    not be found this does nothing, and a double fault says why: double_fault_message.)"""
    offset = _find_offset()
    if offset is None:
        return
    ctx = uc.context_save()
    ctypes.memmove(ctx.context.value + offset, b"\xff\xff\xff\xff", 4)
    uc.context_restore(ctx)


def double_fault_message() -> str:
    """What to say when the engine raised a double fault (vector 8), which a user-mode
    program cannot cause on Linux: only a reset that did not happen (above) leads there."""
    _find_offset()
    return _error or "vsnap: the CPU raised a double fault; please report this with the program"
