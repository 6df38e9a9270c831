"""System calls that say what a name or a descriptor is: the stat family and access. Every name
goes through the sandbox (vfs.py)."""
from __future__ import annotations

from ..abi import consts as C
from ..abi import errno as E
from ..abi import structs
from ..errors import SyscallError
from . import dirref, perm
from .fsutil import lookup, s32, stat_of_file, stat_of_resolved, write_stat
from .registry import syscall


@syscall("stat", "path ptr")
def sys_stat(p, path, statbuf):
    """int stat(const char *pathname, struct stat *statbuf);"""
    return write_stat(p, statbuf, stat_of_resolved(p, lookup(p, C.AT_FDCWD, path)))


@syscall("lstat", "path ptr")
def sys_lstat(p, path, statbuf):
    """int lstat(const char *pathname, struct stat *statbuf);"""
    r = lookup(p, C.AT_FDCWD, path, follow=False)
    return write_stat(p, statbuf, stat_of_resolved(p, r, follow=False))


@syscall("fstat", "fd ptr")
def sys_fstat(p, fd, statbuf):
    """int fstat(int fd, struct stat *statbuf);"""
    return write_stat(p, statbuf, stat_of_file(p, p.fds.get_raw(s32(fd))))


def _fstatat_fields(p, dirfd, path, flags) -> dict:
    r = lookup(p, dirfd, path, follow=not flags & C.AT_SYMLINK_NOFOLLOW,
               empty_ok=bool(flags & C.AT_EMPTY_PATH))
    if r is None:  # AT_EMPTY_PATH: the file dirfd refers to
        dirfd = s32(dirfd)
        if dirfd == C.AT_FDCWD:  # the cwd may be virtual (/proc/1000): resolve it
            return stat_of_resolved(p, dirref.here(p))
        return stat_of_file(p, p.fds.get_raw(dirfd))
    return stat_of_resolved(p, r, follow=not flags & C.AT_SYMLINK_NOFOLLOW)


@syscall("newfstatat", "fd path ptr hex")
def sys_newfstatat(p, dirfd, path, statbuf, flags):
    """int fstatat(int dirfd, const char *pathname, struct stat *statbuf, int flags);"""
    return write_stat(p, statbuf, _fstatat_fields(p, dirfd, path, flags))


@syscall("statx", "fd path hex hex ptr")
def sys_statx(p, dirfd, path, flags, mask, statxbuf):
    """int statx(int dirfd, const char *pathname, int flags, unsigned int mask,
    struct statx *statxbuf);"""
    f = _fstatat_fields(p, dirfd, path, flags)
    p.write(statxbuf, structs.pack_statx(
        ino=f["ino"], nlink=f["nlink"], mode=f["mode"], uid=f["uid"], gid=f["gid"],
        size=f["size"], blksize=f["blksize"], blocks=f["blocks"], atime_ns=f["atime_ns"],
        mtime_ns=f["mtime_ns"], ctime_ns=f["ctime_ns"], rdev_major=f["rdev"] >> 8,
        rdev_minor=f["rdev"] & 0xFF, dev_major=f["dev"] >> 8, dev_minor=f["dev"] & 0xFF))
    return 0


@syscall("access", "path int")
def sys_access(p, path, mode):
    """int access(const char *pathname, int mode);"""
    return sys_faccessat2(p, C.AT_FDCWD, path, mode, 0)


@syscall("faccessat", "fd path int")
def sys_faccessat(p, dirfd, path, mode):
    """int faccessat(int dirfd, const char *pathname, int mode, int flags);"""
    return sys_faccessat2(p, dirfd, path, mode, 0)


@syscall("faccessat2", "fd path int hex")
def sys_faccessat2(p, dirfd, path, mode, flags):
    """int faccessat2(int dirfd, const char *pathname, int mode, int flags);"""
    mode, flags = s32(mode), s32(flags)
    if mode & ~(C.R_OK | C.W_OK | C.X_OK):
        raise SyscallError(E.EINVAL, f"access mode {mode:#x}")
    if flags & ~(C.AT_EACCESS | C.AT_SYMLINK_NOFOLLOW | C.AT_EMPTY_PATH):
        raise SyscallError(E.EINVAL, f"faccessat2 flags {flags:#x}")
    # AT_EACCESS asks about the effective ids instead of the real ones: the guest's are the same
    st = _fstatat_fields(p, dirfd, path, flags & (C.AT_SYMLINK_NOFOLLOW | C.AT_EMPTY_PATH))
    # R_OK, W_OK and X_OK are the MAY_* bits: the owner's bits decide (access.py)
    perm.require(p, st["mode"], mode, "faccessat")
    return 0
