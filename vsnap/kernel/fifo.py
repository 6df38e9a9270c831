"""mknod and mknodat, and named pipes (FIFOs) used by one process.

A FIFO is made on the host inside the root, so it is there after the run as on Linux. Its
open file descriptions (kind "fifo") hold host descriptors that never block the emulator: the
host side is always O_NONBLOCK, and the guest's own O_NONBLOCK flag decides what it sees.

With one process, a FIFO has no other end unless this process opens it: a blocking open for
reading with no writer (or for writing with no reader), a read of an empty FIFO that has a
writer, or a write into a full one would wait forever on Linux. vsnap refuses them with
EDEADLK and one line saying why, instead of hanging (processes come later). Images carry
FIFO descriptions and the bytes waiting in them (snapshot/fifos.py).
"""
from __future__ import annotations

import fcntl
import os
import stat as S
import termios

from .. import signals as SIG
from ..abi import consts as C
from ..abi import errno as E
from ..errors import SyscallError
from ..fdtable import OpenFile
from .fsutil import host_errors, lookup, touch, touch_parent, touch_path
from .registry import syscall

F_GETPIPE_SZ = 1032
SIGPIPE = 13


@syscall("mknod", "path mode hex")
def sys_mknod(p, path, mode, dev):
    """int mknod(const char *pathname, mode_t mode, dev_t dev);"""
    return sys_mknodat(p, C.AT_FDCWD, path, mode, dev)


@syscall("mknodat", "fd path mode hex")
def sys_mknodat(p, dirfd, path, mode, dev):
    """int mknodat(int dirfd, const char *pathname, mode_t mode, dev_t dev);"""
    mode &= 0xFFFFFFFF
    kind = mode & C.S_IFMT
    if kind == C.S_IFDIR:
        raise SyscallError(E.EPERM, "mknod cannot make a directory")
    if kind not in (0, C.S_IFREG, C.S_IFCHR, C.S_IFBLK, C.S_IFIFO, C.S_IFSOCK):
        raise SyscallError(E.EINVAL, f"file type {kind:#o}")
    r = lookup(p, dirfd, path, follow=False)
    if r.exists:
        raise SyscallError(E.EEXIST, r.guest)
    if r.special or r.host is None:
        raise SyscallError(E.EACCES, f"{r.guest}: vsnap's virtual directories are read-only")
    if kind in (C.S_IFCHR, C.S_IFBLK):
        # an ordinary user has no CAP_MKNOD; the guest is one, whoever runs vsnap
        raise SyscallError(E.EPERM, f"{r.guest}: device files need CAP_MKNOD")
    perm = mode & 0o7777 & ~p.task.umask
    with host_errors():
        if kind in (0, C.S_IFREG):
            fd = os.open(r.host, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
            try:
                os.fchmod(fd, perm)
                touch(p, fd)
            finally:
                os.close(fd)
        else:
            os.mknod(r.host, kind | 0o600)  # a FIFO or a socket: no privilege needed
            os.chmod(r.host, perm, follow_symlinks=False)
            touch_path(p, r.host)
        touch_parent(p, r.host)
    return 0


def _ends(p, key) -> tuple[bool, bool]:
    """Whether this process holds the FIFO `key` open for reading, and for writing."""
    readers = writers = False
    for f in p.fds.descriptions():
        if f.kind == "fifo" and f.data == key:
            acc = f.flags & C.O_ACCMODE
            readers |= acc != C.O_WRONLY
            writers |= acc != C.O_RDONLY
    return readers, writers


def _forever(p, what: str, guest: str) -> SyscallError:
    """EDEADLK for what would wait forever, named once per situation ("reading the empty")."""
    p.sys.refuse(f"FIFO ({what.split(' the')[0]})", f"vsnap: {what} FIFO {guest} would wait "
             f"forever: no other process exists to open its other end (one process only): "
             f"EDEADLK")
    return SyscallError(E.EDEADLK, f"{what} {guest}")


def open_fifo(p, r, flags: int, st: os.stat_result) -> OpenFile:
    """open(2) of a FIFO: O_RDWR, or either end with the other end already open here, or
    O_NONBLOCK reading (writing gives ENXIO without a reader, as on Linux)."""
    acc = flags & C.O_ACCMODE
    key = f"{st.st_dev}:{st.st_ino}".encode()  # kept in `data`: which FIFO this is
    readers, writers = _ends(p, key)
    if not flags & C.O_NONBLOCK:
        if acc == C.O_RDONLY and not writers:
            raise _forever(p, "opening for reading the", r.guest)
        if acc == C.O_WRONLY and not readers:
            raise _forever(p, "opening for writing the", r.guest)
    host = {C.O_RDONLY: os.O_RDONLY, C.O_WRONLY: os.O_WRONLY}.get(acc, os.O_RDWR)
    with host_errors():  # ENXIO: O_WRONLY|O_NONBLOCK with no reader
        fd = os.open(r.host, host | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    status = flags & ~(C.O_CREAT | C.O_EXCL | C.O_NOCTTY | C.O_TRUNC | C.O_CLOEXEC)
    return OpenFile("fifo", r.guest, status, host_path=r.host, host_fd=fd, data=key)


def read(p, f: OpenFile, count: int) -> bytes:
    try:
        return os.read(f.host_fd, count)
    except BlockingIOError:
        if f.flags & C.O_NONBLOCK:
            raise SyscallError(E.EAGAIN, f.path) from None
        raise _forever(p, "reading the empty", f.path) from None
    except OSError as e:
        raise SyscallError(E.EIO, f"{f.path}: {e.strerror}") from None


def write(p, f: OpenFile, data: bytes) -> int:
    if not data:
        return 0
    if not f.flags & C.O_NONBLOCK:
        # a blocking write waits until all of it fits: check first, never half-write
        with host_errors():
            room = (fcntl.fcntl(f.host_fd, F_GETPIPE_SZ)
                    - int.from_bytes(fcntl.ioctl(f.host_fd, termios.FIONREAD, b"\0" * 4),
                                     "little"))
        if len(data) > room and _ends(p, f.data)[0]:
            raise _forever(p, "writing into the full", f.path)
    try:
        n = os.write(f.host_fd, data)
        touch(p, f.host_fd)  # a write stamps the FIFO, as on Linux: with the virtual time
        return n
    except BlockingIOError:
        raise SyscallError(E.EAGAIN, f.path) from None
    except BrokenPipeError:  # no reader: SIGPIPE, and EPIPE if it is caught or ignored
        p.signals.post(SIG.SigInfo(SIGPIPE, SIG.SI_USER, pid=p.task.pid, uid=p.task.uid))
        raise SyscallError(E.EPIPE, f.path) from None
    except OSError as e:
        raise SyscallError(E.EIO, f"{f.path}: {e.strerror}") from None


def is_fifo(st: os.stat_result) -> bool:
    return S.S_ISFIFO(st.st_mode)
