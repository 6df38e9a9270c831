"""The guest's terminal: one for the whole system, as the controlling terminal of a login is
shared by every process of its session. A plain kernel object (no CPU): its termios, its window
size and its foreground process group.

When vsnap's own stdin (or stdout, stderr) is a host terminal, that terminal *is* the guest's:
settings the guest makes are applied to it (so raw mode really is raw: the host's line
discipline does the line editing, the echo and the signal characters), its size is the host's,
and vsnap puts the host terminal back as it found it when it ends (`restore_host`, also run at
exit). A captured console (tests, notebooks) has no host terminal: the state is kept, and read
back, and nothing else follows from it.

The termios record is Linux's kernel struct (asm-generic/termbits.h), not glibc's: c_iflag,
c_oflag, c_cflag, c_lflag (u32), c_line (u8), c_cc[19]; termios2 adds c_ispeed and c_ospeed.
The host's settings are read and written with the termios module, whose flags and c_cc
indices are the kernel's on a Linux host (the only host whose terminal vsnap drives).
"""
from __future__ import annotations

import atexit
import fcntl
import struct
import sys

from .task import GUEST_PID

TERMIOS = struct.Struct("<IIIIB19s")     # struct termios (TCGETS, TCSETS*): 36 bytes
TERMIOS2 = struct.Struct("<IIIIB19sII")  # struct termios2 (TCGETS2, TCSETS2*): 44 bytes
WINSIZE = struct.Struct("<HHHH")
NCCS = 19
# c_lflag, c_iflag, c_cflag bits and c_cc indices Linux (and vsnap) act on
ISIG, ICANON, ECHO = 0o1, 0o2, 0o10
CBAUD, BOTHER, CIBAUD, IBSHIFT = 0o10017, 0o10000, 0o2003600000, 16
VMIN, VTIME = 6, 5
# a new pseudo-terminal's settings (the pts driver's init_termios: tty_std_termios without
# HUPCL): ICRNL|IXON, OPOST|ONLCR, B38400|CS8|CREAD, ISIG|ICANON|ECHO|ECHOE|ECHOK|ECHOCTL|
# ECHOKE|IEXTEN; ^C ^\ DEL ^U ^D, VMIN 1, ^Q ^S ^Z ^R ^O ^W ^V
DEFAULT = (0x500, 0x5, 0xBF, 0x8A3B, 0,
           b"\x03\x1c\x7f\x15\x04\x00\x01\x00\x11\x13\x1a\x00\x12\x0f\x17\x16\x00\x00\x00")
# the baud rate of each CBAUD code (tty_baudrate.c's baud_table)
BAUDS = [0, 50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400,
         57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1152000, 1500000,
         2000000, 2500000, 3000000, 3500000, 4000000]
FOREGROUND = GUEST_PID  # the first guest's group, which the shell (vsnap) put in the foreground
SESSION = GUEST_PID - 1  # vsnap's session: the guest's, with this terminal as its own

_original: dict[int, list] = {}  # host fd -> its settings before vsnap first changed them


def baud(code: int) -> int:
    code = code & CBAUD
    index = (code & ~BOTHER) + (15 if code & BOTHER else 0)
    return BAUDS[index] if 0 <= index < len(BAUDS) else 0


class Terminal:
    def __init__(self, host_fd: int | None = None):
        self.host_fd = host_fd  # vsnap's own terminal, or None (a captured console)
        # (iflag, oflag, cflag, lflag, line, cc, ispeed, ospeed) once the guest set it; until
        # then the host terminal's own settings (or DEFAULT, captured)
        self.settings: tuple | None = None
        self.size: tuple | None = None  # (rows, cols, xpixel, ypixel) once the guest set it
        self.seen: tuple | None = None  # the host terminal's size the guest last knew of
        self.foreground = FOREGROUND
        self.session = SESSION

    @classmethod
    def of(cls, console) -> "Terminal":
        """The terminal of a console: vsnap's first standard stream that is a host terminal,
        when the console is vsnap's own (Console.host) on a Linux host."""
        if not getattr(console, "host_stdin", False) or not sys.platform.startswith("linux"):
            return cls()
        fd = next((i for i, tty in enumerate(console.tty) if tty), None)
        return cls(fd)

    # termios ---------------------------------------------------------------------------------

    def get(self) -> tuple:
        """(iflag, oflag, cflag, lflag, line, cc bytes, ispeed, ospeed)."""
        if self.settings is not None:
            return self.settings
        if self.host_fd is not None:
            return _with_speeds(*_from_host(self.host_fd))
        return _with_speeds(*DEFAULT)

    def termios(self) -> bytes:
        return TERMIOS.pack(*self.get()[:6])

    def termios2(self) -> bytes:
        return TERMIOS2.pack(*self.get())

    def set(self, raw: bytes, when: str, two: bool = False) -> None:
        """TCSETS* (raw: a struct termios) or TCSETS2* (a struct termios2); `when` is
        "now", "drain" or "flush" (TCSANOW, TCSADRAIN, TCSAFLUSH)."""
        if two:
            *fields, ispeed, ospeed = TERMIOS2.unpack(raw)
            if fields[2] & CBAUD != BOTHER:
                ispeed = ospeed = None  # from the CBAUD code, as tty_termios_baud_rate
        else:
            fields, ispeed, ospeed = TERMIOS.unpack(raw), None, None
        settings = _with_speeds(*fields, ispeed=ispeed, ospeed=ospeed)
        if self.host_fd is not None:
            _apply(self.host_fd, settings, when)
        self.settings = settings

    def mode(self) -> dict:
        lflag = self.get()[3]
        return {"canonical": bool(lflag & ICANON), "isig": bool(lflag & ISIG),
                "echo": bool(lflag & ECHO)}

    def signal_keys(self) -> bool:
        """Does the terminal turn typed characters into signals (canonical, ISIG)?"""
        lflag = self.get()[3]
        return bool(lflag & ICANON and lflag & ISIG)

    # window size -----------------------------------------------------------------------------

    def winsize(self) -> tuple:
        if self.host_fd is not None:
            return WINSIZE.unpack(fcntl.ioctl(self.host_fd, _host().TIOCGWINSZ, bytes(8)))
        return self.size if self.size is not None else (24, 80, 0, 0)

    def set_winsize(self, size: tuple) -> bool:
        """Store (and on the host, apply) a size; True if it changed (SIGWINCH is due)."""
        changed = size != self.winsize()
        if self.host_fd is not None:
            fcntl.ioctl(self.host_fd, _host().TIOCSWINSZ, WINSIZE.pack(*size))
        self.size = self.seen = size
        return changed

    def host_resized(self) -> bool:
        """The host said its terminal changed size (SIGWINCH): True if the size is not the one
        the guest last saw or set (the host's signal for the guest's own TIOCSWINSZ is not
        a second change)."""
        now = self.winsize()
        changed = now != self.seen
        self.seen = now
        return changed

    # queues ----------------------------------------------------------------------------------

    def flush(self, queue: int) -> None:
        """TCFLSH: 0 input, 1 output, 2 both (the caller checked it)."""
        if self.host_fd is not None:
            _host().tcflush(self.host_fd, queue)

    def flow(self, action: int) -> None:
        """TCXONC: 0 suspend output, 1 resume it, 2 send STOP, 3 send START."""
        if self.host_fd is not None:
            _host().tcflow(self.host_fd, action)

    def drain(self, brk: bool) -> None:
        """TCSBRK: wait for the output to go (nonzero arg, tcdrain) or send a break (0)."""
        if self.host_fd is not None:
            t = _host()
            t.tcsendbreak(self.host_fd, 0) if brk else t.tcdrain(self.host_fd)

    def input_pending(self, console) -> int:
        if self.host_fd is not None:
            out = fcntl.ioctl(self.host_fd, _host().FIONREAD, bytes(4))
            return struct.unpack("<i", out)[0]
        pending = getattr(console, "pending", None)
        return pending() if pending is not None else 0

    # images ----------------------------------------------------------------------------------

    def saved(self) -> dict:
        iflag, oflag, cflag, lflag, line, cc, ispeed, ospeed = self.get()
        return {"termios": {"iflag": iflag, "oflag": oflag, "cflag": cflag, "lflag": lflag,
                            "line": line, "cc": cc.hex(), "ispeed": ispeed, "ospeed": ospeed},
                "set": self.settings is not None,
                "winsize": list(self.size) if self.size is not None else None,
                "foreground": self.foreground}

    def load(self, d: dict) -> None:
        """What saved() wrote (checked: snapshot/ttyimage.py). The host terminal is not
        touched here: reapply() does it, when a run is about to go on."""
        t = d["termios"]
        if d["set"]:
            self.settings = (t["iflag"], t["oflag"], t["cflag"], t["lflag"], t["line"],
                             bytes.fromhex(t["cc"]), t["ispeed"], t["ospeed"])
        self.size = None if d["winsize"] is None else tuple(d["winsize"])
        self.foreground = d["foreground"]

    def reapply(self) -> None:
        """A resumed guest's settings on the host terminal it now runs on."""
        if self.host_fd is None:
            return
        if self.settings is not None:
            _apply(self.host_fd, self.settings, "now")
        if self.size is not None:
            fcntl.ioctl(self.host_fd, _host().TIOCSWINSZ, WINSIZE.pack(*self.size))


def _host():
    import termios
    return termios


def _with_speeds(iflag, oflag, cflag, lflag, line, cc, ispeed=None, ospeed=None) -> tuple:
    """The record with c_ispeed and c_ospeed: as given (BOTHER), else from the CBAUD and
    CIBAUD codes (input 0: the output speed), as the kernel's set_termios fills them."""
    if ospeed is None:
        ospeed = baud(cflag)
    if ispeed is None:
        icode = (cflag & CIBAUD) >> IBSHIFT
        ispeed = baud(icode) if icode else ospeed
    return (iflag, oflag, cflag, lflag, line, bytes(cc[:NCCS]).ljust(NCCS, b"\0"),
            ispeed, ospeed)


def _from_host(fd: int) -> tuple:
    iflag, oflag, cflag, lflag, _, _, cc = _host().tcgetattr(fd)
    raw = bytes(c if isinstance(c, int) else c[0] for c in cc[:NCCS])
    return iflag, oflag, cflag, lflag, 0, raw


def _apply(fd: int, settings: tuple, when: str) -> None:
    """Put the guest's settings on the host terminal, remembering first what it had."""
    t = _host()
    if fd not in _original:
        _original[fd] = t.tcgetattr(fd)
        if len(_original) == 1:
            atexit.register(restore_host)
    iflag, oflag, cflag, lflag, _, cc, _, _ = settings
    current = t.tcgetattr(fd)
    speed = cflag & CBAUD
    if speed == BOTHER:  # an arbitrary rate (termios2): the termios module cannot set one
        speed = current[5]
        cflag = (cflag & ~CBAUD) | speed
    full = list(cc) + [0] * (len(current[6]) - NCCS)
    how = {"now": t.TCSANOW, "drain": t.TCSADRAIN, "flush": t.TCSAFLUSH}[when]
    t.tcsetattr(fd, how, [iflag, oflag, cflag, lflag, speed, speed, full])


def restore_host() -> None:
    """The host terminal as vsnap found it (the end of a run, and at exit whatever ends it)."""
    t = _host()
    for fd, attrs in list(_original.items()):
        try:
            t.tcsetattr(fd, t.TCSANOW, attrs)
        except (OSError, t.error):
            pass  # the terminal went away (hung up): nothing left to put back
        del _original[fd]
