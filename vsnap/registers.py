"""x86-64 registers by their Linux names, and moving many of them with one call into Unicorn's
C API (the CPU layer: cpu.py uses it for checkpoints, restores and signal frames)."""
from __future__ import annotations

import ctypes
import struct
import threading

import unicorn as U
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib as _uclib

# General-purpose registers in the order of Linux's struct user_regs_struct (minus the
# segment selectors), the order an ELF core's NT_PRSTATUS and vsnap's images use.
GPRS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
        "rax", "rcx", "rdx", "rsi", "rdi", "rip", "rsp", "rflags")
SYSCALL_ARGS = ("rax", "rdi", "rsi", "rdx", "r10", "r8", "r9")

_IDS = {name: getattr(X, "UC_X86_REG_" + name.upper()) for name in GPRS if name != "rflags"}
_IDS.update(rflags=X.UC_X86_REG_EFLAGS, fs_base=X.UC_X86_REG_FS_BASE,
            gs_base=X.UC_X86_REG_GS_BASE, mxcsr=X.UC_X86_REG_MXCSR,
            fpcw=X.UC_X86_REG_FPCW, fpsw=X.UC_X86_REG_FPSW, fptag=X.UC_X86_REG_FPTAG)
_IDS.update({f"xmm{i}": getattr(X, f"UC_X86_REG_XMM{i}") for i in range(16)})
# the x87 registers by physical number (R0-R7): with fpsw's TOP and fptag they are the whole
# x87 stack, each 80 bits (a 64-bit mantissa and a 16-bit sign+exponent)
_IDS.update({f"fp{i}": getattr(X, f"UC_X86_REG_FP{i}") for i in range(8)})
REGISTERS = tuple(_IDS)  # every register a checkpoint saves, by name
_WIDE = {n for n in _IDS if n.startswith(("fp", "xmm")) and n[-1].isdigit()}  # over 64 bits


class _RegisterFile:
    """Every register in REGISTERS read or written with one call into Unicorn's C API.

    The binding's batch calls build a ctypes object per register (a register class chosen
    per call: 100 to 200 us for the 46 registers, against about 10 us here); a checkpoint,
    a restore and each signal frame move all of them. Here each register has a 16-byte slot in one buffer (wide enough
    for an xmm register and for x87's 80-bit uc_x86_float80: mantissa, then the 16-bit sign
    and exponent), zeroed before a read, as the binding's fresh objects are, so a register
    narrower than its slot reads as the binding reads it."""

    SLOT = 16

    def __init__(self, names):
        self.names = tuple(names)
        n = len(self.names)
        self.ids = (ctypes.c_int * n)(*(_IDS[r] for r in self.names))
        self.buf = ctypes.create_string_buffer(n * self.SLOT)
        base = ctypes.addressof(self.buf)
        self.ptrs = (ctypes.c_void_p * n)(*(base + self.SLOT * i for i in range(n)))
        self.unpack = struct.Struct("<" + "QQ" * n).unpack_from
        self.pack = struct.Struct("<" + "QQ" * n).pack_into
        # which slots hold more than 64 bits (x87's sign and exponent, an xmm's high half)
        self.wide = tuple(i for i, r in enumerate(self.names) if r.startswith(("fp", "xmm"))
                          and r[-1].isdigit())

    def read(self, uch) -> dict:
        ctypes.memset(self.buf, 0, len(self.buf))
        err = _uclib.uc_reg_read_batch(uch, self.ids, self.ptrs, len(self.names))
        if err:
            raise U.UcError(err)
        q = self.unpack(self.buf)
        values = list(q[0::2])
        for i in self.wide:
            values[i] |= q[2 * i + 1] << 64
        return dict(zip(self.names, values))

    def write(self, uch, regs: dict) -> None:
        """Write them (regs has every name), each value wrapped to its slot, as ctypes
        wraps a value in the binding."""
        q = []
        mask, wide = (1 << 64) - 1, (1 << 128) - 1
        for r in self.names:
            v = regs[r] & wide
            q += (v & mask, v >> 64)
        self.pack(self.buf, 0, *q)
        err = _uclib.uc_reg_write_batch(uch, self.ids, self.ptrs, len(self.names))
        if err:
            raise U.UcError(err)


_REGISTER_FILES = threading.local()


def register_file(names: tuple) -> _RegisterFile:
    """The buffers for moving these registers: kept per thread (the same few sets recur
    in every machine, and a buffer is used by one call at a time)."""
    files = getattr(_REGISTER_FILES, "files", None)
    if files is None:
        files = _REGISTER_FILES.files = {}
    f = files.get(names)
    if f is None:
        if len(files) > 32:
            files.clear()
        f = files[names] = _RegisterFile(names)
    return f
