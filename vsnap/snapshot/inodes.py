"""Files and directories in an image, one record per inode.

Descriptions that lead to one host inode (two opens of one file, or of two hard links of it)
must lead to one inode again after a resume: same content, same inode number, writes through
one seen through the other. So a save groups the guest's descriptions by host (st_dev, st_ino)
and saves each inode once:

- by name, when the inode still has one in the root: a description's own path if that still
  leads to it, else another hard link found by walking the root. Restore checks that the name
  still holds the same content (size, modification time, content digest: extents.py) and opens
  it once.
- as a ghost, when it has no name left (CRIU's word for a file deleted while open): a regular
  file's data extents travel in the image (files/ghost-N.bin, its holes left out); a removed
  directory is empty by definition (rmdir needs that), so only its mode and time travel.
  Restore makes one nameless file (O_TMPFILE) or one directory removed at once.

Every description of the inode then gets its own host descriptor on that one inode, opened
anew through /proc/self/fd (a new open file description on the same inode, with its own
access mode), and the guest's inode number for it (System.inodes, keyed by host dev/ino) moves
to the inode's new host identity.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import stat as S
import tempfile
from fcntl import F_GETFL, fcntl

from ..errors import SyscallError, VsnapError
from ..fdtable import MAX_FDS
from ..kernel.inodetimes import open_noatime
from .extents import (FileRanges, content_digest, data_extents, reserve, unwritten_extents,
                      write_extents)

MAX_EXTENTS = 1 << 16     # a ghost's data extents in fds.json; more are merged across holes
_SHA = frozenset("0123456789abcdef")


class CannotSave(VsnapError):
    """The guest holds something vsnap cannot put in an image (said in one line)."""


def listing_identity(names: list[str]) -> str:
    return hashlib.sha256("\0".join(sorted(names)).encode()).hexdigest()


# saving -------------------------------------------------------------------------------------

def save(m, host_descriptions, parts: dict) -> tuple[list[dict], dict[int, int], list]:
    """The inode records of these descriptions (OpenFiles backed by a host descriptor), which
    record each description's inode is (by id()), and the FileRanges put into `parts` (the
    caller closes them once the image is written)."""
    groups: dict[tuple[int, int], list] = {}
    stats = {}
    for f in host_descriptions:
        if f.host_fd is None:
            raise CannotSave(f"vsnap: cannot save {f.path}: a {f.kind} open without a host "
                             f"descriptor (an internal error; please report it)")
        st = os.fstat(f.host_fd)
        key = (st.st_dev, st.st_ino)
        groups.setdefault(key, []).append(f)
        stats[key] = st
    records, index, opened = [], {}, []
    try:
        for key, group in groups.items():   # in order of each inode's lowest fd
            for f in group:
                index[id(f)] = len(records)
            records.append(_record(m, stats[key], group, parts, len(records), opened))
    except BaseException:
        for r in opened:
            r.close()
        raise
    return records, index, opened


# host (dev, ino) of the file a sys_checkpoint writes this image into (kernel/ckpt.py): the
# file changes by the very write, so a resume takes it as it finds it (holds_image)
HOLDS_IMAGE: set = set()


def _record(m, st, group, parts, i, opened) -> dict:
    key = (st.st_dev, st.st_ino)
    name = _find_name(m, key, st.st_nlink, [f.path for f in group])
    rec = {"kind": "dir" if S.S_ISDIR(st.st_mode) else "file", "name": name,
           "guest_ino": m.system.inodes.get(key)}
    if S.S_ISDIR(st.st_mode):
        if name is not None:
            host = m.vfs.resolve(name, "/", follow=False).host
            rec["identity"] = {"listing_sha256": listing_identity(os.listdir(host))}
        else:
            rec["ghost"] = {"mode": S.S_IMODE(st.st_mode), "mtime_ns": st.st_mtime_ns}
        return rec
    if not S.S_ISREG(st.st_mode):
        raise CannotSave(f"vsnap: cannot save {group[0].path}: it is open on a host file that "
                         f"is neither a regular file nor a directory")
    fd = _readable(group)
    if name is not None:
        try:
            rec["identity"] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                               "sha256": content_digest(fd, st.st_size),
                               "mode": S.S_IMODE(st.st_mode),
                               **({"holds_image": True} if key in HOLDS_IMAGE else {})}
        finally:
            os.close(fd)
        return rec
    extents = _merge(data_extents(fd, st.st_size))
    part = f"files/ghost-{i}.bin"
    parts[part] = FileRanges(fd, extents)   # read when the image is written, never whole
    opened.append(parts[part])
    rec["ghost"] = {"part": part, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                    "mode": S.S_IMODE(st.st_mode), "extents": [list(e) for e in extents],
                    # blocks fallocate reserved and nothing wrote: zeros, but in st_blocks
                    "reserved": [list(e) for e in _merge(unwritten_extents(fd))]}
    return rec


def _readable(group) -> int:
    """A readable descriptor of our own on the group's inode: the guest's may be write-only."""
    for f in group:
        with contextlib.suppress(OSError):
            return open_noatime(f"/proc/self/fd/{f.host_fd}", os.O_RDONLY | os.O_CLOEXEC)
    for f in group:  # no /proc, or no permission: one of the guest's, if it can read
        if fcntl(f.host_fd, F_GETFL) & os.O_ACCMODE != os.O_WRONLY:
            return os.dup(f.host_fd)
    raise CannotSave(f"vsnap: cannot save {group[0].path}: vsnap cannot read it (open "
                     f"write-only, and reopening it for reading is not allowed)")


def _merge(extents: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """At most MAX_EXTENTS extents: past that, the smallest holes are filled (they come back
    as written zeros: the same bytes, a few more blocks)."""
    while len(extents) > MAX_EXTENTS:
        gaps = sorted(b[0] - (a[0] + a[1]) for a, b in zip(extents, extents[1:]))
        limit = gaps[len(extents) - MAX_EXTENTS - 1]
        out = [extents[0]]
        for off, n in extents[1:]:
            last_off, last_n = out[-1]
            if off - (last_off + last_n) <= limit:
                out[-1] = (last_off, off + n - last_off)
            else:
                out.append((off, n))
        extents = out
    return extents


def _find_name(m, key, nlink: int, paths: list[str]) -> str | None:
    """A guest path in the root that leads to the host inode `key`, or None."""
    for path in dict.fromkeys(paths):
        found = _resolves_to(m, path, key)
        if found:
            return found
    if nlink == 0:
        return None
    return _walk(m, key)   # renamed or hard-linked past every path the guest opened it by


def _resolves_to(m, path: str, key) -> str | None:
    try:
        r = m.vfs.resolve(path, "/", follow=False)
        if r.special or not r.exists or r.host is None:
            return None
        st = os.lstat(r.host)
    except (SyscallError, OSError, ValueError):
        return None
    return r.guest if (st.st_dev, st.st_ino) == key else None


def _walk(m, key) -> str | None:
    """Look for the inode under the root, sorted (the same name every time), skipping the
    host's dev and proc at the top (the guest sees vsnap's own there)."""
    root = m.vfs.root
    todo = [root]
    while todo:
        where = todo.pop()
        try:
            with os.scandir(where) as it:
                entries = sorted(it, key=lambda e: e.name, reverse=True)
        except OSError:
            continue
        for e in entries:
            if where == root and e.name in ("dev", "proc"):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == key:
                found = _resolves_to(m, "/" + os.path.relpath(e.path, root), key)
                if found:
                    return found
            if S.S_ISDIR(st.st_mode) and st.st_dev == key[0]:
                todo.append(e.path)
    return None


# reading back -------------------------------------------------------------------------------

def parse(r, raw, parts: dict) -> list[dict]:
    """The inode records of fds.json, every field checked (r is a fields.Reader)."""
    out, seen_ino = [], set()
    for i, rec in enumerate(r.list(raw, "inodes", MAX_FDS)):
        path = f"inodes[{i}]"
        rec = r.obj(rec, path)
        kind = r.choice(r.key(rec, "kind", path), path + ".kind", {"file", "dir"})
        name = r.opt_str(rec.get("name"), path + ".name")
        if name is not None and not name.startswith("/"):
            r.fail(path + ".name", "not an absolute guest path")
        ino = rec.get("guest_ino")
        if ino is not None:
            ino = r.int(ino, path + ".guest_ino", 1, (1 << 64) - 1)
            if ino in seen_ino:
                r.fail(path + ".guest_ino", "two inodes with one number")
            seen_ino.add(ino)
        out.append({"kind": kind, "name": name, "guest_ino": ino,
                    **(_parse_named(r, rec, path, kind) if name is not None else
                       _parse_ghost(r, rec, path, kind, parts))})
    return out


def _sha(r, v, path: str) -> str:
    v = r.str(v, path)
    if len(v) != 64 or not set(v) <= _SHA:
        r.fail(path, "not a SHA-256")
    return v


def _parse_named(r, rec, path, kind) -> dict:
    ident = r.obj(r.key(rec, "identity", path), path + ".identity")
    p = path + ".identity"
    if kind == "dir":
        return {"identity": {"listing_sha256": _sha(r, r.key(ident, "listing_sha256", p),
                                                    p + ".listing_sha256")}}
    return {"identity": {
        "size": r.int(r.key(ident, "size", p), p + ".size", 0, (1 << 63) - 1),
        "mtime_ns": r.int(r.key(ident, "mtime_ns", p), p + ".mtime_ns", -(1 << 63),
                          (1 << 63) - 1),
        "sha256": _sha(r, r.key(ident, "sha256", p), p + ".sha256"),
        "mode": r.int(r.key(ident, "mode", p), p + ".mode", 0, 0o7777),
        "holds_image": r.bool(ident.get("holds_image", False), p + ".holds_image")}}


def _parse_ghost(r, rec, path, kind, parts) -> dict:
    p = path + ".ghost"
    g = r.obj(r.key(rec, "ghost", path), p)
    out = {"mode": r.int(r.key(g, "mode", p), p + ".mode", 0, 0o7777),
           "mtime_ns": r.int(r.key(g, "mtime_ns", p), p + ".mtime_ns", -(1 << 63),
                             (1 << 63) - 1)}
    if kind == "file":
        part = r.str(r.key(g, "part", p), p + ".part")
        if not part.startswith("files/") or part not in parts:
            r.fail(p + ".part", f"no such part {part!r}")
        size = r.int(r.key(g, "size", p), p + ".size", 0, (1 << 63) - 1)
        extents, end, total = [], 0, 0
        for j, e in enumerate(r.list(r.key(g, "extents", p), p + ".extents", MAX_EXTENTS)):
            where = f"{p}.extents[{j}]"
            if not isinstance(e, list) or len(e) != 2:
                r.fail(where, "expected [offset, length]")
            off = r.int(e[0], where, end, size - 1) if size else r.fail(where, "past the end")
            n = r.int(e[1], where, 1, size - off)
            extents.append((off, n))
            end, total = off + n, total + n
        if total != len(parts[part]):
            r.fail(p + ".extents", f"{total} bytes of extents, but {part} holds "
                                   f"{len(parts[part])}")
        reserved, end = [], 0
        for j, e in enumerate(r.list(g.get("reserved", []), p + ".reserved", MAX_EXTENTS)):
            where = f"{p}.reserved[{j}]"
            if not isinstance(e, list) or len(e) != 2:
                r.fail(where, "expected [offset, length]")
            off = r.int(e[0], where, end, (1 << 62) - 1)   # may lie past the end (KEEP_SIZE)
            n = r.int(e[1], where, 1, (1 << 62) - off)
            reserved.append((off, n))
            end = off + n
        out.update(part=part, size=size, extents=extents, reserved=reserved)
    return {"ghost": out}


# restoring ----------------------------------------------------------------------------------

def check(inodes: list[dict], vfs) -> list[str]:
    """What is wrong with the named inodes now (each a line), before anything is built."""
    problems = []
    for rec in inodes:
        if rec["name"] is None:
            continue  # a ghost's bytes are in the image, checked by its hash
        name, ident = rec["name"], rec["identity"]
        try:
            r = vfs.resolve(name, "/", follow=False)
        except SyscallError as e:
            problems.append(f"{name} cannot be reached ({e})")
            continue
        if not r.exists or r.host is None:
            problems.append(f"{name} no longer exists")
            continue
        try:
            st = os.stat(r.host, follow_symlinks=False)
            if rec["kind"] == "dir":
                if not S.S_ISDIR(st.st_mode):
                    problems.append(f"{name} is no longer a directory")
                elif listing_identity(os.listdir(r.host)) != ident["listing_sha256"]:
                    problems.append(f"directory {name} has different entries now")
                continue
            if not S.S_ISREG(st.st_mode):
                problems.append(f"{name} is no longer a regular file")
                continue
            if ident.get("holds_image"):
                continue  # sys_checkpoint wrote this image into it after it was recorded
            if st.st_size != ident["size"]:
                problems.append(f"{name} changed size since the save "
                                f"({ident['size']} -> {st.st_size} bytes)")
                continue
            fd = open_noatime(r.host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                digest = content_digest(fd, st.st_size)
            finally:
                os.close(fd)
        except OSError as e:
            problems.append(f"{name}: {e.strerror}")
            continue
        if digest != ident["sha256"]:
            problems.append(f"{name} has different content since the save")
        elif st.st_mtime_ns != ident["mtime_ns"]:
            problems.append(f"{name} was modified since the save (same bytes, new time)")
    return problems


_ACCESS = {0: os.O_RDONLY, 1: os.O_WRONLY}


class Opened:
    """Each inode of an image opened once on the host (`masters`), and a descriptor of its own
    for each description, made from it. close() lets go of the masters."""

    def __init__(self, vfs, inodes: list[dict], descriptions: list[dict], blobs: dict):
        self.inodes = inodes
        self.masters: list[int] = []
        try:
            for i, rec in enumerate(inodes):
                modes = {d["flags"] & 3 for d in descriptions if d.get("inode") == i}
                access = _ACCESS.get(modes.pop(), os.O_RDWR) if len(modes) == 1 else os.O_RDWR
                self.masters.append(_open(vfs, rec, access, blobs))
        except BaseException:
            self.close()
            raise

    def descriptor(self, d: dict) -> int:
        """A new host descriptor (a new open file description) on d's inode, with d's access."""
        master = self.masters[d["inode"]]
        if self.inodes[d["inode"]]["kind"] == "dir":
            flags = os.O_RDONLY | os.O_DIRECTORY
        else:
            flags = _ACCESS.get(d["flags"] & 3, os.O_RDWR)
        try:
            return open_noatime(f"/proc/self/fd/{master}", flags | os.O_CLOEXEC)
        except OSError:
            return os.dup(master)  # no /proc: vsnap reads and writes at explicit offsets

    def finish(self, inodes_map: dict) -> None:
        """The ghosts' modes (set last: a read-only ghost must first be opened for writing),
        and the guest's inode numbers moved to the inodes' host identities now."""
        by_value = {v: k for k, v in inodes_map.items()}
        for rec, fd in zip(self.inodes, self.masters):
            if rec["name"] is None:
                os.fchmod(fd, rec["ghost"]["mode"])
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            stale = inodes_map.pop(key, None)   # a dead file's number on a reused host inode
            by_value.pop(stale, None)
            if rec["guest_ino"] is not None:
                old = by_value.pop(rec["guest_ino"], None)
                if old is not None:
                    del inodes_map[old]
                inodes_map[key] = rec["guest_ino"]
                by_value[rec["guest_ino"]] = key

    def close(self) -> None:
        for fd in self.masters:
            os.close(fd)
        self.masters = []


def _open(vfs, rec: dict, access: int, blobs: dict) -> int:
    if rec["name"] is not None:
        host = vfs.resolve(rec["name"], "/", follow=False).host
        if rec["kind"] == "dir":
            return open_noatime(host, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                | os.O_CLOEXEC)
        return open_noatime(host, access | os.O_NOFOLLOW | os.O_CLOEXEC)
    g = rec["ghost"]
    fd = _ghost_dir(vfs.root) if rec["kind"] == "dir" else _ghost_file(vfs.root)
    try:
        if rec["kind"] == "file":
            write_extents(fd, blobs[g["part"]], g["extents"], g["size"])
            reserve(fd, g["reserved"])
        os.utime(fd, ns=(g["mtime_ns"], g["mtime_ns"]))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _ghost_file(root: str) -> int:
    """A new file with no name, in the root's file system."""
    with contextlib.suppress(OSError, AttributeError):  # O_TMPFILE: no name, ever
        return os.open(root, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    with _times_kept(root):
        fd, name = tempfile.mkstemp(dir=root, prefix=".vsnap-ghost-")
        os.unlink(name)
    return fd


def _ghost_dir(root: str) -> int:
    """An open directory that has been removed (what a guest holds after rmdir)."""
    with _times_kept(root):
        path = tempfile.mkdtemp(dir=root, prefix=".vsnap-ghost-")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        finally:
            os.rmdir(path)
    return fd


@contextlib.contextmanager
def _times_kept(path: str):
    """The guest sees its root's times: a name made and removed there must not change them."""
    st = os.stat(path)
    try:
        yield
    finally:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
