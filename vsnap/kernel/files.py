"""System calls on file descriptors: open, read, write, seek, close, dup, fcntl, ioctl,
getdents64. What each does depends on the kind of the open file description (fdtable.py)."""
from __future__ import annotations

import os
import stat as S
import struct
from types import SimpleNamespace

from ..abi import consts as C
from ..abi import errno as E
from ..abi import structs
from ..access import MAY_READ
from ..errors import Blocked, SyscallError
from ..fdtable import OpenFile
from . import perm
from . import devices, procfs, virtual
from .filelocks import LOCK_COMMANDS, break_leases, fcntl_lock
from . import anonfile, fifo, opath, pipefile, tty
from .fsutil import host_errors, lookup, s32, s64, touch, touch_parent
from .extents import seek_data_hole
from .inodetimes import open_noatime
from .limits import file_size_limit
from .registry import syscall

IOV_MAX = 1024


def open_resolved(p, r, flags: int, mode: int) -> OpenFile:
    acc = flags & C.O_ACCMODE
    status = flags & ~(C.O_CREAT | C.O_EXCL | C.O_NOCTTY | C.O_TRUNC | C.O_CLOEXEC)
    if r.special:  # /dev and /proc: kernel/virtual.py
        return virtual.open_node(p, r, flags, status)
    if not r.exists:
        if not flags & C.O_CREAT:
            raise SyscallError(E.ENOENT, r.guest)
        if flags & C.O_DIRECTORY:
            raise SyscallError(E.EINVAL, r.guest)
        perm.may_create(p, r)
    elif flags & C.O_CREAT and flags & C.O_EXCL:
        raise SyscallError(E.EEXIST, r.guest)
    with host_errors():
        if r.exists:
            st = os.lstat(r.host)
            if S.S_ISLNK(st.st_mode):
                raise SyscallError(E.ELOOP, r.guest)  # only reached with O_NOFOLLOW
            if S.S_ISDIR(st.st_mode):
                if acc != C.O_RDONLY or flags & (C.O_CREAT | C.O_TRUNC):
                    raise SyscallError(E.EISDIR, r.guest)
                perm.require(p, st.st_mode, MAY_READ, r.guest)
                # a descriptor of the directory itself, so that fstat and getdents still
                # find it after it is renamed or removed, as on Linux
                dfd = open_noatime(r.host, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                   | os.O_CLOEXEC)
                return OpenFile("dir", r.guest, status, host_path=r.host, host_fd=dfd)
            if flags & C.O_DIRECTORY:
                raise SyscallError(E.ENOTDIR, r.guest)
            if S.S_ISFIFO(st.st_mode):  # a named pipe (fifo.py)
                return fifo.open_fifo(p, r, flags, st)
            if S.S_ISSOCK(st.st_mode):
                raise SyscallError(E.ENXIO, f"{r.guest}: a socket cannot be opened")
            if not S.S_ISREG(st.st_mode):
                raise SyscallError(E.EACCES, f"{r.guest}: not a regular file")
            perm.require(p, st.st_mode, perm.open_wants(flags), r.guest)
            break_leases(p, (st.st_dev, st.st_ino), flags)
        host_flags = ({C.O_RDONLY: os.O_RDONLY, C.O_WRONLY: os.O_WRONLY}.get(acc, os.O_RDWR)
                      | os.O_NOFOLLOW | os.O_CLOEXEC)
        if flags & C.O_CREAT:
            host_flags |= os.O_CREAT
        if flags & C.O_TRUNC and r.exists:  # Linux truncates even when opening O_RDONLY
            host_flags |= os.O_TRUNC
        fd = open_noatime(r.host, host_flags, 0o600)  # reads leave atime alone (noatime)
        if not r.exists:
            # the guest's umask, not the host's: set the mode outright
            new_mode = mode & 0o7777 & ~p.task.umask
            os.fchmod(fd, new_mode)
            touch_parent(p, r.host)
        elif host_flags & os.O_TRUNC:
            perm.drop_privileges(p, fd)
    f = OpenFile("file", r.guest, status, host_path=r.host, host_fd=fd,
                 may_be_setid=bool((st.st_mode if r.exists else new_mode) & perm.SETID))
    if host_flags & (os.O_CREAT | os.O_TRUNC) and (not r.exists or host_flags & os.O_TRUNC):
        touch(p, fd, atime=not r.exists)
    return f


@syscall("open", "path oflags mode")
def sys_open(p, path, flags, mode):
    """int open(const char *pathname, int flags, mode_t mode);"""
    return sys_openat(p, C.AT_FDCWD, path, flags, mode)


@syscall("openat", "fd path oflags mode")
def sys_openat(p, dirfd, path, flags, mode):
    """int openat(int dirfd, const char *pathname, int flags, mode_t mode);"""
    flags = s32(flags)
    if flags & anonfile.TMPFILE_BIT:  # a nameless file in a directory (anonfile.py)
        return anonfile.open_tmpfile(p, dirfd, path, flags, mode)
    if flags & C.O_PATH:  # a descriptor that only names a file (opath.py)
        return opath.open_path(p, dirfd, path, flags)
    # O_CREAT|O_EXCL never follows a final symlink (Linux refuses with EEXIST)
    exclusive = flags & C.O_CREAT and flags & C.O_EXCL
    r = lookup(p, dirfd, path, follow=not (flags & C.O_NOFOLLOW or exclusive))
    if p.read_cstr(path).endswith(b"/") and not r.exists and flags & C.O_CREAT:
        raise SyscallError(E.EISDIR, r.guest)
    f = open_resolved(p, r, flags, mode)
    return p.fds.install(f, cloexec=bool(flags & C.O_CLOEXEC))


@syscall("creat", "path mode")
def sys_creat(p, path, mode):
    """int creat(const char *pathname, mode_t mode);"""
    return sys_openat(p, C.AT_FDCWD, path, C.O_CREAT | C.O_WRONLY | C.O_TRUNC, mode)


@syscall("close", "fd")
def sys_close(p, fd):
    """int close(int fd);"""
    p.fds.close(s32(fd))
    return 0


def status_flags(f: OpenFile) -> int:
    """The file status flags F_GETFL and fdinfo show: Linux's open() adds O_LARGEFILE on
    64-bit to everything it opens (not to the inherited pipes and terminal, nor to an O_PATH
    descriptor, which is never opened for I/O)."""
    inherited = f.kind == "console" and f.stream != "tty"
    made = f.kind == "path" or f.ops is not None  # pipe(), eventfd()... make theirs without open()
    return f.flags | (0 if inherited or made else C.O_LARGEFILE)


def _readable(f: OpenFile) -> None:
    if f.flags & C.O_ACCMODE == C.O_WRONLY:
        raise SyscallError(E.EBADF, f"{f.path} is open for writing only")


def _writable(f: OpenFile) -> None:
    if f.flags & C.O_ACCMODE == C.O_RDONLY:
        raise SyscallError(E.EBADF, f"{f.path} is open for reading only")


def read_file(p, f: OpenFile, count: int, offset: int | None = None) -> bytes:
    """Read up to `count` bytes; advance the shared offset unless `offset` is given."""
    _readable(f)
    if f.ops is not None:  # the description's own operations (a pipe end: pipefile.py)
        return f.ops.read(p, f, count)
    pos = f.offset if offset is None else offset
    if f.kind in ("file", "exe"):
        with host_errors():
            data = os.pread(f.host_fd, count, pos)
    elif f.kind == "dev":
        return devices.read(p, f, count)
    elif f.kind == "proc":
        data = f.data[pos:pos + count]
    elif f.kind == "console":
        if p.sys.console.wait is not None:
            from .signal import wait_for_input
            wait_for_input(p)
        return tty.typed(p, f, p.sys.console.read(count))  # ^E (kernel/tty.py)
    elif f.kind == "dir":
        raise SyscallError(E.EISDIR, f.path)
    elif f.kind == "fifo":
        return fifo.read(p, f, count)
    else:
        return b""
    if offset is None:
        f.offset = pos + len(data)
    return data


def write_file(p, f: OpenFile, data: bytes, offset: int | None = None) -> int:
    _writable(f)
    if f.ops is not None:
        return f.ops.write(p, f, data)
    if f.kind == "console":
        p.sys.console.write("stderr" if f.stream == "stderr" else "stdout", data)
        return len(data)
    if f.kind != "file":
        if f.kind == "null":
            return len(data)
        if f.kind == "dev":
            return devices.write(p, f, data)
        if f.kind == "proc":
            return procfs.write(p, f, data)
        if f.kind == "fifo":
            return fifo.write(p, f, data)
        raise SyscallError(E.EBADF, f.path)
    with host_errors():
        if offset is not None:
            if f.flags & C.O_APPEND:  # Linux appends even for pwrite (a documented bug)
                offset = os.fstat(f.host_fd).st_size
            data = data[:file_size_limit(p, offset, len(data))]
            n = os.pwrite(f.host_fd, data, offset)
        else:
            if f.flags & C.O_APPEND:
                f.offset = os.fstat(f.host_fd).st_size
            offset = f.offset
            data = data[:file_size_limit(p, f.offset, len(data))]
            n = os.pwrite(f.host_fd, data, f.offset)
            f.offset += n
        if n:  # a write of nothing changes nothing, mtime included (as on Linux)
            touch(p, f.host_fd, offset, n)
            if f.may_be_setid:
                perm.drop_privileges(p, f.host_fd)
    return n


@syscall("read", "fd ptr size")
def sys_read(p, fd, buf, count):
    """ssize_t read(int fd, void *buf, size_t count);"""
    f = p.fds.get(s32(fd))
    p.read(buf, min(count, 1))  # EFAULT before consuming input, as Linux checks the buffer
    data = read_file(p, f, min(count, 1 << 24))
    p.write(buf, data)
    return len(data)


@syscall("write", "fd buf size")
def sys_write(p, fd, buf, count):
    """ssize_t write(int fd, const void *buf, size_t count);"""
    f = p.fds.get(s32(fd))
    return write_file(p, f, p.read(buf, min(count, 1 << 24)))


@syscall("pread64", "fd ptr size int")
def sys_pread64(p, fd, buf, count, offset):
    """ssize_t pread(int fd, void *buf, size_t count, off_t offset);"""
    f = _seekable(p.fds.get(s32(fd)))
    data = read_file(p, f, min(count, 1 << 24), _offset(offset))
    p.write(buf, data)
    return len(data)


@syscall("pwrite64", "fd buf size int")
def sys_pwrite64(p, fd, buf, count, offset):
    """ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset);"""
    f = _seekable(p.fds.get(s32(fd)))
    return write_file(p, f, p.read(buf, min(count, 1 << 24)), _offset(offset))


def _offset(offset: int) -> int:
    offset = s64(offset)
    if offset < 0:
        raise SyscallError(E.EINVAL, "negative offset")
    return offset


def _iovecs(p, iov: int, iovcnt: int) -> list[tuple[int, int]]:
    iovcnt = s32(iovcnt)
    if not 0 <= iovcnt <= IOV_MAX:
        raise SyscallError(E.EINVAL, "bad iovcnt")
    raw = p.read(iov, 16 * iovcnt)
    return [struct.unpack_from("<QQ", raw, 16 * i) for i in range(iovcnt)]


@syscall("writev", "fd ptr int")
def sys_writev(p, fd, iov, iovcnt):
    """ssize_t writev(int fd, const struct iovec *iov, int iovcnt);"""
    f = p.fds.get(s32(fd))
    if getattr(f.ops, "write_per_buffer", False):  # a .write without .write_iter (eventfd)
        return _write_each(p, f, _iovecs(p, iov, iovcnt))
    data = b"".join(p.read(base, length) for base, length in _iovecs(p, iov, iovcnt))
    return write_file(p, f, data)


def _write_each(p, f, iovs) -> int:
    """Linux's do_loop_readv_writev: one write per buffer, stopping at the first error or
    short one (an error after some bytes: their count). A wait after some bytes returns
    their count (Linux would wait; vsnap cannot park half way through the call)."""
    total = 0
    for base, length in iovs:
        try:
            n = write_file(p, f, p.read(base, length))
        except (SyscallError, Blocked):
            if total:
                return total
            raise
        total += n
        if n < length:
            break
    return total


@syscall("readv", "fd ptr int")
def sys_readv(p, fd, iov, iovcnt):
    """ssize_t readv(int fd, const struct iovec *iov, int iovcnt);"""
    f = p.fds.get(s32(fd))
    iovs = _iovecs(p, iov, iovcnt)
    if f.ops is not None:
        # one read for all the buffers: a read that waits must not have taken bytes already
        data = read_file(p, f, min(sum(n for _, n in iovs), 1 << 24))
        done = 0
        for base, length in iovs:
            p.write(base, data[done:done + length])
            done += length
        return len(data)
    total = 0
    for base, length in iovs:
        data = read_file(p, f, length)
        p.write(base, data)
        total += len(data)
        if len(data) < length:
            break
    return total


def _seekable(f: OpenFile) -> OpenFile:
    if f.kind in ("console", "fifo") or (f.ops is not None and not f.ops.seekable):
        raise SyscallError(E.ESPIPE, f.path)
    return f


@syscall("lseek", "fd int whence")
def sys_lseek(p, fd, offset, whence):
    """off_t lseek(int fd, off_t offset, int whence);"""
    f = p.fds.get(s32(fd))
    if getattr(f.ops, "llseek", None) is not None:  # eventfd, epoll: noop_llseek
        return f.ops.llseek(p, f, s64(offset), s32(whence))
    f = _seekable(f)
    offset, whence = s64(offset), s32(whence)
    if f.kind in ("null", "dev"):
        return 0  # Linux's devices stay at 0 (null_lseek, noop_llseek)
    if whence == C.SEEK_SET:
        new = offset
    elif whence == C.SEEK_CUR:
        new = f.offset + offset
    elif whence == C.SEEK_END:
        if f.kind in ("file", "exe"):
            with host_errors():
                size = os.fstat(f.host_fd).st_size
        else:
            size = len(f.data or b"")
        new = size + offset
    elif whence in (C.SEEK_DATA, C.SEEK_HOLE):
        new = seek_data_hole(f, offset, whence)
    else:
        raise SyscallError(E.EINVAL, f"whence {whence}")
    if new < 0:
        raise SyscallError(E.EINVAL, "negative offset")
    if f.kind == "dir" and new != f.offset:
        f.entries = None if new == 0 else f.entries
    f.offset = new
    return new


@syscall("dup", "fd")
def sys_dup(p, oldfd):
    """int dup(int oldfd);"""
    return p.fds.install(p.fds.get_raw(s32(oldfd)))


@syscall("dup2", "fd fd")
def sys_dup2(p, oldfd, newfd):
    """int dup2(int oldfd, int newfd);"""
    oldfd, newfd = s32(oldfd), s32(newfd)
    f = p.fds.get_raw(oldfd)
    if oldfd != newfd:
        p.fds.place(newfd, f)
    return newfd


@syscall("dup3", "fd fd oflags")
def sys_dup3(p, oldfd, newfd, flags):
    """int dup3(int oldfd, int newfd, int flags);"""
    oldfd, newfd = s32(oldfd), s32(newfd)
    if oldfd == newfd or flags & ~C.O_CLOEXEC:
        raise SyscallError(E.EINVAL, "dup3 to the same fd or with bad flags")
    p.fds.place(newfd, p.fds.get_raw(oldfd), cloexec=bool(flags & C.O_CLOEXEC))
    return newfd


@syscall("fcntl", "fd fcntl hex")
def sys_fcntl(p, fd, cmd, arg):
    """int fcntl(int fd, int cmd, ... /* arg */ );"""
    fd, cmd = s32(fd), s32(cmd)
    entry = p.fds.entry(fd)
    if entry.file.kind == "path" and cmd not in opath.FCNTL_ALLOWED:
        raise SyscallError(E.EBADF, f"fcntl {cmd} on an O_PATH descriptor")
    if cmd in (C.F_DUPFD, C.F_DUPFD_CLOEXEC):
        return p.fds.install(entry.file, cloexec=cmd == C.F_DUPFD_CLOEXEC, start=s32(arg))
    if cmd == C.F_GETFD:
        return C.FD_CLOEXEC if entry.cloexec else 0
    if cmd == C.F_SETFD:
        entry.cloexec = bool(arg & C.FD_CLOEXEC)
        return 0
    if cmd == C.F_GETFL:
        return status_flags(entry.file)
    if cmd == C.F_SETFL:
        changeable = C.O_APPEND | C.O_NONBLOCK | C.O_NOATIME | C.O_DIRECT
        entry.file.flags = (entry.file.flags & ~changeable) | (arg & changeable)
        return 0
    if cmd in LOCK_COMMANDS:
        return fcntl_lock(p, entry.file, cmd, arg)
    if entry.file.ops is not None:  # a pipe's F_GETPIPE_SZ, F_SETPIPE_SZ
        result = entry.file.ops.fcntl(p, entry.file, cmd, arg)
        if result is not None:
            return result
    elif cmd in (pipefile.F_GETPIPE_SZ, pipefile.F_SETPIPE_SZ) and entry.file.kind not in (
            "fifo", "console"):  # (host pipes, not served yet: EINVAL as before)
        raise SyscallError(E.EBADF, f"{entry.file.path}: not a pipe")  # pipe_fcntl's answer
    if cmd in (anonfile.F_ADD_SEALS, anonfile.F_GET_SEALS):
        anonfile.sealing_refused(p, cmd)
    raise SyscallError(E.EINVAL, f"fcntl command {cmd}")


@syscall("ioctl", "fd ioctl ptr")
def sys_ioctl(p, fd, request, argp):
    """int ioctl(int fd, unsigned long request, ...);"""
    f = p.fds.get(s32(fd))
    request &= 0xFFFFFFFF
    if f.ops is not None:
        return f.ops.ioctl(p, f, request, argp)
    return tty.ioctl(p, f, request, argp)  # the terminal's (kernel/tty.py)


def _dir_entries(p, f: OpenFile) -> list[tuple[int, int, bytes]]:
    """(inode, d_type, name) of each entry, sorted by name so that runs are reproducible."""
    if f.host_fd is None and f.host_path is None:  # /dev, /proc and below
        return virtual.dir_entries(p, f)
    out = []
    with host_errors():
        here = os.fstat(f.host_fd) if f.host_fd is not None else os.stat(f.host_path)
        where = f.host_fd if f.host_fd is not None else f.host_path
        for e in sorted(os.scandir(where), key=lambda e: e.name):
            st = _entry_stat(e, here)
            dtype = (C.DT_DIR if S.S_ISDIR(st.st_mode) else C.DT_LNK if S.S_ISLNK(st.st_mode)
                     else C.DT_REG if S.S_ISREG(st.st_mode) else C.DT_UNKNOWN)
            guest = f.path.rstrip("/") + "/" + e.name
            out.append((p.sys.guest_inode(st, guest), dtype, os.fsencode(e.name)))
    if f.path == "/":  # the virtual dev and proc, whatever the host folder holds
        out = [e for e in out if e[2] not in (b"dev", b"proc")] + virtual.root_entries()
        out.sort(key=lambda e: e[2])
    ino = p.sys.guest_inode(here, f.path)
    return [(ino, C.DT_DIR, b"."), (ino, C.DT_DIR, b".."), *out]


def _entry_stat(e: os.DirEntry, here: os.stat_result):
    """The entry's inode and type. Listing needs read permission only: when vsnap runs as a
    normal user and the guest lists a directory it may read but not search, the host refuses
    to stat the entries, so take what the directory entry itself says, as getdents does."""
    try:
        return e.stat(follow_symlinks=False)
    except PermissionError:
        try:
            kind = (S.S_IFLNK if e.is_symlink() else S.S_IFDIR if e.is_dir(follow_symlinks=False)
                    else S.S_IFREG if e.is_file(follow_symlinks=False) else 0)
        except OSError:
            kind = 0
        return SimpleNamespace(st_mode=kind, st_dev=here.st_dev, st_ino=e.inode())


@syscall("getdents64", "fd ptr size")
def sys_getdents64(p, fd, dirp, count):
    """ssize_t getdents64(int fd, void *dirp, size_t count);"""
    f = p.fds.get(s32(fd))
    if f.kind != "dir":
        raise SyscallError(E.ENOTDIR, f.path)
    if f.host_fd is not None:
        with host_errors():
            if os.fstat(f.host_fd).st_nlink == 0:  # Linux lists nothing of a removed directory
                raise SyscallError(E.ENOENT, f"{f.path} was removed")
    if f.entries is None:
        f.entries = _dir_entries(p, f)
    out = b""
    while f.offset < len(f.entries):
        ino, dtype, name = f.entries[f.offset]
        rec = structs.pack_dirent64(ino, f.offset + 1, dtype, name)
        if len(out) + len(rec) > count:
            if not out:
                raise SyscallError(E.EINVAL, "buffer too small")
            break
        out += rec
        f.offset += 1
    p.write(dirp, out)
    return len(out)
