"""open(O_PATH): a descriptor that names a file without opening it for I/O.

As on Linux, such a descriptor (kind "path") serves only the calls that take a file by name:
fstat, fstatat/statx with AT_EMPTY_PATH, readlinkat(fd, ""), fchdir and the *at calls (when
it names a directory), dup, close, and fcntl's F_DUPFD/F_GETFD/F_SETFD/F_GETFL. Every other
call gets EBADF: FdTable.get refuses it (Linux's fdget), and only those few use get_raw
(fdget_raw). With O_NOFOLLOW it may name a symbolic link itself. Opening needs no permission
on the file and never blocks (a FIFO is not opened): the host side is an O_PATH descriptor too.
"""
from __future__ import annotations

import os
import stat as S

from ..abi import consts as C
from ..abi import errno as E
from ..errors import SyscallError
from ..fdtable import OpenFile
from .fsutil import host_errors, lookup

KEPT_FLAGS = C.O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW   # Linux drops every other flag


def open_path(p, dirfd: int, path: int, flags: int) -> int:
    r = lookup(p, dirfd, path, follow=not flags & C.O_NOFOLLOW)
    if not r.exists:
        raise SyscallError(E.ENOENT, r.guest)
    status = flags & KEPT_FLAGS
    if r.special:  # a /dev or /proc name: found again by its (canonical) path
        if flags & C.O_DIRECTORY and not (r.node is not None and r.node.is_dir):
            raise SyscallError(E.ENOTDIR, r.guest)
        f = OpenFile("path", r.guest, status, stream="virtual")
    else:
        with host_errors():
            fd = os.open(r.host, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
            if flags & C.O_DIRECTORY and not S.S_ISDIR(os.fstat(fd).st_mode):
                os.close(fd)
                raise SyscallError(E.ENOTDIR, r.guest)
        f = OpenFile("path", r.guest, status, host_path=r.host, host_fd=fd)
    return p.fds.install(f, cloexec=bool(flags & C.O_CLOEXEC))


def _node(p, f: OpenFile):
    return p.sys.vfs.virtual.node(f.path) if p.sys.vfs.virtual is not None else None


def is_dir(p, f: OpenFile) -> bool:
    """Does an O_PATH descriptor name a directory (so fchdir and *at may use it)?"""
    if f.host_fd is None:
        node = _node(p, f)
        return node is not None and node.is_dir and node.link is None
    with host_errors():
        return S.S_ISDIR(os.fstat(f.host_fd).st_mode)


def is_symlink(p, f: OpenFile) -> bool:
    if f.host_fd is None:
        node = _node(p, f)
        return node is not None and node.link is not None
    with host_errors():
        return S.S_ISLNK(os.fstat(f.host_fd).st_mode)


FCNTL_ALLOWED = (C.F_DUPFD, C.F_DUPFD_CLOEXEC, C.F_GETFD, C.F_SETFD, C.F_GETFL)
