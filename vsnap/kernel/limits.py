"""Resource limit system calls (getrlimit, setrlimit, prlimit64) and the checks that enforce
the limits vsnap can enforce: NOFILE (in the fd table), FSIZE (writes and truncates: SIGXFSZ
and EFBIG), AS and DATA (mmap, brk, mremap, mprotect: ENOMEM), CPU (SIGXCPU, then SIGKILL,
on the virtual CPU clock) and STACK (how far the stack may grow). The limits themselves are
a kernel object, rlimits.Limits."""
from __future__ import annotations

import struct

from .. import signals as S
from ..abi import consts as C
from ..abi import errno as E
from ..abi import structs
from ..errors import SyscallError
from ..memory import PAGE, PROT_WRITE
from ..rlimits import INF
from .fsutil import s32
from .registry import syscall

NS = 10**9


def _rlimit(p, ptr: int) -> tuple[int, int]:
    return struct.unpack("<QQ", p.read(ptr, 16))


def apply(p) -> None:
    """Hand the limits that other kernel objects enforce to them (after a change, a restore)."""
    p.fds.limit = min(p.limits.soft(C.RLIMIT_NOFILE), p.fds.ceiling)


@syscall("prlimit64", "int int ptr ptr")
def sys_prlimit64(p, pid, resource, new_limit, old_limit):
    """int prlimit(pid_t pid, int resource, const struct rlimit *new_limit,
    struct rlimit *old_limit);"""
    new = _rlimit(p, new_limit) if new_limit else None  # EFAULT first, as Linux copies it in
    if s32(pid) not in (0, p.task.pid):
        raise SyscallError(E.ESRCH, f"no process {s32(pid)}")
    resource &= 0xFFFFFFFF
    old = p.limits.get(resource)
    if new is not None:
        p.limits.set(resource, *new)
        apply(p)
    if old_limit:
        p.write(old_limit, structs.pack_rlimit(*old))
    return 0


@syscall("getrlimit", "int ptr")
def sys_getrlimit(p, resource, rlim):
    """int getrlimit(int resource, struct rlimit *rlim);"""
    p.write(rlim, structs.pack_rlimit(*p.limits.get(resource & 0xFFFFFFFF)))
    return 0


@syscall("setrlimit", "int ptr")
def sys_setrlimit(p, resource, rlim):
    """int setrlimit(int resource, const struct rlimit *rlim);"""
    return sys_prlimit64(p, 0, resource, rlim, 0)


# FSIZE ---------------------------------------------------------------------------------------
def file_size_limit(p, pos: int, count: int) -> int:
    """How many of `count` bytes written at `pos` fit under RLIMIT_FSIZE (Linux's
    generic_write_check_limits): none at or past the limit is EFBIG, with SIGXFSZ."""
    limit = p.limits.soft(C.RLIMIT_FSIZE)
    if limit == INF or count == 0:
        return count
    if pos >= limit:
        _xfsz(p)
    return min(count, limit - pos)


def check_truncate(p, old_size: int, length: int) -> None:
    """Growing a file past RLIMIT_FSIZE by truncate is EFBIG with SIGXFSZ (inode_newsize_ok)."""
    limit = p.limits.soft(C.RLIMIT_FSIZE)
    if limit != INF and length > old_size and length > limit:
        _xfsz(p)


def _xfsz(p):
    # send_sig(SIGXFSZ, current, 0): SI_USER from the process itself
    p.signals.post(S.SigInfo(25, S.SI_USER, pid=p.task.pid, uid=p.task.uid))
    raise SyscallError(E.EFBIG, "file size limit exceeded")


# AS and DATA ---------------------------------------------------------------------------------
def _is_data(prot: int, kind: str) -> bool:
    """Linux's is_data_mapping: private, writable, not the stack."""
    return bool(prot & PROT_WRITE) and kind != "stack"


def _usage(p, start: int = 0, end: int = 0) -> tuple[int, int]:
    """(total, data) bytes mapped, not counting what lies in [start, end) (being replaced)."""
    total = data = 0
    for v in p.mem.vmas:
        size = v.size - max(0, min(end, v.end) - max(start, v.start))
        total += size
        if _is_data(v.prot, v.kind):
            data += size
    return total, data


def check_expand(p, length: int, prot: int, kind: str = "mmap", start: int = 0) -> None:
    """may_expand_vm: ENOMEM if `length` more bytes at `start` would pass RLIMIT_AS, or
    RLIMIT_DATA for a data mapping. Pages already mapped there are replaced, not added."""
    as_limit, data_limit = p.limits.soft(C.RLIMIT_AS), p.limits.soft(C.RLIMIT_DATA)
    if as_limit == INF and data_limit == INF:
        return
    total, data = _usage(p, start, start + length) if start else _usage(p)
    if total + length > as_limit // PAGE * PAGE:
        raise SyscallError(E.ENOMEM, "over RLIMIT_AS")
    if _is_data(prot, kind) and data + length > data_limit // PAGE * PAGE:
        raise SyscallError(E.ENOMEM, "over RLIMIT_DATA")


def check_brk(p, new_brk: int) -> bool:
    """May the break move to `new_brk`? (check_data_rlimit, then may_expand_vm)"""
    limit = p.limits.soft(C.RLIMIT_DATA)
    data_segment = sum(v.size for v in p.mem.vmas if v.kind in ("data", "bss"))
    if limit != INF and (new_brk - p.mem.brk_start) + data_segment > limit:
        return False
    grow = max(0, _page_up(new_brk) - _page_up(p.mem.brk))
    try:
        check_expand(p, grow, PROT_WRITE, "heap")
    except SyscallError:
        return False
    return True


def check_protect(p, start: int, length: int, prot: int) -> None:
    """mprotect making private pages writable turns them into data: RLIMIT_DATA applies."""
    limit = p.limits.soft(C.RLIMIT_DATA)
    if limit == INF or not prot & PROT_WRITE:
        return
    end = start + length
    turning = sum(max(0, min(end, v.end) - max(start, v.start)) for v in p.mem.vmas
                  if not _is_data(v.prot, v.kind) and v.kind != "stack")
    if turning and _usage(p)[1] + turning > limit // PAGE * PAGE:
        raise SyscallError(E.ENOMEM, "over RLIMIT_DATA")


def _page_up(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


# STACK ---------------------------------------------------------------------------------------
GROW_CHUNK = 64 << 10     # vsnap grows the stack 64 KiB at a time (within the same limits)
GUARD_GAP = 256 * PAGE    # Linux's stack_guard_gap: the stack stays this far from a mapping


def grow_stack(p, addr: int) -> bool:
    """A fault at `addr`, below the stack: grow the stack down over it, as Linux's
    expand_downwards does, if the stack then stays within RLIMIT_STACK and RLIMIT_AS and a
    guard gap away from the mapping below. False: the fault stands (SIGSEGV)."""
    stack = [v for v in p.mem.vmas if v.kind == "stack"]
    if not stack:
        return False
    start, top = min(v.start for v in stack), max(v.end for v in stack)
    want = addr & ~(PAGE - 1)
    if addr >= start or want < PAGE:
        return False
    limit = p.limits.soft(C.RLIMIT_STACK)
    lowest = PAGE if limit == INF or limit >= top else _page_up(top - limit)
    if want < lowest:
        return False
    below = max((v for v in p.mem.vmas if v.end <= start), key=lambda v: v.end, default=None)
    if below is not None and below.prot:
        if want - below.end < GUARD_GAP:
            return False
        lowest = max(lowest, below.end + GUARD_GAP)
    new_start = max(want & ~(GROW_CHUNK - 1), lowest)
    try:
        check_expand(p, start - new_start, stack[0].prot, "stack")
    except SyscallError:
        return False
    p.mem.grow_stack(new_start)
    return True


# CPU -----------------------------------------------------------------------------------------
def check_cpu(p) -> None:
    """RLIMIT_CPU on the virtual CPU clock (check_process_timers): SIGKILL at the hard limit;
    SIGXCPU at the soft one, which then moves up a second, so it comes again each second."""
    soft, hard = p.limits.values[C.RLIMIT_CPU]
    if soft == INF:
        return
    used = p.cpu_ns
    if hard != INF and used >= hard * NS:
        p.signals.post(S.SigInfo(S.SIGKILL, S.SI_KERNEL))
        return
    if used >= soft * NS:
        p.signals.post(S.SigInfo(24, S.SI_KERNEL))
        if soft < hard:
            p.limits.values[C.RLIMIT_CPU] = (soft + 1, hard)
