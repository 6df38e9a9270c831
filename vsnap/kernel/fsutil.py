"""Helpers shared by the file system call handlers: argument decoding, path lookup relative to
a directory descriptor, host errors as guest errors, and struct stat for every kind of file."""
from __future__ import annotations

import os
import stat as S
from contextlib import contextmanager

from ..abi import consts as C
from ..abi import errno as E
from ..abi import structs
from ..errors import SyscallError
from ..vfs import Resolved, host_errno_to_guest

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


def base_dir(k, dirfd: int) -> str:
    """The guest directory a relative path starts from: cwd, or an open directory's path."""
    dirfd = s32(dirfd)
    if dirfd == C.AT_FDCWD:
        return k.proc.cwd
    f = k.fds.get(dirfd)
    if f.kind != "dir":
        raise SyscallError(E.ENOTDIR, f"fd {dirfd} is not a directory")
    return f.path


def lookup(k, dirfd: int, path_ptr: int, *, follow: bool = True,
           empty_ok: bool = False) -> Resolved:
    path = k.read_path(path_ptr)
    if not path:
        if empty_ok:
            return None
        raise SyscallError(E.ENOENT, "empty path")
    start = k.proc.cwd if path.startswith("/") else base_dir(k, dirfd)
    return k.vfs.resolve(path, start, follow=follow)


def must_exist(r: Resolved) -> Resolved:
    if not r.exists:
        raise SyscallError(E.ENOENT, r.guest)
    return r


def touch(k, host_fd: int, offset: int = 0, length: int | None = None) -> None:
    """Stamp a file the guest changed with the virtual time, so stat is reproducible; and
    tell the address space, whose mappings of the file show the change (bytes [offset,
    offset+length) changed; length None: anything, the size included)."""
    now = k.clock.realtime_ns
    os.utime(host_fd, ns=(now, now))
    if k.mem.files:
        st = os.fstat(host_fd)
        k.mem.file_changed((st.st_dev, st.st_ino), offset, length)


def touch_path(k, host_path: str) -> None:
    """Stamp a name the guest made or changed (a directory, a symlink itself)."""
    now = k.clock.realtime_ns
    os.utime(host_path, ns=(now, now), follow_symlinks=False)


def touch_parent(k, host_path: str) -> None:
    """Adding or removing a name changes its directory: stamp that with the virtual time."""
    touch_path(k, os.path.dirname(host_path.rstrip("/")) or "/")


# stat ---------------------------------------------------------------------------------------
_SPECIAL_MODES = {"null": (S.S_IFCHR | 0o666, 0x103), "tty": (S.S_IFCHR | 0o620, 0x8800),
                  "dev": (S.S_IFDIR | 0o755, 0), "proc": (S.S_IFDIR | 0o555, 0),
                  "proc/self": (S.S_IFDIR | 0o555, 0), "maps": (S.S_IFREG | 0o444, 0),
                  "exe": (S.S_IFLNK | 0o777, 0)}


def stat_fields(k, *, host_path: str | None = None, host_fd: int | None = None,
                special: str | None = None, follow: bool = True, guest_path: str = "") -> dict:
    """The fields of a guest struct stat, from the host file or a virtual one."""
    boot = k.clock.boot_realtime_ns
    if special is not None:
        mode, rdev = _SPECIAL_MODES.get(special, (S.S_IFIFO | 0o600, 0))
        ino = 1_000_000 + sorted(_SPECIAL_MODES).index(special) if special in _SPECIAL_MODES \
            else 999_999
        return dict(dev=GUEST_DEV, ino=ino, nlink=1, mode=mode, uid=k.proc.uid, gid=k.proc.gid,
                    rdev=rdev, size=0, blksize=4096, blocks=0, atime_ns=boot, mtime_ns=boot,
                    ctime_ns=boot)
    with host_errors():
        if host_fd is not None:
            st = os.fstat(host_fd)
        else:
            st = os.stat(host_path, follow_symlinks=follow)
    return dict(dev=GUEST_DEV, ino=k.guest_inode(st, guest_path), nlink=st.st_nlink,
                mode=st.st_mode,
                uid=k.proc.uid, gid=k.proc.gid, rdev=0, size=st.st_size, blksize=4096,
                blocks=st.st_blocks, atime_ns=st.st_mtime_ns, mtime_ns=st.st_mtime_ns,
                ctime_ns=st.st_mtime_ns)


def stat_of_resolved(k, r: Resolved, follow: bool = True) -> dict:
    must_exist(r)
    return stat_fields(k, host_path=r.host, special=r.special, follow=follow,
                       guest_path=r.guest)


def stat_of_file(k, f) -> dict:
    if f.kind == "file":
        return stat_fields(k, host_fd=f.host_fd, guest_path=f.path)
    if f.kind == "dir" and f.host_fd is not None:
        return stat_fields(k, host_fd=f.host_fd, guest_path=f.path)
    if f.kind == "dir" and f.host_path:
        return stat_fields(k, host_path=f.host_path, guest_path=f.path)
    if f.kind == "dir":
        return stat_fields(k, special=f.stream)
    if f.kind == "console":
        return stat_fields(k, special="tty" if k.console.isatty(f.stream) else "pipe")
    if f.kind == "proc":
        return stat_fields(k, special="maps")
    return stat_fields(k, special="null")


def write_stat(k, addr: int, fields: dict) -> int:
    k.write(addr, structs.pack_stat(**fields))
    return 0
