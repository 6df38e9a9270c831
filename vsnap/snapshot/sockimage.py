"""Sockets in an image, as CRIU keeps Unix sockets (its sk-unix and sk-queues images).

Every socket the guest can still reach is one record in fds.json's "sockets" list: its family,
type, state, name and how the name is bound, its peer (by index), shutdown bits, pending
error, buffer sizes, credentials, options and inode number, and its receive queue. A
queue holds messages (bytes, the sender's credentials and address, which socket's send
buffer the message counts in, its truesize, and the descriptions in flight with it, SCM_RIGHTS,
as indexes into fds.json's "descriptions") or, for a listener, the embryo connections
accept() will take (socket indexes). A socket description names its socket by index.

A socket nobody holds by a descriptor is saved too when something still leads to it: an
embryo in a backlog, a closed peer (getpeername still names it), the sender a queued message
counts against, or a socket whose only reference is in flight inside a queue (its
description is then in "descriptions" with no fd, and may lead to further ones: cycles of
them come back as they were). Descriptions in flight are any kind descriptions.KINDS can
save: pipes, files, sockets.

A family plugs in through FAMILY_IMAGES (by its AF_ number): how its names are written and
checked (NAME_TYPES for names that are objects), how a bound name is recorded and bound again,
what more its sockets hold, and (SYSTEM_PARTS) what it keeps on the System beside them:
AF_UNIX in snapshot/unixsockimage.py, AF_INET/AF_INET6 and their port spaces in
snapshot/inetsockimage.py. The send buffer in use (wmem) is not saved: it is the
truesize of the queued messages each socket sent, and is counted again from them.

A call parked on a socket keeps its progress in the process's memo ({"done", "end", ...},
kernel/sockfile.py); tree.json saves it with memo_record (sockparse.parse_memo reads it).
Reading records back from an untrusted image is snapshot/sockparse.py.
"""
from __future__ import annotations

import base64
from collections import deque

from ..kernel.sockfile import FAMILIES, SocketFile
from ..sockets import SYSCTL_RMEM_MAX, SYSCTL_WMEM_MAX, Message, Socket
from .inodes import CannotSave

MAX_SOCKETS = 1 << 16
MAX_QUEUE = 1 << 16
MAX_MESSAGE = 16 << 20
STATES = {"unconnected", "listening", "connected", "closed", "embryo", "connecting"}
U32 = 0xFFFFFFFF
# SOL_SOCKET options kept in Socket.opts (kernel/sockopts.py): name -> check(value) -> bool
OPTIONS = {
    **{k: lambda v: isinstance(v, bool) for k in (
        "reuseaddr", "keepalive", "passcred", "dontroute", "broadcast", "oobinline",
        "reuseport", "debug")},
    "rcvtimeo": lambda v: v is None or _int(v, 1, 1 << 62),
    "sndtimeo": lambda v: v is None or _int(v, 1, 1 << 62),
    "priority": lambda v: _int(v, 0, 6),
    "rcvlowat": lambda v: _int(v, 1, 0x7FFFFFFF),
    "linger": lambda v: isinstance(v, list) and len(v) == 2 and _int(v[0], 0, 1)
    and _int(v[1], 0, 0x7FFFFFFF),
}
TUPLE_OPTIONS = {"linger"}


def _int(v, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


class FamilyImage:
    """What a family adds to the generic record; AF_UNIX's is unixsockimage.UnixImage.
    Names are written by the generic codec (tuples of str, int and bytes) unless a family
    says otherwise."""

    number = 0
    types: frozenset = frozenset()
    max_sndbuf = 2 * SYSCTL_WMEM_MAX       # what setsockopt can set (TCP grows past it)
    max_rcvbuf = 2 * SYSCTL_RMEM_MAX

    def make(self, family, type_: int, protocol: int, cred) -> Socket:
        return Socket(family, type_, protocol, cred)

    def valid_name(self, name) -> bool:
        return True

    def save_binding(self, m, sock) -> dict | None:
        """How sock's name is bound (None: not in the family's table)."""
        return None

    def parse_binding(self, r, raw, path: str, addr):
        return None

    def binding_key(self, addr, binding):
        """What two sockets may not both be bound to (None: nothing to compare)."""
        return None

    def bind(self, m, sock, binding, index: int) -> None:
        """Put sock back in the family's name table."""

    def check(self, binding, vfs) -> list[str]:
        return []

    def save_extra(self, sock, ctx) -> dict:
        return {}

    def parse_extra(self, r, raw: dict, path: str) -> dict:
        return {}

    def check_record(self, r, rec: dict, path: str) -> None:
        """Checks that need the whole parsed record (r.fail to refuse)."""

    def restore_extra(self, m, sock, extra: dict) -> None:
        pass

    def describe(self, rec: dict) -> str:
        return name_text(rec["addr"])

    def notes(self, rec: dict) -> list[str]:
        """More words for inspect's line."""
        return []


FAMILY_IMAGES: dict[int, FamilyImage] = {}
# state a family keeps on the System beside its sockets (AF_INET's port spaces), saved in
# fds.json's "socket_system" under its key: an object with save(m, ctx) -> JSON or None,
# parse(r, raw, records) -> checked value, restore(m, value, sockets)
SYSTEM_PARTS: dict[str, object] = {}


def register(image: FamilyImage) -> None:
    FAMILY_IMAGES[image.number] = image


class Sockets(list):
    """fds.json's checked socket records, and the families' system parts (`system`)."""
    system: dict = {}


# names: tuples of str, int and bytes, as the families keep them ------------------------------

# a family whose names are objects of its own registers their type here: type ->
# (tag, encode(name) -> JSON, decode(reader, raw, path) -> name)
NAME_TYPES: dict = {}


def encode_name(name):
    if name is None or isinstance(name, (str, int)):
        return name
    if isinstance(name, (bytes, bytearray)):
        return {"hex": bytes(name).hex()}
    if isinstance(name, tuple):
        return [encode_name(x) for x in name]
    kind = NAME_TYPES.get(type(name))
    if kind is not None:
        return {kind[0]: kind[1](name)}
    raise CannotSave(f"vsnap: cannot save a socket name of type {type(name).__name__}")


def decode_name(r, raw, path: str, depth: int = 0):
    if raw is None or isinstance(raw, str) or (isinstance(raw, int)
                                                and not isinstance(raw, bool)):
        return raw
    if isinstance(raw, dict) and len(raw) == 1:
        (tag, value), = raw.items()
        if tag == "hex":
            return r.bytes(value, path, 4096)
        for t, encode, decode in NAME_TYPES.values():
            if t == tag:
                return decode(r, value, path)
    if isinstance(raw, list) and len(raw) <= 8 and depth < 3:
        return tuple(decode_name(r, x, path, depth + 1) for x in raw)
    r.fail(path, "expected a socket name")


def name_text(name) -> str:
    """A name as a person reads it: "@name" for an abstract one, the path, or "-"."""
    if name is None:
        return "-"
    if isinstance(name, tuple) and len(name) == 2 and isinstance(name[1], bytes):
        kind, value = name
        if kind == "abstract":
            return "@" + value[1:].decode("utf-8", "backslashreplace")
        return value.decode("utf-8", "backslashreplace")
    return str(name)


# saving -------------------------------------------------------------------------------------

def reach(descs: list) -> list:
    """Every socket the descriptions lead to, in a fixed order (the descriptions' order, then
    peers, embryos and senders as met), and `descs` grown by the descriptions in flight in
    their queues (whose sockets are followed in turn)."""
    socks: list = []
    seen: set = set()
    held = {id(f) for f in descs}

    def visit(s) -> None:
        todo = [s]
        while todo:
            s = todo.pop(0)
            if s is None or id(s) in seen:
                continue
            seen.add(id(s))
            socks.append(s)
            todo.append(s.peer)
            for item in s.queue:
                if isinstance(item, Socket):
                    todo.append(item)
                    continue
                todo.append(item.sender)
                for f in item.fds or ():
                    if id(f) not in held:
                        held.add(id(f))
                        descs.append(f)

    i = 0
    while i < len(descs):
        f = descs[i]
        if f.kind == "socket" and f.ops is not None:
            visit(f.ops.sock)
        i += 1
    return socks


def save_socket(f, ctx) -> dict:
    """A socket description: its socket's index, and its file's owner and birth time."""
    ops = f.ops
    return {"socket": ctx.socket_index[id(ops.sock)], "uid": ops.uid, "gid": ops.gid,
            "born_ns": ops.born_ns}


def saved_sockets(ctx, m) -> list:
    out = []
    for s in ctx.sockets:
        image = FAMILY_IMAGES.get(s.family.number)
        if image is None:
            raise CannotSave(f"vsnap: cannot save this guest: it holds a {s.family.name} "
                             f"socket (socket:[{s.ino}]), which vsnap cannot checkpoint yet")
        out.append(_record(s, ctx, m, image))
    return out


def saved_system(ctx, m) -> dict:
    out = {}
    for key, part in sorted(SYSTEM_PARTS.items()):
        rec = part.save(m, ctx)
        if rec is not None:
            out[key] = rec
    return out


def _record(s, ctx, m, image: FamilyImage) -> dict:
    index = ctx.socket_index
    queue = []
    for item in s.queue:
        if isinstance(item, Socket):
            queue.append({"embryo": index[id(item)]})
            continue
        queue.append({
            "data": base64.b64encode(bytes(item.data)).decode(),
            "cred": None if item.cred is None else list(item.cred),
            "fds": None if item.fds is None else [ctx.desc_index[id(f)] for f in item.fds],
            "addr": encode_name(item.addr),
            "sender": None if item.sender is None else index[id(item.sender)],
            "size": item.size})
    opts = {k: list(v) if k in TUPLE_OPTIONS else v for k, v in sorted(s.opts.items())}
    return {"family": s.family.number, "type": s.type, "protocol": s.protocol,
            "state": s.state, "dead": s.dead, "ino": s.ino,
            "peer": None if s.peer is None else index[id(s.peer)],
            "addr": encode_name(s.addr), "bound": image.save_binding(m, s),
            "shutdown": s.shutdown, "err": s.err, "backlog": s.backlog,
            "sndbuf": s.sndbuf, "rcvbuf": s.rcvbuf, "cred": list(s.cred),
            "peercred": None if s.peercred is None else list(s.peercred),
            "opts": opts, "queue": queue, **image.save_extra(s, ctx)}


def check(d: dict, vfs) -> list[str]:
    rec = d["socket_record"]
    if rec["bound"] is None:
        return []
    return FAMILY_IMAGES[rec["family"]].check(rec["bound"], vfs)


# restore ------------------------------------------------------------------------------------

def _build(m, recs: list) -> list:
    """Every socket of the image, its fields and peers set, queues still empty."""
    socks = []
    for rec in recs:
        image = FAMILY_IMAGES[rec["family"]]
        s = image.make(FAMILIES[rec["family"]], rec["type"], rec["protocol"], rec["cred"])
        s.state, s.dead, s.ino, s.addr = rec["state"], rec["dead"], rec["ino"], rec["addr"]
        s.shutdown, s.err, s.backlog = rec["shutdown"], rec["err"], rec["backlog"]
        s.sndbuf, s.rcvbuf, s.peercred = rec["sndbuf"], rec["rcvbuf"], rec["peercred"]
        s.opts = dict(rec["opts"])
        s.book = m.system.locks
        socks.append(s)
    for i, (s, rec) in enumerate(zip(socks, recs)):
        if rec["peer"] is not None:
            s.peer = socks[rec["peer"]]
        if rec["bound"] is not None:
            FAMILY_IMAGES[rec["family"]].bind(m, s, rec["bound"], i)
        FAMILY_IMAGES[rec["family"]].restore_extra(m, s, rec["extra"])
    return socks


def restore_socket(f, d, ctx) -> None:
    if ctx.sockets is None:
        ctx.sockets = _build(ctx.m, ctx.socket_records)
    sock = ctx.sockets[d["socket"]]
    f.ops = SocketFile(sock, d["uid"], d["gid"], d["born_ns"])


def finish(ctx, files: list) -> None:
    """The families' system parts, and the queues, once every description exists:
    messages take their in-flight references (as the sender's sendmsg did) and count in
    their senders' buffers."""
    if ctx.sockets is None:
        ctx.sockets = _build(ctx.m, ctx.socket_records)
    socks = ctx.sockets
    for key, value in getattr(ctx.socket_records, "system", {}).items():
        SYSTEM_PARTS[key].restore(ctx.m, value, socks)
    for s, rec in zip(socks, ctx.socket_records):
        q = deque()
        for item in rec["queue"]:
            if "embryo" in item:
                q.append(socks[item["embryo"]])
                continue
            fds = None
            if item["fds"] is not None:
                fds = [files[x] for x in item["fds"]]
                for x in fds:
                    x.refs += 1
            sender = None if item["sender"] is None else socks[item["sender"]]
            q.append(Message(item["data"], item["cred"], fds, item["addr"], sender,
                             item["size"]))
        q.extend(s.queue)    # what the family put there (a host connection's unread bytes)
        s.queue = q


# a parked call's progress (tree.json's memo) -----------------------------------------------------

def memo_record(value):
    """A socket call's memo for tree.json: its dict with names and credentials as JSON."""
    out = {}
    for k, v in value.items():
        if k == "addr":
            v = encode_name(v)
        elif k == "cred" and v is not None:
            v = list(v)
        out[k] = v
    return out


# vsnap inspect ----------------------------------------------------------------------------------

TYPES = {1: "STREAM", 2: "DGRAM", 5: "SEQPACKET"}


def _label(rec: dict) -> str:
    """socket:[INO], or what an embryo (no inode until accept gives it a file) is."""
    return f"socket:[{rec['ino']}]" if rec["ino"] else "socket (not yet accepted)"


def queued(rec: dict) -> tuple[int, int, int]:
    """(bytes, messages, descriptions in flight) waiting in a socket's queue (a listener's:
    in its embryos', which inspect counts with them)."""
    msgs = [q for q in rec["queue"] if "embryo" not in q]
    return (sum(len(q["data"]) for q in msgs), len(msgs),
            sum(len(q["fds"] or ()) for q in msgs))


def describe(recs: list, i: int) -> str:
    """One line for `vsnap inspect IMAGE fds`."""
    rec = recs[i]
    image = FAMILY_IMAGES[rec["family"]]
    name = FAMILIES[rec["family"]].name
    kind = f"{name} {TYPES.get(rec['type'], rec['type'])}"
    parts = [f"{_label(rec)} {kind} {rec['state']}"]
    if rec["addr"] is not None:
        parts.append(f"name {image.describe(rec)}")
    if rec["peer"] is not None:
        peer = recs[rec["peer"]]
        who = image.describe(peer) if peer["addr"] is not None else "unnamed"
        parts.append(f"peer {_label(peer)} ({who}"
                     + (", closed" if peer["dead"] else "") + ")")
    if rec["state"] == "listening":
        parts.append(f"{len(rec['queue'])} connection{'s' * (len(rec['queue']) != 1)} "
                     f"waiting (backlog {rec['backlog']})")
    else:
        nbytes, nmsgs, nfds = queued(rec)
        parts.append(f"{nbytes} bytes queued in {nmsgs} message{'s' * (nmsgs != 1)}")
        if nfds:
            parts.append(f"{nfds} fd{'s' * (nfds != 1)} in flight")
    if rec["shutdown"]:
        parts.append({1: "shut for reading", 2: "shut for writing",
                      3: "shut both ways"}[rec["shutdown"]])
    if rec["err"]:
        from ..abi.errno import NAMES
        parts.append(f"pending error {NAMES.get(rec['err'], rec['err'])}")
    return ", ".join(parts + image.notes(rec))
