"""The exact address a faulting instruction touched, for si_addr.

Unicorn's TLB-fill hook (cpu.py) says only which page an access was refused on. Linux reports
the first byte the access could not reach; this decodes the instruction (capstone) and works
out its memory operands' addresses from the registers: base + index * scale + displacement
(+ the fs or gs base), or the implicit ones (push and call store below rsp, the string
instructions use rsi and rdi). The result is the operand address inside the refused page, or
the page's first byte when the operand starts before it. When nothing matches, the page.
"""
from __future__ import annotations

from typing import Callable

PAGE = 0x1000
MASK64 = (1 << 64) - 1

_cs = None


def _capstone():
    global _cs
    if _cs is None:
        import capstone
        _cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        _cs.detail = True
    return _cs


def fault_address(code: bytes, rip: int, page: int, reg: Callable[[str], int]) -> int:
    """`code`: bytes at rip; `page`: the refused page; `reg(name)`: a register's value
    (KeyError for one it does not know, such as a 32-bit name: then the page)."""
    try:
        return _exact(code, rip, page, reg)
    except (StopIteration, KeyError):
        return page


def _exact(code: bytes, rip: int, page: int, reg) -> int:
    from capstone import x86
    insn = next(_capstone().disasm(code, rip, 1))
    candidates = []
    for op in insn.operands:
        if op.type != x86.X86_OP_MEM:
            continue
        m = op.mem
        ea = m.disp
        if m.base:
            name = insn.reg_name(m.base)
            ea += insn.address + insn.size if name == "rip" else reg(name)
        if m.index:
            ea += reg(insn.reg_name(m.index)) * m.scale
        if m.segment:
            seg = insn.reg_name(m.segment)
            if seg in ("fs", "gs"):
                ea += reg(seg + "_base")
        candidates.append((ea & MASK64, op.size or 1))
    rsp = reg("rsp")
    if insn.mnemonic.startswith(("push", "call")):
        candidates.append(((rsp - 8) & MASK64, 8))
    if insn.mnemonic.startswith(("pop", "ret", "leave")):
        candidates.append((rsp, 8))
    if any(s in insn.mnemonic for s in ("movs", "stos", "cmps", "scas", "lods")):
        candidates += [(reg("rdi"), 1), (reg("rsi"), 1)]
    for ea, size in candidates:
        if ea < page + PAGE and ea + size > page:
            return max(ea, page)
    return page
