"""System calls on names in the file system: mkdir, rmdir, unlink, rename, symlinks, hard links,
readlink, chdir/getcwd. Every name goes through the sandbox (vfs.py). What a name is (the stat
family, access) is in statcalls.py; a file's size and mode (truncate, chmod, umask) in attrs.py."""
from __future__ import annotations

import os
import stat as S

from ..abi import consts as C
from ..abi import errno as E
from ..access import MAY_EXEC, MAY_WRITE
from ..errors import SyscallError
from ..vfs import Resolved
from . import perm
from .fsutil import (base_dir, creds, host_errors, lookup, must_exist, s32, s64,
                     stat_of_file, stat_of_resolved, touch_parent, touch_path)
from .inodetimes import mark_changed
from . import dirref, opath
from .registry import syscall


def not_virtual(r, what: str):
    if r.special:
        raise SyscallError(E.EACCES if r.exists else E.ENOENT, f"{r.guest}: {what}")
    return r


@syscall("mkdir", "path mode")
def sys_mkdir(p, path, mode):
    """int mkdir(const char *pathname, mode_t mode);"""
    return sys_mkdirat(p, C.AT_FDCWD, path, mode)


@syscall("mkdirat", "fd path mode")
def sys_mkdirat(p, dirfd, path, mode):
    """int mkdirat(int dirfd, const char *pathname, mode_t mode);"""
    r = not_virtual(_name(p, dirfd, path)[0], "read-only")
    if r.exists:
        raise SyscallError(E.EEXIST, r.guest)
    perm.may_create(p, r)
    with host_errors():
        os.mkdir(r.host, 0o700)
        os.chmod(r.host, mode & 0o7777 & ~p.task.umask)  # the guest's umask, not the host's
        touch_path(p, r.host)
        touch_parent(p, r.host)
    return 0


def _name(p, dirfd, path_ptr: int):
    """(the named file itself, whether the path ended in "/"): the last component is never
    followed, as for the calls that add or remove a name (Linux looks up its parent, then the
    name in it). A trailing slash is the caller's to judge: rmdir ignores it, unlink and
    rename refuse it on a non-directory, symlink and link refuse it on a new name."""
    text = p.read_path(path_ptr)
    if not text:
        raise SyscallError(E.ENOENT, "empty path")
    stripped = text.rstrip("/") or "/"
    r = dirref.resolve(p, dirfd, stripped, follow=False, creds=creds(p))
    return r, stripped != text and stripped != "/"


def is_dir(r) -> bool:
    with host_errors():
        return r.host is not None and S.S_ISDIR(os.lstat(r.host).st_mode)


def _last(p, path_ptr: int) -> str:
    """The last component of the path as the guest wrote it ("." in "a/." or "a/./")."""
    return p.read_path(path_ptr).rstrip("/").rsplit("/", 1)[-1]


def _rmdir(p, dirfd, path) -> int:
    last = _last(p, path)
    if last in (".", ".."):  # as Linux: "." is invalid, ".." is never empty
        raise SyscallError(E.EINVAL if last == "." else E.ENOTEMPTY, last)
    r = must_exist(not_virtual(_name(p, dirfd, path)[0], "read-only"))
    if r.guest == "/":
        raise SyscallError(E.EBUSY, "/")
    perm.may_delete(p, r)
    if not is_dir(r):  # a symlink too, even to a directory, even named with a slash
        raise SyscallError(E.ENOTDIR, r.guest)
    with host_errors(), dirref.removing(p):
        os.rmdir(r.host)
        touch_parent(p, r.host)
    return 0


@syscall("rmdir", "path")
def sys_rmdir(p, path):
    """int rmdir(const char *pathname);"""
    return _rmdir(p, C.AT_FDCWD, path)


@syscall("unlink", "path")
def sys_unlink(p, path):
    """int unlink(const char *pathname);"""
    return sys_unlinkat(p, C.AT_FDCWD, path, 0)


@syscall("unlinkat", "fd path hex")
def sys_unlinkat(p, dirfd, path, flags):
    """int unlinkat(int dirfd, const char *pathname, int flags);"""
    if flags & C.AT_REMOVEDIR:
        return _rmdir(p, dirfd, path)
    if _last(p, path) in (".", ".."):
        raise SyscallError(E.EISDIR, _last(p, path))
    r, slash = _name(p, dirfd, path)
    must_exist(not_virtual(r, "read-only"))
    if slash or r.guest == "/":  # "name/": a directory is EISDIR, anything else ENOTDIR
        raise SyscallError(E.EISDIR if is_dir(r) else E.ENOTDIR, r.guest)
    perm.may_delete(p, r)
    with host_errors():
        if S.S_ISDIR(os.lstat(r.host).st_mode):
            raise SyscallError(E.EISDIR, r.guest)
        else:
            os.unlink(r.host)
        touch_parent(p, r.host)
    return 0


@syscall("rename", "path path")
def sys_rename(p, old, new):
    """int rename(const char *oldpath, const char *newpath);"""
    return sys_renameat2(p, C.AT_FDCWD, old, C.AT_FDCWD, new, 0)


@syscall("renameat", "fd path fd path")
def sys_renameat(p, olddirfd, old, newdirfd, new):
    """int renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);"""
    return sys_renameat2(p, olddirfd, old, newdirfd, new, 0)


@syscall("renameat2", "fd path fd path hex")
def sys_renameat2(p, olddirfd, old, newdirfd, new, flags):
    """int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
    unsigned int flags);"""
    if {_last(p, old), _last(p, new)} & {".", ".."}:
        raise SyscallError(E.EBUSY, "rename of . or ..")
    # both parents are looked up before either name is checked, as Linux does
    src, src_slash = _name(p, olddirfd, old)
    dst, dst_slash = _name(p, newdirfd, new)
    not_virtual(src, "read-only")
    not_virtual(dst, "read-only")
    must_exist(src)
    if flags & 1 and dst.exists:  # RENAME_NOREPLACE
        raise SyscallError(E.EEXIST, dst.guest)
    if src.guest == "/" or dst.guest == "/":
        raise SyscallError(E.EBUSY, "/")
    if (src_slash or dst_slash) and not is_dir(src):
        raise SyscallError(E.ENOTDIR, f"{src.guest} named with a trailing slash")
    if dst.guest.startswith(src.guest + "/"):
        raise SyscallError(E.EINVAL, f"{src.guest} into itself")
    if src.guest.startswith(dst.guest + "/"):
        raise SyscallError(E.ENOTEMPTY, f"{dst.guest} holds {src.guest}")
    with host_errors():
        st = os.lstat(src.host)
        if dst.exists:
            target = os.lstat(dst.host)
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                return 0  # two names of one file: Linux does nothing, and checks nothing
    # the permission checks of Linux's vfs_rename, in its order
    perm.may_delete(p, src)
    (perm.may_delete if dst.exists else perm.may_create)(p, dst)
    if S.S_ISDIR(st.st_mode) and not perm.same_dir(src, dst):
        perm.require(p, st.st_mode, MAY_WRITE, src.guest)  # its ".." entry changes
    with host_errors(), dirref.removing(p):  # an empty directory may be replaced
        os.rename(src.host, dst.host)
        touch_parent(p, src.host)
        touch_parent(p, dst.host)
        mark_changed(p, os.lstat(dst.host), dst.guest)
    _follow_rename(p, src.guest, dst.guest)
    return 0


def _follow_rename(p, old: str, new: str) -> None:
    """Open files and the cwd follow a rename, as they do on Linux (they hold the inode, not
    the name): their recorded names are what a checkpoint reopens."""
    def moved(path: str, removed: bool = False) -> str | None:
        if path == old:  # a removed directory has no name: another one took it
            return None if removed else new
        if path.startswith(old.rstrip("/") + "/"):
            return new.rstrip("/") + path[len(old.rstrip("/")):]
        return None

    for f in p.fds.descriptions():
        if f.kind in ("file", "dir", "path", "fifo") and f.host_path is not None:
            to = moved(f.path, dirref.held_removed(f))
            if to is not None:
                f.path, f.host_path = to, p.sys.vfs.host_path(to)
    cwd = moved(p.task.cwd, bool(p.task.cwd_removed))
    if cwd is not None:
        p.task.cwd = cwd


@syscall("symlink", "str path")
def sys_symlink(p, target, linkpath):
    """int symlink(const char *target, const char *linkpath);"""
    return sys_symlinkat(p, target, C.AT_FDCWD, linkpath)


@syscall("symlinkat", "str fd path")
def sys_symlinkat(p, target, newdirfd, linkpath):
    """int symlinkat(const char *target, int newdirfd, const char *linkpath);"""
    text = p.read_cstr(target)
    if not text:
        raise SyscallError(E.ENOENT, "empty symlink target")
    r, slash = _name(p, newdirfd, linkpath)
    if not_virtual(r, "read-only").exists:
        raise SyscallError(E.EEXIST, r.guest)
    if slash:  # asked for a directory that is not there
        raise SyscallError(E.ENOENT, f"{r.guest}/")
    perm.may_create(p, r)
    # The link is stored as the guest wrote it; vfs.py interprets it inside the root.
    with host_errors():
        os.symlink(text, r.host)
        touch_path(p, r.host)
        touch_parent(p, r.host)
    return 0


@syscall("link", "path path")
def sys_link(p, old, new):
    """int link(const char *oldpath, const char *newpath);"""
    return sys_linkat(p, C.AT_FDCWD, old, C.AT_FDCWD, new, 0)


@syscall("linkat", "fd path fd path hex")
def sys_linkat(p, olddirfd, old, newdirfd, new, flags):
    """int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
    int flags);"""
    src = must_exist(not_virtual(lookup(p, olddirfd, old, follow=bool(flags & C.AT_SYMLINK_FOLLOW)),
                           "read-only"))
    dst, slash = _name(p, newdirfd, new)
    if not_virtual(dst, "read-only").exists:
        raise SyscallError(E.EEXIST, dst.guest)
    if slash:  # asked for a directory that is not there
        raise SyscallError(E.ENOENT, f"{dst.guest}/")
    perm.may_create(p, dst)
    with host_errors():
        if S.S_ISDIR(os.lstat(src.host).st_mode):
            raise SyscallError(E.EPERM, f"{src.guest}: hard link to a directory")
        os.link(src.host, dst.host, follow_symlinks=False)
        touch_parent(p, dst.host)
        mark_changed(p, os.lstat(src.host), src.guest)
    return 0


@syscall("readlink", "path ptr size")
def sys_readlink(p, path, buf, size):
    """ssize_t readlink(const char *pathname, char *buf, size_t bufsiz);"""
    return sys_readlinkat(p, C.AT_FDCWD, path, buf, size)


@syscall("readlinkat", "fd path ptr size")
def sys_readlinkat(p, dirfd, path, buf, size):
    """ssize_t readlinkat(int dirfd, const char *pathname, char *buf, size_t bufsiz);"""
    if s64(size) <= 0:
        raise SyscallError(E.EINVAL, "bufsiz")
    name = p.read_path(path)
    if not name and s32(dirfd) != C.AT_FDCWD:  # an O_PATH|O_NOFOLLOW descriptor of a link
        return _readlink_fd(p, p.fds.get_raw(s32(dirfd)), buf, size)
    s = dirref.start(p, dirfd, name) if name else (base_dir(p, dirfd), name)
    if isinstance(s, Resolved):  # "." of a removed directory
        raise SyscallError(E.EINVAL, f"{s.guest} is not a symbolic link")
    target = os.fsencode(p.sys.vfs.readlink(s[1], s[0], creds=creds(p)))[:size]
    p.write(buf, target)
    return len(target)


def _readlink_fd(p, f, buf, size) -> int:
    if f.kind != "path" or not opath.is_symlink(p, f):
        raise SyscallError(E.ENOENT, f"{f.path} is not a symbolic link")
    with host_errors():
        target = p.exe_guest if f.host_fd is None else os.readlink(f.host_path)
    if target is None:
        raise SyscallError(E.ENOENT, f.path)
    data = os.fsencode(target)[:size]
    p.write(buf, data)
    return len(data)


@syscall("getcwd", "ptr size")
def sys_getcwd(p, buf, size):
    """char *getcwd(char *buf, size_t size);"""
    cwd = os.fsencode(dirref.getcwd(p)) + b"\0"
    if size < len(cwd):
        raise SyscallError(E.ERANGE, "buffer too small")
    p.write(buf, cwd)
    return len(cwd)


def _enter(p, r) -> int:
    st = stat_of_resolved(p, r)
    if not S.S_ISDIR(st["mode"]):
        raise SyscallError(E.ENOTDIR, r.guest)
    perm.require(p, st["mode"], MAY_EXEC, r.guest)
    dirref.enter(p, r.guest, host=r.host)
    return 0


@syscall("chdir", "path")
def sys_chdir(p, path):
    """int chdir(const char *path);"""
    return _enter(p, lookup(p, C.AT_FDCWD, path))


@syscall("fchdir", "fd")
def sys_fchdir(p, fd):
    """int fchdir(int fd);"""
    f = p.fds.get_raw(s32(fd))  # an O_PATH descriptor of a directory serves too
    if f.kind != "dir" and not (f.kind == "path" and opath.is_dir(p, f)):
        raise SyscallError(E.ENOTDIR, f.path)
    perm.require(p, stat_of_file(p, f)["mode"], MAY_EXEC, f.path)  # its mode now, not at open
    dirref.enter(p, f.path, host=f.host_path, fd=f.host_fd)  # the directory, removed or not
    return 0
