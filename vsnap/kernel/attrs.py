"""System calls that change a file's size or mode: truncate, ftruncate, chmod, fchmod,
fchmodat, and the umask that new files' modes go through."""
from __future__ import annotations

import os
import stat as S

from ..abi import consts as C
from ..abi import errno as E
from ..access import MAY_WRITE
from ..errors import SyscallError
from . import perm
from .fsutil import host_errors, lookup, must_exist, s32, s64, touch
from .inodetimes import mark_changed
from .limits import check_truncate
from .paths import not_virtual
from .registry import syscall


@syscall("ftruncate", "fd int")
def sys_ftruncate(p, fd, length):
    """int ftruncate(int fd, off_t length);"""
    f = p.fds.get(s32(fd))
    if s64(length) < 0:
        raise SyscallError(E.EINVAL, "negative length")
    if f.kind != "file" or f.flags & C.O_ACCMODE == C.O_RDONLY:
        raise SyscallError(E.EINVAL, f"{f.path} is not open for writing")
    with host_errors():
        check_truncate(p, os.fstat(f.host_fd).st_size, length)
        perm.drop_privileges(p, f.host_fd)
        os.ftruncate(f.host_fd, length)
        touch(p, f.host_fd)
    return 0


@syscall("truncate", "path int")
def sys_truncate(p, path, length):
    """int truncate(const char *path, off_t length);"""
    if s64(length) < 0:  # before the lookup, as Linux
        raise SyscallError(E.EINVAL, "negative length")
    r = must_exist(not_virtual(lookup(p, C.AT_FDCWD, path), "read-only"))
    with host_errors():
        mode = os.stat(r.host).st_mode
    if S.S_ISDIR(mode):
        raise SyscallError(E.EISDIR, r.guest)
    if not S.S_ISREG(mode):
        raise SyscallError(E.EINVAL, f"{r.guest}: not a regular file")
    perm.require(p, mode, MAY_WRITE, r.guest)
    with host_errors():
        fd = os.open(r.host, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            check_truncate(p, os.fstat(fd).st_size, length)
            perm.drop_privileges(p, fd)
            os.ftruncate(fd, length)
            touch(p, fd)
        finally:
            os.close(fd)
    return 0


@syscall("chmod", "path mode")
def sys_chmod(p, path, mode):
    """int chmod(const char *pathname, mode_t mode);"""
    return sys_fchmodat(p, C.AT_FDCWD, path, mode)


@syscall("fchmodat", "fd path mode")
def sys_fchmodat(p, dirfd, path, mode):
    """int fchmodat(int dirfd, const char *pathname, mode_t mode, int flags);"""
    r = must_exist(not_virtual(lookup(p, dirfd, path), "read-only"))
    with host_errors():
        os.chmod(r.host, mode & 0o7777, follow_symlinks=False)
        mark_changed(p, os.lstat(r.host), r.guest)
    perm.setid_may_be_set(p, mode)
    return 0


@syscall("fchmod", "fd mode")
def sys_fchmod(p, fd, mode):
    """int fchmod(int fd, mode_t mode);"""
    f = p.fds.get(s32(fd))
    if f.ops is not None:  # a pipe's own inode (pipefile.py)
        return f.ops.chmod(p, f, mode)
    if f.kind in ("file", "dir") and f.host_fd is not None:
        with host_errors():
            os.chmod(f.host_fd, mode & 0o7777)
            mark_changed(p, os.fstat(f.host_fd), f.path)
        perm.setid_may_be_set(p, mode)
    return 0


@syscall("umask", "mode")
def sys_umask(p, mask):
    """mode_t umask(mode_t mask);"""
    old, p.task.umask = p.task.umask, mask & 0o777
    return old
