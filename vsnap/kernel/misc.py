"""The rest: uname, getrandom, sysinfo, and the signal calls a libc makes at startup.

Signal state is kept (dispositions and mask) so that a checkpoint can save it, but nothing is
delivered yet: vsnap has no second process and no timers, so no signal can arrive.
"""
from __future__ import annotations

import struct

from ..abi import errno as E
from ..abi import structs
from ..errors import SyscallError
from .fsutil import s32
from .registry import syscall

UNAME = ("Linux", "vsnap", "6.1.0-vsnap", "#1 SMP PREEMPT_DYNAMIC vsnap", "x86_64", "(none)")


@syscall("uname", "ptr")
def sys_uname(k, buf):
    """int uname(struct utsname *buf);"""
    k.write(buf, structs.pack_utsname(*UNAME))
    return 0


@syscall("getrandom", "ptr size hex")
def sys_getrandom(k, buf, buflen, flags):
    """ssize_t getrandom(void *buf, size_t buflen, unsigned int flags);"""
    n = min(buflen, 1 << 25)
    k.write(buf, k.random.bytes(n))
    return n


@syscall("sysinfo", "ptr")
def sys_sysinfo(k, info):
    """int sysinfo(struct sysinfo *info);"""
    k.write(info, structs.pack_sysinfo(k.clock.monotonic_ns // 10**9, k.mem.limit,
                                       k.mem.limit - k.mem.mapped, 1))
    return 0


SIGKILL, SIGSTOP = 9, 19


@syscall("rt_sigaction", "int ptr ptr size")
def sys_rt_sigaction(k, signum, act, oldact, sigsetsize):
    """int rt_sigaction(int signum, const struct sigaction *act, struct sigaction *oldact,
    size_t sigsetsize);"""
    signum = s32(signum)
    if not 1 <= signum <= 64 or sigsetsize != 8:
        raise SyscallError(E.EINVAL, f"signal {signum}")
    if act and signum in (SIGKILL, SIGSTOP):
        raise SyscallError(E.EINVAL, "SIGKILL and SIGSTOP cannot be caught")
    old = k.sigactions.get(signum, bytes(32))
    if act:
        k.sigactions[signum] = k.read(act, 32)
    if oldact:
        k.write(oldact, old)
    return 0


@syscall("rt_sigprocmask", "int ptr ptr size")
def sys_rt_sigprocmask(k, how, set_, oldset, sigsetsize):
    """int rt_sigprocmask(int how, const sigset_t *set, sigset_t *oldset, size_t sigsetsize);"""
    if sigsetsize != 8:
        raise SyscallError(E.EINVAL, "sigsetsize")
    old = k.sigmask
    if set_:
        (mask,) = struct.unpack("<Q", k.read(set_, 8))
        how = s32(how)
        if how == 0:
            k.sigmask = old | mask
        elif how == 1:
            k.sigmask = old & ~mask
        elif how == 2:
            k.sigmask = mask
        else:
            raise SyscallError(E.EINVAL, f"how {how}")
        k.sigmask &= ~((1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1)))
    if oldset:
        k.write(oldset, struct.pack("<Q", old))
    return 0


@syscall("sigaltstack", "ptr ptr")
def sys_sigaltstack(k, ss, old_ss):
    """int sigaltstack(const stack_t *ss, stack_t *old_ss);"""
    if old_ss:
        k.write(old_ss, k.sigaltstack)
    if ss:
        k.sigaltstack = k.read(ss, 24)
    return 0
