"""File mappings in an image: which file a mapping shares pages with, and which of its pages
are the process's own (filemap.py). Without this, a resumed guest's file mappings would be
copies, and a write() to the file after the resume would not show in them.

memory.json gives each file VMA a "file" record:

    {"path": "/data.bin", "offset": "0x0", "own": [[first page, count], ...],
     "identity": {size, mtime_ns, sha256, deleted, mode},  (sha256: extents.content_digest)
     "description": 3  |  "ghost": "files/mapped-0.bin"}       (only for a deleted file)

A file that still has its name is reopened by that name on resume, and must be unchanged (as
an open file must). A deleted one is the same inode as an open description's (then the
mapping shares that description's ghost), or it travels in the image as a ghost of its own.
Only a private mapping's own pages (those it wrote) are saved; the rest come back from the
file on resume, which is why it must be unchanged. A MAP_SHARED mapping, of a file open for
writing or not ("direct": "rw" or "r", sharedfile.py), is saved by reference only: path,
offset, length and the file's identity, never a page; a resume maps the file again. A 16 MiB
file mapped shared costs the image a few hundred bytes.
"""
from __future__ import annotations

import os
import re

from ..kernel import mapmtime
from ..kernel.inodetimes import open_noatime
from ..memory import PAGE
from . import inodes
from .extents import content_digest
from .fields import Reader, hexs

_SHA = re.compile(r"[0-9a-f]{64}\Z")


def _runs(pages: list[int], start: int) -> list[list[int]]:
    runs: list[list[int]] = []
    for p in pages:
        i = (p - start) // PAGE
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1][1] += 1
        else:
            runs.append([i, 1])
    return runs


def record(m, v, seen: dict, parts: dict) -> dict:
    """The "file" record of file VMA `v`; `seen` caches per file across VMAs, `parts` gets
    the ghost of a deleted file that no descriptor holds."""
    f = v.file
    if f.key not in seen:
        ident = _identity(f.fd, f.host_path)
        rec = {"identity": ident}
        if ident["deleted"]:
            descs = m.process.fds.descriptions()
            same = [i for i, d in enumerate(descs) if d.kind == "file" and d.host_fd is not None
                    and _key(d.host_fd) == f.key]
            if same:
                rec["description"] = same[0]
            else:
                rec["ghost"] = f"files/mapped-{len(seen)}.bin"
                parts[rec["ghost"]] = _content(f.fd)
        seen[f.key] = rec
    out = {"path": f.path, "offset": hexs(v.offset), "own": _runs(m.mem.own_pages(v), v.start),
           **seen[f.key]}
    if v.direct:
        out["direct"] = v.direct  # the file's own pages: nothing of them is in the image
    return out


def _identity(fd: int, host_path: str | None) -> dict:
    """What restore must find again under the mapping's name (the digest open files have,
    read through the mapping's own descriptor, which can read: mmap needs that), or that
    the file was deleted."""
    st = os.fstat(fd)
    try:
        named = os.stat(host_path, follow_symlinks=False) if host_path else None
    except OSError:
        named = None
    same = named is not None and (named.st_dev, named.st_ino) == (st.st_dev, st.st_ino)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "deleted": not same,
            "sha256": content_digest(fd, st.st_size) if same else "0" * 64,
            "mode": st.st_mode & 0o7777}


def _content(fd: int) -> bytes:
    """All of a deleted mapped file that no descriptor holds (a mapping is at most the
    memory budget's size, so it is read whole; open ghosts stream their extents)."""
    out = bytearray()
    while chunk := os.pread(fd, 1 << 20, len(out)):
        out += chunk
    return bytes(out)


def _key(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def parse(r: Reader, f, path: str, npages: int, parts: dict) -> dict:
    """A checked "file" record of a VMA of `npages` pages."""
    f = r.obj(f, path)
    ident = r.obj(r.key(f, "identity", path), path + ".identity")
    sha = r.str(r.key(ident, "sha256", path), path + ".identity.sha256")
    if not _SHA.match(sha):
        r.fail(path + ".identity.sha256", "not a SHA-256")
    out = {"path": r.str(r.key(f, "path", path), path + ".path"),
           "offset": r.hex(r.key(f, "offset", path), path + ".offset", 63),
           "identity": {
               "size": r.int(r.key(ident, "size", path), path + ".identity.size"),
               "mtime_ns": r.int(r.key(ident, "mtime_ns", path), path + ".identity",
                                 -(1 << 63), (1 << 63) - 1),
               "sha256": sha,
               "deleted": r.bool(r.key(ident, "deleted", path), path + ".identity"),
               "mode": r.int(ident.get("mode", 0o644), path + ".identity.mode", 0, 0o7777)}}
    if out["offset"] % PAGE or not out["path"].startswith("/"):
        r.fail(path, "unaligned offset or a path that is not absolute")
    own = []
    for j, run in enumerate(r.list(r.key(f, "own", path), path + ".own", 1 << 22)):
        p = f"{path}.own[{j}]"
        if not isinstance(run, list) or len(run) != 2:
            r.fail(p, "expected [first page, count]")
        first = r.int(run[0], p, 0, npages - 1)
        own.append((first, r.int(run[1], p, 1, npages - first)))
    out["own"] = own
    out["direct"] = r.choice(f.get("direct", ""), path + ".direct", {"", "r", "rw"})
    if out["direct"] and own:
        r.fail(path, "a direct (shared) mapping with pages of its own")
    if "description" in f:
        out["description"] = r.int(f["description"], path + ".description", 0, 1 << 20)
    elif "ghost" in f:
        ghost = r.str(f["ghost"], path + ".ghost")
        if not ghost.startswith("files/") or ghost not in parts:
            r.fail(path + ".ghost", f"no such part {ghost!r}")
        out["ghost"] = ghost
    elif out["identity"]["deleted"]:
        r.fail(path, "a deleted file with neither a description nor a ghost")
    return out


def check_descriptions(r: Reader, vmas: list, descs: list) -> None:
    """A mapping that shares a description's file points at a file description."""
    for i, v in enumerate(vmas):
        d = v.get("file", {}).get("description")
        if d is not None and (d >= len(descs) or descs[d]["kind"] != "file"):
            r.fail(f"vmas[{i}].file.description", "no such file description")


def check(image, vfs) -> list[str]:
    """What is wrong now with the mapped files restore reopens by name (as with open files)."""
    named = {}
    others = [rec["image"]["vmas"] for rec in (image.tree or {}).get("processes", [])[1:]]
    for v in [*image.vmas, *(v for vmas in others for v in vmas)]:
        f = v.get("file")
        if f and not f["identity"]["deleted"]:
            named[f["path"]] = {"name": f["path"], "kind": "file", "identity": f["identity"]}
    # what --force risks: the pages that were the file's come back from the file as it is now
    return [f"{msg} (it is mapped: its new bytes would be in the guest's memory)"
            for msg in inodes.check([named[p] for p in sorted(named)], vfs)]


def _ghost(root: str, content: bytes, ident: dict) -> int:
    """A nameless file holding a deleted mapped file's bytes, mode and times."""
    fd = inodes._ghost_file(root)
    view = memoryview(content)
    while view:
        view = view[os.write(fd, view):]
    os.fchmod(fd, ident["mode"])
    os.utime(fd, ns=(ident["mtime_ns"], ident["mtime_ns"]))
    return fd


def attach(m, image, files: list) -> None:
    """Share the restored VMAs' pages with their files again (`files`: the reopened file
    descriptions, by index)."""
    fds: dict[str, int] = {}  # reopened by name or made from a ghost: ours, closed below
    try:
        for v in image.vmas:
            f = v.get("file")
            if not f:
                continue
            if "description" in f:
                fd, host_path = files[f["description"]].host_fd, None
            elif "ghost" in f:
                if f["ghost"] not in fds:
                    fds[f["ghost"]] = _ghost(m.vfs.root, image.blobs[f["ghost"]],
                                             f["identity"])
                fd, host_path = fds[f["ghost"]], None
            else:
                host_path = m.vfs.resolve(f["path"], "/", follow=False).host
                if f["path"] not in fds:
                    # its pages are read from here: the guest's file keeps its atime
                    fds[f["path"]] = open_noatime(host_path, os.O_RDONLY | os.O_NOFOLLOW
                                                  | os.O_CLOEXEC)
                fd = fds[f["path"]]
            mf = m.mem.mapped_file(fd, f["path"], host_path)
            own = [v["start"] + (first + i) * PAGE for first, n in f["own"] for i in range(n)]
            m.mem.attach_file(v["start"], v["end"], mf, f["offset"], v["shared"], own,
                              direct=f["direct"])
            if f["direct"] == "rw":
                mapmtime.note(m.process, mf)
    finally:
        for fd in fds.values():
            os.close(fd)  # each MappedFile holds a dup of its own
