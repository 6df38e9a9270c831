"""File times: utimensat, futimesat, utimes, utime (the rules for the three times are in
inodetimes.py)."""
from __future__ import annotations

import os
import struct

from ..abi import consts as C
from ..abi import errno as E
from ..abi import structs
from ..errors import SyscallError
from . import dirref
from .fsutil import host_errors, lookup, must_exist, s32
from .inodetimes import mark_changed
from .registry import syscall

NOW, OMIT = C.UTIME_NOW, C.UTIME_OMIT


# the four system calls --------------------------------------------------------------------------
def _read_timevals(p, ptr: int):
    """A struct timeval[2] as timespecs. tv_usec is checked here, before the path, as Linux does:
    UTIME_NOW and UTIME_OMIT are no microsecond counts."""
    if ptr == 0:
        return None
    out = []
    for i in (0, 16):
        sec, usec = structs.unpack_timeval(p.read(ptr + i, 16))
        if not 0 <= usec < 1_000_000:
            raise SyscallError(E.EINVAL, f"tv_usec {usec}")
        out.append((sec, usec * 1000))
    return out


def _raw_timespecs(p, ptr: int):
    """The timespec pairs exactly as written (tv_nsec unchecked, not folded into seconds)."""
    if ptr == 0:
        return None
    raw = p.read(ptr, 32)
    return [struct.unpack_from("<qq", raw, i) for i in (0, 16)]


def _target(p, dirfd: int, path: int, flags: int):
    """(host path or host fd, guest path) of the file whose times change; EPERM for vsnap's
    virtual files, whose times are fixed."""
    dirfd = s32(dirfd)
    if path == 0 and dirfd != C.AT_FDCWD:   # utimensat(fd, NULL, ...): futimens
        if flags:
            raise SyscallError(E.EINVAL, "flags with a NULL path")
        return _of_fd(p, dirfd)
    if flags & ~(C.AT_SYMLINK_NOFOLLOW | C.AT_EMPTY_PATH):
        raise SyscallError(E.EINVAL, f"flags {flags:#x}")
    r = lookup(p, dirfd, path, follow=not flags & C.AT_SYMLINK_NOFOLLOW,
               empty_ok=bool(flags & C.AT_EMPTY_PATH))
    if r is None:  # AT_EMPTY_PATH and "": the file dirfd refers to
        if dirfd == C.AT_FDCWD:
            if p.task.cwd_removed:  # the removed directory itself, not its old name
                return dirref.here(p).host, p.task.cwd
            return p.sys.vfs.host_path(p.task.cwd), p.task.cwd
        return _of_fd(p, dirfd)
    must_exist(r)
    if r.special:
        raise SyscallError(E.EPERM, f"{r.guest}: vsnap's virtual files keep fixed times")
    return r.host, r.guest


def _of_fd(p, fd: int):
    f = p.fds.get(fd)
    if f.ops is not None:  # a pipe end: the times of its own inode (set_times)
        return f, f.path
    if f.kind in ("file", "dir") and f.host_fd is not None:
        return f.host_fd, f.path
    raise SyscallError(E.EPERM, f"{f.path or f.kind}: vsnap's virtual files keep fixed times")


def set_times(p, dirfd: int, path: int, times, flags: int) -> int:
    """Linux's do_utimes: find the file, check tv_nsec, set the times, record the change."""
    where, guest = _target(p, dirfd, path, flags)
    if times is not None:
        for _, nsec in times:
            if nsec not in (NOW, OMIT) and not 0 <= nsec <= 999_999_999:
                raise SyscallError(E.EINVAL, f"tv_nsec {nsec}")
    now = p.sys.clock.realtime_ns
    if not isinstance(where, (int, str)):  # a pipe end (pipefile.py)
        st = where.ops.stat(p, where)
        old = (st["atime_ns"], st["mtime_ns"])
        new = [now, now] if times is None else [
            old[i] if nsec == OMIT else now if nsec == NOW else _clamp(sec * 10**9 + nsec)
            for i, (sec, nsec) in enumerate(times)]
        explicit = times is not None and any(n not in (NOW, OMIT) for _, n in times)
        where.ops.set_times(p, where, *new, explicit)
        return 0
    # The guest owns every file in its sandbox, so it may set any time (Linux: the owner may).
    # a host path is never followed (the sandbox resolved it); a host fd is the file itself
    nofollow = {} if isinstance(where, int) else {"follow_symlinks": False}
    with host_errors():
        st = os.stat(where, **nofollow)
        old = (st.st_atime_ns, st.st_mtime_ns)
        new = [now, now] if times is None else [
            old[i] if nsec == OMIT else now if nsec == NOW else _clamp(sec * 10**9 + nsec)
            for i, (sec, nsec) in enumerate(times)]
        os.utime(where, ns=tuple(new), **nofollow)
        mark_changed(p, os.stat(where, **nofollow), guest)
    return 0


def _clamp(ns: int) -> int:
    """Into the host's time_t range; the host file system then clamps to its own range, as
    Linux clamps to the file system's."""
    return max(-(1 << 63), min(ns, (1 << 63) - 1))


@syscall("utimensat", "fd path ptr hex")
def sys_utimensat(p, dirfd, path, times, flags):
    """int utimensat(int dirfd, const char *pathname, const struct timespec times[2],
    int flags);"""
    raw = _raw_timespecs(p, times)
    if raw is not None and raw[0][1] == OMIT and raw[1][1] == OMIT:
        return 0  # nothing to do: Linux does not even look at the path or the flags
    return set_times(p, dirfd, path, raw, s32(flags))


@syscall("futimesat", "fd path ptr")
def sys_futimesat(p, dirfd, path, times):
    """int futimesat(int dirfd, const char *pathname, const struct timeval times[2]);"""
    return set_times(p, dirfd, path, _read_timevals(p, times), 0)


@syscall("utimes", "path ptr")
def sys_utimes(p, path, times):
    """int utimes(const char *filename, const struct timeval times[2]);"""
    return set_times(p, C.AT_FDCWD, path, _read_timevals(p, times), 0)


@syscall("utime", "path ptr")
def sys_utime(p, path, times):
    """int utime(const char *filename, const struct utimbuf *times);"""
    if times == 0:
        return set_times(p, C.AT_FDCWD, path, None, 0)
    actime, modtime = struct.unpack("<qq", p.read(times, 16))
    return set_times(p, C.AT_FDCWD, path, [(actime, 0), (modtime, 0)], 0)

