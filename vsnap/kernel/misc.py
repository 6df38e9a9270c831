"""The rest: uname, getrandom, sysinfo."""
from __future__ import annotations

from ..abi import structs
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
                                       max(0, k.mem.limit - k.mem.mapped), 1))
    return 0
