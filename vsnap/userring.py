"""Why `cli`, `rdmsr` or `mov %cr0` ran as if allowed, and how the guest runs in ring 3 now.

Unicorn runs its x86 CPU at privilege level 0, so every privileged instruction a user program
may try (cli, sti, hlt, rdmsr, wrmsr, wbinvd, invd, swapgs, clts, lgdt, lidt, invlpg, mov to or
from a control or debug register, ltr, lldt, lmsw) ran, silently; Linux answers each with a
general-protection fault (SIGSEGV, si_code SI_KERNEL, no address). QEMU's translator decides
each of those from the current privilege level it keeps in CPUX86State.hflags (bits 0-1,
HF_CPL_MASK; target/i386/translate.c reads it into the block's flags and checks `cpl != 0`,
raising #GP, vector 13, which cpu.py's interrupt hook turns into that signal).

Unicorn has no API to set it: in 64-bit mode a write of CS or SS changes only the selector
(target/i386/unicorn.c, reg_write UC_MODE_64), and x86_update_hflags, which would take the level
from SS's descriptor, has no caller. So vsnap sets the two bits in the engine's saved context
(uc_context_save copies CPUX86State up to end_reset_fields, hflags with it) and restores it,
once for each new engine (Cpu.__init__: a restored machine is a new engine, so it comes back
in ring 3 as well). Nothing brings the engine back to ring 0 later: an exception is handed to
vsnap's interrupt hook, never delivered through the IDT (cpu-exec.c), the syscall hook replaces
the instruction, and every instruction that loads SS or CS (mov to ss, iretq, far
jmp/call/ret, sysexit) raises #GP in ring 3 with the engine's empty GDT, measured in a scratch
engine (pop ss and sysret are #UD: 64-bit mode, EFER.SCE clear). Nothing else changes for a user program: the memory accesses go to another of
QEMU's TLBs (MMU_USER_IDX), filled by the same TLB-fill hook, which sees no user/supervisor
bits (UC_TLB_VIRTUAL: there are no page tables), and popf can no longer change IOPL or IF, as
on Linux.

Where hflags is, is found once by experiment in a scratch engine, as doublefault.py finds its
field: the one 32-bit field of the context that moves by exactly HF_TS (bit 11) when CR0.TS is
set and by HF_MP (bit 9) when CR0.MP is set (cpu_x86_update_cr0 copies both into hflags); then
the experiment checks the result: in ring 3 `nop` runs and `cli` raises vector 13.
Where that fails (another Unicorn), the guest runs in ring 0 as before and cpu.py's hlt check
is all there is; `ring3_error()` says why.

What ring 3 does not fix: Unicorn's translator skips the I/O permission check for in/out/ins/
outs altogether ("Unicorn: allow all I/O instructions", gen_check_io), and its IN/OUT hooks run
in the middle of a translated block, whose later instructions would still run before any stop
(break_translation_loop only asks the CPU to exit at the next block: in a scratch engine,
`out $0x80, %al; mov $1, %eax; inc %rbx; syscall` stopped from the OUT hook still left rbx
incremented, though no syscall hook ran). cpu.py therefore stops the run with a message at the
first port I/O instead of faulting it (README.md).
"""
from __future__ import annotations

import ctypes

import unicorn as U
from unicorn import x86_const as X

HF_CPL_MASK = 3
_HF_TS, _HF_MP = 1 << 11, 1 << 9
_CR0_TS, _CR0_MP = 1 << 3, 1 << 1

_offset: int | None = None
_error: str | None = None


def _context_bytes(uc) -> bytes:
    ctx = uc.context_save()
    return ctypes.string_at(ctx.context, ctx.size)


def _moved_by(uc, cr0_bit: int, hf_bit: int) -> set[int]:
    """Offsets of the 32-bit fields that gain exactly hf_bit when cr0_bit is set in CR0."""
    cr0 = uc.reg_read(X.UC_X86_REG_CR0)
    before = _context_bytes(uc)
    uc.reg_write(X.UC_X86_REG_CR0, cr0 | cr0_bit)
    after = _context_bytes(uc)
    uc.reg_write(X.UC_X86_REG_CR0, cr0)
    found = set()
    for i in range(0, len(before) - 3, 4):
        a = int.from_bytes(before[i:i + 4], "little")
        b = int.from_bytes(after[i:i + 4], "little")
        if a != b and b == a | hf_bit and not a & hf_bit:
            found.add(i)
    return found


def _set_cpl(uc, offset: int, cpl: int) -> None:
    ctx = uc.context_save()
    field = ctypes.c_uint32.from_address(ctx.context.value + offset)
    field.value = (field.value & ~HF_CPL_MASK) | cpl
    uc.context_restore(ctx)


def _vector_of(uc, code: str) -> int | None:
    """The vector `code` raises in this scratch engine, None if it runs to its end."""
    uc.mem_write(0x1000, bytes.fromhex(code) + b"\x90")
    seen: list[int] = []
    hook = uc.hook_add(U.UC_HOOK_INTR, lambda uc, vector, _ud: (seen.append(vector),
                                                                 uc.emu_stop()))
    try:
        uc.emu_start(0x1000, 0x1000 + len(code) // 2)
    finally:
        uc.hook_del(hook)
    return seen[0] if seen else None


def _find_offset() -> int | None:
    global _offset, _error
    if _offset is not None or _error is not None:
        return _offset
    uc = U.Uc(U.UC_ARCH_X86, U.UC_MODE_64)  # one scratch engine: about 4 ms, once
    found = _moved_by(uc, _CR0_TS, _HF_TS) & _moved_by(uc, _CR0_MP, _HF_MP)
    if len(found) != 1:
        _error = (f"this Unicorn ({U.__version__}) keeps the CPU's privilege level where vsnap "
                  f"cannot find it ({len(found)} candidates)")
        return None
    offset = found.pop()
    uc.mem_map(0x1000, 0x1000)
    uc.reg_write(X.UC_X86_REG_RFLAGS, 0x202)  # as Linux starts a process: IOPL 0
    _set_cpl(uc, offset, 3)
    try:  # nop first: after a #GP this engine would make the next one a double fault
        checks = {"nop": _vector_of(uc, "90"), "cli": _vector_of(uc, "fa")}
    except U.UcError as e:
        checks = {"engine": str(e)}
    if checks != {"nop": None, "cli": 13}:
        _error = (f"this Unicorn ({U.__version__}) did not fault a privileged instruction in "
                  f"ring 3 as expected ({checks})")
        return None
    _offset = offset
    return _offset


def enter_ring3(uc) -> bool:
    """Run this engine's guest at privilege level 3 from now on (a user process). False
    where the level could not be found (ring3_error says why): the guest stays in ring 0."""
    offset = _find_offset()
    if offset is None:
        return False
    _set_cpl(uc, offset, 3)
    return True


def ring3_error() -> str | None:
    """Why the guest runs in ring 0, or None if it runs in ring 3."""
    _find_offset()
    return _error
