"""The rules vsnap keeps for file times, used by every handler that touches a file.

atime   vsnap's file system behaves as if mounted `noatime`: reading never changes it. It is set
        when a file is made (the virtual time) and by utimensat and its relatives (filetimes.py).
        vsnap opens host files with O_NOATIME (open_noatime), so that the host's own relatime
        does not stamp the host's real clock on them while vsnap reads for the guest.
mtime   set by the guest's writes, truncations and new names in a directory (the virtual time,
        fsutil.touch) and by utimensat.
ctime   the host's ctime is the host's real time of vsnap's own changes, which no run can
        reproduce. vsnap reports the later of mtime and the virtual time of the last status
        change it recorded for the inode (System.ctimes: guest inode -> ns, saved in images):
        a time set with utimensat, chmod, link, rename, fallocate. A write moves mtime, and so
        ctime, itself.
"""
from __future__ import annotations

import os

_O_NOATIME = getattr(os, "O_NOATIME", 0)  # Linux only; elsewhere the host keeps its own rule


def open_noatime(path, flags: int, mode: int = 0o777) -> int:
    """os.open without letting the host stamp the access time. O_NOATIME is refused (host EPERM)
    on a file the host user does not own: then open without it."""
    if _O_NOATIME:
        try:
            return os.open(path, flags | _O_NOATIME, mode)
        except PermissionError:  # EPERM: not the owner. (EACCES comes again just below)
            pass
    return os.open(path, flags, mode)


def mark_changed(p, st: os.stat_result, guest_path: str) -> None:
    """Record a status change of the inode `st` at the virtual time (its ctime from now on)."""
    p.sys.ctimes[p.sys.guest_inode(st, guest_path)] = p.sys.clock.realtime_ns


def ctime_of(p, ino: int, mtime_ns: int) -> int:
    return max(mtime_ns, p.sys.ctimes.get(ino, mtime_ns))
