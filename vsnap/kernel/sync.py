"""Durability and cache hints: fsync, fdatasync, sync, syncfs, sync_file_range, fadvise64,
readahead.

A guest's files are host files, so the guest's "write it to disk" is the host's: these really
flush the host file (or the host file system that holds the sandbox). The hints (fadvise64,
readahead) have no effect a program can see, on Linux as here; they are checked as Linux checks
them and passed on to the host for regular files.
"""
from __future__ import annotations

import ctypes
import os

from ..abi import consts as C
from ..abi import errno as E
from ..errors import SyscallError
from ..fdtable import OpenFile
from .fsutil import host_errors, s32, s64
from .registry import syscall

_SYNC_FLAGS = (C.SYNC_FILE_RANGE_WAIT_BEFORE | C.SYNC_FILE_RANGE_WRITE
               | C.SYNC_FILE_RANGE_WAIT_AFTER)


def _libc(name: str, *argtypes):
    """A function of the host C library, or None (not Linux, or an old C library)."""
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (AttributeError, OSError):
        return None
    fn.argtypes, fn.restype = list(argtypes), ctypes.c_int
    return fn


_SYNCFS = _libc("syncfs", ctypes.c_int)
_SYNC_FILE_RANGE = _libc("sync_file_range", ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                         ctypes.c_uint)


def _check(result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _host_fd(f: OpenFile) -> int:
    """The host descriptor that fsync flushes. Linux has no fsync for pipes, terminals,
    /dev/null or /proc files: EINVAL."""
    if f.kind in ("file", "dir") and f.host_fd is not None:
        return f.host_fd
    raise SyscallError(E.EINVAL, f"{f.path or f.stream}: nothing to synchronise")


@syscall("fsync", "fd")
def sys_fsync(p, fd):
    """int fsync(int fd);"""
    with host_errors():
        os.fsync(_host_fd(p.fds.get(s32(fd))))
    return 0


@syscall("fdatasync", "fd")
def sys_fdatasync(p, fd):
    """int fdatasync(int fd);"""
    with host_errors():
        os.fdatasync(_host_fd(p.fds.get(s32(fd))))
    return 0


def _sync_sandbox(p) -> None:
    """Flush the host file system that holds the sandbox: the guest's whole disk."""
    with host_errors():
        if _SYNCFS is None:
            os.sync()
            return
        fd = os.open(p.sys.vfs.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _check(_SYNCFS(fd))
        finally:
            os.close(fd)


@syscall("sync", "")
def sys_sync(p):
    """void sync(void);"""
    _sync_sandbox(p)
    return 0


@syscall("syncfs", "fd")
def sys_syncfs(p, fd):
    """int syncfs(int fd);"""
    p.fds.get(s32(fd))  # every descriptor is on the guest's one file system
    _sync_sandbox(p)
    return 0


@syscall("sync_file_range", "fd int int hex")
def sys_sync_file_range(p, fd, offset, nbytes, flags):
    """int sync_file_range(int fd, off_t offset, off_t nbytes, unsigned int flags);"""
    f = p.fds.get(s32(fd))
    offset, nbytes, flags = s64(offset), s64(nbytes), flags & 0xFFFFFFFF
    end = offset + nbytes
    if flags & ~_SYNC_FLAGS or offset < 0 or not 0 <= end < 1 << 63 or end < offset:
        raise SyscallError(E.EINVAL, "sync_file_range arguments")
    if f.kind != "file" and not (f.kind == "dir" and f.host_fd is not None):
        raise SyscallError(E.ESPIPE, f"{f.path or f.stream}: not a file")
    with host_errors():
        if _SYNC_FILE_RANGE is None:
            os.fdatasync(f.host_fd)  # more than was asked for: never less
        else:
            _check(_SYNC_FILE_RANGE(f.host_fd, offset, nbytes, flags))
    return 0


def _is_pipe(p, f: OpenFile) -> bool:
    return f.kind == "pipe" or (f.kind == "console" and not (
        f.stream == "tty" or p.sys.console.isatty(f.stream)))


@syscall("fadvise64", "fd int int int")
def sys_fadvise64(p, fd, offset, length, advice):
    """int posix_fadvise(int fd, off_t offset, off_t len, int advice);"""
    f = p.fds.get(s32(fd))
    offset, length, advice = s64(offset), s64(length), s32(advice)
    if _is_pipe(p, f):
        raise SyscallError(E.ESPIPE, f"{f.stream}: a pipe")
    if length < 0 or not C.POSIX_FADV_NORMAL <= advice <= C.POSIX_FADV_NOREUSE:
        raise SyscallError(E.EINVAL, f"fadvise length {length} or advice {advice}")
    if f.kind == "file":
        with host_errors():
            os.posix_fadvise(f.host_fd, offset, length, advice)
    return 0


@syscall("readahead", "fd int size")
def sys_readahead(p, fd, offset, count):
    """ssize_t readahead(int fd, off64_t offset, size_t count);"""
    f = p.fds.get(s32(fd))
    if f.flags & C.O_ACCMODE == C.O_WRONLY:
        raise SyscallError(E.EBADF, f"{f.path} is open for writing only")
    if f.kind != "file":
        raise SyscallError(E.EINVAL, f"{f.path or f.stream}: readahead needs a regular file")
    if s64(count) < 0:  # Linux passes count on as a signed length
        raise SyscallError(E.EINVAL, "count")
    with host_errors():
        os.posix_fadvise(f.host_fd, s64(offset), count, os.POSIX_FADV_WILLNEED)
    return 0
