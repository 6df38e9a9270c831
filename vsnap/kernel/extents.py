"""Where a file's bytes are: fallocate (allocate, punch holes, zero, collapse and insert ranges)
and the SEEK_DATA/SEEK_HOLE part of lseek.

A guest's regular file is a host file, so these go to the host kernel: the host file system decides
which modes it supports (ext4 all of them, tmpfs no collapse, insert or zero range) and answers
EOPNOTSUPP otherwise, as Linux does. What vsnap adds is the rest of Linux's checks for the files
that are not host files (console, /dev/null, /proc), and the virtual clock on the times.
"""
from __future__ import annotations

import ctypes
import os

from ..abi import consts as C
from ..abi import errno as E
from ..errors import SyscallError
from ..fdtable import OpenFile
from .fsutil import host_errors, s32, s64
from .inodetimes import mark_changed
from .registry import syscall

_MODES = (C.FALLOC_FL_KEEP_SIZE | C.FALLOC_FL_PUNCH_HOLE | C.FALLOC_FL_COLLAPSE_RANGE
          | C.FALLOC_FL_ZERO_RANGE | C.FALLOC_FL_INSERT_RANGE | C.FALLOC_FL_UNSHARE_RANGE)


def _host_fallocate():
    """The host C library's fallocate(2), or None where there is none (not Linux)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).fallocate
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int
    return fn


_FALLOCATE = _host_fallocate()


@syscall("fallocate", "fd hex int int")
def sys_fallocate(p, fd, mode, offset, length):
    """int fallocate(int fd, int mode, off_t offset, off_t len);"""
    f = p.fds.get(s32(fd))
    mode, offset, length = s32(mode), s64(offset), s64(length)
    if offset < 0 or length <= 0:
        raise SyscallError(E.EINVAL, "fallocate offset or length")
    if f.kind != "file":
        _not_a_file(p, f, mode)
    if f.flags & C.O_ACCMODE == C.O_RDONLY:
        raise SyscallError(E.EBADF, f"{f.path} is open for reading only")
    if _FALLOCATE is None:
        raise SyscallError(E.EOPNOTSUPP, "fallocate: the host has no fallocate(2)")
    with host_errors():
        before = os.fstat(f.host_fd)
        if _FALLOCATE(f.host_fd, mode, offset, length) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        after = os.fstat(f.host_fd)
        # The host stamped its real clock where its file system changes times (ext4: mtime and
        # ctime on every success): put the virtual clock in the same places, keep the atime.
        mtime = p.sys.clock.realtime_ns if after.st_mtime_ns != before.st_mtime_ns \
            else before.st_mtime_ns
        os.utime(f.host_fd, ns=(before.st_atime_ns, mtime))
        if after.st_ctime_ns != before.st_ctime_ns:
            mark_changed(p, after, f.path)
    return 0


def _not_a_file(p, f: OpenFile, mode: int) -> None:
    """Linux's answers for what is not a regular file, in its order (vfs_fallocate)."""
    if mode & ~_MODES:
        raise SyscallError(E.EOPNOTSUPP, f"fallocate mode {mode:#x}")
    if f.flags & C.O_ACCMODE == C.O_RDONLY:
        raise SyscallError(E.EBADF, f"{f.path} is open for reading only")
    if f.kind == "dir":
        raise SyscallError(E.EISDIR, f.path)
    if f.kind == "pipe" or (f.kind == "console" and not (
            f.stream == "tty" or p.sys.console.isatty(f.stream))):
        raise SyscallError(E.ESPIPE, f"{f.path or f.stream}: a pipe")  # what stat calls it
    raise SyscallError(E.ENODEV, f"{f.path or f.stream}: not a regular file")


def seek_data_hole(f: OpenFile, offset: int, whence: int) -> int:
    """lseek's SEEK_DATA (the next byte of data at or after offset) and SEEK_HOLE (the next
    hole; the end of the file counts as one); ENXIO at or past the end."""
    if f.kind == "file":
        with host_errors():
            return os.lseek(f.host_fd, offset, os.SEEK_DATA if whence == C.SEEK_DATA
                            else os.SEEK_HOLE)
    if f.kind == "proc":  # bytes made at open: all data, no holes
        size = len(f.data or b"")
        if not 0 <= offset < size:
            raise SyscallError(E.ENXIO, f"offset {offset} past the end")
        return offset if whence == C.SEEK_DATA else size
    if f.kind == "null":
        return 0  # Linux's /dev/null answers 0 to every lseek
    raise SyscallError(E.EINVAL, f"{f.path}: SEEK_DATA/SEEK_HOLE on a directory")
