"""Files without a name: memfd_create and open(O_TMPFILE).

Each is a real host file, made inside the sandbox root (memfd) or the named directory
(O_TMPFILE) and unlinked at once: to the guest it is what Linux gives, an open regular file
with no name ("/memfd:NAME (deleted)", "/dir/#INO (deleted)" as /proc shows them). A
checkpoint already carries such files (deleted while open, a "ghost": files/ghost-N.bin), so
they come back after resume with the same bytes, offset, mode and time.

Not done: sealing (F_ADD_SEALS and F_GET_SEALS fail with EINVAL, named once), huge pages
(MFD_HUGETLB: EINVAL), and giving an O_TMPFILE file a name with linkat (its /proc/self/fd
link is not there; AT_EMPTY_PATH gives ENOENT, as Linux 6.1 gives an unprivileged user).
"""
from __future__ import annotations

import os
import tempfile

from ..abi import consts as C
from ..abi import errno as E
from ..errors import SyscallError
from ..fdtable import OpenFile
from .fsutil import host_errors, lookup, touch
from .prctl import read_upto
from .registry import syscall

MFD_CLOEXEC, MFD_ALLOW_SEALING, MFD_HUGETLB = 1, 2, 4
MFD_NAME_MAX = 255 - len("memfd:")   # NAME_MAX less the prefix
F_ADD_SEALS, F_GET_SEALS = 1033, 1034
TMPFILE_BIT = C.O_TMPFILE & ~C.O_DIRECTORY   # __O_TMPFILE


def nameless_file(p, host_dir: str, mode: int) -> int:
    """A host descriptor (read-write) of a new empty file in `host_dir` that has no name.

    The name it has for an instant is removed before the guest runs again, and the
    directory's times are put back: to the guest the directory never changed (Linux makes
    these files without ever adding an entry)."""
    with host_errors():
        before = os.stat(host_dir)
        fd, name = tempfile.mkstemp(dir=host_dir, prefix=".vsnap-nameless-")
        try:
            os.unlink(name)
        finally:
            os.utime(host_dir, ns=(before.st_atime_ns, before.st_mtime_ns))
        try:
            os.fchmod(fd, mode)
            touch(p, fd)
        except OSError:
            os.close(fd)
            raise
    return fd


@syscall("memfd_create", "str hex")
def sys_memfd_create(p, name, flags):
    """int memfd_create(const char *name, unsigned int flags);"""
    flags &= 0xFFFFFFFF
    if flags & ~(MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB):
        raise SyscallError(E.EINVAL, f"memfd_create flags {flags:#x}")
    if flags & MFD_HUGETLB:
        p.sys.refuse("memfd_create(MFD_HUGETLB)", "vsnap: memfd_create with MFD_HUGETLB: there "
                 "are no huge pages here: EINVAL")
        raise SyscallError(E.EINVAL, "MFD_HUGETLB")
    raw = read_upto(p, name, MFD_NAME_MAX + 1)
    if len(raw) > MFD_NAME_MAX:
        raise SyscallError(E.EINVAL, "memfd name too long")
    try:
        fd = nameless_file(p, p.sys.vfs.root, 0o777)  # a memfd's inode is made with mode 0777
    except SyscallError:
        # a root vsnap may not write to (a read-only tree): the host's own memfd serves
        # too, as checkpoints read ghosts through /proc/self/fd
        with host_errors():
            fd = os.memfd_create("vsnap", os.MFD_CLOEXEC)
            os.fchmod(fd, 0o777)
            touch(p, fd)
    # sealing is not implemented: the flag is accepted (most callers never seal), and
    # F_ADD_SEALS fails loudly (fcntl, see sealing_refused)
    f = OpenFile("file", "/memfd:" + os.fsdecode(raw) + " (deleted)", C.O_RDWR,
                 host_fd=fd)
    return p.fds.install(f, cloexec=bool(flags & MFD_CLOEXEC))


def sealing_refused(p, cmd: int) -> None:
    """fcntl F_ADD_SEALS/F_GET_SEALS: not implemented (EINVAL, as for a file that cannot be
    sealed), named once."""
    what = "F_ADD_SEALS" if cmd == F_ADD_SEALS else "F_GET_SEALS"
    p.sys.refuse(f"fcntl({what})", f"vsnap: fcntl {what}: file sealing is not implemented: "
             f"EINVAL")
    raise SyscallError(E.EINVAL, what)


def open_tmpfile(p, dirfd: int, path: int, flags: int, mode: int) -> int:
    """openat(dirfd, path, O_TMPFILE | O_WRONLY or O_RDWR, mode): a nameless file in the
    directory `path`."""
    if flags & (C.O_TMPFILE | C.O_CREAT) != C.O_TMPFILE:
        raise SyscallError(E.EINVAL, "O_TMPFILE needs O_DIRECTORY and no O_CREAT")
    acc = flags & C.O_ACCMODE
    if acc not in (C.O_WRONLY, C.O_RDWR):
        raise SyscallError(E.EINVAL, "O_TMPFILE needs O_WRONLY or O_RDWR")
    r = lookup(p, dirfd, path, follow=not flags & C.O_NOFOLLOW)
    if not r.exists:
        raise SyscallError(E.ENOENT, r.guest)
    if r.special:
        raise SyscallError(E.EOPNOTSUPP, f"{r.guest}: no temporary files in vsnap's "
                           f"virtual directories")
    with host_errors():
        if not os.path.isdir(r.host) or os.path.islink(r.host):
            raise SyscallError(E.ENOTDIR, r.guest)
    fd = nameless_file(p, r.host, mode & 0o7777 & ~p.task.umask)
    with host_errors():
        st = os.fstat(fd)
    base = r.guest.rstrip("/")
    ino = p.sys.guest_inode(st, f"{base}/#tmpfile")
    # Linux keeps O_TMPFILE (and its O_DIRECTORY) in the status flags: F_GETFL shows them
    status = flags & ~(C.O_CREAT | C.O_EXCL | C.O_NOCTTY | C.O_TRUNC | C.O_CLOEXEC)
    f = OpenFile("file", f"{base}/#{ino} (deleted)", status, host_fd=fd)
    return p.fds.install(f, cloexec=bool(flags & C.O_CLOEXEC))
