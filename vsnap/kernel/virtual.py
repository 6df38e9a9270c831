"""The virtual /dev and /proc seen through the sandbox: the one place the open, stat and
getdents paths (files.py, fsutil.py) turn to for a name that vfs.py resolved to a VNode.

vfs.py walks paths and knows nothing of processes; this tree answers its questions from the
kernel's state (the fd table, the cwd, the pid), so /proc/self/fd lists the fds open right now.
"""
from __future__ import annotations

import os
import stat as S
import zlib

from ..abi import consts as C
from ..abi import errno as E
from ..errors import SyscallError
from ..fdtable import OpenFile
from ..vfs import VNode
from . import devices, procfs

GUEST_DEV = 0x801  # fsutil's one device (fsutil imports this module): the mount is 8:1


class VirtualFiles:
    """The object vfs.Sandbox.virtual holds: node(guest path) -> VNode | None."""

    def __init__(self, system):
        self.sys = system  # /proc/self is the process that asks: the system's current one

    def node(self, guest: str) -> VNode | None:
        parts = [part for part in guest.split("/") if part]
        if parts[0] == "dev":
            return devices.node(parts[1:])
        return procfs.node(self.sys.current, parts[1:])


def ino(guest: str) -> int:
    """A virtual file's inode number: from its path, the same in every run, and apart from
    the numbers host files get (System.guest_inode: below 0x8000_0000)."""
    return 0xF000_0000 + (zlib.crc32(guest.encode()) & 0x0FFF_FFFF)


def root_entries() -> list[tuple[int, int, bytes]]:
    """The entries that a listing of "/" shows beside the host's: dev and proc, which always
    resolve, as mount points are listed in their parent on Linux."""
    return [(ino("/dev"), C.DT_DIR, b"dev"), (ino("/proc"), C.DT_DIR, b"proc")]


def dir_entries(p, f: OpenFile) -> list[tuple[int, int, bytes]]:
    """(inode, d_type, name) of a virtual directory, listed now (fds as they are open)."""
    parts = [part for part in f.path.split("/") if part]
    if parts[:1] == ["dev"]:
        names = devices.entries(parts[1:])
    elif parts[:1] == ["proc"]:
        names = procfs.entries(p, _canonical(p, parts)[1:])
    else:
        names = None
    if names is None:  # the directory went away: a closed fd's directory
        raise SyscallError(E.ENOENT, f.path)
    base = f.path.rstrip("/")
    parent = base.rsplit("/", 1)[0] or "/"
    up = p.sys.guest_inode(os.stat(p.sys.vfs.root), "/") if parent == "/" else ino(parent)
    return [(ino(base), C.DT_DIR, b"."), (up, C.DT_DIR, b".."),
            *[(ino(f"{base}/{n}"), t, n.encode()) for n, t in names]]


def _canonical(p, parts: list[str]) -> list[str]:
    """Old images named /proc/self itself as a directory: it is /proc/PID."""
    if parts[:2] == ["proc", "self"]:
        return ["proc", str(p.task.pid), *parts[2:]]
    return parts


def open_node(p, r, flags: int, status: int) -> OpenFile:
    """Open a virtual name that the walk ended on (r.special says what it is)."""
    acc = flags & C.O_ACCMODE
    special = r.special
    if flags & C.O_CREAT and flags & C.O_EXCL:
        raise SyscallError(E.EEXIST, r.guest)  # links included: O_EXCL does not follow
    if special == "link":
        raise SyscallError(E.ELOOP, r.guest)  # a link opened with O_NOFOLLOW
    if special == "dir":
        if acc != C.O_RDONLY or flags & C.O_CREAT:
            raise SyscallError(E.EISDIR, r.guest)
        return OpenFile("dir", r.guest, status, stream="virtual")
    if flags & C.O_DIRECTORY:
        raise SyscallError(E.ENOTDIR, r.guest)
    if special in devices.DEVICES or special == "pts":
        return devices.open_device(p, special, r.guest, status)
    if special.startswith("proc:"):
        if acc != C.O_RDONLY and special != "proc:comm":
            raise SyscallError(E.EACCES, f"{r.guest}: read-only")  # mode 0444 or 0400
        return OpenFile("proc", r.guest, status, data=procfs.content(p, special))
    if special == "exe":
        return _open_program(p, r.guest, acc, status)
    if special.startswith("fd:"):
        return _reopen_fd(p, int(special[3:]), r.guest, flags, status)
    if special == "map_file":
        raise SyscallError(E.EPERM, f"{r.guest}: following map_files needs "
                                    f"CAP_CHECKPOINT_RESTORE")
    raise SyscallError(E.ENOENT, r.guest)


def _open_program(p, guest: str, acc: int, status: int) -> OpenFile:
    """The program file, which lies outside the root: read-only, as vsnap itself reads it."""
    if acc != C.O_RDONLY:
        raise SyscallError(E.ETXTBSY, f"{guest}: the running program")
    try:
        fd = os.open(p.exe_host, os.O_RDONLY | os.O_CLOEXEC)
    except (OSError, TypeError):
        raise SyscallError(E.ENOENT, guest) from None
    return OpenFile("exe", p.exe_host, status, host_fd=fd)


def _reopen_fd(p, fd: int, guest: str, flags: int, status: int) -> OpenFile:
    """Follow /proc/self/fd/N to an object without a path: a new open file description on
    the same object, as Linux's magic links give."""
    if fd not in p.fds.fds:
        raise SyscallError(E.ENOENT, guest)
    f = p.fds.get(fd)
    acc = flags & C.O_ACCMODE
    if f.ops is not None:  # a pipe end: a new description of the same pipe (pipefile.py)
        return f.ops.reopen(p, f, flags, status)
    if f.kind == "console":
        if f.stream != "tty" and not p.sys.console.isatty(f.stream):
            # a pipe: Linux would give the other end of it, which vsnap does not have (its
            # console streams go one way); refuse rather than send bytes the wrong way
            other_end = acc != C.O_RDONLY if f.stream == "stdin" else acc != C.O_WRONLY
            if other_end:
                raise SyscallError(E.EACCES, f"{guest}: vsnap cannot open the other end of "
                                             f"its {f.stream} pipe")
        return OpenFile("console", f.path, status, stream=f.stream)
    if f.kind == "exe":
        return _open_program(p, guest, acc, status)
    if f.kind in ("file", "dir") and f.host_fd is not None:
        # deleted while open: reach the inode through the host's own magic link
        host_flags = ({C.O_RDONLY: os.O_RDONLY, C.O_WRONLY: os.O_WRONLY}.get(acc, os.O_RDWR)
                      | os.O_CLOEXEC)
        if f.kind == "dir":
            if acc != C.O_RDONLY:
                raise SyscallError(E.EISDIR, guest)
            host_flags |= os.O_DIRECTORY
        try:
            new = os.open(f"/proc/self/fd/{f.host_fd}", host_flags)
        except OSError as e:
            raise SyscallError(E.EACCES if e.errno == 13 else E.ENOENT,
                               f"{guest}: cannot reopen a deleted file here ({e.strerror})")
        if flags & C.O_TRUNC and acc != C.O_RDONLY and f.kind == "file":
            from .fsutil import touch  # (fsutil imports this module)
            os.ftruncate(new, 0)
            touch(p, new)           # the virtual time, as every change the guest makes
        return OpenFile(f.kind, f.path, status, host_path=f.host_path, host_fd=new)
    raise SyscallError(E.ENOENT, guest)


def stat_fields(p, r, boot: int) -> dict:
    """struct stat of a virtual node (links followed to no path included)."""
    special = r.special
    rdev = size = 0
    if special == "map_file":  # followed: as open
        raise SyscallError(E.EPERM, f"{r.guest}: following map_files needs "
                                    f"CAP_CHECKPOINT_RESTORE")
    if special in devices.DEVICES or special == "pts":
        mode, rdev = devices.stat_mode(special)
    elif special == "dir" and r.guest.startswith("/dev"):
        mode = S.S_IFDIR | 0o755
    elif special == "link" and r.guest.startswith("/dev/"):
        mode = S.S_IFLNK | 0o777
        size = len(r.node.link) if r.node is not None else 0
    else:
        mode, size = procfs.stat_mode(p, r)
    return dict(dev=GUEST_DEV, ino=ino(r.guest), nlink=2 if S.S_ISDIR(mode) else 1, mode=mode,
                uid=p.task.uid, gid=p.task.gid, rdev=rdev, size=size, blksize=4096, blocks=0,
                atime_ns=boot, mtime_ns=boot, ctime_ns=boot)
