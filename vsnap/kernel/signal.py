"""Signal system calls: rt_sigaction, rt_sigprocmask, rt_sigreturn, kill and its relatives,
alarm on the virtual clock, pause, rt_sigsuspend, rt_sigpending, sigaltstack. The other
timers (setitimer, timer_create) are in timers.py.

Waiting (pause, sigsuspend, a sleep) moves the virtual clock to the next timer deadline at
once; with no timer armed, it waits for a signal from the host (Ctrl-C, `kill PID`), which the
CLI forwards. Nothing else can send one: the guest is alone.
"""
from __future__ import annotations

import struct

from .. import signals as S
from ..abi import errno as E
from ..errors import Blocked, NothingToWaitFor, SyscallError
from .fsutil import s32
from .registry import syscall
from .sigframe import sigreturn
from .timers import fire_all, next_wakeup

NS = 10**9
MINSIGSTKSZ = 2048


def fire_timers(p) -> None:
    """Post the signals of the timers whose deadlines have passed (called at each system
    call): SIGALRM for alarm and ITIMER_REAL here, the others in timers.py."""
    sig = p.signals
    fire_all(p)
    if sig.alarm_deadline is not None and p.sys.clock.monotonic_ns >= sig.alarm_deadline:
        if sig.alarm_interval:
            while sig.alarm_deadline <= p.sys.clock.monotonic_ns:
                sig.alarm_deadline += sig.alarm_interval
        else:
            sig.alarm_deadline = None
        sig.post(S.SigInfo(S.SIGALRM, S.SI_KERNEL))


def wait_for_signal(p, until: int | None = None, what: str = "waits for a signal") -> bool:
    """Block until a signal is deliverable (True), or until the virtual time `until` (False).
    Alone, the process skips the clock to the next event; with other processes it parks
    (errors.Blocked) and they run meanwhile: the time passes as they run, or is skipped
    when every process waits (Machine._all_parked)."""
    sig = p.signals
    p.take_host_signals()
    if len(p.sys.processes) > 1:
        clock = p.sys.clock
        if sig.deliverable():
            return True
        if until is not None and clock.monotonic_ns >= until:
            return False
        raise Blocked(what, lambda: sig.deliverable() or (
            until is not None and clock.monotonic_ns >= until), deadline=until)
    while not sig.deliverable():
        deadline = next_wakeup(p)
        if until is not None and (deadline is None or until < deadline):
            p.sys.clock.monotonic_ns = max(p.sys.clock.monotonic_ns, until)
            return False
        if deadline is not None:
            p.sys.clock.monotonic_ns = max(p.sys.clock.monotonic_ns, deadline)
            fire_timers(p)
            continue
        if not p.sys.wait_for_host_signal():
            raise NothingToWaitFor()
        p.take_host_signals()
    return True


def wait_forever(p, what: str, until: int | None = None) -> bool:
    """wait_for_signal for a call that only a signal can end (no other thread or process can
    release what it waits for). With no timeout and no timer armed it is a deadlock: Linux
    hangs. vsnap says so once; then, like Linux, only a host signal (Ctrl-C under `vsnap run`)
    ends the wait, and with no way to get one (the Python API) the guest is ended."""
    if until is None and p.signals.alarm_deadline is None and not p.signals.deliverable():
        p.sys.notice(f"vsnap: the guest {what}: a deadlock (Linux would hang here)")
        try:
            return wait_for_signal(p)
        except NothingToWaitFor:
            raise NothingToWaitFor(f"{what}: a deadlock (Linux would hang here)") from None
    return wait_for_signal(p, until=until)


def wait_for_input(p) -> None:
    """Block a read of the terminal until input comes; a signal first makes it EINTR (which
    SA_RESTART, or a signal that turns out ignored, turns back into the same read). A timer
    armed on the virtual clock fires after that much real time: input timing is the user's,
    so a run that reads a terminal is only as reproducible as its typing."""
    sig = p.signals
    while True:
        p.take_host_signals()
        if sig.deliverable():
            raise SyscallError(E.EINTR, "interrupted by a signal")
        timeout = None
        deadline = next_wakeup(p)
        if deadline is not None:
            timeout = max(0, deadline - p.sys.clock.monotonic_ns) / NS
        got = p.sys.console.wait(timeout)
        if got == "data":
            return
        if got == "timeout":
            p.sys.clock.monotonic_ns = max(p.sys.clock.monotonic_ns, deadline)
            fire_timers(p)


@syscall("rt_sigaction", "int ptr ptr size")
def sys_rt_sigaction(p, signum, act, oldact, sigsetsize):
    """int rt_sigaction(int signum, const struct sigaction *act, struct sigaction *oldact,
    size_t sigsetsize);"""
    signum = s32(signum)
    if not 1 <= signum <= S.NSIG or sigsetsize != 8:
        raise SyscallError(E.EINVAL, f"signal {signum}")
    if act and signum in (S.SIGKILL, S.SIGSTOP):
        raise SyscallError(E.EINVAL, "SIGKILL and SIGSTOP cannot be caught or ignored")
    old = p.signals.action(signum)
    new = None
    if act:
        handler, flags, restorer, mask = struct.unpack("<QQQQ", p.read(act, 32))
        new = S.Action(handler, flags & 0xFFFFFFFF, restorer, mask & ~S.UNBLOCKABLE)
    if oldact:
        p.write(oldact, struct.pack("<QQQQ", old.handler, old.flags, old.restorer, old.mask))
    if new is not None:
        p.signals.actions[signum] = new
        if p.signals.ignored(signum):  # setting SIG_IGN discards a pending one
            p.signals.pending = [info for info in p.signals.pending if info.signo != signum]
    return 0


@syscall("rt_sigprocmask", "int ptr ptr size")
def sys_rt_sigprocmask(p, how, set_, oldset, sigsetsize):
    """int rt_sigprocmask(int how, const sigset_t *set, sigset_t *oldset, size_t sigsetsize);"""
    if sigsetsize != 8:
        raise SyscallError(E.EINVAL, "sigsetsize")
    sig = p.signals
    old = sig.blocked
    if set_:
        (mask,) = struct.unpack("<Q", p.read(set_, 8))
        how = s32(how)
        if how == 0:      # SIG_BLOCK
            sig.set_blocked(old | mask)
        elif how == 1:    # SIG_UNBLOCK
            sig.set_blocked(old & ~mask)
        elif how == 2:    # SIG_SETMASK
            sig.set_blocked(mask)
        else:
            raise SyscallError(E.EINVAL, f"how {how}")
    if oldset:
        p.write(oldset, struct.pack("<Q", old))
    return 0


@syscall("rt_sigpending", "ptr size")
def sys_rt_sigpending(p, set_, sigsetsize):
    """int rt_sigpending(sigset_t *set, size_t sigsetsize);"""
    p.write(set_, struct.pack("<Q", p.signals.pending_mask & p.signals.blocked))
    return 0


@syscall("rt_sigreturn", "")
def sys_rt_sigreturn(p):
    """int rt_sigreturn(void);  (never called directly: the handler's return lands here)"""
    return sigreturn(p)


def _send(p, pid: int, signo: int, code: int) -> int:
    if not 0 <= signo <= S.NSIG:
        raise SyscallError(E.EINVAL, f"signal {signo}")
    me = p.task
    # kill(0) and kill(-pgid) reach every process of the group (seeds/001: one
    # kill(0, SIGUSR1) and every server in the starter's group that did not handle it died)
    targets = p.sys.table.kill_targets(me.pid, pid)
    if signo:
        for pid in targets:
            send(p.sys, p.sys.processes[pid], S.SigInfo(signo, code, pid=me.pid, uid=me.uid))
    return 0


def send(system, q, info: S.SigInfo) -> None:
    """Post a signal to process q. SIGCONT continues a stopped q (and drops its pending stop
    signals); SIGKILL and the stop signals drop a pending SIGCONT, as Linux's
    prepare_signal does."""
    from ..sched import cont
    stops = {19, 20, 21, 22}  # SIGSTOP SIGTSTP SIGTTIN SIGTTOU
    if info.signo == S.SIGCONT:
        q.signals.pending = [i for i in q.signals.pending if i.signo not in stops]
        cont(system, q)
    elif info.signo in stops:
        q.signals.pending = [i for i in q.signals.pending if i.signo != S.SIGCONT]
    entry = system.table.get(q.task.pid)
    if info.signo == S.SIGKILL and entry.state == "stopped":
        entry.state, entry.stopsig, entry.report = "run", 0, ""  # it wakes to die, unreported
    q.signals.post(info)


@syscall("kill", "int int")
def sys_kill(p, pid, sig):
    """int kill(pid_t pid, int sig);"""
    return _send(p, s32(pid), s32(sig), S.SI_USER)


@syscall("tkill", "int int")
def sys_tkill(p, tid, sig):
    """int tkill(pid_t tid, int sig);"""
    return _send_thread(p, s32(tid), s32(tid), s32(sig))


@syscall("tgkill", "int int int")
def sys_tgkill(p, tgid, tid, sig):
    """int tgkill(pid_t tgid, pid_t tid, int sig);"""
    return _send_thread(p, s32(tgid), s32(tid), s32(sig))


def _send_thread(p, tgid: int, tid: int, signo: int) -> int:
    """tkill/tgkill: one thread, and every process here has one (its tid is its pid)."""
    q = p.sys.processes.get(tid)
    if tid <= 0 or tgid <= 0:
        raise SyscallError(E.EINVAL, f"thread {tid} in {tgid}")
    if q is None or tgid != tid:
        raise SyscallError(E.ESRCH, f"no thread {tid} in {tgid}")
    if not 0 <= signo <= S.NSIG:
        raise SyscallError(E.EINVAL, f"signal {signo}")
    if signo:
        send(p.sys, q, S.SigInfo(signo, S.SI_TKILL, pid=p.task.pid, uid=p.task.uid))
    return 0


def _remaining(p) -> int:
    d = p.signals.alarm_deadline
    return 0 if d is None else max(0, d - p.sys.clock.monotonic_ns)


@syscall("alarm", "int")
def sys_alarm(p, seconds):
    """unsigned int alarm(unsigned int seconds);"""
    left = _remaining(p)
    seconds &= 0xFFFFFFFF
    p.signals.alarm_deadline = p.sys.clock.monotonic_ns + seconds * NS if seconds else None
    p.signals.alarm_interval = 0
    return (left + NS - 1) // NS if left else 0


@syscall("pause", "")
def sys_pause(p):
    """int pause(void);"""
    wait_for_signal(p)
    raise SyscallError(E.EINTR, "interrupted by a signal")


@syscall("rt_sigsuspend", "ptr size")
def sys_rt_sigsuspend(p, mask, sigsetsize):
    """int rt_sigsuspend(const sigset_t *mask, size_t sigsetsize);"""
    if sigsetsize != 8:
        raise SyscallError(E.EINVAL, "sigsetsize")
    (new,) = struct.unpack("<Q", p.read(mask, 8))
    if p.signals.saved_blocked is None:  # (made again after a park: the first one counts)
        p.signals.saved_blocked = p.signals.blocked  # the handler's frame restores this one
    p.signals.set_blocked(new)
    wait_for_signal(p)
    raise SyscallError(E.EINTR, "interrupted by a signal")


@syscall("sigaltstack", "ptr ptr")
def sys_sigaltstack(p, ss, old_ss):
    """int sigaltstack(const stack_t *ss, stack_t *old_ss);"""
    sig = p.signals
    on = sig.on_altstack(p.cpu.read("rsp"))
    if old_ss:
        flags = S.SS_ONSTACK if on else (sig.altstack_flags & S.SS_DISABLE)
        p.write(old_ss, struct.pack("<QiiQ", sig.altstack_sp, flags, 0, sig.altstack_size))
    if ss:
        sp, flags, _, size = struct.unpack("<QiiQ", p.read(ss, 24))
        if on:
            raise SyscallError(E.EPERM, "cannot change the alternate stack while on it")
        flags &= ~(1 << 31)  # SS_AUTODISARM: accepted, not modelled
        if flags not in (0, S.SS_DISABLE):
            raise SyscallError(E.EINVAL, f"ss_flags {flags}")
        if flags == S.SS_DISABLE:
            sp = size = 0
        elif size < MINSIGSTKSZ:
            raise SyscallError(E.ENOMEM, "alternate stack smaller than MINSIGSTKSZ")
        sig.altstack_sp, sig.altstack_size, sig.altstack_flags = sp, size, flags
    return 0


@syscall("rt_sigtimedwait", "ptr ptr ptr size")
def sys_rt_sigtimedwait(p, set_, info, timeout, sigsetsize):
    """int sigtimedwait(const sigset_t *set, siginfo_t *info, const struct timespec *timeout);
    (the raw call; sigwaitinfo is it with no timeout)"""
    from .sigframe import pack_siginfo
    if sigsetsize != 8:
        raise SyscallError(E.EINVAL, "sigsetsize")
    (want,) = struct.unpack("<Q", p.read(set_, 8))
    want &= ~S.UNBLOCKABLE
    end = None
    if timeout:
        sec, nsec = struct.unpack("<qq", p.read(timeout, 16))
        if sec < 0 or not 0 <= nsec < NS:
            raise SyscallError(E.EINVAL, "timeout")
        end = p.remember(p.sys.clock.monotonic_ns + sec * NS + nsec)
    sig = p.signals
    got = _take_waited(sig, want)
    if got is None:
        # the waited-for signals count as unblocked while it waits, as Linux's real_blocked
        if len(p.sys.processes) > 1:
            clock = p.sys.clock
            if not (sig.deliverable() or (end is not None and clock.monotonic_ns >= end)):
                raise Blocked("sigtimedwait", lambda: bool(sig.pending_mask & want) or
                              sig.deliverable() or (end is not None and
                                                    clock.monotonic_ns >= end), deadline=end)
        else:
            blocked = sig.blocked
            sig.blocked &= ~want
            try:
                wait_for_signal(p, until=end)
            finally:
                sig.blocked = blocked
        got = _take_waited(sig, want)
    if got is None:
        if sig.deliverable():
            raise SyscallError(E.EINTR, "interrupted by another signal")
        raise SyscallError(E.EAGAIN, "timed out")
    if info:
        p.write(info, pack_siginfo(got))
    return got.signo


def _take_waited(sig, want: int):
    """The pending signal sigtimedwait takes: the lowest number in `want`, None if none."""
    ready = [i for i in sig.pending if S.bit(i.signo) & want]
    if not ready:
        return None
    pick = min(ready, key=lambda i: i.signo)
    sig.pending.remove(pick)
    return pick
