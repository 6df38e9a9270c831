"""poll, ppoll, select, pselect6: which descriptors are ready, and waiting until one is.

Readiness is asked of each kind of open file description (READINESS, keyed by OpenFile.kind),
so pipes and sockets plug in with one function each. Kinds without one answer as Linux's
files without a poll method do (DEFAULT_POLLMASK: always readable and writable): regular
files, directories, /dev/null, /proc files. The console asks the host when it is vsnap's own
terminal; a captured console (Capture) always has input or end-of-file, so it is readable.

Only the console can become ready later (one process, no pipes yet). With nothing ready, a
wait on the console waits for the host's stdin; any other wait is a sleep on the virtual
clock: the timeout passes at once, as in nanosleep, and a signal (a timer firing on the way)
cuts it short with EINTR. Waiting forever on nothing is pause() (kernel/signal.py).
"""
from __future__ import annotations

import select as host_select
import struct

from ..abi import errno as E
from ..abi import syscalls
from ..errors import SyscallError
from ..fdtable import MAX_FDS
from .fsutil import s32
from .registry import syscall
from .sigframe import RESTART_NOHAND
from .signal import NS, fire_timers, wait_for_signal

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


def _console_ready(k, f) -> int:
    """vsnap's own terminal: what the host says of the same descriptor, right now."""
    c = k.console
    if not c.host_stdin:
        # captured: input (or its end) is always there to read, output always goes; each
        # stream one way, as the pipe ends a shell would give
        return CAPTURED.get(f.stream, DEFAULT_POLLMASK)
    p = host_select.poll()
    p.register(_HOST_FD.get(f.stream, 0), _ALL_EVENTS)
    events = p.poll(0)
    return events[0][1] & ~POLLNVAL if events else 0


# kind -> readiness(kernel, description) -> poll mask; a kind not listed is always ready
READINESS = {"console": _console_ready}
# kinds whose readiness can change while the guest waits (only the terminal, for now)
WAITABLE = {"console"}


def readiness(k, f) -> int:
    fn = READINESS.get(f.kind)
    return DEFAULT_POLLMASK if fn is None else fn(k, f)


def _input_can_wake(k, wants_input) -> bool:
    """Could input arriving on vsnap's stdin make one of these ready? `wants_input` lists
    (description, whether input events are asked for). Output readiness of the terminal is
    not waited for (vsnap's stdout never stays full for long)."""
    return k.console.host_stdin and any(
        asked and f.kind in WAITABLE and _HOST_FD.get(f.stream) == 0 for f, asked in wants_input)


def _console_wait(k, timeout: float | None) -> str:
    if k.console.wait is not None:
        return k.console.wait(timeout)
    ready, _, _ = host_select.select([0], [], [], timeout)  # no signal thread: stdin alone
    return "data" if ready else "timeout"


def wait_ready(k, scan, wants_input, timeout_ns: int | None) -> int:
    """Call scan() (-> count of ready descriptors) until it finds some, the timeout passes
    (0), or a signal can be delivered (EINTR). timeout_ns None waits forever."""
    sig = k.signals
    end = None if timeout_ns is None else k.clock.monotonic_ns + timeout_ns
    while True:
        count = scan()
        if count:
            return count
        k.take_host_signals()
        if sig.deliverable():
            raise SyscallError(E.EINTR, "interrupted by a signal")
        if end is not None and k.clock.monotonic_ns >= end:
            return 0
        if _input_can_wake(k, wants_input):
            until = min((t for t in (end, sig.alarm_deadline) if t is not None), default=None)
            wait = None if until is None else max(0, until - k.clock.monotonic_ns) / NS
            if _console_wait(k, wait) == "timeout" and until is not None:
                k.clock.monotonic_ns = max(k.clock.monotonic_ns, until)
                fire_timers(k)
            continue
        # nothing here can become ready: a sleep until the timeout, or until a signal
        if not wait_for_signal(k, until=end):
            return 0
        raise SyscallError(E.EINTR, "interrupted by a signal")


# the signal mask of ppoll and pselect6 ---------------------------------------------------------
def _set_mask(k, mask_ptr: int, size: int) -> int | None:
    """Install the call's temporary signal mask; the old one, to put back (None: none)."""
    if not mask_ptr:
        return None
    if size != 8:
        raise SyscallError(E.EINVAL, "sigsetsize")
    (mask,) = struct.unpack("<Q", k.read(mask_ptr, 8))
    old = k.signals.blocked
    k.signals.set_blocked(mask)
    return old


def _with_mask(k, old: int | None, body):
    """Run body() under the temporary mask. On EINTR the mask stays until the handler's frame
    has saved the old one (as rt_sigsuspend does); otherwise it goes back at once."""
    if old is None:
        return body()
    try:
        result = body()
    except SyscallError as e:
        if e.errno == E.EINTR:
            k.signals.saved_blocked = old
        else:
            k.signals.set_blocked(old)
        raise
    k.signals.set_blocked(old)
    return result


def _write_left(k, addr: int, end: int, pack) -> None:
    """Linux writes back the time left (never below 0); a fault here is ignored, as there."""
    try:
        k.write(addr, pack(max(0, end - k.clock.monotonic_ns)))
    except SyscallError:
        pass


def _timespec(k, addr: int) -> int:
    sec, nsec = struct.unpack("<qq", k.read(addr, 16))
    if sec < 0 or not 0 <= nsec < NS:
        raise SyscallError(E.EINVAL, "bad timespec")
    return sec * NS + nsec


# poll ------------------------------------------------------------------------------------------
def _do_poll(k, fds_ptr: int, nfds: int, timeout_ns: int | None) -> int:
    if nfds > MAX_FDS:  # RLIMIT_NOFILE
        raise SyscallError(E.EINVAL, f"nfds {nfds} over the open file limit")
    raw = bytearray(k.read(fds_ptr, 8 * nfds))
    entries = [struct.unpack_from("<ihh", raw, 8 * i)[:2] for i in range(nfds)]
    wants_input = [(k.fds.fds[fd].file, bool(events & INPUT_EVENTS))
                   for fd, events in entries if fd in k.fds.fds]

    def scan() -> int:
        count = 0
        for i, (fd, events) in enumerate(entries):
            revents = 0
            if fd >= 0:
                entry = k.fds.fds.get(fd)
                if entry is None:
                    revents = POLLNVAL
                else:
                    revents = readiness(k, entry.file) & (
                        (events & 0xFFFF) | POLLERR | POLLHUP)
            struct.pack_into("<h", raw, 8 * i + 6, revents - 0x10000 if revents & 0x8000
                             else revents)
            count += bool(revents)
        return count

    try:
        return wait_ready(k, scan, wants_input, timeout_ns)
    finally:  # revents go back in every case, EINTR included (0 for each)
        k.write(fds_ptr, bytes(raw))


@syscall("poll", "ptr int int")
def sys_poll(k, fds, nfds, timeout):
    """int poll(struct pollfd *fds, nfds_t nfds, int timeout);"""
    ms = s32(timeout)
    return _do_poll(k, fds, nfds & 0xFFFFFFFF, None if ms < 0 else ms * 10**6)


@syscall("ppoll", "ptr int ptr ptr size")
def sys_ppoll(k, fds, nfds, tmo_p, sigmask, sigsetsize):
    """int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo_p,
    const sigset_t *sigmask, size_t sigsetsize);"""
    timeout = _timespec(k, tmo_p) if tmo_p else None
    end = k.clock.monotonic_ns + (timeout or 0)
    old = _set_mask(k, sigmask, sigsetsize)
    try:
        return _with_mask(k, old, lambda: _do_poll(k, fds, nfds & 0xFFFFFFFF, timeout))
    finally:
        if timeout:
            _write_left(k, tmo_p, end, lambda ns: struct.pack("<qq", ns // NS, ns % NS))


# select ----------------------------------------------------------------------------------------
def table_size(k) -> int:
    """The size of Linux's fd table (max_fds): 64, grown in steps of powers of two times 128
    to hold the highest descriptor ever opened (fs/file.c alloc_fdtable); never shrinks."""
    high = max(getattr(k.fds, "high", 0), max(k.fds.fds, default=0))
    if high < FDS_BITS:
        return FDS_BITS
    n = 1
    while n < high // 128 + 1:
        n *= 2
    return n * 128


def _do_select(k, nfds: int, sets: tuple[int, int, int], timeout_ns: int | None) -> int:
    if nfds < 0:
        raise SyscallError(E.EINVAL, f"nfds {nfds}")
    n = min(nfds, table_size(k))  # Linux clips nfds to its table, it does not refuse it
    nbytes = (n + FDS_BITS - 1) // FDS_BITS * 8
    ins = [int.from_bytes(k.read(p, nbytes), "little") if p else 0 for p in sets]
    ins = [v & ((1 << n) - 1) for v in ins]
    wanted = ins[0] | ins[1] | ins[2]
    fds = [fd for fd in range(n) if wanted >> fd & 1]
    for fd in fds:
        if fd not in k.fds.fds:
            raise SyscallError(E.EBADF, f"fd {fd} is not open")
    files = [k.fds.fds[fd].file for fd in fds]
    out = [0, 0, 0]

    def scan() -> int:
        out[:] = [0, 0, 0]
        count = 0
        for fd, f in zip(fds, files):
            mask = readiness(k, f)
            for i, ready_set in enumerate((POLLIN_SET, POLLOUT_SET, POLLEX_SET)):
                if ins[i] >> fd & 1 and mask & ready_set:
                    out[i] |= 1 << fd
                    count += 1
        return count

    wants_input = [(f, bool((ins[0] | ins[2]) >> fd & 1)) for fd, f in zip(fds, files)]
    count = wait_ready(k, scan, wants_input, timeout_ns)
    for p, value in zip(sets, out):
        if p:
            k.write(p, value.to_bytes(nbytes, "little"))
    return count


@syscall("select", "int ptr ptr ptr ptr")
def sys_select(k, nfds, readfds, writefds, exceptfds, timeout):
    """int select(int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds,
    struct timeval *timeout);"""
    t = None
    if timeout:
        sec, usec = struct.unpack("<qq", k.read(timeout, 16))
        # Linux folds whole seconds out of tv_usec before checking (kern_select)
        whole = abs(usec) // 10**6 * (1 if usec >= 0 else -1)  # C division truncates
        sec, usec = sec + whole, usec - whole * 10**6
        if sec < 0 or usec < 0:
            raise SyscallError(E.EINVAL, "bad timeval")
        t = sec * NS + usec * 1000
    end = k.clock.monotonic_ns + (t or 0)
    try:
        return _do_select(k, s32(nfds), (readfds, writefds, exceptfds), t)
    finally:
        if t:
            _write_left(k, timeout, end,
                        lambda ns: struct.pack("<qq", ns // NS, ns % NS // 1000))


@syscall("pselect6", "int ptr ptr ptr ptr ptr")
def sys_pselect6(k, nfds, readfds, writefds, exceptfds, timeout, sigdata):
    """int pselect6(int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds,
    struct timespec *timeout, struct { const sigset_t *ss; size_t ss_len; } *sigmask);"""
    t = _timespec(k, timeout) if timeout else None
    end = k.clock.monotonic_ns + (t or 0)
    old = None
    if sigdata:
        mask_ptr, size = struct.unpack("<QQ", k.read(sigdata, 16))
        old = _set_mask(k, mask_ptr, size)
    try:
        return _with_mask(k, old, lambda: _do_select(
            k, s32(nfds), (readfds, writefds, exceptfds), t))
    finally:
        if t:
            _write_left(k, timeout, end, lambda ns: struct.pack("<qq", ns // NS, ns % NS))
