"""poll, ppoll, select, pselect6: which descriptors are ready, and waiting until one is.

Readiness is asked of each kind of open file description (READINESS, keyed by OpenFile.kind),
so pipes and sockets plug in with one function each. Kinds without one answer as Linux's
files without a poll method do (DEFAULT_POLLMASK: always readable and writable): regular
files, directories, /dev/null, /proc files. The console asks the host when it is vsnap's own
terminal; a captured console (Capture) always has input or end-of-file, so it is readable.

A description with `ops` answers for itself: `f.ops.poll(p, f)` -> the poll mask, when its
ops have a poll method (pipes, eventfd, epoll, sockets), so a new kind needs no edit here.

With nothing ready, a wait on the console waits for the host's stdin. With other guest
processes, the call parks (errors.Blocked) until a re-scan finds a descriptor ready (another
process wrote to the pipe, closed its end...), a signal can be delivered (EINTR), or the
timeout passes on the virtual clock; the parked call runs again from scratch, so its end
time is remembered across the retries (Process.remember). Alone, nothing can change what it
waits on: the wait is a sleep on the virtual clock (the timeout passes at once, as in
nanosleep) that a signal (a timer firing on the way) cuts short with EINTR. Waiting forever
on nothing is pause() (kernel/signal.py).
"""
from __future__ import annotations

import select as host_select
import struct

from ..abi import errno as E
from ..abi import syscalls
from ..errors import Blocked, SyscallError
from ..fdtable import MAX_FDS
from .fsutil import s32
from .registry import syscall
from .sigframe import RESTART_NOHAND
from .signal import NS, fire_timers, wait_forever

POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLNVAL = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
POLLRDNORM, POLLRDBAND, POLLWRNORM, POLLWRBAND = 0x40, 0x80, 0x100, 0x200
DEFAULT_POLLMASK = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM
# what select counts as ready in each set (fs/select.c)
POLLIN_SET = POLLRDNORM | POLLRDBAND | POLLIN | POLLHUP | POLLERR
POLLOUT_SET = POLLWRBAND | POLLWRNORM | POLLOUT | POLLERR
POLLEX_SET = POLLPRI
FDS_BITS = 64
INPUT_EVENTS = POLLIN | POLLPRI | POLLRDNORM | POLLRDBAND

# poll, select and their p- forms are restarted only when no handler runs (ERESTARTNOHAND)
RESTART_NOHAND.update(syscalls.NUMBERS[n] for n in ("poll", "ppoll", "select", "pselect6"))

CAPTURED = {"stdin": POLLIN | POLLRDNORM, "stdout": POLLOUT | POLLWRNORM,
            "stderr": POLLOUT | POLLWRNORM}
_HOST_FD = {"stdin": 0, "tty": 0, "stdout": 1, "stderr": 2}
_ALL_EVENTS = POLLIN | POLLPRI | POLLOUT | POLLRDNORM | POLLRDBAND | POLLWRNORM | POLLWRBAND


def _console_ready(p, f) -> int:
    """vsnap's own terminal: what the host says of the same descriptor, right now."""
    c = p.sys.console
    if not c.host_stdin:
        # captured: input (or its end) is always there to read, output always goes; each
        # stream one way, as the pipe ends a shell would give
        return CAPTURED.get(f.stream, DEFAULT_POLLMASK)
    q = host_select.poll()
    q.register(_HOST_FD.get(f.stream, 0), _ALL_EVENTS)
    events = q.poll(0)
    return events[0][1] & ~POLLNVAL if events else 0


# kind -> readiness(kernel, description) -> poll mask, for kinds without ops; a description
# whose ops have a poll method answers with it; anything else is always ready
READINESS = {"console": _console_ready}
# kinds whose readiness can change by the host while the guest waits (only the terminal)
WAITABLE = {"console"}


def readiness(p, f) -> int:
    fn = READINESS.get(f.kind)
    if fn is not None:
        return fn(p, f)
    poll = getattr(f.ops, "poll", None)
    return DEFAULT_POLLMASK if poll is None else poll(p, f)


def _input_can_wake(p, wants_input) -> bool:
    """Could input arriving on vsnap's stdin make one of these ready? `wants_input` lists
    (description, whether input events are asked for). Output readiness of the terminal is
    not waited for (vsnap's stdout never stays full for long)."""
    return p.sys.console.host_stdin and any(
        asked and f.kind in WAITABLE and _HOST_FD.get(f.stream) == 0 for f, asked in wants_input)


def _console_wait(p, timeout: float | None) -> str:
    if p.sys.console.wait is not None:
        return p.sys.console.wait(timeout)
    ready, _, _ = host_select.select([0], [], [], timeout)  # no signal thread: stdin alone
    return "data" if ready else "timeout"


def deadline(p, timeout_ns: int | None) -> int | None:
    """The virtual time a wait of `timeout_ns` ends (None: never), fixed by the first try
    of the call: a parked call that runs again keeps it."""
    return None if timeout_ns is None else p.remember(p.sys.clock.monotonic_ns + timeout_ns)


def wait_ready(p, scan, wants_input, end: int | None, what: str = "poll") -> int:
    """Call scan() (-> count of ready descriptors; it must change nothing the guest sees, as
    the scheduler calls it to learn whether a parked call can go on) until it finds some, the
    virtual time `end` passes (0), or a signal can be delivered (EINTR). end None: forever."""
    sig = p.signals
    clock = p.sys.clock
    while True:
        count = scan()
        if count:
            return count
        p.take_host_signals()
        if sig.deliverable():
            raise SyscallError(E.EINTR, "interrupted by a signal")
        if end is not None and clock.monotonic_ns >= end:
            return 0
        if _input_can_wake(p, wants_input):
            until = min((t for t in (end, sig.alarm_deadline) if t is not None), default=None)
            wait = None if until is None else max(0, until - clock.monotonic_ns) / NS
            if _console_wait(p, wait) == "timeout" and until is not None:
                clock.monotonic_ns = max(clock.monotonic_ns, until)
                fire_timers(p)
            continue
        if len(p.sys.processes) > 1 or (p.sys.net is not None and p.sys.net.waiting()):
            # another process or a host socket may make one ready: park, and run again when
            # one has. The run loop does the waiting (Machine._all_parked waits on the host
            # with hostnet.wait_parked), so a `vsnap save` or Ctrl-C is served meanwhile
            raise Blocked(what, lambda: bool(scan()) or sig.deliverable() or (
                end is not None and clock.monotonic_ns >= end), deadline=end)
        # alone, nothing here can become ready: a sleep until the timeout, or until a signal
        if not wait_forever(p, f"waits in {what} for descriptors nothing else can make ready",
                            until=end):
            return 0
        raise SyscallError(E.EINTR, "interrupted by a signal")


# the signal mask of ppoll and pselect6 ---------------------------------------------------------
def _set_mask(p, mask_ptr: int, size: int) -> int | None:
    """Install the call's temporary signal mask; the old one, to put back (None: none). The
    old one waits in saved_blocked while the call does (a park keeps the temporary mask,
    and the retry must not take it for the caller's), as rt_sigsuspend keeps it."""
    if not mask_ptr:
        return None
    if size != 8:
        raise SyscallError(E.EINVAL, "sigsetsize")
    (mask,) = struct.unpack("<Q", p.read(mask_ptr, 8))
    sig = p.signals
    if sig.saved_blocked is None:  # (made again after a park: the first one counts)
        sig.saved_blocked = sig.blocked
    old = sig.saved_blocked
    sig.set_blocked(mask)
    return old


def _with_mask(p, old: int | None, body):
    """Run body() under the temporary mask. On EINTR the mask stays until the handler's frame
    has saved the old one (as rt_sigsuspend does), and while the call is parked; otherwise
    it goes back at once."""
    if old is None:
        return body()
    try:
        result = body()
    except Blocked:
        raise
    except SyscallError as e:
        if e.errno != E.EINTR:
            p.signals.set_blocked(old)
            p.signals.saved_blocked = None
        raise
    p.signals.set_blocked(old)
    p.signals.saved_blocked = None
    return result


def _timed(p, body, addr: int, end: int | None, pack):
    """body(), then the time left written back to `addr` (when a non-zero timeout was given),
    whatever it returns or fails with, but not while it is parked (it has not returned)."""
    parked = False
    try:
        return body()
    except Blocked:
        parked = True
        raise
    finally:
        if addr and not parked:
            _write_left(p, addr, end, pack)


def _write_left(p, addr: int, end: int, pack) -> None:
    """Linux writes back the time left (never below 0); a fault here is ignored, as there."""
    try:
        p.write(addr, pack(max(0, end - p.sys.clock.monotonic_ns)))
    except SyscallError:
        pass


def _timespec(p, addr: int) -> int:
    sec, nsec = struct.unpack("<qq", p.read(addr, 16))
    if sec < 0 or not 0 <= nsec < NS:
        raise SyscallError(E.EINVAL, "bad timespec")
    return sec * NS + nsec


# poll ------------------------------------------------------------------------------------------
def _do_poll(p, fds_ptr: int, nfds: int, end: int | None) -> int:
    if nfds > min(p.fds.limit, MAX_FDS):  # the soft RLIMIT_NOFILE (do_sys_poll)
        raise SyscallError(E.EINVAL, f"nfds {nfds} over the open file limit")
    raw = bytearray(p.read(fds_ptr, 8 * nfds))
    entries = [struct.unpack_from("<ihh", raw, 8 * i)[:2] for i in range(nfds)]
    wants_input = [(p.fds.fds[fd].file, bool(events & INPUT_EVENTS))
                   for fd, events in entries if fd in p.fds.fds]

    def scan() -> int:
        count = 0
        for i, (fd, events) in enumerate(entries):
            revents = 0
            if fd >= 0:
                entry = p.fds.fds.get(fd)
                if entry is None:
                    revents = POLLNVAL
                else:
                    revents = readiness(p, entry.file) & (
                        (events & 0xFFFF) | POLLERR | POLLHUP)
            struct.pack_into("<h", raw, 8 * i + 6, revents - 0x10000 if revents & 0x8000
                             else revents)
            count += bool(revents)
        return count

    try:
        count = wait_ready(p, scan, wants_input, end, "poll")
    except Blocked:
        raise  # nothing goes back while it waits
    except SyscallError:  # revents go back on EINTR too (0 for each)
        p.write(fds_ptr, bytes(raw))
        raise
    p.write(fds_ptr, bytes(raw))
    return count


@syscall("poll", "ptr int int")
def sys_poll(p, fds, nfds, timeout):
    """int poll(struct pollfd *fds, nfds_t nfds, int timeout);"""
    ms = s32(timeout)
    return _do_poll(p, fds, nfds & 0xFFFFFFFF, deadline(p, None if ms < 0 else ms * 10**6))


@syscall("ppoll", "ptr int ptr ptr size")
def sys_ppoll(p, fds, nfds, tmo_p, sigmask, sigsetsize):
    """int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo_p,
    const sigset_t *sigmask, size_t sigsetsize);"""
    timeout = _timespec(p, tmo_p) if tmo_p else None
    end = deadline(p, timeout)
    old = _set_mask(p, sigmask, sigsetsize)
    return _timed(p, lambda: _with_mask(p, old, lambda: _do_poll(
        p, fds, nfds & 0xFFFFFFFF, end)), tmo_p if timeout else 0, end,
        lambda ns: struct.pack("<qq", ns // NS, ns % NS))


# select ----------------------------------------------------------------------------------------
def table_size(p) -> int:
    """The size of Linux's fd table (max_fds): 64, grown in steps of powers of two times 128
    to hold the highest descriptor ever opened (fs/file.c alloc_fdtable); never shrinks."""
    high = max(getattr(p.fds, "high", 0), max(p.fds.fds, default=0))
    if high < FDS_BITS:
        return FDS_BITS
    n = 1
    while n < high // 128 + 1:
        n *= 2
    return n * 128


def _do_select(p, nfds: int, sets: tuple[int, int, int], end: int | None,
               what: str) -> int:
    if nfds < 0:
        raise SyscallError(E.EINVAL, f"nfds {nfds}")
    n = min(nfds, table_size(p))  # Linux clips nfds to its table, it does not refuse it
    nbytes = (n + FDS_BITS - 1) // FDS_BITS * 8
    ins = [int.from_bytes(p.read(q, nbytes), "little") if q else 0 for q in sets]
    ins = [v & ((1 << n) - 1) for v in ins]
    wanted = ins[0] | ins[1] | ins[2]
    fds = [fd for fd in range(n) if wanted >> fd & 1]
    for fd in fds:
        if fd not in p.fds.fds:
            raise SyscallError(E.EBADF, f"fd {fd} is not open")
    files = [p.fds.fds[fd].file for fd in fds]
    out = [0, 0, 0]

    def scan() -> int:
        out[:] = [0, 0, 0]
        count = 0
        for fd, f in zip(fds, files):
            mask = readiness(p, f)
            for i, ready_set in enumerate((POLLIN_SET, POLLOUT_SET, POLLEX_SET)):
                if ins[i] >> fd & 1 and mask & ready_set:
                    out[i] |= 1 << fd
                    count += 1
        return count

    wants_input = [(f, bool((ins[0] | ins[2]) >> fd & 1)) for fd, f in zip(fds, files)]
    count = wait_ready(p, scan, wants_input, end, what)
    for q, value in zip(sets, out):
        if q:
            p.write(q, value.to_bytes(nbytes, "little"))
    return count


@syscall("select", "int ptr ptr ptr ptr")
def sys_select(p, nfds, readfds, writefds, exceptfds, timeout):
    """int select(int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds,
    struct timeval *timeout);"""
    t = None
    if timeout:
        sec, usec = struct.unpack("<qq", p.read(timeout, 16))
        # Linux folds whole seconds out of tv_usec before checking (kern_select)
        whole = abs(usec) // 10**6 * (1 if usec >= 0 else -1)  # C division truncates
        sec, usec = sec + whole, usec - whole * 10**6
        if sec < 0 or usec < 0:
            raise SyscallError(E.EINVAL, "bad timeval")
        t = sec * NS + usec * 1000
    end = deadline(p, t)
    return _timed(p, lambda: _do_select(p, s32(nfds), (readfds, writefds, exceptfds), end,
                                        "select"), timeout if t else 0, end,
                  lambda ns: struct.pack("<qq", ns // NS, ns % NS // 1000))


@syscall("pselect6", "int ptr ptr ptr ptr ptr")
def sys_pselect6(p, nfds, readfds, writefds, exceptfds, timeout, sigdata):
    """int pselect6(int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds,
    struct timespec *timeout, struct { const sigset_t *ss; size_t ss_len; } *sigmask);"""
    t = _timespec(p, timeout) if timeout else None
    end = deadline(p, t)
    old = None
    if sigdata:
        mask_ptr, size = struct.unpack("<QQ", p.read(sigdata, 16))
        old = _set_mask(p, mask_ptr, size)
    return _timed(p, lambda: _with_mask(p, old, lambda: _do_select(
        p, s32(nfds), (readfds, writefds, exceptfds), end, "pselect6")), timeout if t else 0,
        end, lambda ns: struct.pack("<qq", ns // NS, ns % NS))
