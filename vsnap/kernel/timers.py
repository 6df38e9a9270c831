"""Timer system calls: getitimer/setitimer (ITIMER_REAL on the wall clock; ITIMER_VIRTUAL and
ITIMER_PROF on the CPU clock) and POSIX timers (timer_create, timer_settime, timer_gettime,
timer_getoverrun, timer_delete), all on vsnap's virtual clocks (clock.py). `fire_all` runs
at every system call's return and posts the signals of the timers that expired.

Every clock follows the instruction count (clock.py): user time is 1 ns per instruction,
system time 1 us per system call, and sleeps add to the monotonic clock only. ITIMER_VIRTUAL
counts user time, ITIMER_PROF user + system time, as on Linux; a timer on
CLOCK_PROCESS_CPUTIME_ID never fires during a sleep. `next_deadline` turns the earliest
deadline into an instruction count, where the CPU stops for it (machine.py), so a timer fires
at the same instruction in every run, whether or not the guest makes system calls.
"""
from __future__ import annotations

import struct

from .. import signals as S
from ..abi import consts as C
from ..abi import errno as E
from ..abi import structs
from ..errors import SyscallError
from ..timers import ITIMER_SIGNAL, Interval, Timer
from .fsutil import s32
from ..rlimits import INF
from .limits import check_cpu
from .registry import syscall

NS = 10**9
TICK_NS = 4_000_000   # Linux (HZ=250) adds one tick to a CPU interval timer when setting it
CPU_CLOCKS = (C.CLOCK_PROCESS_CPUTIME_ID, C.CLOCK_THREAD_CPUTIME_ID)
NO_TIMERS = (C.CLOCK_MONOTONIC_RAW, C.CLOCK_REALTIME_COARSE, C.CLOCK_MONOTONIC_COARSE)
ALARM_CLOCKS = (8, 9)  # CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM: need CAP_WAKE_ALARM
INT_MAX = (1 << 31) - 1


def cpu_clock(p, clockid: int) -> int:
    """The CPU clock a negative clock id names (what clock_getcpuclockid and libc's
    CLOCK_PROCESS_CPUTIME_ID give: ~pid << 3 | per-thread << 2 | PROF, VIRT or SCHED), as
    CLOCK_PROCESS_CPUTIME_ID or CLOCK_THREAD_CPUTIME_ID; EINVAL for another process's."""
    pid = ~(clockid >> 3)
    if clockid & 3 == 3 or pid not in (0, p.task.pid):
        raise SyscallError(E.EINVAL, f"clock {clockid}")
    return C.CLOCK_THREAD_CPUTIME_ID if clockid & 4 else C.CLOCK_PROCESS_CPUTIME_ID


def itimer_now(p, which: int) -> int:
    """The CPU clock of ITIMER_VIRTUAL (user time) or ITIMER_PROF (user + system)."""
    return p.user_ns if which == C.ITIMER_VIRTUAL else p.cpu_ns


def now_on(p, clock: int) -> int:
    if clock == C.CLOCK_REALTIME:
        return p.sys.clock.realtime_ns
    if clock in CPU_CLOCKS:
        return p.cpu_ns
    return p.sys.clock.monotonic_ns


# firing ----------------------------------------------------------------------------------
def fire_all(p) -> None:
    """Post the signals of every timer that has expired (ITIMER_REAL is signal.fire_timers'),
    and check RLIMIT_CPU."""
    t = p.timers
    for which, it in t.itimers.items():
        if it.deadline is not None and itimer_now(p, which) >= it.deadline:
            # check_cpu_itimer: one reload per check, no catching up
            it.deadline = it.deadline + it.interval if it.interval else None
            p.signals.post(S.SigInfo(ITIMER_SIGNAL[which], S.SI_KERNEL))
    for timer in t.posix.values():
        if timer.deadline is not None:
            _expire(p, timer, now_on(p, timer.clock))
    t.refresh()
    check_cpu(p)


def _expire(p, timer: Timer, now: int) -> None:
    if now < timer.deadline:
        return
    times = 1 + ((now - timer.deadline) // timer.interval if timer.interval else 0)
    timer.deadline = timer.deadline + times * timer.interval if timer.interval else None
    if timer.notify == C.SIGEV_NONE:
        return
    queued = _queued(p, timer.id)
    if queued is not None:  # its signal still waits: count the expirations, queue nothing
        queued.overrun = min(INT_MAX, queued.overrun + times)
        return
    p.signals.post(S.SigInfo(timer.signo, S.SI_TIMER, timerid=timer.id, overrun=times - 1,
                             value=timer.value))


def _queued(p, timerid: int):
    for info in p.signals.pending:
        if info.code == S.SI_TIMER and info.timerid == timerid:
            return info
    return None


def _drop_queued(p, timerid: int) -> None:
    """A timer deleted or set anew: its queued signal is stale and is dropped (Linux 6.13+)."""
    p.signals.pending = [info for info in p.signals.pending
                         if not (info.code == S.SI_TIMER and info.timerid == timerid)]


def next_deadline(p) -> int | None:
    """The instruction count at which the next timer expires, as long as no system call or
    sleep comes first (they move the clock: the kernel asks again after each); None: no
    timer is armed. alarm and ITIMER_REAL, the interval timers, POSIX timers that send a
    signal, and RLIMIT_CPU."""
    c, sig = p.sys.clock, p.signals
    times = []
    if sig.alarm_deadline is not None:
        times.append(c.at_monotonic(sig.alarm_deadline))
    virtual, prof = p.timers.itimers[C.ITIMER_VIRTUAL], p.timers.itimers[C.ITIMER_PROF]
    user, cpu = p.user_ns, p.cpu_ns  # this process's CPU clocks: its own instructions
    if virtual.deadline is not None:
        times.append(p.at_own(virtual.deadline, user))
    if prof.deadline is not None:
        times.append(p.at_own(prof.deadline, cpu))
    for t in p.timers.posix.values():
        if t.deadline is None or t.notify == C.SIGEV_NONE:
            continue  # SIGEV_NONE: nothing happens at expiry; timer_gettime computes it
        if t.clock in CPU_CLOCKS:
            times.append(p.at_own(t.deadline, cpu))
        elif t.clock == C.CLOCK_REALTIME:
            times.append(c.at_monotonic(t.deadline - c.boot_realtime_ns))
        else:
            times.append(c.at_monotonic(t.deadline))
    for limit in p.limits.values[C.RLIMIT_CPU]:
        if limit != INF:
            times.append(p.at_own(limit * NS, cpu))
    return min(times) if times else None


def next_wakeup(p) -> int | None:
    """The earliest monotonic time at which a wall-clock timer expires (None: none armed).
    CPU-clock timers are left out: waiting uses no CPU time, so they cannot fire in a wait."""
    sig = p.signals
    times = []
    if sig.alarm_deadline is not None and _can_wake(p, S.SIGALRM):
        times.append(sig.alarm_deadline)
    boot = p.sys.clock.boot_realtime_ns
    for t in p.timers.posix.values():
        if t.deadline is None or t.clock in CPU_CLOCKS or t.notify == C.SIGEV_NONE \
                or not _can_wake(p, t.signo):
            continue
        times.append(t.deadline - boot if t.clock == C.CLOCK_REALTIME else t.deadline)
    return min(times) if times else None


def _can_wake(p, signo: int) -> bool:
    """Could an expiry posting `signo` end a wait? Not when it is already pending (a standard
    one does not queue again; a timer's only counts an overrun, caught up later) or
    ignored: then a waiting guest would wait for ever, as it does on Linux."""
    sig = p.signals
    if S.bit(signo) & sig.pending_mask:
        return False
    return not (sig.ignored(signo) and not S.bit(signo) & sig.blocked)


# interval timers -------------------------------------------------------------------------
def _read_itimerval(p, ptr: int) -> tuple[int, int]:
    """(value, interval) in ns from a struct itimerval; EINVAL if a timeval is invalid."""
    isec, iusec, vsec, vusec = struct.unpack("<qqqq", p.read(ptr, 32)) if ptr else (0,) * 4
    if not (0 <= iusec < 10**6 and 0 <= vusec < 10**6) or isec < 0 or vsec < 0:
        raise SyscallError(E.EINVAL, "bad itimerval")
    return vsec * NS + vusec * 1000, isec * NS + iusec * 1000


def _itimer_now(p, which: int) -> tuple[int, int]:
    """(remaining, interval) of an interval timer."""
    if which == C.ITIMER_REAL:
        d = p.signals.alarm_deadline
        left = 0 if d is None else max(0, d - p.sys.clock.monotonic_ns)
        return left, p.signals.alarm_interval
    it = p.timers.itimers.get(which)
    if it is None:
        raise SyscallError(E.EINVAL, f"no interval timer {which}")
    if it.deadline is None:
        return 0, it.interval
    left = it.deadline - itimer_now(p, which)
    return (left if left > 0 else TICK_NS), it.interval  # get_cpu_itimer: "about to fire"


@syscall("getitimer", "int ptr")
def sys_getitimer(p, which, curr):
    """int getitimer(int which, struct itimerval *curr_value);"""
    value, interval = _itimer_now(p, s32(which))
    p.write(curr, structs.pack_timeval(interval) + structs.pack_timeval(value))
    return 0


@syscall("setitimer", "int ptr ptr")
def sys_setitimer(p, which, new, old):
    """int setitimer(int which, const struct itimerval *new_value,
    struct itimerval *old_value);"""
    which = s32(which)
    value, interval = _read_itimerval(p, new)  # NULL disarms, as Linux allows
    before = _itimer_now(p, which)
    if which == C.ITIMER_REAL:
        p.signals.alarm_deadline = p.sys.clock.monotonic_ns + value if value else None
        p.signals.alarm_interval = interval if value else 0
    else:
        p.timers.itimers[which] = Interval(
            itimer_now(p, which) + value + TICK_NS if value else None, interval)
        p.timers.refresh()
    if old:
        p.write(old, structs.pack_timeval(before[1]) + structs.pack_timeval(before[0]))
    return 0


# POSIX timers ----------------------------------------------------------------------------
def _timer(p, timerid: int) -> Timer:
    t = p.timers.posix.get(s32(timerid))
    if t is None:
        raise SyscallError(E.EINVAL, f"no timer {s32(timerid)}")
    return t


@syscall("timer_create", "int ptr ptr")
def sys_timer_create(p, clockid, sevp, timerid):
    """int timer_create(clockid_t clockid, struct sigevent *sevp, timer_t *timerid);"""
    clockid = s32(clockid)
    event = p.read(sevp, 64) if sevp else None  # EFAULT first
    if clockid < 0:
        clockid = cpu_clock(p, clockid)
    if clockid in NO_TIMERS:
        raise SyscallError(E.EOPNOTSUPP, f"clock {clockid} has no timers")
    if clockid in ALARM_CLOCKS:
        raise SyscallError(E.EPERM, "alarm clocks need CAP_WAKE_ALARM")
    if clockid not in (C.CLOCK_REALTIME, C.CLOCK_MONOTONIC, C.CLOCK_BOOTTIME, *CPU_CLOCKS):
        raise SyscallError(E.EINVAL, f"clock {clockid}")
    if len(p.timers.posix) >= p.limits.soft(C.RLIMIT_SIGPENDING):
        raise SyscallError(E.EAGAIN, "RLIMIT_SIGPENDING reached")
    tid = p.timers.new_id()  # taken before the sigevent is checked, as Linux does
    if event is None:
        notify, signo, value = C.SIGEV_SIGNAL, S.SIGALRM, tid
    else:
        value, signo, notify, thread = struct.unpack_from("<Qiii", event)
        if notify == C.SIGEV_SIGNAL | C.SIGEV_THREAD_ID:
            # one thread: only the process's own thread can be named
            if thread != p.task.pid:
                raise SyscallError(E.EINVAL, f"no thread {thread} in this process")
            notify = C.SIGEV_SIGNAL
        elif notify == C.SIGEV_THREAD:
            notify = C.SIGEV_SIGNAL  # the kernel sees a signal; the thread is libc's business
        if notify not in (C.SIGEV_SIGNAL, C.SIGEV_NONE):
            raise SyscallError(E.EINVAL, f"sigev_notify {notify}")
        if notify == C.SIGEV_SIGNAL and not 1 <= signo <= S.NSIG:
            raise SyscallError(E.EINVAL, f"signal {signo}")
        if notify == C.SIGEV_NONE:
            signo = 0  # never sent: whatever the guest left there does not matter
    p.write(timerid, struct.pack("<i", tid))
    p.timers.posix[tid] = Timer(tid, clockid, notify, signo, value)
    return 0


def _remaining(p, t: Timer) -> int:
    return 0 if t.deadline is None else max(1, t.deadline - now_on(p, t.clock))


def _itimerspec(interval: int, value: int) -> bytes:
    return struct.pack("<qqqq", interval // NS, interval % NS, value // NS, value % NS)


@syscall("timer_settime", "int hex ptr ptr")
def sys_timer_settime(p, timerid, flags, new, old):
    """int timer_settime(timer_t timerid, int flags, const struct itimerspec *new_value,
    struct itimerspec *old_value);"""
    isec, insec, vsec, vnsec = struct.unpack("<qqqq", p.read(new, 32))
    t = _timer(p, timerid)
    if not (0 <= insec < NS and 0 <= vnsec < NS) or isec < 0 or vsec < 0:
        raise SyscallError(E.EINVAL, "bad itimerspec")
    fire_all(p)  # bring it up to date before reading what it held
    if old:
        p.write(old, _itimerspec(t.interval, _remaining(p, t)))
    _drop_queued(p, t.id)
    t.overrun_last = 0
    t.interval = isec * NS + insec
    value = vsec * NS + vnsec
    if value == 0:
        t.deadline = None
    else:
        t.deadline = value if flags & C.TIMER_ABSTIME else now_on(p, t.clock) + value
    p.timers.refresh()
    return 0


@syscall("timer_gettime", "int ptr")
def sys_timer_gettime(p, timerid, curr):
    """int timer_gettime(timer_t timerid, struct itimerspec *curr_value);"""
    t = _timer(p, timerid)
    fire_all(p)
    p.write(curr, _itimerspec(t.interval, _remaining(p, t)))
    return 0


@syscall("timer_getoverrun", "int")
def sys_timer_getoverrun(p, timerid):
    """int timer_getoverrun(timer_t timerid);"""
    return min(INT_MAX, _timer(p, timerid).overrun_last)


@syscall("timer_delete", "int")
def sys_timer_delete(p, timerid):
    """int timer_delete(timer_t timerid);"""
    t = _timer(p, timerid)
    _drop_queued(p, t.id)
    del p.timers.posix[t.id]
    p.timers.refresh()
    return 0
