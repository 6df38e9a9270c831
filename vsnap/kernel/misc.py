"""The rest: uname, getrandom, sysinfo."""
from __future__ import annotations

from ..abi import structs
from .registry import syscall

UNAME = ("Linux", "vsnap", "6.1.0-vsnap", "#1 SMP PREEMPT_DYNAMIC vsnap", "x86_64", "(none)")


@syscall("uname", "ptr")
def sys_uname(p, buf):
    """int uname(struct utsname *buf);"""
    p.write(buf, structs.pack_utsname(*UNAME))
    return 0


@syscall("getrandom", "ptr size hex")
def sys_getrandom(p, buf, buflen, flags):
    """ssize_t getrandom(void *buf, size_t buflen, unsigned int flags);"""
    n = min(buflen, 1 << 25)
    p.write(buf, p.sys.random.bytes(n))
    return n


@syscall("sysinfo", "ptr")
def sys_sysinfo(p, info):
    """int sysinfo(struct sysinfo *info);"""
    p.write(info, structs.pack_sysinfo(p.sys.clock.monotonic_ns // 10**9, p.mem.limit,
                                       max(0, p.mem.limit - p.mem.mapped), 1))
    return 0
