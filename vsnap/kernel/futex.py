"""futex, for a process with one thread: nobody else can wake a waiter or be woken.

So FUTEX_WAKE wakes no one (0), FUTEX_WAIT on a changed word is EAGAIN, and a wait on an
unchanged word can only end by its timeout (the virtual clock jumps to it: ETIMEDOUT) or by
a signal (EINTR). A wait with no timeout and no timer armed would hang forever on Linux; vsnap
ends the guest instead, saying it deadlocked (see kernel/signal.NothingToWaitFor). glibc calls
futex even in single-threaded programs (FUTEX_WAKE after __libc_once, for example) and
aborts when it fails.
"""
from __future__ import annotations

import struct

from ..abi import errno as E
from ..abi import syscalls
from ..errors import SyscallError
from .fsutil import s32
from .registry import syscall
from .sigframe import RESTART_NOHAND
from .signal import NS, wait_forever
from .time import _now

(WAIT, WAKE, FD, REQUEUE, CMP_REQUEUE, WAKE_OP, LOCK_PI, UNLOCK_PI, TRYLOCK_PI, WAIT_BITSET,
 WAKE_BITSET, WAIT_REQUEUE_PI, CMP_REQUEUE_PI, LOCK_PI2) = range(14)
PRIVATE_FLAG, CLOCK_REALTIME_FLAG = 128, 256
CMD_MASK = ~(PRIVATE_FLAG | CLOCK_REALTIME_FLAG)
PI_OPS = {LOCK_PI: "FUTEX_LOCK_PI", UNLOCK_PI: "FUTEX_UNLOCK_PI", TRYLOCK_PI: "FUTEX_TRYLOCK_PI",
          WAIT_REQUEUE_PI: "FUTEX_WAIT_REQUEUE_PI", CMP_REQUEUE_PI: "FUTEX_CMP_REQUEUE_PI",
          LOCK_PI2: "FUTEX_LOCK_PI2"}

# a wait interrupted by a handler returns EINTR; Linux restarts one without a timeout after
# an SA_RESTART handler (the difference is in README.md; glibc loops on EINTR either way)
RESTART_NOHAND.add(syscalls.NUMBERS["futex"])


def _word(p, addr: int) -> int:
    if addr % 4:
        raise SyscallError(E.EINVAL, "futex word not aligned to 4 bytes")
    return struct.unpack("<I", p.read(addr, 4))[0]


def _wait(p, uaddr: int, val: int, timeout: int, cmd: int, clock: int, bitset: int) -> int:
    end = None
    if timeout:
        sec, nsec = struct.unpack("<qq", p.read(timeout, 16))
        if sec < 0 or not 0 <= nsec < NS:
            raise SyscallError(E.EINVAL, "bad timespec")
        t = sec * NS + nsec
        # FUTEX_WAIT's timeout is relative; FUTEX_WAIT_BITSET's is absolute on its clock
        end = p.remember(p.sys.clock.monotonic_ns + (t if cmd == WAIT else t - _now(p, clock)))
    if cmd == WAIT_BITSET and bitset == 0:
        raise SyscallError(E.EINVAL, "empty bitset")
    if _word(p, uaddr) != val & 0xFFFFFFFF:
        raise SyscallError(E.EAGAIN, "futex word changed")
    if end is not None and end <= p.sys.clock.monotonic_ns:
        raise SyscallError(E.ETIMEDOUT, "timed out")
    woken = wait_forever(p, f"waits on the futex at {uaddr:#x} with no timeout, and it has no "
                            f"other thread to wake it", until=end)
    if not woken:
        raise SyscallError(E.ETIMEDOUT, "timed out")
    raise SyscallError(E.EINTR, "interrupted by a signal")


def _wake_op(p, uaddr: int, uaddr2: int, val3: int) -> int:
    """FUTEX_WAKE_OP: change *uaddr2 as val3 says, then wake (nobody) on both words."""
    _word(p, uaddr)
    op, cmp = (val3 >> 28) & 0xF, (val3 >> 24) & 0xF
    oparg, cmparg = (val3 >> 12) & 0xFFF, val3 & 0xFFF
    oparg -= (oparg & 0x800) << 1  # 12-bit signed fields
    cmparg -= (cmparg & 0x800) << 1
    if op & 8:  # FUTEX_OP_OPARG_SHIFT
        oparg = 1 << (oparg & 31)
        op &= 7
    old = _word(p, uaddr2)
    ops = {0: lambda v: oparg, 1: lambda v: v + oparg, 2: lambda v: v | oparg,
           3: lambda v: v & ~oparg, 4: lambda v: v ^ oparg}
    if op not in ops or cmp > 5:
        raise SyscallError(E.ENOSYS, f"FUTEX_WAKE_OP op {op} cmp {cmp}")
    p.write(uaddr2, struct.pack("<I", ops[op](old) & 0xFFFFFFFF))
    return 0


@syscall("futex", "ptr hex int ptr ptr hex")
def sys_futex(p, uaddr, futex_op, val, timeout, uaddr2, val3):
    """long futex(uint32_t *uaddr, int futex_op, uint32_t val,
    const struct timespec *timeout, uint32_t *uaddr2, uint32_t val3);"""
    futex_op = s32(futex_op)
    cmd = futex_op & CMD_MASK
    realtime = bool(futex_op & CLOCK_REALTIME_FLAG)
    if realtime and cmd not in (WAIT_BITSET, WAIT_REQUEUE_PI, LOCK_PI2):
        raise SyscallError(E.ENOSYS, "FUTEX_CLOCK_REALTIME with this operation")
    if cmd in (WAIT, WAIT_BITSET):
        clock = 0 if realtime else 1  # CLOCK_REALTIME, CLOCK_MONOTONIC
        return _wait(p, uaddr, val, timeout, cmd, clock, val3 & 0xFFFFFFFF)
    if cmd in (WAKE, WAKE_BITSET):
        if cmd == WAKE_BITSET and not val3 & 0xFFFFFFFF:
            raise SyscallError(E.EINVAL, "empty bitset")
        _word(p, uaddr)  # Linux checks the address even with no one to wake
        return 0
    if cmd in (REQUEUE, CMP_REQUEUE):
        if s32(val) < 0 or s32(timeout) < 0:
            raise SyscallError(E.EINVAL, "negative count")
        word = _word(p, uaddr)
        _word(p, uaddr2)
        if cmd == CMP_REQUEUE and word != val3 & 0xFFFFFFFF:
            raise SyscallError(E.EAGAIN, "futex word changed")
        return 0
    if cmd == WAKE_OP:
        return _wake_op(p, uaddr, uaddr2, val3 & 0xFFFFFFFF)
    if cmd in PI_OPS:
        p.sys.notice(f"vsnap: {PI_OPS[cmd]} (priority-inheritance futexes) is not implemented")
        raise SyscallError(E.ENOSYS, PI_OPS[cmd])
    raise SyscallError(E.ENOSYS, f"futex operation {cmd}")
