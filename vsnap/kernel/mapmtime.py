"""The mtime of a file mapped MAP_SHARED for writing, kept deterministic.

Such a mapping is the host file's own pages (sharedfile.py), so the host stamps the file's
mtime with its real clock whenever a store faults a clean page writable, at moments no run can
reproduce. While any process maps the file that way, vsnap keeps the file's mtime itself
(System.mapped_mtimes: host (st_dev, st_ino) -> [mtime_ns, a host descriptor]) and stat
reports that one; it moves with the guest's write()s and truncations (fsutil.touch) and at
msync(MS_SYNC or MS_ASYNC) of the mapping, when POSIX says it must have moved. When the last
such mapping goes (munmap, exit, exec) and before a checkpoint reads the file's identity,
the host file is stamped with it again, so what is left on the host is what the guest saw.
Linux moves the time at the first store after each writeback instead: see README.
"""
from __future__ import annotations

import os


def note(p, f) -> None:
    """A direct mapping of MappedFile `f` was made: from now on vsnap keeps its mtime."""
    if f.key not in p.sys.mapped_mtimes:
        fd = os.dup(f.fd)
        os.set_inheritable(fd, False)
        p.sys.mapped_mtimes[f.key] = [os.fstat(fd).st_mtime_ns, fd]


def mtime(p, st: os.stat_result) -> int:
    """The mtime the guest sees for host file `st`."""
    kept = p.sys.mapped_mtimes.get((st.st_dev, st.st_ino))
    return st.st_mtime_ns if kept is None else kept[0]


def stamp(p, key, now_ns: int) -> None:
    """The guest changed the file (a write, a truncation, an msync): its kept mtime is now."""
    kept = p.sys.mapped_mtimes.get(key)
    if kept is not None:
        kept[0] = now_ns


def _put(fd: int, t: int) -> None:
    """The host file's mtime becomes `t`, if it is not: a needless utime would move the host's
    ctime, and relatime would then stamp the atime at the next read by anyone."""
    st = os.fstat(fd)
    if st.st_mtime_ns != t:
        os.utime(fd, ns=(st.st_atime_ns, t))


def pin(system) -> None:
    """Put the kept mtimes on the host files (a checkpoint is about to read them)."""
    for t, fd in system.mapped_mtimes.values():
        _put(fd, t)


def settle(system) -> None:
    """Files no live address space maps direct any more: their host mtime becomes the kept
    one for good (no store through a mapping can move it now), and vsnap stops keeping it."""
    if not system.mapped_mtimes:
        return
    live = {v.file.key for q in system.processes.values()
            if getattr(q, "mem", None) is not None and not getattr(q.mem, "closed", False)
            for v in q.mem.vmas if v.direct}
    for key in [k for k in system.mapped_mtimes if k not in live]:
        t, fd = system.mapped_mtimes.pop(key)
        try:
            _put(fd, t)
        finally:
            os.close(fd)
