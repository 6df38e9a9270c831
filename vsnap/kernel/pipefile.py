"""A pipe end as an open file description's operations (OpenFile.ops): what read, write,
fstat, fcntl, ioctl, poll and /proc/self/fd see of an anonymous pipe made by pipe(2).

The bytes live in a Pipe (vsnap/pipes.py), shared by the ends; an AnonPipe adds what fstat
and /proc show of its inode: a number from the system's counter (deterministic, the same in
every run), its owner, mode and times. Linux 6.x leaves an anonymous pipe's times at its
creation (reads and writes no longer stamp them), so only fchmod and futimens change them.

A call that must wait raises Blocked (errors.py): the process parks at its syscall
instruction and runs it again once the pipe is readable or writable. A blocking write keeps
its progress on the process (`pending_write`) while parked, so the bytes it already moved
are not written twice, and a save while parked carries it (snapshot/pipeimage.py).
"""
from __future__ import annotations

import struct

from .. import signals as SIG
from ..abi import consts as C
from ..abi import errno as E
from ..errors import Blocked, SyscallError
from ..pipes import BrokenPipe, Pipe, WouldBlock

PIPE_DEV = 0xF          # pipefs: an anonymous device of its own, not the sandbox's 8:1
FIRST_INO = 8192        # the system's first pipe inode (clear of the console's 4096...)
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032
SIGPIPE = 13
MODE = 0o10600          # S_IFIFO | rw-------


INODE_KEYS = ("ino", "uid", "gid", "mode", "atime_ns", "mtime_ns", "ctime_ns")


class AnonPipe(Pipe):
    """A Pipe with the inode fstat shows: number, owner, mode and times."""

    def __init__(self, ino: int, uid: int, gid: int, born_ns: int, **kw):
        super().__init__(**kw)
        self.ino, self.uid, self.gid, self.mode = ino, uid, gid, MODE
        self.atime_ns = self.mtime_ns = self.ctime_ns = born_ns

    def saved(self) -> dict:
        return {**super().saved(), **{k: getattr(self, k) for k in INODE_KEYS}}

    @classmethod
    def load(cls, d) -> "AnonPipe":
        """An AnonPipe from saved(); ValueError with one clear line for bad data."""
        if not isinstance(d, dict):
            raise ValueError("pipe record must be an object")
        extra = {k: d.get(k) for k in INODE_KEYS}
        for k, v in extra.items():
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 63:
                raise ValueError(f"pipe {k} must be a non-negative integer, not {v!r}")
        if extra["mode"] & ~0o7777 != C.S_IFIFO:
            raise ValueError(f"pipe mode {extra['mode']:#o} is not a FIFO's")
        base = Pipe.load({k: v for k, v in d.items() if k not in extra})
        pipe = cls(extra["ino"], extra["uid"], extra["gid"], 0, size=base.size,
                   readers=base.readers, writers=base.writers)
        for k in INODE_KEYS:
            setattr(pipe, k, extra[k])
        pipe.slots = base.slots
        return pipe


def new_pipe(p, **kw) -> AnonPipe:
    """A pipe with the next inode number of the system (saved with it: same numbers after a
    resume)."""
    ino = p.sys.next_pipe_ino
    p.sys.next_pipe_ino = ino + 1
    return AnonPipe(ino, p.task.uid, p.task.gid, p.sys.clock.realtime_ns, **kw)


class PipeEnd:
    """The operations of one open file description of a pipe: its read end or its write
    end (pipe(2)), or both (O_RDWR through /proc/self/fd/N, as a FIFO opened O_RDWR)."""

    seekable = False

    def __init__(self, pipe: AnonPipe, reading: bool, writing: bool):
        self.pipe, self.reading, self.writing = pipe, reading, writing

    def release(self, f) -> None:
        """The description's last reference went: this end closes (EOF or EPIPE for the
        other side once no end of its kind is left)."""
        if self.reading:
            self.pipe.close_end(True)
        if self.writing:
            self.pipe.close_end(False)

    # -- bytes --------------------------------------------------------------------------------

    def read(self, p, f, count: int) -> bytes:
        try:
            return self.pipe.read(count, nonblock=bool(f.flags & C.O_NONBLOCK))
        except WouldBlock:
            raise Blocked("read on a pipe", self.pipe.readable) from None

    def write(self, p, f, data: bytes) -> int:
        """pipe_write: all of `data`, waiting for room as often as needed, unless O_NONBLOCK
        (what fits, EAGAIN for none); no reader: SIGPIPE to the writer and EPIPE (or the count
        already moved)."""
        pipe, key = self.pipe, [self.pipe.ino, len(data)]
        pend = p.pending_write
        if pend is not None and pend["key"] == key:
            done, first = pend["done"], pend["first"]
        else:
            done, first = 0, True
        p.pending_write = None
        nonblock = bool(f.flags & C.O_NONBLOCK)
        while done < len(data):
            try:
                done += pipe.write_some(data[done:], merge=first, packet=bool(
                    f.flags & C.O_DIRECT))
            except WouldBlock:
                if nonblock:
                    if done:
                        return done
                    raise SyscallError(E.EAGAIN, "pipe is full") from None
                p.pending_write = {"key": key, "done": done, "first": False}
                raise Blocked("write on a pipe", pipe.writable, on_interrupt=lambda: _stop(
                    p, done)) from None
            except BrokenPipe:
                p.signals.post(SIG.SigInfo(SIGPIPE, SIG.SI_USER, pid=p.task.pid,
                                           uid=p.task.uid))
                if done:
                    return done
                raise SyscallError(E.EPIPE, f"pipe:[{pipe.ino}] has no reader") from None
            first = False
        return done

    # -- what the other calls see ---------------------------------------------------------------

    def stat(self, p, f) -> dict:
        pipe = self.pipe
        return dict(dev=PIPE_DEV, ino=pipe.ino, nlink=1, mode=pipe.mode, uid=pipe.uid,
                    gid=pipe.gid, rdev=0, size=0, blksize=4096, blocks=0,
                    atime_ns=pipe.atime_ns, mtime_ns=pipe.mtime_ns, ctime_ns=pipe.ctime_ns)

    def chmod(self, p, f, mode: int) -> int:
        """fchmod: the pipe's inode takes the mode (its owner may; the guest never has
        CAP_FOWNER)."""
        self._owner(p)
        self.pipe.mode = C.S_IFIFO | (mode & 0o7777)
        self.pipe.ctime_ns = p.sys.clock.realtime_ns
        return 0

    def set_times(self, p, f, atime_ns: int, mtime_ns: int, explicit: bool) -> None:
        """futimens: explicit times need the owner (NULL or UTIME_NOW only write access,
        which the guest has to its own pipe)."""
        if explicit:
            self._owner(p)
        self.pipe.atime_ns, self.pipe.mtime_ns = atime_ns, mtime_ns
        self.pipe.ctime_ns = p.sys.clock.realtime_ns

    def _owner(self, p) -> None:
        if p.task.uid != self.pipe.uid:
            raise SyscallError(E.EPERM, f"pipe:[{self.pipe.ino}] belongs to uid {self.pipe.uid}")

    def statfs_magic(self) -> int:
        return C.PIPEFS_MAGIC

    def reopen(self, p, f, flags: int, status: int):
        """open(/proc/self/fd/N): a new description of the same pipe, either end or both
        (O_RDWR). fifo_open neither waits for a partner nor fails ENXIO on a pipe, as it
        does on a FIFO; open() adds O_LARGEFILE."""
        from ..fdtable import OpenFile
        acc = flags & C.O_ACCMODE
        end = PipeEnd(self.pipe, acc != C.O_WRONLY, acc != C.O_RDONLY)
        for reading in (True, False):
            if (end.reading, end.writing)[not reading]:
                self.pipe.open_end(reading)
        return OpenFile("pipe", f.path, status | C.O_LARGEFILE, ops=end)

    def target(self, p, f) -> str:
        """readlink(/proc/self/fd/N)."""
        return f"pipe:[{self.pipe.ino}]"

    def wait_queues(self, f) -> list:
        """What an epoll item on this end listens on (kernel/epoll.py): pipe_poll waits on
        the readers' queue for a read end, the writers' for a write end."""
        return [q for q, end in ((self.pipe.rd_wait, self.reading),
                                 (self.pipe.wr_wait, self.writing)) if end]

    def poll(self, p, f) -> int:
        mask = 0
        if self.reading:
            mask |= self.pipe.poll(True)
        if self.writing:
            mask |= self.pipe.poll(False)
        return mask

    def fcntl(self, p, f, cmd: int, arg: int) -> int | None:
        """F_GETPIPE_SZ and F_SETPIPE_SZ; None for the commands every file shares."""
        if cmd == F_GETPIPE_SZ:
            return self.pipe.size
        if cmd == F_SETPIPE_SZ:
            # pipe-user-pages-soft/hard are not modelled (README); CAP_SYS_RESOURCE never held
            return self.pipe.set_size(arg, privileged=False)
        return None

    def ioctl(self, p, f, request: int, argp: int) -> int:
        if request == C.FIONREAD:
            p.write(argp, struct.pack("<i", self.pipe.nread))
            return 0
        raise SyscallError(E.ENOTTY, f"ioctl {request:#x} on a pipe")


def _stop(p, done: int) -> int:
    """A signal ended a parked write: what it returns (the bytes moved, or EINTR)."""
    p.pending_write = None
    return done if done else -E.EINTR
