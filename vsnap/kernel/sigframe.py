"""Signal delivery with a real x86-64 Linux rt_sigframe, and rt_sigreturn.

The frame is what Linux's __setup_rt_frame builds, byte for byte in layout, so libc's
restorer (which just calls rt_sigreturn) works and a handler with SA_SIGINFO can read and change
the saved registers through uc_mcontext:

    rsp ->  pretcode (sa_restorer: where the handler returns)
            struct ucontext { uc_flags, uc_link, uc_stack, uc_mcontext (struct sigcontext,
                              256 bytes), uc_sigmask }
            struct siginfo (128 bytes)
    ...     512-byte FXSAVE area, 64-byte aligned, pointed to by uc_mcontext.fpstate

Inside a syscall hook rip points at the `syscall` instruction and Unicorn adds 2 when the hook
returns; `in_syscall` accounts for that in both directions.
"""
from __future__ import annotations

import struct

from .. import signals as S
from ..abi import errno as E
from ..abi import syscalls
from ..errors import KilledBySignal, StoppedBySignal, SyscallError

FRAME_SIZE = 8 + 304 + 128
FPSTATE_SIZE = 512
UC_OFF, MCONTEXT_OFF, SIGMASK_OFF, INFO_OFF = 8, 48, 304, 312
FIX_EFLAGS = 0x50DD5
_SIGCONTEXT_GPRS = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp",
                    "rbx", "rdx", "rax", "rcx", "rsp", "rip", "rflags")
_CSGSFS = 0x33 | (0x2B << 48)
TRAPNO = {11: 14, 7: 14, 4: 6, 8: 0, 5: 1}


def pack_siginfo(info: S.SigInfo) -> bytes:
    head = struct.pack("<iiii", info.signo, info.errno, info.code, 0)
    if info.code > 0 and info.signo in (4, 7, 8, 11):
        body = struct.pack("<Q", info.addr)
    elif info.code == S.SI_TIMER:
        body = struct.pack("<iiQ", info.timerid, info.overrun, info.value)
    elif info.signo == S.SIGCHLD and info.code > 0:  # a child's news: pid, uid, status
        body = struct.pack("<iIi4xqq", info.pid, info.uid, info.value, 0, 0)
    else:
        body = struct.pack("<iI", info.pid, info.uid)
    return (head + body).ljust(128, b"\0")


def _fxsave(regs: dict) -> bytes:
    fsw = regs["fpsw"]
    top = (fsw >> 11) & 7
    tag = regs["fptag"]
    abridged = sum(1 << i for i in range(8) if (tag >> (2 * i)) & 3 != 3)
    out = struct.pack("<HHBxHQQII", regs["fpcw"], fsw, abridged, 0, 0, 0, regs["mxcsr"],
                      0xFFFF)
    for i in range(8):  # FXSAVE stores ST(i), the stack order: physical R[(TOP+i) % 8]
        out += (regs[f"fp{(top + i) % 8}"] & ((1 << 80) - 1)).to_bytes(16, "little")
    for i in range(16):
        out += regs[f"xmm{i}"].to_bytes(16, "little")
    return out.ljust(FPSTATE_SIZE, b"\0")


def _fxrstor(data: bytes) -> dict:
    fcw, fsw, abridged, _, _, _, mxcsr, _ = struct.unpack_from("<HHBxHQQII", data)
    top = (fsw >> 11) & 7
    regs = {"fpcw": fcw, "fpsw": fsw, "mxcsr": mxcsr & 0xFFFF,
            "fptag": sum((0 if abridged >> i & 1 else 3) << (2 * i) for i in range(8))}
    for i in range(8):
        regs[f"fp{(top + i) % 8}"] = int.from_bytes(data[32 + 16 * i:32 + 16 * i + 10], "little")
    for i in range(16):
        regs[f"xmm{i}"] = int.from_bytes(data[160 + 16 * i:176 + 16 * i], "little")
    return regs


# calls that Linux restarts after a handler with SA_RESTART (ERESTARTSYS); pause, sigsuspend
# and the sleeps are never restarted
RESTARTABLE = {syscalls.NUMBERS[n] for n in
               ("read", "write", "ioctl", "pread64", "pwrite64", "readv", "writev")}
# calls restarted only when no handler runs (ERESTARTNOHAND: poll, select...); the modules
# that define them add their numbers
RESTART_NOHAND: set[int] = set()


def _restartable(p, in_syscall: bool, handler: bool = True) -> bool:
    nr, result = p.last_call
    return in_syscall and result == -E.EINTR and (
        nr in RESTARTABLE or (not handler and nr in RESTART_NOHAND))


def deliver(p, in_syscall: bool) -> None:
    """Deliver every deliverable pending signal: run default actions, or build a frame for
    each handled one (the last one built runs first, as on Linux)."""
    sig = p.signals
    framed = False
    while True:
        info = sig.take()
        if info is not None and info.code == S.SI_TIMER:
            p.timers.delivered(info)  # timer_getoverrun now answers this one's overrun
        if info is None:
            if not framed and sig.saved_blocked is not None:
                # sigsuspend's or ppoll's mask, and no handler ran to save the old one
                sig.set_blocked(sig.saved_blocked)
                sig.saved_blocked = None
            if not framed and _restartable(p, in_syscall, handler=False):
                # every signal was ignored: the interrupted call starts again, unseen
                p.cpu.write_many({"rax": p.last_call[0], "rip": p.cpu.read("rip") - 2})
                p.last_call = (0, 0)
            return
        act = sig.action(info.signo)
        if act.handler == S.SIG_DFL:
            what = S.default_action(info.signo)
            if what in ("ckpt", "ckptexit"):  # DragonFly's: save to the template (ckpt.py)
                from .ckpt import on_signal
                on_signal(p, info.signo, in_syscall)
                if what == "ckpt":
                    continue
                raise KilledBySignal(info.signo, info)
            if what in ("term", "core"):
                raise KilledBySignal(info.signo, info)
            if what == "stop":
                raise StoppedBySignal(info.signo)
            continue  # ignore, cont
        if act.handler == S.SIG_IGN:
            continue
        _setup_frame(p, info, act, in_syscall, restart=not framed)
        framed = True


def _setup_frame(p, info: S.SigInfo, act: S.Action, in_syscall: bool,
                 restart: bool = False) -> None:
    sig = p.signals
    regs = p.cpu.snapshot_registers()
    rip_bias = 2 if in_syscall else 0
    regs["rip"] += rip_bias
    if restart and _restartable(p, in_syscall) and act.flags & S.SA_RESTART:
        # the handler returns to the syscall instruction itself, with its number in rax
        regs["rip"] -= 2
        regs["rax"] = p.last_call[0]
        p.last_call = (0, 0)
    sp = regs["rsp"]
    use_alt = (act.flags & S.SA_ONSTACK and not sig.altstack_flags & S.SS_DISABLE
               and not sig.on_altstack(sp))
    sp = sig.altstack_sp + sig.altstack_size if use_alt else sp - 128  # skip the red zone
    fp = (sp - FPSTATE_SIZE) & ~63
    frame = ((fp - FRAME_SIZE) & ~15) - 8
    old_mask = sig.saved_blocked if sig.saved_blocked is not None else sig.blocked
    sig.saved_blocked = None
    on_alt = sig.on_altstack(regs["rsp"])
    ss_flags = S.SS_DISABLE if sig.altstack_flags & S.SS_DISABLE else (
        S.SS_ONSTACK if on_alt else 0)
    mcontext = struct.pack("<18Q", *(regs[n] & (2**64 - 1) for n in _SIGCONTEXT_GPRS))
    mcontext += struct.pack("<QQQQQQ", _CSGSFS, 4 if info.signo == 11 else 0,
                            TRAPNO.get(info.signo, 0), old_mask,
                            info.addr if info.signo == 11 else 0, fp)
    mcontext = mcontext.ljust(256, b"\0")
    ucontext = struct.pack("<QQQiiQ", 6, 0, sig.altstack_sp, ss_flags, 0, sig.altstack_size)
    ucontext += mcontext + struct.pack("<Q", old_mask)
    blob = struct.pack("<Q", act.restorer if act.flags & S.SA_RESTORER else 0) + ucontext
    # Linux fills the siginfo only for SA_SIGINFO handlers: for the others those 128 bytes
    # keep whatever the stack held
    if act.flags & S.SA_SIGINFO:
        blob += pack_siginfo(info)
    try:
        p.write(fp, _fxsave(regs))
        p.write(frame, blob)
    except SyscallError:
        # no room for the frame (a stack overflow, say): Linux kills with SIGSEGV
        raise KilledBySignal(11, S.SigInfo(11, S.SI_KERNEL)) from None
    mask = old_mask | act.mask
    if not act.flags & S.SA_NODEFER:
        mask |= S.bit(info.signo)
    sig.set_blocked(mask)
    if act.flags & S.SA_RESETHAND:
        sig.actions[info.signo] = S.Action()
    p.cpu.write_many({"rdi": info.signo, "rsi": frame + INFO_OFF, "rdx": frame + UC_OFF,
                      "rax": 0, "rsp": frame, "rip": act.handler - rip_bias,
                      "rflags": regs["rflags"] & ~0x500})  # clear DF and TF, as Linux does


def sigreturn(p) -> int:
    """rt_sigreturn: restore what the frame at rsp-8 saved; returns the saved rax (the
    dispatcher writes it back), and sets rip for Unicorn's +2 after the hook."""
    uc = p.cpu.read("rsp")
    raw = p.read(uc, 304)
    gprs = struct.unpack_from("<18Q", raw, MCONTEXT_OFF - UC_OFF)
    fpstate = struct.unpack_from("<Q", raw, MCONTEXT_OFF - UC_OFF + 8 * 23)[0]
    (mask,) = struct.unpack_from("<Q", raw, SIGMASK_OFF - UC_OFF)
    ss_sp, ss_flags, _, ss_size = struct.unpack_from("<QiiQ", raw, 16)
    regs = dict(zip(_SIGCONTEXT_GPRS, gprs))
    cur_flags = p.cpu.read("rflags")
    regs["rflags"] = (cur_flags & ~FIX_EFLAGS) | (regs["rflags"] & FIX_EFLAGS)
    if fpstate:
        regs.update(_fxrstor(p.read(fpstate, FPSTATE_SIZE)))
    rax = regs.pop("rax")
    regs["rip"] -= 2
    p.cpu.restore_registers(regs)
    p.signals.set_blocked(mask)
    if not ss_flags & S.SS_ONSTACK:  # restore_altstack: only when not running on it
        p.signals.altstack_sp, p.signals.altstack_size = ss_sp, ss_size
        p.signals.altstack_flags = ss_flags & S.SS_DISABLE
    return rax
