"""Time system calls, all served from the virtual clock (clock.py): time moves with the
instructions the guest executes, its system calls and its sleeps, so a guest that reads the
time twice in two runs reads the same values, and sleeping takes no host time at all."""
from __future__ import annotations

import struct

from ..abi import consts as C
from ..abi import errno as E
from ..abi import structs
from ..errors import SyscallError
from .fsutil import s32
from .registry import syscall

NS = 10**9


def _now(p, clock: int) -> int:
    if clock < 0:  # a CPU clock named by pid (clock_getcpuclockid)
        from .timers import cpu_clock
        clock = cpu_clock(p, clock)
    if clock in (C.CLOCK_REALTIME, C.CLOCK_REALTIME_COARSE):
        return p.sys.clock.realtime_ns
    if clock in (C.CLOCK_MONOTONIC, C.CLOCK_MONOTONIC_RAW, C.CLOCK_MONOTONIC_COARSE,
                 C.CLOCK_BOOTTIME):
        return p.sys.clock.monotonic_ns
    if clock in (C.CLOCK_PROCESS_CPUTIME_ID, C.CLOCK_THREAD_CPUTIME_ID):
        return p.cpu_ns  # this process's CPU time: not what sleeps skip, nor others
    raise SyscallError(E.EINVAL, f"clock {clock}")


@syscall("clock_gettime", "int ptr")
def sys_clock_gettime(p, clockid, tp):
    """int clock_gettime(clockid_t clockid, struct timespec *tp);"""
    p.write(tp, structs.pack_timespec(_now(p, s32(clockid))))
    return 0


@syscall("clock_getres", "int ptr")
def sys_clock_getres(p, clockid, res):
    """int clock_getres(clockid_t clockid, struct timespec *res);"""
    _now(p, s32(clockid))
    if res:
        p.write(res, structs.pack_timespec(1))
    return 0


@syscall("gettimeofday", "ptr ptr")
def sys_gettimeofday(p, tv, tz):
    """int gettimeofday(struct timeval *tv, struct timezone *tz);"""
    if tv:
        p.write(tv, structs.pack_timeval(p.sys.clock.realtime_ns))
    if tz:
        p.write(tz, struct.pack("<ii", 0, 0))
    return 0


@syscall("time", "ptr")
def sys_time(p, tloc):
    """time_t time(time_t *tloc);"""
    t = p.sys.clock.realtime_ns // NS
    if tloc:
        p.write(tloc, struct.pack("<q", t))
    return t


def _sleep(p, ns: int, rem: int = 0) -> int:
    """Sleep on the virtual clock: no host time passes. A signal (a timer firing on the way,
    say) cuts it short with EINTR and the time left in `rem`, as on Linux."""
    from .signal import wait_for_signal
    if ns < 0:
        raise SyscallError(E.EINVAL, "negative time")
    end = p.remember(p.sys.clock.monotonic_ns + ns)
    if wait_for_signal(p, until=end):
        if rem:
            p.write(rem, structs.pack_timespec(max(0, end - p.sys.clock.monotonic_ns)))
        raise SyscallError(E.EINTR, "interrupted by a signal")
    return 0


@syscall("nanosleep", "ptr ptr")
def sys_nanosleep(p, req, rem):
    """int nanosleep(const struct timespec *req, struct timespec *rem);"""
    sec, nsec = struct.unpack("<qq", p.read(req, 16))
    if not 0 <= nsec < NS:
        raise SyscallError(E.EINVAL, "tv_nsec out of range")
    return _sleep(p, sec * NS + nsec, rem)


@syscall("clock_nanosleep", "int hex ptr ptr")
def sys_clock_nanosleep(p, clockid, flags, req, rem):
    """int clock_nanosleep(clockid_t clockid, int flags, const struct timespec *request,
    struct timespec *remain);"""
    now = _now(p, s32(clockid))
    sec, nsec = struct.unpack("<qq", p.read(req, 16))
    if not 0 <= nsec < NS:
        return -E.EINVAL  # clock_nanosleep returns the error, it does not set errno
    t = sec * NS + nsec
    if flags & 1:  # TIMER_ABSTIME
        t = max(0, t - now)
    try:
        return _sleep(p, t, 0 if flags & 1 else rem)
    except SyscallError as e:
        return -e.errno  # clock_nanosleep returns the error number itself


@syscall("times", "ptr")
def sys_times(p, buf):
    """clock_t times(struct tms *buf);"""
    tick = NS // 100  # USER_HZ
    if buf:  # user time: the instructions; system time: the system calls (clock.py)
        p.write(buf, struct.pack("<qqqq", p.user_ns // tick, p.system_ns // tick,
                                 p.children_ns[0] // tick, p.children_ns[1] // tick))
    return p.sys.clock.monotonic_ns // tick


RUSAGE_SELF, RUSAGE_CHILDREN, RUSAGE_THREAD = 0, -1, 1


@syscall("getrusage", "int ptr")
def sys_getrusage(p, who, usage):
    """int getrusage(int who, struct rusage *usage);"""
    who = s32(who)
    if who == RUSAGE_CHILDREN:  # the children it has waited for (and theirs)
        user, system = p.children_ns
    elif who in (RUSAGE_SELF, RUSAGE_THREAD):
        user, system = p.user_ns, p.system_ns
    else:
        raise SyscallError(E.EINVAL, f"who {who}")
    p.write(usage, structs.pack_timeval(user) + structs.pack_timeval(system) + bytes(112))
    return 0
