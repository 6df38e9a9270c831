"""Credentials: the id calls, groups, and chown, for an unprivileged guest (access.py).

The guest is uid 1000 and gid 1000 (real, effective, saved and file-system ids alike), in its
own group only, without capabilities. As on Linux for such a user, every call that would change
an id to another value is refused with EPERM, and asking for the ids it has succeeds and changes
nothing; so there is no credential state for a checkpoint to save. chown on files the guest owns
(all of them, in the sandbox) succeeds only when it changes nothing, and clears set-user-ID bits
the way Linux does; the host file's real owner is never touched.
"""
from __future__ import annotations

import os
import stat as S
import struct

from ..abi import consts as C
from ..abi import errno as E
from ..access import privileges_dropped
from ..errors import SyscallError
from . import dirref
from .fsutil import creds, host_errors, lookup, must_exist, s32
from .registry import syscall

NGROUPS_MAX = 65536
NO_ID = 0xFFFFFFFF  # (uid_t)-1: "leave this id alone"


def _id(x: int) -> int:
    """A uid_t or gid_t argument: the low 32 bits."""
    return x & 0xFFFFFFFF


@syscall("getuid", "")
def sys_getuid(p):
    """uid_t getuid(void);"""
    return p.task.uid


@syscall("geteuid", "")
def sys_geteuid(p):
    """uid_t geteuid(void);"""
    return p.task.uid


@syscall("getgid", "")
def sys_getgid(p):
    """gid_t getgid(void);"""
    return p.task.gid


@syscall("getegid", "")
def sys_getegid(p):
    """gid_t getegid(void);"""
    return p.task.gid


def _get3(p, value: int, a: int, b: int, c: int) -> int:
    for addr in (a, b, c):  # one at a time, as Linux: a bad pointer fails after the good ones
        p.write(addr, struct.pack("<I", value))
    return 0


@syscall("getresuid", "ptr ptr ptr")
def sys_getresuid(p, ruid, euid, suid):
    """int getresuid(uid_t *ruid, uid_t *euid, uid_t *suid);"""
    return _get3(p, p.task.uid, ruid, euid, suid)


@syscall("getresgid", "ptr ptr ptr")
def sys_getresgid(p, rgid, egid, sgid):
    """int getresgid(gid_t *rgid, gid_t *egid, gid_t *sgid);"""
    return _get3(p, p.task.gid, rgid, egid, sgid)


def _keep(have: int, *wanted: int) -> int:
    """Each id is -1 (unchanged) or the one the guest has: nothing changes. Anything else
    would need CAP_SETUID or CAP_SETGID, which an unprivileged guest lacks."""
    for want in map(_id, wanted):
        if want not in (NO_ID, have):
            raise SyscallError(E.EPERM, f"id {want}: the guest is unprivileged (id {have})")
    return 0


def _set1(have: int, want: int) -> int:
    if _id(want) == NO_ID:
        raise SyscallError(E.EINVAL, "id -1")
    return _keep(have, want)


@syscall("setuid", "int")
def sys_setuid(p, uid):
    """int setuid(uid_t uid);"""
    return _set1(p.task.uid, uid)


@syscall("setgid", "int")
def sys_setgid(p, gid):
    """int setgid(gid_t gid);"""
    return _set1(p.task.gid, gid)


@syscall("setreuid", "int int")
def sys_setreuid(p, ruid, euid):
    """int setreuid(uid_t ruid, uid_t euid);"""
    return _keep(p.task.uid, ruid, euid)


@syscall("setregid", "int int")
def sys_setregid(p, rgid, egid):
    """int setregid(gid_t rgid, gid_t egid);"""
    return _keep(p.task.gid, rgid, egid)


@syscall("setresuid", "int int int")
def sys_setresuid(p, ruid, euid, suid):
    """int setresuid(uid_t ruid, uid_t euid, uid_t suid);"""
    return _keep(p.task.uid, ruid, euid, suid)


@syscall("setresgid", "int int int")
def sys_setresgid(p, rgid, egid, sgid):
    """int setresgid(gid_t rgid, gid_t egid, gid_t sgid);"""
    return _keep(p.task.gid, rgid, egid, sgid)


@syscall("setfsuid", "int")
def sys_setfsuid(p, fsuid):
    """int setfsuid(uid_t fsuid);"""
    # never fails: it answers the previous fsuid, and changes it only to an id the caller has
    return p.task.uid


@syscall("setfsgid", "int")
def sys_setfsgid(p, fsgid):
    """int setfsgid(gid_t fsgid);"""
    return p.task.gid


@syscall("getgroups", "int ptr")
def sys_getgroups(p, size, lst):
    """int getgroups(int size, gid_t list[]);"""
    size, groups = s32(size), creds(p).groups
    if size < 0:
        raise SyscallError(E.EINVAL, "negative size")
    if size:
        if size < len(groups):
            raise SyscallError(E.EINVAL, "list too small")
        p.write(lst, struct.pack(f"<{len(groups)}I", *groups))
    return len(groups)


@syscall("setgroups", "int ptr")
def sys_setgroups(p, size, lst):
    """int setgroups(size_t size, const gid_t *list);"""
    # Linux asks for CAP_SETGID before it looks at the arguments
    raise SyscallError(E.EPERM, "setgroups: the guest is unprivileged")


# chown ----------------------------------------------------------------------------------------

def _chown_ok(p, uid: int, gid: int) -> None:
    """Linux's chown_ok and chgrp_ok for an owner without CAP_CHOWN: the owner may "change" the
    owner to itself, and the group to one it is in (the file's group is the guest's own)."""
    uid, gid = _id(uid), _id(gid)
    c = creds(p)
    if uid not in (NO_ID, c.uid):
        raise SyscallError(E.EPERM, f"chown to uid {uid}: the guest is unprivileged")
    if gid != NO_ID and not c.in_group(gid):
        raise SyscallError(E.EPERM, f"chown to gid {gid}: not one of the guest's groups")


def _chown_host(target) -> None:
    """What a successful unprivileged chown of a non-directory changes: set-user-ID bits."""
    with host_errors():
        st = os.stat(target, follow_symlinks=False) if isinstance(target, str) \
            else os.fstat(target)
        new = privileges_dropped(st.st_mode)
        if new != st.st_mode:
            os.chmod(target, S.S_IMODE(new))


def _chown_file(p, f, uid: int, gid: int) -> int:
    if getattr(f.ops, "chown", None) is not None:  # eventfd, epoll: the anonymous inode
        return f.ops.chown(p, f, uid, gid)
    _chown_ok(p, uid, gid)
    if f.kind in ("file", "dir") and f.host_fd is not None:
        _chown_host(f.host_fd)
    return 0  # /dev/null, the terminal, /proc files: nothing on the host to change


@syscall("fchownat", "fd path int int hex")
def sys_fchownat(p, dirfd, path, owner, group, flags):
    """int fchownat(int dirfd, const char *pathname, uid_t owner, gid_t group, int flags);"""
    flags = s32(flags)
    if flags & ~(C.AT_SYMLINK_NOFOLLOW | C.AT_EMPTY_PATH):
        raise SyscallError(E.EINVAL, f"fchownat flags {flags:#x}")
    r = lookup(p, dirfd, path, follow=not flags & C.AT_SYMLINK_NOFOLLOW,
               empty_ok=bool(flags & C.AT_EMPTY_PATH))
    if r is None:  # AT_EMPTY_PATH: the file dirfd refers to
        if s32(dirfd) == C.AT_FDCWD:
            _chown_ok(p, owner, group)
            _chown_host(dirref.here(p).host if p.task.cwd_removed  # the directory itself
                        else p.sys.vfs.host_path(p.task.cwd))
            return 0
        return _chown_file(p, p.fds.get(s32(dirfd)), owner, group)
    must_exist(r)
    _chown_ok(p, owner, group)
    if r.host is not None:
        _chown_host(r.host)
    return 0


@syscall("chown", "path int int")
def sys_chown(p, path, owner, group):
    """int chown(const char *pathname, uid_t owner, gid_t group);"""
    return sys_fchownat(p, C.AT_FDCWD, path, owner, group, 0)


@syscall("lchown", "path int int")
def sys_lchown(p, path, owner, group):
    """int lchown(const char *pathname, uid_t owner, gid_t group);"""
    return sys_fchownat(p, C.AT_FDCWD, path, owner, group, C.AT_SYMLINK_NOFOLLOW)


@syscall("fchown", "fd int int")
def sys_fchown(p, fd, owner, group):
    """int fchown(int fd, uid_t owner, gid_t group);"""
    return _chown_file(p, p.fds.get(s32(fd)), owner, group)
