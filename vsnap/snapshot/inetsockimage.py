"""AF_INET and AF_INET6 in an image (snapshot/sockimage.py's records, plus what TCP and UDP
keep): names are inetaddr.Addr ({"inet": [family, ip hex, port, flowinfo, scope_id]}); each
socket adds its TCP/UDP state (FIN flags, v6only, the peer's address, IPPROTO_* options, a
UDP receive buffer's use); the two port spaces are saved whole in fds.json's
"socket_system" "inet" (every binding in its chain's order with its owner socket, TIME_WAIT
leftovers, the TCP buckets' fast paths, the ephemeral counters), so a resumed guest binds,
connects and is refused exactly as the uninterrupted run.

Loopback connections between guest processes are sockets like AF_UNIX's and come back whole.
A connection to the HOST (through --listen or --connect) cannot follow an image into a new
process: its host socket belongs to the vsnap that saved it. The image records it (the host
peer's address, what the host had sent that the guest had not read, what the guest had
written that had not gone out) and `vsnap inspect` shows it; on resume the guest finds it
reset by the peer, as CRIU restores established TCP sockets without its TCP repair mode
(--tcp-close) and as a peer that lost the connection answers: the unread bytes can still be
read, then ECONNRESET (end of file if the host had already closed its side), and a write fails
(ECONNRESET once, then EPIPE). Not end of file at once: the host peer never closed, and a
guest must not take a vanished connection for an orderly goodbye.

A listener that had a host side (--listen PORT) gets it back when the resume is given the
same --listen PORT (reopen_host_listeners, called by `vsnap resume` once it knows the
options); without it the listener is restored for guest clients only, and one line says so.
"""
from __future__ import annotations

import base64
import binascii

from ..abi import errno as E
from ..inet import InetSocket
from ..inetaddr import AF_INET, AF_INET6, Addr
from ..inetports import ANY, BOUND, LISTEN, STRICT, TIMEWAIT, Binding, Fast, PortSpace
from ..kernel.inetfamily import IPPROTO_TCP, IPPROTO_UDP, Net
from ..sockets import SHUTDOWN_MASK, Message, SOCK_DGRAM, SOCK_STREAM
from . import sockimage
from .inodes import CannotSave

U32 = 0xFFFFFFFF
MAX_BUF = 1 << 31
HOST_BUFFER = 1 << 20


# names --------------------------------------------------------------------------------------------

def encode_addr(a: Addr) -> list:
    return [a.family, a.ip.hex(), a.port, a.flowinfo, a.scope_id]


def decode_addr(r, raw, path: str) -> Addr:
    if not isinstance(raw, list) or len(raw) != 5:
        r.fail(path, "expected [family, ip, port, flowinfo, scope_id]")
    fam = r.choice(raw[0], path + "[0]", {AF_INET, AF_INET6})
    ip = r.bytes(raw[1], path + "[1]", 16)
    if len(ip) != (4 if fam == AF_INET else 16):
        r.fail(path + "[1]", "an address of the wrong length for its family")
    return Addr(fam, ip, r.int(raw[2], path + "[2]", 0, 65535), r.int(raw[3], path + "[3]",
                                                                       0, U32),
                r.int(raw[4], path + "[4]", 0, U32))


sockimage.NAME_TYPES[Addr] = ("inet", encode_addr, decode_addr)


def _b64(r, raw, path: str, limit: int) -> bytes:
    try:
        data = base64.b64decode(r.str(raw, path, 2 * limit), validate=True)
    except (binascii.Error, ValueError):
        r.fail(path, "expected base64 bytes")
    if len(data) > limit:
        r.fail(path, "too many bytes")
    return data


# a socket's own TCP/UDP state -----------------------------------------------------------------

FLAGS = ("v6only", "fin_in", "fin_out", "fin_first", "reset_by_us", "connecting", "autobound")


class InetImage(sockimage.FamilyImage):
    types = frozenset({SOCK_STREAM, SOCK_DGRAM})
    max_sndbuf = MAX_BUF        # a connected TCP socket's send buffer grows past SO_SNDBUF's
    max_rcvbuf = MAX_BUF

    def __init__(self, number: int):
        self.number = number

    def make(self, family, type_: int, protocol: int, cred):
        return InetSocket(family, type_, protocol, cred, self.number)

    def valid_name(self, name) -> bool:
        return isinstance(name, Addr)

    def save_extra(self, sock, ctx) -> dict:
        rec = {k: bool(getattr(sock, k)) for k in FLAGS}
        rec["remote"] = None if sock.remote is None else encode_addr(sock.remote)
        rec["levels"] = [[lv, n, v] for (lv, n), v in sorted(sock.levels.items())]
        rec["rmem"] = sock.rmem
        h = sock.host
        rec["host"] = None if h is None else {
            "unread": base64.b64encode(bytes(h.rbuf)).decode(),
            "unsent": base64.b64encode(bytes(h.wbuf)).decode(),
            "eof": bool(h.eof), "error": int(h.error), "connecting": bool(h.connecting)}
        rec["host_listen"] = None if sock.host_listener is None else sock.addr.port
        return {"inet": rec}

    def parse_extra(self, r, raw: dict, path: str) -> dict:
        path += ".inet"
        d = r.obj(r.key(raw, "inet", path[:-5]), path)
        out = {k: r.bool(r.key(d, k, path), f"{path}.{k}") for k in FLAGS}
        rem = d.get("remote")
        out["remote"] = None if rem is None else decode_addr(r, rem, path + ".remote")
        levels = {}
        for i, e in enumerate(r.list(r.key(d, "levels", path), path + ".levels", 64)):
            if not isinstance(e, list) or len(e) != 3:
                r.fail(f"{path}.levels[{i}]", "expected [level, option, value]")
            levels[(r.choice(e[0], f"{path}.levels[{i}]", {0, 6, 41}),
                    r.int(e[1], f"{path}.levels[{i}]", 0, 255))] = \
                r.int(e[2], f"{path}.levels[{i}]", -(1 << 31), (1 << 31) - 1)
        out["levels"] = levels
        out["rmem"] = r.int(r.key(d, "rmem", path), path + ".rmem", 0, MAX_BUF)
        h = d.get("host")
        if h is not None:
            h = r.obj(h, path + ".host")
            h = {"unread": _b64(r, r.key(h, "unread", path), path + ".host.unread",
                                HOST_BUFFER),
                 "unsent": _b64(r, r.key(h, "unsent", path), path + ".host.unsent",
                                HOST_BUFFER),
                 "eof": r.bool(r.key(h, "eof", path), path + ".host.eof"),
                 "error": r.int(r.key(h, "error", path), path + ".host.error", 0, 4095),
                 "connecting": r.bool(r.key(h, "connecting", path), path + ".host.connecting")}
        out["host"] = h
        port = d.get("host_listen")
        out["host_listen"] = None if port is None else r.int(port, path + ".host_listen", 1,
                                                             65535)
        return out

    def check_record(self, r, rec: dict, path: str) -> None:
        """What only a whole record can say: TCP or UDP by its type, a UDP receive
        buffer's use the truesize of its queued datagrams, host sides where they fit."""
        x = rec["extra"]
        want = IPPROTO_TCP if rec["type"] == SOCK_STREAM else IPPROTO_UDP
        if rec["protocol"] != want:
            r.fail(path + ".protocol", f"expected {want} for its type")
        if rec["type"] == SOCK_DGRAM and x["rmem"] != sum(q.get("size", 0)
                                                          for q in rec["queue"]):
            r.fail(path + ".inet.rmem", "not what its queued datagrams take")
        if x["host"] is not None and (rec["type"] != SOCK_STREAM or rec["peer"] is not None
                                      or rec["state"] not in ("connected", "connecting")):
            r.fail(path + ".inet.host", "a host connection is a TCP socket with no guest peer")
        if x["host_listen"] is not None and rec["state"] != "listening":
            r.fail(path + ".inet.host_listen", "only a listener has a host side")

    def restore_extra(self, m, sock, x: dict) -> None:
        for k in FLAGS:
            setattr(sock, k, x[k])
        sock.remote, sock.levels, sock.rmem = x["remote"], dict(x["levels"]), x["rmem"]
        h = x["host"]
        if h is not None:
            # the host socket stayed with the vsnap that saved: the peer is gone. What it
            # had sent is still to be read, then its reset (or its FIN, if it had closed)
            unread = h["unread"]
            if unread:
                sock.queue.append(Message(unread, None))
            sock.state, sock.shutdown, sock.peer = "closed", SHUTDOWN_MASK, None
            sock.fin_in = h["eof"] and not h["error"]
            sock.err = h["error"] or (0 if sock.fin_in else E.ECONNRESET)
            restored = getattr(m.system, "host_connections_closed", 0)
            m.system.host_connections_closed = restored + 1
        if x["host_listen"] is not None:
            pending = getattr(m.system, "host_listeners_saved", None)
            if pending is None:
                pending = m.system.host_listeners_saved = []
            pending.append((sock, x["host_listen"]))

    def describe(self, rec: dict) -> str:
        return str(rec["addr"]) if rec["addr"] is not None else "-"

    def notes(self, rec: dict) -> list[str]:
        """inspect's words about the host side."""
        x = rec["extra"]
        out = []
        if x["remote"] is not None and rec["peer"] is None and x["host"] is not None:
            h = x["host"]
            out.append(f"connected to the host at {x['remote']}: {len(h['unread'])} bytes "
                       f"from it unread, {len(h['unsent'])} bytes not yet sent to it; a "
                       f"resume finds it reset by the peer")
        elif x["remote"] is not None:
            out.append(f"remote {x['remote']}")
        if x["host_listen"] is not None:
            out.append(f"also listens on the host's 127.0.0.1:{x['host_listen']} (a resume "
                       f"takes host clients again only with --listen {x['host_listen']})")
        return out


sockimage.register(InetImage(AF_INET))
sockimage.register(InetImage(AF_INET6))


# the port spaces (System.inet) ----------------------------------------------------------------

STATES = {BOUND, LISTEN, TIMEWAIT}


class PortSpaces:
    """fds.json's socket_system "inet": both port spaces whole."""

    def save(self, m, ctx):
        net = getattr(m.system, "inet", None)
        if net is None:
            return None
        return {"tcp": self._space(net.tcp, ctx), "udp": self._space(net.udp, ctx)}

    def _space(self, space: PortSpace, ctx) -> dict:
        ports = []
        for port, chain in sorted(space.ports.items()):
            recs = []
            for b in chain:
                owner = None
                if b.owner is not None:
                    owner = ctx.socket_index.get(id(b.owner))
                    if owner is None:
                        raise CannotSave(f"vsnap: cannot save this guest: port {port} is "
                                         f"held by a socket the image does not reach (an "
                                         f"internal error; please report it)")
                recs.append({"local": encode_addr(b.local), "v6only": b.v6only,
                             "reuseaddr": b.reuseaddr, "reuseport": b.reuseport,
                             "uid": b.uid, "state": b.state, "owner": owner,
                             "until": b.until, "seq": b.seq})
            ports.append([port, recs])
        fast = [[port, [f.reuse, f.reuseport, f.uid, encode_addr(f.local), f.v6only]]
                for port, f in sorted(space.fast.items())]
        return {"next_odd": space.next_odd, "next_even": space.next_even, "seq": space.seq,
                "ports": ports, "fast": fast}

    def parse(self, r, raw, recs) -> dict:
        raw = r.obj(raw, "socket_system.inet")
        out, owners = {}, set()
        for proto in ("tcp", "udp"):
            path = f"socket_system.inet.{proto}"
            d = r.obj(r.key(raw, proto, "socket_system.inet"), path)
            space = {"next_odd": r.int(r.key(d, "next_odd", path), path + ".next_odd",
                                       32768, 60999),
                     "next_even": r.int(r.key(d, "next_even", path), path + ".next_even",
                                        32768, 60999),
                     "seq": r.int(r.key(d, "seq", path), path + ".seq", 0, 1 << 62),
                     "ports": [], "fast": []}
            seen = set()
            for i, e in enumerate(r.list(r.key(d, "ports", path), path + ".ports", 65536)):
                where = f"{path}.ports[{i}]"
                if not isinstance(e, list) or len(e) != 2:
                    r.fail(where, "expected [port, bindings]")
                port = r.int(e[0], where, 1, 65535)
                if port in seen:
                    r.fail(where, f"port {port} twice")
                seen.add(port)
                chain = []
                for j, b in enumerate(r.list(e[1], where, 4096)):
                    bp = f"{where}[{j}]"
                    b = r.obj(b, bp)
                    owner = b.get("owner")
                    state = r.choice(r.key(b, "state", bp), bp + ".state", STATES)
                    if owner is not None:
                        owner = r.int(owner, bp + ".owner", 0, max(0, len(recs) - 1))
                        if not recs or owner in owners or recs[owner]["dead"] or \
                                recs[owner]["family"] not in (AF_INET, AF_INET6) or \
                                (recs[owner]["type"] == SOCK_STREAM) != (proto == "tcp"):
                            r.fail(bp + ".owner", "not a live socket of this protocol, "
                                                  "or one that holds two ports")
                        owners.add(owner)
                    elif state != TIMEWAIT:
                        r.fail(bp + ".owner", "only a TIME_WAIT leftover has no socket")
                    until = b.get("until")
                    local = decode_addr(r, r.key(b, "local", bp), bp + ".local")
                    if local.port != port:
                        r.fail(bp + ".local", f"not on port {port}")
                    chain.append({
                        "local": local, "owner": owner, "state": state,
                        "v6only": r.bool(r.key(b, "v6only", bp), bp + ".v6only"),
                        "reuseaddr": r.bool(r.key(b, "reuseaddr", bp), bp + ".reuseaddr"),
                        "reuseport": r.bool(r.key(b, "reuseport", bp), bp + ".reuseport"),
                        "uid": r.int(r.key(b, "uid", bp), bp + ".uid", 0, U32),
                        "until": None if until is None else r.int(until, bp + ".until"),
                        "seq": r.int(r.key(b, "seq", bp), bp + ".seq", 0, 1 << 62)})
                if not chain:
                    r.fail(where, "a port with no binding")
                space["ports"].append((port, chain))
            for i, e in enumerate(r.list(r.key(d, "fast", path), path + ".fast", 65536)):
                where = f"{path}.fast[{i}]"
                if not isinstance(e, list) or len(e) != 2 or not isinstance(e[1], list) \
                        or len(e[1]) != 5:
                    r.fail(where, "expected [port, [reuse, reuseport, uid, addr, v6only]]")
                f = e[1]
                space["fast"].append((r.int(e[0], where, 1, 65535), Fast(
                    r.bool(f[0], where), r.choice(f[1], where, {0, ANY, STRICT}),
                    r.int(f[2], where, 0, U32), decode_addr(r, f[3], where),
                    r.bool(f[4], where))))
            out[proto] = space
        return out

    def restore(self, m, value: dict, socks: list) -> None:
        net = Net()
        for proto, space in (("tcp", net.tcp), ("udp", net.udp)):
            d = value[proto]
            space.next_odd, space.next_even, space.seq = d["next_odd"], d["next_even"], d["seq"]
            for port, chain in d["ports"]:
                bs = []
                for b in chain:
                    owner = None if b["owner"] is None else socks[b["owner"]]
                    binding = Binding(b["local"], b["v6only"], b["reuseaddr"], b["reuseport"],
                                      b["uid"], b["state"], owner, b["until"], b["seq"])
                    if owner is not None:
                        owner.binding = binding
                    bs.append(binding)
                space.ports[port] = bs
            space.fast = dict(d["fast"])
        for s in socks:
            if isinstance(s, InetSocket):
                s.ports = (net.tcp if s.stream else net.udp, m.system.clock)
        m.system.inet = net


sockimage.SYSTEM_PARTS["inet"] = PortSpaces()


# the host side of listeners, on resume ----------------------------------------------------------

def reopen_host_listeners(m, say) -> None:
    """Give restored listeners their host side back where the resume's --listen allows it;
    `say` gets one line for each that stays guest-only, and one for host connections found
    closed."""
    closed = getattr(m.system, "host_connections_closed", 0)
    if closed:
        say(f"vsnap: {closed} connection{'s' * (closed != 1)} to the host saved in the image "
            f"{'were' if closed != 1 else 'was'} not carried over (host sockets stay with the "
            f"vsnap that saved); the guest finds {'them' if closed != 1 else 'it'} reset by "
            f"the peer")
    net = m.system.net
    for sock, port in getattr(m.system, "host_listeners_saved", None) or ():
        if sock.dead or sock.state != "listening":
            continue
        if net is None or not net.listens(port):
            say(f"vsnap: the guest's listener on port {port} is restored for guest clients "
                f"only; resume with --listen {port} to let host clients in again")
            continue
        try:
            sock.host_listener = net.open_listener(port)
        except Exception as e:  # the host's port is taken: guest-only, said once
            say(f"vsnap: --listen {port}: the host's 127.0.0.1:{port} cannot be taken "
                f"({e}); the listener serves guest clients only")
    m.system.host_listeners_saved = []
