"""The terminal's ioctls and its signal characters, on the one terminal every guest process
shares (vsnap/terminal.py holds its state; files.py's ioctl and read come here for it).

    TCGETS TCSETS TCSETSW TCSETSF        struct termios (the kernel's, 36 bytes)
    TCGETS2 TCSETS2 TCSETSW2 TCSETSF2    struct termios2 (with c_ispeed, c_ospeed)
    TIOCGWINSZ TIOCSWINSZ                struct winsize; a new size sends SIGWINCH to the
                                         foreground group (tty_do_resize)
    TIOCGPGRP TIOCSPGRP TIOCGSID         the foreground group and the session
    TCFLSH TCXONC TCSBRK                 flush, flow control, drain (tcdrain) or break
    FIONREAD (TIOCINQ)                   bytes waiting to be read

Changing the terminal (TCSETS*, TCFLSH, TCXONC, TIOCSPGRP) from a background process group is
where Linux's job control stops the caller with SIGTTOU (tty_check_change): vsnap has no
restart after a stop, so it refuses with EIO (what Linux says to an orphaned group) and says
so, unless SIGTTOU is blocked or ignored, when Linux lets the call through too.
"""
from __future__ import annotations

import struct
from contextlib import contextmanager

from .. import signals as S
from ..abi import consts as C
from ..abi import errno as E
from ..errors import SyscallError
from ..proctable import VIRTUAL
from ..terminal import TERMIOS, TERMIOS2, WINSIZE
from .fsutil import host_errors

TCSBRK, TCXONC, TCFLSH, TIOCSPGRP, TIOCGSID = 0x5409, 0x540A, 0x540B, 0x5410, 0x5429
TCGETS2, TCSETS2, TCSETSW2, TCSETSF2 = 0x802C542A, 0x402C542B, 0x402C542C, 0x402C542D
SETS = {C.TCSETS: ("now", False), C.TCSETSW: ("drain", False), C.TCSETSF: ("flush", False),
        TCSETS2: ("now", True), TCSETSW2: ("drain", True), TCSETSF2: ("flush", True)}
SIGTTOU, SIGWINCH = 22, 28
VCKPT = b"\x05"  # ^E: DragonFly's terminal checkpoint key (stty ckpt)


def is_terminal(p, f) -> bool:
    return f.kind == "console" and (f.stream == "tty" or p.sys.console.isatty(f.stream))


def ioctl(p, f, request: int, argp: int) -> int:
    """int ioctl(int fd, unsigned long request, ...); on the terminal (ENOTTY elsewhere)."""
    if not is_terminal(p, f):
        raise SyscallError(E.ENOTTY, f.path)
    with _host_errors():  # the host terminal's refusals (EIO once it hung up) are the guest's
        return _request(p, p.sys.terminal, request, argp)


@contextmanager
def _host_errors():
    import termios
    with host_errors():
        try:
            yield
        except termios.error as e:  # not an OSError: (errno, message)
            raise OSError(*e.args) from None


def _request(p, t, request: int, argp: int) -> int:
    if request == C.TCGETS:
        p.write(argp, t.termios())
    elif request == TCGETS2:
        p.write(argp, t.termios2())
    elif request in SETS:
        when, two = SETS[request]
        raw = p.read(argp, (TERMIOS2 if two else TERMIOS).size)  # EFAULT before any change
        _may_change(p, "tcsetattr")
        t.set(raw, when, two)
    elif request == C.TIOCGWINSZ:
        p.write(argp, WINSIZE.pack(*t.winsize()))
    elif request == C.TIOCSWINSZ:
        if t.set_winsize(WINSIZE.unpack(p.read(argp, WINSIZE.size))):
            to_foreground(p, SIGWINCH)
    elif request == C.TIOCGPGRP:
        _own_terminal(p)
        p.write(argp, struct.pack("<i", t.foreground))
    elif request == TIOCGSID:
        _own_terminal(p)
        p.write(argp, struct.pack("<i", t.session))
    elif request == TIOCSPGRP:
        _set_foreground(p, argp)
    elif request == TCFLSH:
        if argp not in (0, 1, 2):  # TCIFLUSH TCOFLUSH TCIOFLUSH
            raise SyscallError(E.EINVAL, f"tcflush queue {argp}")
        _may_change(p, "tcflush")
        t.flush(argp)
    elif request == TCXONC:
        if argp not in (0, 1, 2, 3):  # TCOOFF TCOON TCIOFF TCION
            raise SyscallError(E.EINVAL, f"tcflow action {argp}")
        _may_change(p, "tcflow")
        t.flow(argp)
    elif request == TCSBRK:
        t.drain(brk=argp == 0)
    elif request == C.FIONREAD:
        p.write(argp, struct.pack("<i", t.input_pending(p.sys.console)))
    else:
        if request >> 8 & 0xFF == 0x54:  # a terminal request vsnap does not serve
            p.sys.refuse(f"ioctl({request:#x})", f"vsnap: ioctl {request:#x} on the terminal "
                         f"is not implemented (ENOTTY)")
        raise SyscallError(E.ENOTTY, f"ioctl {request:#x}")
    return 0


def _own_terminal(p) -> None:
    """The terminal must be the caller's controlling terminal: its session's (a process
    that left it with setsid has none)."""
    if p.task.sid != p.sys.terminal.session:
        raise SyscallError(E.ENOTTY, "not the caller's controlling terminal")


def _may_change(p, what: str) -> None:
    """tty_check_change: a background group may change its terminal only with SIGTTOU
    blocked or ignored; otherwise Linux stops it, which vsnap refuses loudly (EIO)."""
    t = p.sys.terminal
    if p.task.sid != t.session or p.task.pgid == t.foreground:
        return
    sig = p.signals
    if sig.blocked >> (SIGTTOU - 1) & 1 or sig.action(SIGTTOU).handler == S.SIG_IGN:
        return
    p.sys.refuse(f"{what} from a background group",
                 f"vsnap: {what} from background process group {p.task.pgid}: Linux stops it "
                 f"with SIGTTOU, vsnap has no job control; EIO")
    raise SyscallError(E.EIO, f"{what} from a background process group")


def _set_foreground(p, argp: int) -> None:
    """tiocspgrp: a group of the caller's own session becomes the foreground one."""
    _may_change(p, "tcsetpgrp")
    (pgrp,) = struct.unpack("<i", p.read(argp, 4))
    if pgrp < 0:
        raise SyscallError(E.EINVAL, f"process group {pgrp}")
    _own_terminal(p)
    procs = p.sys.table.processes()
    members = [q for q in procs if q.pgid == pgrp]
    leader = [q for q in procs if q.pid == pgrp]
    used = members or leader or [q for q in procs if q.sid == pgrp]
    virtual = VIRTUAL.get(pgrp)  # vsnap itself (999) and init (1): (pgid, sid)
    if not used and virtual is None:
        raise SyscallError(E.ESRCH, f"no process group {pgrp}")
    sid = (members or leader)[0].sid if members or leader else (
        virtual[1] if virtual is not None and not used else None)
    if sid != p.task.sid:
        raise SyscallError(E.EPERM, f"process group {pgrp} is not of the caller's session")
    p.sys.terminal.foreground = pgrp


def to_foreground(p, signo: int) -> None:
    """A signal from the terminal to its foreground process group (kill_pgrp, SI_KERNEL)."""
    from .signal import send
    fg = p.sys.terminal.foreground
    for q in [q for q in p.sys.processes.values() if q.task.pgid == fg]:
        send(p.sys, q, S.SigInfo(signo, S.SI_KERNEL))


def host_resized(p) -> None:
    """SIGWINCH from the host: its terminal changed size. The guest's terminal signals its
    foreground group when the size is new to it (not for its own TIOCSWINSZ)."""
    try:
        changed = p.sys.terminal.host_resized()
    except OSError:  # the host terminal is gone: no size to tell of
        return
    if changed:
        to_foreground(p, SIGWINCH)


def typed(p, f, data: bytes) -> bytes:
    """What a read of the terminal gives of the bytes typed. ^E (VCKPT), when the terminal
    makes signals of characters (canonical, ISIG), is DragonFly's checkpoint key: SIGCKPT to
    the foreground process group, whose default action saves it, and the character is not
    read. The host terminal itself sends ^C ^\\ ^Z as SIGINT SIGQUIT SIGTSTP to vsnap (its
    ISIG is the guest's), which hands them on. vsnap reads the host terminal as the guest's
    settings say, so in canonical mode ^E acts when the line is entered; in raw mode (ISIG
    off) it is a byte like any other. A captured console makes no signals of characters."""
    t = p.sys.terminal
    if VCKPT not in data or t.host_fd is None or f.stream not in ("stdin", "tty") \
            or not is_terminal(p, f):
        return data
    with _host_errors():
        if not t.signal_keys():
            return data
    to_foreground(p, S.SIGCKPT)
    return data.replace(VCKPT, b"")
