"""The permission checks of the file system calls, as Linux makes them for an unprivileged user.

vsnap checks access itself, against the guest's credentials (access.py), so the sandbox behaves
the same whoever runs vsnap: a host root would get past every check the host kernel makes. The
path walk checks search permission (vfs.py, given the credentials by fsutil.lookup); the helpers
here are the checks on the last component, named after Linux's: may_open, may_create,
may_delete, and the clearing of set-user-ID bits when an unprivileged user changes a file.
"""
from __future__ import annotations

import os
import stat as S

from ..abi import consts as C
from ..abi import errno as E
from ..access import MAY_EXEC, MAY_READ, MAY_WRITE, S_ISGID, S_ISUID, privileges_dropped
from ..errors import SyscallError
from ..vfs import Resolved
from .fsutil import creds, host_errors

SETID = S_ISUID | S_ISGID


def require(p, mode: int, want: int, guest: str) -> None:
    """EACCES unless the guest may `want` (MAY_* bits) a file with this st_mode."""
    if not creds(p).permits(mode, want):
        need = "".join(c for bit, c in ((MAY_READ, "r"), (MAY_WRITE, "w"), (MAY_EXEC, "x"))
                       if want & bit)
        raise SyscallError(E.EACCES, f"{guest}: needs {need} permission")


def open_wants(flags: int) -> int:
    """What opening an existing file asks for: the access mode's bits, and write for O_TRUNC
    (even with O_RDONLY, which Linux then truncates)."""
    want = {C.O_RDONLY: MAY_READ, C.O_WRONLY: MAY_WRITE}.get(flags & C.O_ACCMODE,
                                                             MAY_READ | MAY_WRITE)
    return want | (MAY_WRITE if flags & C.O_TRUNC else 0)


def _parent(r: Resolved) -> tuple[str, str]:
    """(host path, guest path) of the directory that holds the resolved name."""
    return os.path.dirname(r.host), os.path.dirname(r.guest) or "/"


def may_change_dir(p, r: Resolved) -> None:
    """Adding or removing a name needs write and search permission on its directory (Linux's
    may_create and may_delete; the other errors of those are the caller's, in Linux's order)."""
    host, guest = _parent(r)
    with host_errors():
        mode = os.stat(host).st_mode
    require(p, mode, MAY_WRITE | MAY_EXEC, guest)


may_create = may_change_dir
may_delete = may_change_dir


def same_dir(a: Resolved, b: Resolved) -> bool:
    return _parent(a)[1] == _parent(b)[1]


def setid_may_be_set(p, mode: int) -> None:
    """A chmod gave some file set-user-ID bits: which open file it was is not worth finding out
    (another name, another descriptor), so every open file checks again on its next write."""
    if mode & SETID:
        for f in p.fds.descriptions():
            f.may_be_setid = True


def drop_privileges(p, host_fd: int) -> None:
    """After a write or truncate: an unprivileged writer clears set-user-ID (and set-group-ID
    with group execute), as Linux's file_remove_privs does. The host kernel does it only when
    vsnap is not root, so vsnap does it itself."""
    with host_errors():
        mode = os.fstat(host_fd).st_mode
        if mode & SETID:  # rare: the common case costs one fstat
            new = privileges_dropped(mode)
            if new != mode:
                os.fchmod(host_fd, S.S_IMODE(new))
