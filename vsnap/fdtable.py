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

MAX_FDS = 1024  # RLIMIT_NOFILE's usual soft limit


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

    def close(self) -> None:
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
        fd = start
        while fd in self.fds:
            fd += 1
        if fd >= MAX_FDS:
            raise SyscallError(E.EMFILE, "too many open files")
        return fd

    def install(self, file: OpenFile, *, cloexec: bool = False, start: int = 0) -> int:
        fd = self.lowest_free(start)
        self.fds[fd] = FdEntry(file, cloexec)
        return fd

    def place(self, fd: int, file: OpenFile, *, cloexec: bool = False) -> None:
        """Put `file` at exactly `fd`, closing what was there (dup2)."""
        if not 0 <= fd < MAX_FDS:
            raise SyscallError(E.EBADF, f"fd {fd} out of range")
        if fd in self.fds:
            self.close(fd)
        self.fds[fd] = FdEntry(file, cloexec)

    def close(self, fd: int) -> None:
        entry = self.fds.pop(fd, None)
        if entry is None:
            raise SyscallError(E.EBADF, f"fd {fd} is not open")
        if not any(e.file is entry.file for e in self.fds.values()):
            entry.file.close()

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
