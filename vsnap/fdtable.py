"""File descriptors: fd -> open file description -> file, as in Unix.

An OpenFile is one open file description: the thing open(2) creates and dup(2) shares, with
one offset and one set of status flags. The FdTable maps small integers to them, each with its
own close-on-exec bit. This is the first part of Antonov's save file ("scan through file
descriptors ... their types ... and offsets"), so everything here is plain data.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .abi import errno as E
from .errors import SyscallError

MAX_FDS = 4096  # RLIMIT_NOFILE's hard limit: no descriptor can reach it


@dataclass(eq=False)
class OpenFile:
    """One open file description. `kind` says what it is:

    file     a regular file inside the sandbox (host_fd is a host descriptor for it)
    dir      a directory inside the sandbox (entries are listed on first getdents)
    null     /dev/null
    console  the terminal or whatever vsnap's own stdin/stdout/stderr are (stream names which)
    proc     a file whose bytes the kernel made at open (/proc/self/maps): `data`
    fifo     a named pipe (kernel/fifo.py): host_fd is a non-blocking host descriptor, `data`
             says which FIFO (host device and inode), to find this process's other ends
    path     an O_PATH descriptor (kernel/opath.py): it names a file (host_fd is a host O_PATH
             descriptor; stream the virtual kind for /dev and /proc names) and serves only
             the calls that take a file by name: get() refuses it, get_raw() gives it
    pipe     one end of a pipe (kernel/pipefile.py): no host descriptor, `ops` serves it

    `ops`, when set, is the description's own operations (read, write, stat, poll, fcntl,
    ioctl, release...): the system calls ask it first and fall back on the kind only without
    it. `refs` counts the fd table slots that hold this description, in every fd table
    (dup, dup2, F_DUPFD and fork add one; close takes one away): the description is released
    (its host descriptor closed, its pipe end let go) when the last goes.
    """

    kind: str
    path: str
    flags: int
    offset: int = 0
    host_path: str | None = None
    host_fd: int | None = None
    stream: str | None = None
    data: bytes | None = None
    entries: list | None = field(default=None, repr=False)
    # False once vsnap knows the file has no set-user-ID bits for a write to clear (perm.py):
    # spares a write its fstat; True (check) after a restore or a chmod that sets them
    may_be_setid: bool = field(default=True, repr=False)
    ops: object = field(default=None, repr=False)
    refs: int = field(default=0, repr=False, compare=False)

    def close(self) -> None:
        """Release what the description holds (its last reference went)."""
        if self.ops is not None:
            ops, self.ops = self.ops, None
            ops.release(self)
        if self.host_fd is not None:
            os.close(self.host_fd)
            self.host_fd = None


@dataclass
class FdEntry:
    file: OpenFile
    cloexec: bool = False


class FdTable:
    def __init__(self):
        self.fds: dict[int, FdEntry] = {}
        self.high = 0  # the highest fd ever used: Linux's table never shrinks (select)
        # called as on_close(file, last) before a descriptor goes (file locks hang on it)
        self.on_close = None
        self.ceiling = MAX_FDS
        self.limit = 1024  # RLIMIT_NOFILE's soft limit (kernel/limits.py keeps it current)

    def get(self, fd: int) -> OpenFile:
        """The open file at `fd`, for I/O: EBADF for an O_PATH descriptor (Linux's fdget)."""
        f = self.get_raw(fd)
        if f.kind == "path":
            raise SyscallError(E.EBADF, f"fd {fd} is an O_PATH descriptor")
        return f

    def get_raw(self, fd: int) -> OpenFile:
        """Any open file at `fd`, O_PATH ones included (fdget_raw): for the calls that only
        need to know which file (fstat, fchdir, *at, dup, close, some of fcntl)."""
        entry = self.fds.get(fd)
        if entry is None:
            raise SyscallError(E.EBADF, f"fd {fd} is not open")
        return entry.file

    def entry(self, fd: int) -> FdEntry:
        self.get_raw(fd)
        return self.fds[fd]

    def lowest_free(self, start: int = 0) -> int:
        if not 0 <= start < self.limit:  # F_DUPFD at or past RLIMIT_NOFILE
            raise SyscallError(E.EINVAL, f"fd {start} is past RLIMIT_NOFILE")
        fd = start
        while fd in self.fds:
            fd += 1
        if fd >= self.limit:
            raise SyscallError(E.EMFILE, "too many open files (RLIMIT_NOFILE)")
        return fd

    def install(self, file: OpenFile, *, cloexec: bool = False, start: int = 0) -> int:
        fd = self.lowest_free(start)
        self.fds[fd] = FdEntry(file, cloexec)
        file.refs += 1
        self.high = max(self.high, fd)
        return fd

    def place(self, fd: int, file: OpenFile, *, cloexec: bool = False) -> None:
        """Put `file` at exactly `fd`, closing what was there (dup2)."""
        if not 0 <= fd < self.limit:
            raise SyscallError(E.EBADF, f"fd {fd} is past RLIMIT_NOFILE")
        file.refs += 1  # before the close: dup2(fd, fd2) where fd2 already holds `file`
        if fd in self.fds:
            self.close(fd)
        self.fds[fd] = FdEntry(file, cloexec)
        self.high = max(self.high, fd)

    def close(self, fd: int) -> None:
        entry = self.fds.pop(fd, None)
        if entry is None:
            raise SyscallError(E.EBADF, f"fd {fd} is not open")
        entry.file.refs -= 1
        last = entry.file.refs <= 0  # no fd left in any table (a forked child's included)
        if self.on_close is not None:
            self.on_close(entry.file, last)
        if last:
            entry.file.close()

    def fork(self) -> "FdTable":
        """The child's table after fork(): the same descriptions at the same numbers (each
        gains a reference), close-on-exec bits copied, limits and high-water mark kept. The
        caller sets the child's on_close."""
        child = FdTable()
        child.high, child.ceiling, child.limit = self.high, self.ceiling, self.limit
        for fd, entry in self.fds.items():
            child.fds[fd] = FdEntry(entry.file, entry.cloexec)
            entry.file.refs += 1
        return child

    def adopt(self, fd: int, file: OpenFile, cloexec: bool = False) -> None:
        """Put `file` at the free slot `fd` with its reference counted (a restore)."""
        if fd in self.fds:
            raise ValueError(f"fd {fd} is taken")
        self.fds[fd] = FdEntry(file, cloexec)
        file.refs += 1

    def close_all(self) -> None:
        for fd in list(self.fds):
            self.close(fd)

    def descriptions(self) -> list[OpenFile]:
        """Each open file description once, in order of its lowest fd."""
        seen: list[OpenFile] = []
        for fd in sorted(self.fds):
            f = self.fds[fd].file
            if not any(f is s for s in seen):
                seen.append(f)
        return seen
