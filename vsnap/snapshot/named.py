"""Descriptions found again by their name at restore: O_PATH descriptors and FIFOs.

Neither holds bytes of a file the image could carry: an O_PATH descriptor only names a file, and
a FIFO's bytes live in the pipe (fifos.py saves those). So the image records the name and the
type of file found there, restore checks that the name still leads to a file of that type
(refused with one line otherwise, unless --force), and opens it again. One whose file lost its
name since it was opened is refused at save: nothing could make it again, except a removed
directory (one held as the cwd or a starting point, kernel/dirref.py): that is an empty
directory with no name, which restore makes again (its mode and mtime kept, as inodes.py's
ghosts).
"""
from __future__ import annotations

import os
import stat as S

from ..errors import SyscallError
from .fifos import FIFO_TYPE, fifo_record, reopen_fifo
from ..kernel.dirref import gone
from .inodes import CannotSave, _ghost_dir

FILE_TYPES = {oct(t) for t in (S.S_IFSOCK, S.S_IFLNK, S.S_IFREG, S.S_IFBLK, S.S_IFDIR,
                                S.S_IFCHR, S.S_IFIFO)}


def still_named(f, what: str) -> os.stat_result:
    """The file of description `f`, which must still be the one its name leads to: a file
    that lost its name cannot be made again (`what` names the description in the refusal)."""
    st = os.fstat(f.host_fd)
    try:
        named = os.stat(f.host_path, follow_symlinks=False)
    except OSError:
        named = None
    if named is None or (named.st_dev, named.st_ino) != (st.st_dev, st.st_ino):
        raise CannotSave(f"vsnap: cannot save: {what} {f.path}, which was removed since; "
                         f"an image cannot make it again")
    return st


def save_path(f, ctx) -> dict:
    if f.host_fd is None:  # a /dev or /proc name (stream "virtual"): its path says it all
        return {}
    removed = gone(ctx.m.process, f.host_fd, f.path)
    if removed is not None:
        return {"identity": {"type": oct(S.S_IFDIR)}, "removed": removed}
    st = still_named(f, "an O_PATH descriptor names")
    return {"identity": {"type": oct(st.st_mode & 0o170000)}}


def save_fifo(f, ctx) -> dict:
    return fifo_record(f, ctx.fifos)


def _parse_named(r, raw, path, fifo: bool) -> dict:
    if not raw["path"].startswith("/"):
        r.fail(path + ".path", "not an absolute guest path")
    ident = r.obj(r.key(raw, "identity", path), path + ".identity")
    kind = r.choice(r.key(ident, "type", path), path + ".identity.type", FILE_TYPES)
    out = {"identity": {"type": kind}}
    if fifo:
        if kind != FIFO_TYPE:
            r.fail(path + ".identity.type", "a FIFO's type must be 0o10000")
        if "buffered" in raw:  # what waited in the pipe
            out["buffered"] = r.bytes(raw["buffered"], path + ".buffered")
    return out


def parse_path(r, raw, path, ctx) -> dict:
    if raw.get("stream") is not None:
        return {}
    out = _parse_named(r, raw, path, False)
    if raw.get("removed") is not None:  # a removed directory
        if out["identity"]["type"] != oct(S.S_IFDIR):
            r.fail(path + ".removed", "only a directory is kept once removed")
        out["removed"] = parse_removed(r, raw["removed"], path + ".removed")
    return out


def parse_removed(r, g, path: str) -> dict:
    """A removed directory's record (see kernel/dirref.py's gone)."""
    g = r.obj(g, path)
    return {"mode": r.int(r.key(g, "mode", path), path + ".mode", 0, 0o7777),
            "mtime_ns": r.int(r.key(g, "mtime_ns", path), path + ".mtime_ns"),
            "ino": r.int(r.key(g, "ino", path), path + ".ino", 1, (1 << 64) - 1)}


def parse_fifo(r, raw, path, ctx) -> dict:
    return _parse_named(r, raw, path, True)


def check(d: dict, vfs) -> list[str]:
    """Problems with a named description: its name must still lead to the same type of file."""
    if d["kind"] == "path" and (d["stream"] is not None or d.get("removed")):
        return []
    try:
        r = vfs.resolve(d["path"], "/", follow=False)
        st = os.stat(r.host, follow_symlinks=False) if r.exists and r.host else None
    except (SyscallError, OSError) as e:
        return [f"{d['path']} cannot be reached ({e})"]
    if st is None:
        return [f"{d['path']} no longer exists"]
    if oct(st.st_mode & 0o170000) != d["identity"]["type"]:
        return [f"{d['path']} is another type of file now"]
    return []


def restore_path(f, d, ctx) -> None:
    if d.get("removed"):
        f.host_path = ctx.m.vfs.host_path(d["path"])
        f.host_fd = removed_dir(ctx.m.process, d["removed"], ctx.opened)
    elif d["stream"] is None:
        f.host_path = ctx.m.vfs.resolve(d["path"], "/", follow=False).host
        f.host_fd = os.open(f.host_path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)


def restore_fifo(f, d, ctx) -> None:
    f.host_path = ctx.m.vfs.resolve(d["path"], "/", follow=False).host
    f.host_fd, f.data = reopen_fifo(f.host_path, d["flags"], d.get("buffered"))


def removed_dir(p, rec: dict, opened=None) -> int:
    """A host descriptor of a directory that was removed, as `rec` keeps it (mode, mtime, the
    guest's inode number): the one a restored description holds (`opened`: the inodes being
    restored; else the fd table's), or a new one."""
    if opened is not None:
        for i, r in enumerate(opened.inodes):
            if r["kind"] == "dir" and r["name"] is None and r["guest_ino"] == rec["ino"]:
                return os.dup(opened.masters[i])
    else:
        for f in p.fds.descriptions():
            if f.host_fd is not None:
                st = os.fstat(f.host_fd)
                if not st.st_nlink and p.sys.inodes.get((st.st_dev, st.st_ino)) == rec["ino"]:
                    return os.dup(f.host_fd)
    fd = _ghost_dir(p.sys.vfs.root)
    try:
        os.fchmod(fd, rec["mode"])
        os.utime(fd, ns=(rec["mtime_ns"], rec["mtime_ns"]))
        st = os.fstat(fd)
        for key in [key for key, ino in p.sys.inodes.items() if ino == rec["ino"]]:
            del p.sys.inodes[key]  # the number moves to the new host inode
        p.sys.inodes[(st.st_dev, st.st_ino)] = rec["ino"]
    except BaseException:
        os.close(fd)
        raise
    return fd
