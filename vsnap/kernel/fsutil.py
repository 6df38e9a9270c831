"""Helpers shared by the file system call handlers: argument decoding, path lookup relative to
a directory descriptor, host errors as guest errors, and struct stat for every kind of file."""
from __future__ import annotations

import os
import stat as S
from contextlib import contextmanager

from ..abi import consts as C
from ..abi import errno as E
from ..abi import structs
from ..access import Credentials
from ..errors import SyscallError
from ..vfs import Resolved, host_errno_to_guest
from . import mapmtime
from .inodetimes import ctime_of
from .procfs import console_ino
from .virtual import ino as virtual_ino
from .virtual import stat_fields as virtual_stat

GUEST_DEV = 0x801  # one device for the whole sandbox: host device numbers differ per machine


def s32(x: int) -> int:
    """An `int` argument: the low 32 bits of the register, signed."""
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def s64(x: int) -> int:
    return x - (1 << 64) if x & (1 << 63) else x


@contextmanager
def host_errors():
    """Host OSErrors inside become the same guest errno."""
    try:
        yield
    except OSError as e:
        raise SyscallError(host_errno_to_guest(e), e.strerror or "") from None


def base_dir(p, dirfd: int) -> str:
    """The guest directory a relative path starts from: cwd, or an open directory's path."""
    dirfd = s32(dirfd)
    if dirfd == C.AT_FDCWD:
        return p.task.cwd
    f = p.fds.get_raw(dirfd)  # an O_PATH descriptor of a directory serves too
    if f.kind != "dir" and not (f.kind == "path" and _opath_dir(p, f)):
        raise SyscallError(E.ENOTDIR, f"fd {dirfd} is not a directory")
    return f.path


def _opath_dir(p, f) -> bool:
    from .opath import is_dir
    return is_dir(p, f)


def lookup(p, dirfd: int, path_ptr: int, *, follow: bool = True,
           empty_ok: bool = False) -> Resolved:
    path = p.read_path(path_ptr)
    if not path:
        if empty_ok:
            return None
        raise SyscallError(E.ENOENT, "empty path")
    from .dirref import resolve  # the start directory may have been removed
    return resolve(p, dirfd, path, follow=follow, creds=creds(p))


def creds(p) -> Credentials:
    """The guest's credentials, which every permission check is made against."""
    return Credentials(p.task.uid, p.task.gid)


def must_exist(r: Resolved) -> Resolved:
    if not r.exists:
        raise SyscallError(E.ENOENT, r.guest)
    return r


def touch(p, host_fd: int, offset: int = 0, length: int | None = None, *,
          atime: bool = False) -> None:
    """Stamp a file the guest changed with the virtual time, so stat is reproducible: its mtime,
    and its atime only when it is new (a write keeps the atime: see inodetimes.py). And tell
    the address space, whose mappings of the file show the change (bytes [offset,
    offset+length) changed; length None: anything, the size included)."""
    now = p.sys.clock.realtime_ns
    st = os.fstat(host_fd)
    os.utime(host_fd, ns=(now if atime else st.st_atime_ns, now))
    mapmtime.stamp(p, (st.st_dev, st.st_ino), now)  # a file mapped shared for writing
    for q in [p, *(q for q in p.sys.processes.values() if q is not p)]:
        # every process's mappings of it (a shrunk file's pages past its end must fault)
        mem = getattr(q, "mem", None)
        if mem is not None and mem.files:
            mem.file_changed((st.st_dev, st.st_ino), offset, length)


def touch_path(p, host_path: str) -> None:
    """Stamp a name the guest made or changed (a directory, a symlink itself)."""
    now = p.sys.clock.realtime_ns
    os.utime(host_path, ns=(now, now), follow_symlinks=False)


def touch_parent(p, host_path: str) -> None:
    """Adding or removing a name changes its directory: stamp its mtime with the virtual time."""
    parent = os.path.dirname(host_path.rstrip("/")) or "/"
    os.utime(parent, ns=(os.lstat(parent).st_atime_ns, p.sys.clock.realtime_ns),
             follow_symlinks=False)


# stat ---------------------------------------------------------------------------------------
# what fstat says of the descriptors that are not files: the terminal is /dev/pts/0 (136,0),
# other console streams are pipes, /dev/tty is 5,0 and /dev/null 1,3
_CONSOLE_MODES = {"pts": (S.S_IFCHR | 0o620, 0x8800), "pipe": (S.S_IFIFO | 0o600, 0)}


def stat_fields(p, *, host_path: str | None = None, host_fd: int | None = None,
                special: str | None = None, follow: bool = True, guest_path: str = "",
                resolved: Resolved | None = None) -> dict:
    """The fields of a guest struct stat, from the host file or a virtual one."""
    boot = p.sys.clock.boot_realtime_ns
    if special is not None and special.startswith("fd:"):  # /proc/self/fd/N followed
        return stat_of_file(p, p.fds.get(int(special[3:])))
    if special == "exe":                                    # the program, outside the root
        host_path, special = p.exe_host, None
    if special is not None:
        return virtual_stat(p, resolved or Resolved(guest_path, None, special, True), boot)
    with host_errors():
        if host_fd is not None:
            st = os.fstat(host_fd)
        else:
            st = os.stat(host_path, follow_symlinks=follow)
    ino = p.sys.guest_inode(st, guest_path)
    mtime = mapmtime.mtime(p, st)
    return dict(dev=GUEST_DEV, ino=ino, nlink=st.st_nlink,
                mode=st.st_mode,
                uid=p.task.uid, gid=p.task.gid, rdev=0, size=st.st_size, blksize=4096,
                blocks=st.st_blocks, atime_ns=st.st_atime_ns, mtime_ns=mtime,
                ctime_ns=ctime_of(p, ino, mtime))


def _console_stat(p, f) -> dict:
    """A std stream: the terminal (the same inode as /dev/pts/0) or a pipe (pipe:[ino])."""
    kind = "pts" if p.sys.console.isatty(f.stream) else "pipe"
    mode, rdev = _CONSOLE_MODES[kind]
    boot = p.sys.clock.boot_realtime_ns
    ino = console_ino(f.stream) if kind == "pipe" else virtual_ino("/dev/pts/0")
    return dict(dev=GUEST_DEV, ino=ino, nlink=1, mode=mode, uid=p.task.uid, gid=p.task.gid,
                rdev=rdev, size=0, blksize=4096, blocks=0, atime_ns=boot, mtime_ns=boot,
                ctime_ns=boot)


def stat_of_resolved(p, r: Resolved, follow: bool = True) -> dict:
    must_exist(r)
    return stat_fields(p, host_path=r.host, special=r.special, follow=follow,
                       guest_path=r.guest, resolved=r)


def stat_of_file(p, f) -> dict:
    if f.ops is not None:  # a pipe end (pipefile.py)
        return f.ops.stat(p, f)
    if f.kind == "fifo":
        return stat_fields(p, host_fd=f.host_fd, guest_path=f.path)
    if f.kind == "path":  # O_PATH: the named file itself (a symlink when O_NOFOLLOW named one)
        if f.host_fd is None:  # a /dev or /proc name, as lstat sees it
            return stat_of_resolved(p, p.sys.vfs.resolve(f.path, "/", follow=False), follow=False)
        return stat_fields(p, host_fd=f.host_fd, guest_path=f.path)
    if f.kind in ("file", "exe"):
        return stat_fields(p, host_fd=f.host_fd, guest_path=f.path)
    if f.kind == "dir" and f.host_fd is not None:
        return stat_fields(p, host_fd=f.host_fd, guest_path=f.path)
    if f.kind == "dir" and f.host_path:
        return stat_fields(p, host_path=f.host_path, guest_path=f.path)
    if f.kind == "console" and f.stream != "tty":
        return _console_stat(p, f)
    # the virtual files: what their path names (the node itself, as at open)
    tty = "pts" if f.path == "/dev/pts/0" else "tty"
    special = {"dir": "dir", "console": tty, "null": "null", "dev": f.stream}.get(f.kind)
    if f.kind == "proc":
        special = "proc:" + f.path.rsplit("/", 1)[-1]
    return stat_fields(p, special=special, guest_path=f.path)


def write_stat(p, addr: int, fields: dict) -> int:
    p.write(addr, structs.pack_stat(**fields))
    return 0
