"""Sockets read back from an untrusted image (fds.json's "sockets", a socket description,
a parked socket call's memo in tree.json): every field checked, and the graph the records make
(peers, embryos, senders, descriptions in flight) checked to lead only to records that exist
and can hold them; a bad one fails with one line naming it. snapshot/sockimage.py writes
these records and makes the sockets again from them.
"""
from __future__ import annotations

import base64
import binascii

from ..kernel.sockfile import FAMILIES
from ..sockets import SHUTDOWN_MASK, SOCK_MIN_RCVBUF, SOCK_MIN_SNDBUF, SOMAXCONN
from .sockimage import (FAMILY_IMAGES, MAX_MESSAGE, MAX_QUEUE, MAX_SOCKETS, OPTIONS, STATES,
                        SYSTEM_PARTS, TUPLE_OPTIONS, U32, Sockets, decode_name)


def _cred(r, raw, path: str):
    if raw is None:
        return None
    c = r.list(raw, path, 3)
    if len(c) != 3:
        r.fail(path, "expected [pid, uid, gid]")
    return (r.int(c[0], path, 0, (1 << 31) - 1), r.int(c[1], path, 0, U32),
            r.int(c[2], path, 0, U32))


def parse_sockets(r, raw, descs: list, system=None) -> Sockets:
    """fds.json's "sockets" (absent from images made before sockets: none), every field
    checked, and the graph they make: peers, embryos, senders and descriptions in flight
    lead to records that exist and can hold them; then "socket_system"."""
    recs = Sockets()
    raw = r.list(raw if raw is not None else [], "sockets", MAX_SOCKETS)
    n = len(raw)
    for i, rec in enumerate(raw):
        recs.append(_parse_one(r, rec, f"sockets[{i}]", n, len(descs)))
    _check_graph(r, recs, descs)
    system = r.obj(system if system is not None else {}, "socket_system")
    recs.system = {}
    for key, value in system.items():
        part = SYSTEM_PARTS.get(key)
        if part is None:
            r.fail(f"socket_system.{key}", "not a part this vsnap knows")
        recs.system[key] = part.parse(r, value, recs)
    return recs


def _parse_one(r, raw, path: str, nsocks: int, ndescs: int) -> dict:
    raw = r.obj(raw, path)
    number = r.int(r.key(raw, "family", path), path + ".family", 0, 45)
    image = FAMILY_IMAGES.get(number)
    if image is None or number not in FAMILIES:
        r.fail(path + ".family", f"address family {number} cannot be restored by this vsnap")
    last = max(0, nsocks - 1)

    def index(v, where):
        return None if v is None else r.int(v, where, 0, last)
    rec = {"family": number,
           "type": r.choice(r.key(raw, "type", path), path + ".type", image.types),
           "protocol": r.int(r.key(raw, "protocol", path), path + ".protocol", 0, 255),
           "state": r.choice(r.key(raw, "state", path), path + ".state", STATES),
           "dead": r.bool(r.key(raw, "dead", path), path + ".dead"),
           "ino": r.int(r.key(raw, "ino", path), path + ".ino", 0, (1 << 63) - 1),
           "peer": index(raw.get("peer"), path + ".peer"),
           "addr": decode_name(r, r.key(raw, "addr", path), path + ".addr"),
           "shutdown": r.int(r.key(raw, "shutdown", path), path + ".shutdown", 0,
                             SHUTDOWN_MASK),
           "err": r.int(r.key(raw, "err", path), path + ".err", 0, 4095),
           "backlog": r.int(r.key(raw, "backlog", path), path + ".backlog", 0, SOMAXCONN),
           "sndbuf": r.int(r.key(raw, "sndbuf", path), path + ".sndbuf", SOCK_MIN_SNDBUF,
                           image.max_sndbuf),
           "rcvbuf": r.int(r.key(raw, "rcvbuf", path), path + ".rcvbuf", SOCK_MIN_RCVBUF,
                           image.max_rcvbuf),
           "cred": _cred(r, r.key(raw, "cred", path), path + ".cred"),
           "peercred": _cred(r, raw.get("peercred"), path + ".peercred")}
    if rec["cred"] is None:
        r.fail(path + ".cred", "expected [pid, uid, gid]")
    if rec["addr"] is not None and not image.valid_name(rec["addr"]):
        r.fail(path + ".addr", "not a name of its family")
    bound = raw.get("bound")
    if bound is not None and rec["addr"] is None:
        r.fail(path + ".bound", "a socket with no name cannot be bound")
    rec["bound"] = None if bound is None else image.parse_binding(r, bound, path + ".bound",
                                                                  rec["addr"])
    opts = r.obj(r.key(raw, "opts", path), path + ".opts")
    rec["opts"] = {}
    for k, v in opts.items():
        check = OPTIONS.get(k)
        if check is None or not check(v):
            r.fail(f"{path}.opts.{k}", "not an option vsnap keeps, or a bad value")
        rec["opts"][k] = tuple(v) if k in TUPLE_OPTIONS else v
    queue = []
    for j, item in enumerate(r.list(r.key(raw, "queue", path), path + ".queue", MAX_QUEUE)):
        where = f"{path}.queue[{j}]"
        item = r.obj(item, where)
        if "embryo" in item:
            queue.append({"embryo": r.int(item["embryo"], where + ".embryo", 0, last)})
            continue
        try:
            data = base64.b64decode(r.str(r.key(item, "data", where), where + ".data",
                                          2 * MAX_MESSAGE), validate=True)
        except (binascii.Error, ValueError):
            r.fail(where + ".data", "expected base64 bytes")
        fds = item.get("fds")
        if fds is not None:
            fds = [r.int(x, where + ".fds", 0, max(0, ndescs - 1))
                   for x in r.list(fds, where + ".fds", 253)]
            if not fds or not ndescs:
                r.fail(where + ".fds", "an empty list of descriptions in flight")
        addr = decode_name(r, item.get("addr"), where + ".addr")
        if addr is not None and not image.valid_name(addr):
            r.fail(where + ".addr", "not a name of its family")
        queue.append({"data": data, "cred": _cred(r, item.get("cred"), where + ".cred"),
                      "fds": fds, "addr": addr,
                      "sender": index(item.get("sender"), where + ".sender"),
                      "size": r.int(r.key(item, "size", where), where + ".size", 0, 1 << 32)})
    rec["queue"] = queue
    rec["extra"] = image.parse_extra(r, raw, path)
    image.check_record(r, rec, path)
    return rec


def _check_graph(r, recs: list, descs: list) -> None:
    """Each socket where it can be: held by at most one description (of kind socket), an
    embryo in one listener's backlog and nowhere else, reached from something, its queue of
    the right kind, a stream's live peer its own peer; dead ones empty."""
    held: dict[int, int] = {}
    for i, d in enumerate(descs):
        if d["kind"] == "socket":
            s = d["socket"]
            if s >= len(recs):
                r.fail(f"descriptions[{i}].socket", "no such socket")
            if s in held:
                r.fail(f"descriptions[{i}].socket", f"socket {s} is held by two descriptions")
            held[s] = i
    embryo_of: dict[int, int] = {}
    names: dict = {}
    for i, rec in enumerate(recs):
        path = f"sockets[{i}]"
        if rec["bound"] is not None:
            key = FAMILY_IMAGES[rec["family"]].binding_key(rec["addr"], rec["bound"])
            if key is not None and names.setdefault((rec["family"], key), i) != i:
                r.fail(path + ".bound", f"socket {names[(rec['family'], key)]} is bound to "
                                        f"that name")
        listening = rec["state"] == "listening"
        for j, item in enumerate(rec["queue"]):
            where = f"{path}.queue[{j}]"
            if ("embryo" in item) != listening:
                r.fail(where, "a listener queues connections, other sockets messages")
            if "embryo" in item:
                e = item["embryo"]
                if e in embryo_of or e in held or e == i or recs[e]["state"] != "connected":
                    r.fail(where, f"socket {e} cannot be a waiting connection here")
                embryo_of[e] = i
        if rec["dead"] and rec["state"] not in ("closed", "embryo"):
            r.fail(path + ".dead", "a dead socket is closed")
        if rec["dead"] and (rec["queue"] or i in held or rec["bound"] is not None):
            r.fail(path, "a closed socket holds nothing and no one holds it")
        if not rec["dead"] and i not in held and rec["state"] != "connected":
            r.fail(path, "a live socket no description holds")
        p = rec["peer"]
        stream = rec["type"] in (1, 5)
        if p is not None:
            if p == i and stream:
                r.fail(path + ".peer", "a stream socket is not its own peer")
            other = recs[p]
            if stream and not other["dead"] and not rec["dead"] and other["peer"] != i:
                r.fail(path + ".peer", f"socket {p}'s peer is not this one")
            # (AF_INET and AF_INET6 meet: a v4 client of a v6 listener)
            if type(FAMILY_IMAGES[other["family"]]) is not type(FAMILY_IMAGES[rec["family"]]):
                r.fail(path + ".peer", "a peer of another family")
        if listening and (rec["peer"] is not None or rec["addr"] is None):
            r.fail(path, "a listener has a name and no peer")
    for i, rec in enumerate(recs):
        if not rec["dead"] and i not in held and i not in embryo_of:
            r.fail(f"sockets[{i}]", "a socket that is neither held nor waiting to be accepted")
    reached = set(held) | set(embryo_of)
    for rec in recs:
        if rec["peer"] is not None:
            reached.add(rec["peer"])
        for item in rec["queue"]:
            if item.get("sender") is not None:
                reached.add(item["sender"])
    for i in range(len(recs)):
        if i not in reached:
            r.fail(f"sockets[{i}]", "a socket nothing leads to")


def parse_socket(r, raw, path, ctx) -> dict:
    """A socket description: its socket's index (checked against "sockets" later) and its
    file's owner and birth time; O_RDWR as sock_alloc_file makes it."""
    if raw["flags"] & 3 != 2:
        r.fail(path + ".flags", "a socket's description is O_RDWR")
    return {"socket": r.int(r.key(raw, "socket", path), path + ".socket", 0, MAX_SOCKETS),
            "uid": r.int(r.key(raw, "uid", path), path + ".uid", 0, U32),
            "gid": r.int(r.key(raw, "gid", path), path + ".gid", 0, U32),
            "born_ns": r.int(r.key(raw, "born_ns", path), path + ".born_ns", 0,
                             (1 << 63) - 1)}


def attach(r, descs: list, recs: list) -> None:
    """Give each socket description its record (for check, restore and inspect), its path
    the socket's inode as Linux names it."""
    for i, d in enumerate(descs):
        if d["kind"] == "socket":
            rec = recs[d["socket"]]
            if d["path"] != f"socket:[{rec['ino']}]":
                r.fail(f"descriptions[{i}].path", f"not socket:[{rec['ino']}]")
            d["socket_record"] = rec


def parse_memo(r, raw: dict, path: str) -> dict:
    """The progress of a parked socket call: bytes done, the deadline of its timeout, and
    for a stream read the sender's credentials and address it started with."""
    if not {"done", "end"} <= set(raw) <= {"done", "end", "cred", "addr"}:
        r.fail(path, "expected done, end (and cred, addr)")
    out = {"done": r.int(raw["done"], path + ".done", 0, 0x7FFFFFFF),
           "end": None if raw["end"] is None else r.int(raw["end"], path + ".end", 0,
                                                        (1 << 63) - 1)}
    if "cred" in raw:
        out["cred"] = _cred(r, raw["cred"], path + ".cred")
    if "addr" in raw:
        addr = decode_name(r, raw["addr"], path + ".addr")
        if addr is not None and not any(i.valid_name(addr) for i in FAMILY_IMAGES.values()):
            r.fail(path + ".addr", "not a socket name")
        out["addr"] = addr
    return out
