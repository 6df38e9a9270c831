"""Open file descriptions in an image, kind by kind.

Every kind of open file (fdtable.OpenFile.kind) has one entry in KINDS saying what a save
keeps of it beyond what every description has (kind, path, flags, offset, stream), how that is
read back from an untrusted image and checked, and how a resumed guest gets it back. A new
kind of open file adds one entry here. A kind without an entry cannot be saved: the save says
so in one line, rather than write an image that a resume would then choke on.

Files and directories of the root are saved per inode (inodes.py): their descriptions name
their inode record, and restore gives each description its own host descriptor on it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from ..fdtable import MAX_FDS, OpenFile
from ..kernel.filelocks import locks_record
from ..kernel import devices
from . import anonimage, inodes, named, pipeimage, sockimage, sockparse  # noqa: F401
from . import inetsockimage, unixsockimage  # noqa: F401  (the families register themselves)
from .inodes import CannotSave


@dataclass(frozen=True)
class Kind:
    """How one kind of open file goes into an image and comes back."""

    save: Callable = lambda f, ctx: {}            # (OpenFile, Saving) -> extra fields
    parse: Callable = lambda r, raw, path, ctx: {}  # (Reader, record, path, Parsing) -> fields
    restore: Callable = lambda f, d, ctx: None    # (new OpenFile, parsed record, Restoring)
    streams: frozenset = frozenset({None})        # the `stream` values it may have
    host: Callable = lambda f: False              # backed by a host file: saved per inode
    check: Callable = lambda d, vfs: []           # problems to refuse a resume for (--force)


@dataclass
class Saving:
    m: object
    parts: dict
    inode_of: dict = field(default_factory=dict)  # id(OpenFile) -> inode record index
    fifos: set = field(default_factory=set)       # FIFOs whose waiting bytes are saved already
    pipes: list = field(default_factory=list)     # the pipes, in the order fds.json lists them
    sockets: list = field(default_factory=list)   # the sockets, in the order fds.json lists them
    socket_index: dict = field(default_factory=dict)  # id(Socket) -> its index
    desc_index: dict = field(default_factory=dict)    # id(OpenFile) -> its description index
    descs: list = field(default_factory=list)     # every description saved, in fds.json's order


@dataclass
class Parsing:
    parts: dict
    inodes: list
    pipes: list = field(default_factory=list)     # fds.json's checked pipe records


@dataclass
class Restoring:
    m: object
    opened: inodes.Opened
    pipes: dict = field(default_factory=dict)     # index in fds.json -> the pipe made again
    socket_records: list = field(default_factory=list)  # fds.json's checked socket records
    sockets: list | None = None                   # the sockets made again, by index
    later: list = field(default_factory=list)     # fn(files) once all are made (epoll items)


# files and directories of the root -----------------------------------------------------------

def _save_inode(f, ctx) -> dict:
    return {"inode": ctx.inode_of[id(f)]}


def _parse_inode(r, raw, path, ctx, kind: str) -> dict:
    i = r.int(r.key(raw, "inode", path), path + ".inode", 0, len(ctx.inodes) - 1)
    rec = ctx.inodes[i]
    if not raw["path"].startswith("/"):
        r.fail(path + ".path", "not an absolute guest path")
    if rec["kind"] != kind:
        r.fail(path + ".inode", f"a {kind} description on a {rec['kind']} inode")
    out = {"inode": i}
    if rec["name"] is not None:
        out["identity"] = rec["identity"]  # for readers of the image (inspect, notebooks)
    return out


def _restore_inode(f, d, ctx) -> None:
    f.host_fd = ctx.opened.descriptor(d)
    try:
        f.host_path = ctx.m.vfs.host_path(d["path"])  # as open() left it (renames follow it)
    except ValueError:
        f.host_path = None


def _save_dir(f, ctx) -> dict:
    out = _save_inode(f, ctx) if f.stream is None else {}
    if f.entries is not None:
        # a listing in progress goes on from the entries it started with, as without a save
        out["entries"] = [[ino, dtype, name.hex()] for ino, dtype, name in f.entries]
    return out


def _parse_dir(r, raw, path, ctx) -> dict:
    out = _parse_inode(r, raw, path, ctx, "dir") if raw.get("stream") is None else {}
    if raw.get("entries") is not None:
        entries = []
        for j, e in enumerate(r.list(raw["entries"], path + ".entries")):
            where = f"{path}.entries[{j}]"
            if not isinstance(e, list) or len(e) != 3:
                r.fail(where, "expected [inode, type, name]")
            entries.append((r.int(e[0], where), r.int(e[1], where, 0, 255),
                            r.bytes(e[2], where, 255)))
        out["entries"] = entries
    return out


def _restore_dir(f, d, ctx) -> None:
    if d["stream"] is None:
        _restore_inode(f, d, ctx)
    f.entries = d.get("entries")


# the program, opened through /proc/self/exe from outside the root ----------------------------

def _restore_program(f, d, ctx) -> None:
    f.path = ctx.m.program_path  # what readlink(/proc/self/fd/N) names: where it is now
    f.host_fd = os.open(ctx.m.program_path, os.O_RDONLY | os.O_CLOEXEC)


# files vsnap makes itself --------------------------------------------------------------------

def _parse_data(r, raw, path, ctx) -> dict:
    return {"data": r.bytes(r.key(raw, "data", path), path + ".data", 16 << 20)}


def _restore_data(f, d, ctx) -> None:
    f.data = d["data"]


KINDS: dict[str, Kind] = {
    "file": Kind(save=_save_inode,
                 parse=lambda r, raw, path, ctx: _parse_inode(r, raw, path, ctx, "file"),
                 restore=_restore_inode, host=lambda f: True),
    # stream "virtual": a directory of vsnap's /dev or /proc, listed from its path
    "dir": Kind(save=_save_dir, parse=_parse_dir, restore=_restore_dir,
                streams=frozenset({None, "virtual"}), host=lambda f: f.stream is None),
    "null": Kind(),
    # the terminal: reattached to whoever resumes (see checkpoint.NOT_PRESERVED)
    "console": Kind(streams=frozenset({"stdin", "stdout", "stderr", "tty"})),
    # /proc files: their bytes, made at open
    "proc": Kind(save=lambda f, ctx: {"data": (f.data or b"").hex()}, parse=_parse_data,
                 restore=_restore_data),
    # /dev/zero, full, random, urandom: no state of their own (random's is the system's random)
    "dev": Kind(streams=frozenset(devices.STREAMS)),
    # the program file, checked by its hash at restore like the text
    "exe": Kind(restore=_restore_program),
    # O_PATH descriptors and FIFOs: opened again by name (named.py); an O_PATH descriptor of
    # a /dev or /proc name has stream "virtual" and is found by its path
    "path": Kind(save=named.save_path, parse=named.parse_path, restore=named.restore_path,
                 check=named.check, streams=frozenset({None, "virtual"})),
    "fifo": Kind(save=named.save_fifo, parse=named.parse_fifo, restore=named.restore_fifo,
                 check=named.check),
    # an end of a pipe (kernel/pipefile.py): the pipe and its bytes are one record in
    # fds.json's "pipes", shared by its ends' descriptions (pipeimage.py)
    "pipe": Kind(save=pipeimage.save_pipe, parse=pipeimage.parse_pipe,
                 restore=pipeimage.restore_pipe),
    # a socket (kernel/sockfile.py): the socket, its queue and peer are one record in
    # fds.json's "sockets", which may lead to more sockets and descriptions in flight
    "socket": Kind(save=sockimage.save_socket, parse=sockparse.parse_socket,
                   restore=sockimage.restore_socket, check=sockimage.check),
    # eventfd counters and epoll interest lists (anonimage.py): an epoll's items name the
    # descriptions they watch, linked once every description is made
    "eventfd": Kind(save=anonimage.save_eventfd, parse=anonimage.parse_eventfd,
                    restore=anonimage.restore_eventfd),
    "epoll": Kind(save=anonimage.save_epoll, parse=anonimage.parse_epoll,
                  restore=anonimage.restore_epoll),
}


def check(img, vfs) -> list[str]:
    """What stops a resume: files changed since the save (inodes.py) and names that lead
    elsewhere now (named.py)."""
    problems = inodes.check(img.inodes, vfs)
    for d in img.descriptions:
        problems += KINDS[d["kind"]].check(d, vfs)
    return problems


# the fd table --------------------------------------------------------------------------------

def save(m, parts: dict, procs=None) -> tuple[dict, list]:
    """fds.json's content, and the parts' FileRanges to close once the image is written.
    With `procs` (a tree: the first process first), every description any of them holds is
    saved once, and "tables" lists the fds of each process but the first."""
    procs = procs or [m.process]
    table = procs[0].fds
    descs = []
    for q in procs:
        for f in q.fds.descriptions():
            if not any(f is d for d in descs):
                descs.append(f)
    # the sockets, and the descriptions in flight in their queues (held by no fd)
    sockets = sockimage.reach(descs)
    for f in descs:
        kind = KINDS.get(f.kind)
        if kind is None or f.stream not in kind.streams:
            fd = next((f"fd {n}" for q in procs for n, e in sorted(q.fds.fds.items())
                       if e.file is f), "a description in flight in a socket's queue")
            what = f"a {f.kind}" + (f" ({f.stream})" if f.stream else "")
            raise CannotSave(f"vsnap: cannot save this guest: {fd} is {what} open on "
                             f"{f.path}, which vsnap cannot checkpoint yet")
    ctx = Saving(m, parts, sockets=sockets, descs=descs)
    ctx.socket_index = {id(s): i for i, s in enumerate(sockets)}
    ctx.desc_index = {id(f): i for i, f in enumerate(descs)}
    records, ctx.inode_of, opened = inodes.save(
        m, [f for f in descs if KINDS[f.kind].host(f)], parts)
    try:
        out = []
        for i, f in enumerate(descs):
            out.append({"id": i, "kind": f.kind, "path": f.path, "flags": f.flags,
                        "offset": f.offset, "stream": f.stream, **KINDS[f.kind].save(f, ctx)})
        anonimage.rank_orders(out)
        def fds_of(t):
            return [{"fd": fd, "description": next(i for i, d in enumerate(descs)
                                                    if d is e.file),
                     "cloexec": e.cloexec} for fd, e in sorted(t.fds.items())]
        fds = fds_of(table)
        tables = [{"pid": q.task.pid, "fds": fds_of(q.fds), "highest_fd": q.fds.high}
                  for q in procs[1:]]
        locks = locks_record(m.process, descs)
    except BaseException:
        for r in opened:
            r.close()
        raise
    return {"inodes": records, "descriptions": out, "fds": fds, "highest_fd": table.high,
            "locks": locks, "pipes": pipeimage.saved_pipes(ctx),
            "sockets": sockimage.saved_sockets(ctx, m),
            "socket_system": sockimage.saved_system(ctx, m), "tables": tables}, opened


def parse(r, d, parts: dict) -> tuple[list, list, list, list]:
    """(inodes, descriptions, fds, sockets) of fds.json, every field checked (r is a
    fields.Reader)."""
    d = r.obj(d, ".")
    recs = inodes.parse(r, r.key(d, "inodes", ""), parts)
    ctx = Parsing(parts, recs, pipeimage.parse_pipes(r, d.get("pipes")))
    descs = []
    for i, raw in enumerate(r.list(r.key(d, "descriptions", ""), "descriptions", MAX_FDS)):
        path = f"descriptions[{i}]"
        raw = r.obj(raw, path)
        name = r.choice(r.key(raw, "kind", path), path + ".kind", set(KINDS))
        kind = KINDS[name]
        rec = {"kind": name, "path": r.str(r.key(raw, "path", path), path + ".path"),
               "flags": r.int(r.key(raw, "flags", path), path + ".flags", 0, 0xFFFFFFFF),
               "offset": r.int(r.key(raw, "offset", path), path + ".offset", 0,
                               (1 << 63) - 1),
               "stream": r.choice(raw.get("stream"), path + ".stream", kind.streams)}
        rec.update(kind.parse(r, raw, path, ctx))
        descs.append(rec)
    pipeimage.check_counts(r, descs, ctx.pipes)
    sockets = sockparse.parse_sockets(r, d.get("sockets"), descs, d.get("socket_system"))
    sockparse.attach(r, descs, sockets)
    anonimage.check_links(r, descs)
    used = {d["inode"] for d in descs if "inode" in d}
    if used != set(range(len(recs))):
        r.fail("inodes", "an inode that no description uses")
    fds, seen = [], set()
    for i, e in enumerate(r.list(r.key(d, "fds", ""), "fds", MAX_FDS)):
        path = f"fds[{i}]"
        e = r.obj(e, path)
        fd = r.int(r.key(e, "fd", path), path + ".fd", 0, MAX_FDS - 1)
        if fd in seen:
            r.fail(path, f"fd {fd} appears twice")
        seen.add(fd)
        fds.append({"fd": fd, "cloexec": r.bool(r.key(e, "cloexec", path), path),
                    "description": r.int(r.key(e, "description", path), path, 0,
                                         len(descs) - 1)})
    return recs, descs, fds, sockets


def restore(m, img) -> list[OpenFile]:
    """The image's fd table in machine `m`: every inode opened once, every description made
    with a host descriptor of its own, the guest's inode numbers moved to their new inodes.
    Returns the descriptions, in the image's order."""
    opened = inodes.Opened(m.vfs, img.inodes, img.descriptions, img.blobs)
    files: list[OpenFile] = []
    try:
        socks = img.sockets if img.sockets is not None else []
        ctx = Restoring(m, opened, socket_records=socks)
        for d in img.descriptions:
            f = OpenFile(d["kind"], d["path"], d["flags"], d["offset"], stream=d["stream"])
            files.append(f)
            KINDS[d["kind"]].restore(f, d, ctx)
        if img.sockets is not None:   # queues: their descriptions in flight exist now
            sockimage.finish(ctx, files)
        anonimage.restore_links(ctx.later, files)
        opened.finish(m.system.inodes)
    except BaseException:
        for f in files:
            f.close()
        raise
    finally:
        opened.close()
    for entry in img.fds:
        m.process.fds.adopt(entry["fd"], files[entry["description"]], entry["cloexec"])
    return files
