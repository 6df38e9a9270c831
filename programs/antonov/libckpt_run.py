"""Running a libckpt program under vsnap for the grader: the ELF symbols it needs, a run
that watches the system calls (where the save handler starts, and the state where the
restored handler returns), a SIGUSR1 sent from outside, and the oracle: vsnap's own image of
the process at the instant the handler starts.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from vsnap.errors import VsnapError
from vsnap.kernel import Capture
from vsnap.machine import Machine
from vsnap.testing import Guest, fresh_root

NR_RT_SIGRETURN = 15
SIGUSR1_BIT = 1 << (10 - 1)
# the registers of the interrupted code, in the order of the signal frame's sigcontext
FRAME_REGS = "r8 r9 r10 r11 r12 r13 r14 r15 rdi rsi rbp rbx rdx rax rcx rsp rip".split()


class Symbols:
    def __init__(self, path: str):
        from elftools.elf.elffile import ELFFile
        with open(path, "rb") as f:
            elf = ELFFile(f)
            self.by_name, self.objects, self.funcs = {}, [], []
            for s in elf.get_section_by_name(".symtab").iter_symbols():
                kind = s["st_info"]["type"]
                self.by_name.setdefault(s.name, s["st_value"])
                if s["st_value"] and kind == "STT_OBJECT":
                    self.objects.append((s["st_value"], max(s["st_size"], 1), s.name))
                elif s["st_value"] and kind == "STT_FUNC":
                    self.funcs.append((s["st_value"], s.name))
            self.funcs.sort()
            lo = relro_end = 0
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_LOAD" and seg["p_flags"] & 2 and not lo:
                    lo = seg["p_vaddr"]
                if seg["p_type"] == "PT_GNU_RELRO":
                    relro_end = seg["p_vaddr"] + seg["p_memsz"]
            self.data_lo = relro_end if lo < relro_end <= self.by_name["end"] else lo

    def object_at(self, addr):
        return next((n for a, size, n in self.objects if a <= addr < a + size), None)

    def function_at(self, addr):
        below = [(a, n) for a, n in self.funcs if a <= addr]
        return f"{below[-1][1]}+{addr - below[-1][0]:#x}" if below else f"{addr:#x}"


# ------------------------------------------------------------------------------------------
# running under vsnap, watching the system calls

@dataclass
class Run:
    out: bytes
    err: bytes
    status: int
    message: str | None
    rip: int
    handler_at: int | None = None   # instructions when the save handler started
    at_return: dict | None = None   # the state where the restored handler returned


def state(m: Machine, ranges, in_syscall=False) -> dict:
    """What the grader compares: registers, memory ranges, the brk, the open files."""
    regs = {r: m.cpu.read(r) for r in FRAME_REGS}
    if in_syscall:  # in the syscall hook rip is 2 short: the CPU adds the instruction's length
        regs["rip"] += 2
    mem = {}
    for lo, hi in ranges:
        try:
            mem[lo] = m.mem.read(lo, hi - lo)
        except Exception:
            mem[lo] = None
    fds = {}
    for fd, e in m.process.fds.fds.items():
        f = e.file
        fds[fd] = (f.kind, f.path, f.flags, f.offset, e.cloexec)
    return {"regs": regs, "mem": mem, "brk": m.mem.brk, "fds": fds}


def kick(m: Machine) -> bool:
    """Send SIGUSR1 to the guest from outside, as `kill -USR1 PID` would; True when it can be
    delivered at once (not blocked): then the handler starts before the next instruction."""
    from vsnap.kernel.signal import send
    from vsnap.signals import SigInfo
    send(m.system, m.process, SigInfo(10, 0, pid=1))
    return m.process.signals.deliverable()


def run(prog: str, args, root: Path, handler: int, *, watch_return=None, budget=None,
        kick_at=None) -> Run:
    """One run in `root`; notes when `handler` starts (after a system call: the signal is
    delivered on its way out), and with watch_return=ranges, the state after the first
    rt_sigreturn. kick_at: send SIGUSR1 from outside at that instruction."""
    cap = Capture()
    m = Machine(prog, args, root=str(root), cwd=str(root), console=cap.console)
    seen = {"handler": None, "return": None}
    dispatch = m.process.dispatch

    sigs = m.process.signals

    def spy():
        nr, n = m.cpu.read("rax"), m.cpu.instructions
        waiting = sigs.pending_mask & SIGUSR1_BIT
        dispatch()
        # SIGUSR1 was pending and this call's way out delivered it (the kernel blocks it
        # while its handler runs): the handler's first instruction comes right after n
        if (seen["handler"] is None and waiting and not sigs.pending_mask & SIGUSR1_BIT
                and sigs.blocked & SIGUSR1_BIT):
            seen["handler"] = n
        if watch_return is not None and nr == NR_RT_SIGRETURN and seen["return"] is None:
            seen["return"] = state(m, watch_return, in_syscall=True)

    m.cpu.on_syscall(spy)
    try:
        if kick_at is not None and m.advance(kick_at) is None and kick(m):
            seen["handler"] = kick_at
        result = m.run(max_instructions=budget)
        status, message = result.status, result.message
    except VsnapError as e:
        status, message = 1, str(e)
    rip = m.cpu.read("rip")
    m.close()
    return Run(bytes(cap.out), bytes(cap.err), status, message, rip, seen["handler"],
               seen["return"])


def oracle(prog: str, guest: Guest, args, at: int, handler: int, base: Path,
           ranges_of, kick_at=None) -> dict:
    """vsnap's own image of the process at instruction `at`, where the handler starts (the
    signal sent from outside at kick_at, if given), restored into a fresh machine and read
    there."""
    from vsnap.kernel.sigframe import deliver
    from vsnap.snapshot import image_bytes
    from vsnap.snapshot.restore import restore_bytes
    cap = Capture()
    root = fresh_root(guest, base)
    m = Machine(prog, args, root=str(root), cwd=str(root), console=cap.console)
    if kick_at is not None:
        m.advance(kick_at)
        if kick(m) and at == kick_at:
            deliver(m.process, in_syscall=False)  # as the run loop does before the next one
    if m.advance(at) is not None or m.cpu.read("rip") != handler:
        raise RuntimeError(f"the oracle run is not at the handler at instruction {at}")
    data = image_bytes(m)
    m.close()
    o, _ = restore_bytes(data, console=Capture().console, where="the oracle image")
    rsp = o.cpu.read("rsp")
    top = max(v.end for v in o.mem.vmas if v.kind == "stack")
    frame = o.mem.read(rsp + 48, 8 * len(FRAME_REGS))
    st = state(o, ranges_of(rsp, top, o.mem.brk))
    st.update(rsp=rsp, top=top, frame=dict(zip(FRAME_REGS, struct.unpack(
        f"<{len(FRAME_REGS)}Q", frame))))
    o.close()
    return st
