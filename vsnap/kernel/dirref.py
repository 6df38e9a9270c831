"""The current directory and directory descriptors hold a directory, not a path (Linux keeps a
dentry): renamed, they follow it (paths.py's _follow_rename moves their guest names); removed,
they keep naming the dead directory. Then getcwd is ENOENT, "." is the dead directory itself
(nlink 0, no entries), ".." the parent it had, and every other name in it ENOENT, creating
included, even after a new directory took the old name.

The cwd's identity is a host O_PATH descriptor of its directory, taken before anything could
remove it; a directory descriptor's is its own host descriptor. Whether the cwd is removed is
Process.cwd_removed, which the checkpoint keeps (with the directory's mode and mtime); a restored
removed cwd is a removed host directory again (snapshot/named.py's removed_dir)."""
from __future__ import annotations

import contextlib
import os
import posixpath
import stat

from ..abi import consts as C
from ..abi import errno as E
from ..errors import SyscallError
from ..vfs import Resolved
from .fsutil import base_dir, s32  # (fsutil imports this module only inside lookup)


class _Held:
    """A host descriptor that is closed with its holder (the kernel), not before."""

    def __init__(self, path: str, fd: int | None):
        self.path, self.fd = path, fd

    def __del__(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _open(host: str | None) -> int | None:
    if host is None:
        return None
    try:
        return os.open(host, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None  # a virtual directory (/proc, /dev): never removed


def cwd_fd(p) -> int | None:
    """The host descriptor of the cwd's directory (None for a virtual one)."""
    held = getattr(p, "cwd_held", None)
    if held is not None and (held.path == p.task.cwd or p.task.cwd_removed):
        held.path = p.task.cwd  # a removed cwd's name moves with its old parent's renames
        return held.fd
    if p.task.cwd_removed:  # restored from an image: removed again, on the root's file system
        from ..snapshot.named import removed_dir
        fd = removed_dir(p, p.task.cwd_removed)
    else:
        fd = _open(p.sys.vfs.host_path(p.task.cwd))
    p.cwd_held = _Held(p.task.cwd, fd)
    return fd


def enter(p, guest: str, host: str | None = None, fd: int | None = None) -> None:
    """chdir/fchdir: the cwd becomes this directory (named by its host path, or by a host
    descriptor of it, which is duplicated)."""
    new = os.dup(fd) if fd is not None else _open(host)
    p.task.cwd = guest
    p.cwd_held = _Held(guest, new)
    p.task.cwd_removed = gone(p, new, guest)


def removed(host_fd: int) -> bool:
    return os.fstat(host_fd).st_nlink == 0


def held_removed(f) -> bool:
    """Whether open file `f` holds a removed directory."""
    if f.kind not in ("dir", "path") or f.host_fd is None:
        return False
    st = os.fstat(f.host_fd)
    return stat.S_ISDIR(st.st_mode) and st.st_nlink == 0


def gone(p, fd: int | None, guest: str) -> dict | None:
    """What an image keeps of a removed directory, to make it again: its mode, mtime and guest
    inode number (None: it is not removed)."""
    if fd is None:
        return None
    st = os.fstat(fd)
    if st.st_nlink or not stat.S_ISDIR(st.st_mode):  # a removed file is refused (named.py)
        return None
    return {"mode": st.st_mode & 0o7777, "mtime_ns": st.st_mtime_ns,
            "ino": p.sys.guest_inode(st, guest)}


def removed_cwd(p) -> dict | None:
    """For the checkpoint: the removed cwd as it is now (chmod "." may have changed it)."""
    return gone(p, cwd_fd(p), p.task.cwd) if p.task.cwd_removed else None


@contextlib.contextmanager
def removing(p):
    """Around a call that may remove a directory (rmdir, rename over an empty one): the cwd's
    identity is taken before, and whether it is gone is known after."""
    fd = cwd_fd(p)
    try:
        yield
    finally:
        if not p.task.cwd_removed:
            p.task.cwd_removed = gone(p, fd, p.task.cwd)


def getcwd(p) -> str:
    if p.task.cwd_removed:
        raise SyscallError(E.ENOENT, f"the current directory {p.task.cwd} was removed")
    return p.task.cwd


def proc_link(p) -> str:
    """What readlink(/proc/self/cwd) shows."""
    return p.task.cwd + (" (deleted)" if p.task.cwd_removed else "")


def _dead_base(p, dirfd: int) -> int | None:
    """The host descriptor of the start directory if it was removed, else None."""
    if dirfd == C.AT_FDCWD:
        return cwd_fd(p) if p.task.cwd_removed else None
    f = p.fds.get_raw(dirfd)
    if f.host_fd is None:
        return None
    return f.host_fd if removed(f.host_fd) else None


def start(p, dirfd: int, path: str):
    """Where a guest path starts: (start directory, path) for vfs.resolve, or the Resolved dead
    directory itself when a removed start directory is named by "." alone. Raises ENOENT for
    any other name in a removed directory; ".." leaves it for its old parent."""
    if path.startswith("/"):
        return p.task.cwd, path
    base = base_dir(p, dirfd)
    dead = _dead_base(p, s32(dirfd))
    if dead is None:
        return base, path
    parts = path.split("/")
    i = 0
    while i < len(parts) and parts[i] in ("", "."):
        i += 1
    if i == len(parts):
        # the host names a removed directory through its descriptor: "<fd>/." is no symlink
        return Resolved(base, f"/proc/self/fd/{dead}/.", None, True)
    if parts[i] == "..":
        return posixpath.dirname(base) or "/", "/".join(parts[i + 1:]) or "."
    raise SyscallError(E.ENOENT, f"{path}: its directory {base} was removed")


def resolve(p, dirfd: int, path: str, *, follow: bool, creds) -> Resolved:
    s = start(p, dirfd, path)
    if isinstance(s, Resolved):
        return s
    return p.sys.vfs.resolve(s[1], s[0], follow=follow, creds=creds)


def here(p) -> Resolved:
    """The cwd itself (AT_FDCWD with AT_EMPTY_PATH), removed or not."""
    s = start(p, C.AT_FDCWD, ".")
    return s if isinstance(s, Resolved) else p.sys.vfs.resolve(p.task.cwd)


def check_cwd(process: dict, vfs) -> list[str]:
    """Before a resume: the saved cwd (not removed) must still be a directory at its name.
    vsnap follows the directory by its name across a save: one moved away meanwhile (out of
    the root, say) cannot be followed, and a resume is refused (with --force: the guest runs
    in whatever directory has that name, or none, every name in it ENOENT)."""
    if process["cwd_removed"] is not None:
        return []
    try:
        r = vfs.resolve(process["cwd"], "/")
        ok = r.exists and (r.special is not None or os.path.isdir(r.host))
    except (SyscallError, OSError):
        ok = False
    return [] if ok else [f"the current directory {process['cwd']} is not there any more"]
