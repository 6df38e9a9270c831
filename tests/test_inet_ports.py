"""vsnap/inetaddr.py and vsnap/inetports.py against this machine's Linux.

The same sequences of bind/listen/close (and accepted connections, and TIME_WAIT) run on
real host sockets on one free port of the host's loopback and on a PortSpace, and every
step's outcome (0 or the errno) must agree; random sequences from a fixed seed cover the
address x option x state combinations (v4 and v6, wildcards, v4-mapped, IPV6_V6ONLY,
SO_REUSEADDR, SO_REUSEPORT, listeners). The address parsers are checked against what the
host's kernel answers for the same bytes through ctypes' raw bind/connect.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno as host_errno
import random
import socket
import struct

import pytest

from vsnap.abi import errno as E
from vsnap.errors import SyscallError
from vsnap.inetaddr import (AF_INET, AF_INET6, Addr, pack, parse_bind, parse_connect,
                            parse_sendto)
from vsnap.inetports import EPHEMERAL_HIGH, EPHEMERAL_LOW, Binding, PortSpace

ADDRS = {"127.0.0.1": AF_INET, "127.0.0.2": AF_INET, "0.0.0.0": AF_INET,
         "::": AF_INET6, "::1": AF_INET6, "::ffff:127.0.0.1": AF_INET6,
         "::ffff:0.0.0.0": AF_INET6}


def free_port(kind) -> int:
    """A port free on the host for both families (a v6 wildcard that takes v4 too)."""
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def model_addr(ip: str, port: int) -> Addr:
    fam = AF_INET6 if ":" in ip else AF_INET
    return Addr(fam, socket.inet_pton(socket.AF_INET if fam == AF_INET else socket.AF_INET6,
                                      ip), port)


class Both:
    """One script, on the host and on the model; each step returns (host, model)."""

    def __init__(self, tcp: bool):
        self.tcp = tcp
        self.kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
        self.port = free_port(self.kind)
        self.space = PortSpace(tcp)
        self.host: dict[str, socket.socket] = {}
        self.model: dict[str, Binding] = {}
        self.extra: list[socket.socket] = []

    def bind(self, name, ip, flags=""):
        fam = ADDRS[ip]
        s = socket.socket(socket.AF_INET if fam == AF_INET else socket.AF_INET6, self.kind)
        if "R" in flags:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if "P" in flags:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if fam == AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int("V" in flags))
        try:
            s.bind((ip, self.port))
            host = 0
            self.host[name] = s
        except OSError as e:
            host = e.errno
            s.close()
        try:
            # the address check first, as bind(2) does, then the port
            a = parse_bind(pack(model_addr(ip, self.port)), fam, stream=self.tcp,
                           v6only="V" in flags and fam == AF_INET6)
            b = Binding(a, v6only="V" in flags and fam == AF_INET6, reuseaddr="R" in flags,
                        reuseport="P" in flags, owner=name)
            self.space.bind(b)
            model = 0
            self.model[name] = b
        except SyscallError as e:
            model = e.errno
        return host, model

    def listen(self, name):
        host = model = 0
        try:
            self.host[name].listen()
        except OSError as e:
            host = e.errno
        try:
            self.space.listen(self.model[name])
        except SyscallError as e:
            model = e.errno
        return host, model

    def close(self, name):
        self.host.pop(name).close()
        self.space.release(self.model.pop(name))
        return 0, 0

    def accept(self, listener, child, timewait: bool):
        """A connection to the listener; with timewait the server side closes first, so
        its port lingers in TIME_WAIT."""
        ls = self.host[listener]
        fam = ls.family
        c = socket.socket(fam, socket.SOCK_STREAM)
        ip = ls.getsockname()[0]
        c.connect(("::1" if ip == "::" else "127.0.0.1" if ip == "0.0.0.0" else ip, self.port))
        conn, _ = ls.accept()
        lb = self.model[listener]
        cb = self.space.inherit(lb, lb.local, child)
        if timewait:
            conn.close()
            c.recv(1)
            self.extra.append(c)
            self.space.time_wait(cb, 0)
        else:
            self.host[child], self.model[child] = conn, cb
            self.extra.append(c)
        return 0, 0

    def done(self):
        for s in list(self.host.values()) + self.extra:
            s.close()


def run_script(tcp, steps):
    both = Both(tcp)
    try:
        for step in steps:
            host, model = getattr(both, step[0])(*step[1:])
            assert E.name(model) == E.name(host), (step, steps)
    finally:
        both.done()


SCRIPTS_TCP = [
    [("bind", "a", "127.0.0.1"), ("bind", "b", "127.0.0.1")],
    [("bind", "a", "0.0.0.0"), ("bind", "b", "127.0.0.1")],
    [("bind", "a", "127.0.0.1"), ("bind", "b", "127.0.0.2")],
    [("bind", "a", "::"), ("bind", "b", "127.0.0.1")],
    [("bind", "a", "::", "V"), ("bind", "b", "127.0.0.1")],
    [("bind", "a", "::1"), ("bind", "b", "0.0.0.0")],
    [("bind", "a", "0.0.0.0"), ("bind", "b", "::1")],
    [("bind", "a", "0.0.0.0"), ("bind", "b", "::")],
    [("bind", "a", "0.0.0.0"), ("bind", "b", "::", "V")],
    [("bind", "a", "::ffff:127.0.0.1"), ("bind", "b", "127.0.0.1")],
    [("bind", "a", "127.0.0.1", "R"), ("bind", "b", "127.0.0.1", "R"), ("listen", "a"),
     ("listen", "b")],
    [("bind", "a", "127.0.0.1", "R"), ("listen", "a"), ("bind", "b", "127.0.0.1", "R")],
    [("bind", "a", "127.0.0.1", "P"), ("bind", "b", "127.0.0.1", "P"), ("listen", "a"),
     ("listen", "b")],
    [("bind", "a", "127.0.0.1"), ("listen", "a"), ("accept", "a", "c", False),
     ("close", "a"), ("bind", "b", "127.0.0.1"), ("bind", "d", "127.0.0.1", "R")],
    [("bind", "a", "127.0.0.1", "R"), ("listen", "a"), ("accept", "a", "c", False),
     ("close", "a"), ("bind", "b", "127.0.0.1"), ("bind", "d", "127.0.0.1", "R")],
    [("bind", "a", "127.0.0.1", "R"), ("listen", "a"), ("accept", "a", "c", True),
     ("close", "a"), ("bind", "b", "127.0.0.1"), ("bind", "d", "127.0.0.1", "R"),
     ("listen", "d")],
    [("bind", "a", "127.0.0.1"), ("listen", "a"), ("accept", "a", "c", True),
     ("close", "a"), ("bind", "b", "127.0.0.1", "R")],
]


@pytest.mark.parametrize("steps", SCRIPTS_TCP, ids=[str(i) for i in range(len(SCRIPTS_TCP))])
def test_tcp_port_rules_as_linux(steps):
    run_script(True, steps)


def random_steps(rng, tcp, n):
    steps, live = [], []
    for i in range(n):
        r = rng.random()
        if live and r < 0.2:
            name = live.pop(rng.randrange(len(live)))
            steps.append(("close", name))
        elif tcp and live and r < 0.45:
            steps.append(("listen", rng.choice(live)))
        else:
            flags = "".join(f for f in "RPV" if rng.random() < 0.4)
            name = f"s{i}"
            steps.append(("bind", name, rng.choice(list(ADDRS)), flags))
            live.append(name)
    return steps


@pytest.mark.parametrize("tcp", [True, False], ids=["tcp", "udp"])
def test_random_port_scripts_as_linux(tcp):
    rng = random.Random(1313)
    for _ in range(60):
        steps = random_steps(rng, tcp, 6)
        # a listen after a failed bind would not be a step of either: prune on the fly
        both = Both(tcp)
        try:
            for step in steps:
                if step[0] in ("listen", "close") and step[1] not in both.model:
                    if step[1] in both.host:  # a disagreement the bind step reported
                        pass
                    continue
                host, model = getattr(both, step[0])(*step[1:])
                assert E.name(model) == E.name(host), (step, steps)
                if step[0] == "listen" and host:
                    pass
        finally:
            both.done()


def test_ephemeral_ports_deterministic_and_parity():
    space = PortSpace(True)
    b1 = space.bind(Binding(model_addr("127.0.0.1", 0)))
    b2 = space.bind(Binding(model_addr("127.0.0.1", 0)), connect=True)
    b3 = space.bind(Binding(model_addr("127.0.0.1", 0)))
    assert (b1.local.port, b2.local.port, b3.local.port) == (
        EPHEMERAL_LOW + 1, EPHEMERAL_LOW, EPHEMERAL_LOW + 3)
    udp = PortSpace(False)
    ports = [udp.bind(Binding(model_addr("0.0.0.0", 0))).local.port for _ in range(3)]
    assert ports == [EPHEMERAL_LOW, EPHEMERAL_LOW + 1, EPHEMERAL_LOW + 2]


def test_ephemeral_exhaustion():
    space = PortSpace(False)
    for _ in range(EPHEMERAL_HIGH - EPHEMERAL_LOW + 1):
        space.bind(Binding(model_addr("127.0.0.1", 0)))
    with pytest.raises(SyscallError) as e:
        space.bind(Binding(model_addr("127.0.0.1", 0)))
    assert e.value.errno == E.EADDRINUSE


def test_timewait_expires_after_60s():
    space = PortSpace(True)
    b = space.bind(Binding(model_addr("127.0.0.1", 5000)))
    space.time_wait(b, 1000)
    with pytest.raises(SyscallError):
        space.bind(Binding(model_addr("127.0.0.1", 5000)))
    space.expire(1000 + 60 * 10**9)
    space.bind(Binding(model_addr("127.0.0.1", 5000)))


def test_listener_lookup_prefers_exact_and_v4():
    space = PortSpace(True)
    any6 = space.bind(Binding(model_addr("::", 7000), reuseport=True, owner="any6"))
    space.listen(any6)
    dest = model_addr("127.0.0.1", 7000)
    assert space.lookup(dest, listeners=True) == "any6"
    assert space.lookup(model_addr("::1", 7000), listeners=True) == "any6"
    assert space.lookup(model_addr("127.0.0.1", 7001), listeners=True) is None
    with pytest.raises(SyscallError):  # two listeners overlapping need SO_REUSEPORT
        space.bind(Binding(model_addr("127.0.0.1", 7000), owner="exact"))
    any4 = space.bind(Binding(model_addr("0.0.0.0", 7000), reuseport=True, owner="any4"))
    space.listen(any4)
    assert space.lookup(dest, listeners=True) == "any4"  # AF_INET first for IPv4
    exact = space.bind(Binding(model_addr("127.0.0.1", 7000), reuseport=True, owner="exact"))
    assert space.lookup(dest, listeners=True) == "any4"  # not listening yet
    space.listen(exact)
    assert space.lookup(dest, listeners=True) == "exact"
    assert space.lookup(model_addr("127.0.0.3", 7000), listeners=True) == "any4"
    assert space.lookup(model_addr("::1", 7000), listeners=True) == "any6"
    space.release(any4)
    space.release(exact)
    any6.v6only = True
    assert space.lookup(dest, listeners=True) is None


# -- address parsing, against the host kernel's raw bind/connect -----------------------------

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def host_call(fn, family, kind, buf: bytes, v6only=False) -> int:
    s = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        if fn == "connect":
            s.setblocking(False)
        rc = getattr(libc, fn)(s.fileno(), ctypes.c_char_p(buf), len(buf))
        err = ctypes.get_errno() if rc < 0 else 0
        return 0 if err in (host_errno.EINPROGRESS, host_errno.ECONNREFUSED) else err
    finally:
        s.close()


def sin(fam, port, ip4) -> bytes:
    return struct.pack("<H", fam) + struct.pack(">H", port) + ip4 + bytes(8)


def sin6(fam, port, ip16, flow=0, scope=0) -> bytes:
    return struct.pack("<H", fam) + struct.pack(">HI", port, flow) + ip16 + struct.pack("<I", scope)


LO6 = bytes(15) + b"\x01"
MAP = bytes(10) + b"\xff\xff"
BUFS = [
    ("v4", sin(AF_INET, 0, bytes([127, 0, 0, 1]))),
    ("v4 short", sin(AF_INET, 0, bytes([127, 0, 0, 1]))[:15]),
    ("v4 unspec any", sin(0, 0, bytes(4))),
    ("v4 unspec lo", sin(0, 0, bytes([127, 0, 0, 1]))),
    ("v4 family 6", sin(AF_INET6, 0, bytes(4))),
    ("v4 foreign", sin(AF_INET, 0, bytes([10, 1, 2, 3]))),
    ("v4 127.9", sin(AF_INET, 0, bytes([127, 9, 9, 9]))),
    ("v6", sin6(AF_INET6, 0, LO6)),
    ("v6 rfc2133", sin6(AF_INET6, 0, LO6)[:24]),
    ("v6 short", sin6(AF_INET6, 0, LO6)[:23]),
    ("v6 family 2", sin6(AF_INET, 0, LO6)),
    ("v6 mapped lo", sin6(AF_INET6, 0, MAP + bytes([127, 0, 0, 1]))),
    ("v6 mapped foreign", sin6(AF_INET6, 0, MAP + bytes([10, 0, 0, 1]))),
    ("v6 foreign", sin6(AF_INET6, 0, bytes([0x20, 1]) + bytes(13) + b"\x05")),
    ("v6 link-local no scope", sin6(AF_INET6, 0, bytes([0xFE, 0x80]) + bytes(13) + b"\x01")),
    ("v6 multicast", sin6(AF_INET6, 0, bytes([0xFF, 2]) + bytes(13) + b"\x01")),
]


@pytest.mark.parametrize("v6only", [False, True])
@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM], ids=["tcp", "udp"])
@pytest.mark.parametrize("name,buf", BUFS, ids=[b[0] for b in BUFS])
def test_parse_bind_as_linux(name, buf, kind, v6only):
    for fam, hfam in ((AF_INET, socket.AF_INET), (AF_INET6, socket.AF_INET6)):
        if fam == AF_INET and v6only:
            continue
        host = host_call("bind", hfam, kind, buf, v6only)
        try:
            parse_bind(buf, fam, stream=kind == socket.SOCK_STREAM, v6only=v6only)
            model = 0
        except SyscallError as e:
            model = e.errno
        assert E.name(model) == E.name(host), (name, fam)


@pytest.mark.parametrize("v6only", [False, True])
@pytest.mark.parametrize("name,buf", [b for b in BUFS if "foreign" not in b[0]
                                      and "multicast" not in b[0] and "link" not in b[0]],
                         ids=lambda x: x if isinstance(x, str) else "")
def test_parse_connect_as_linux(name, buf, v6only):
    """Loopback destinations only: the host's kernel has routes this guest lacks."""
    buf = buf[:2] + struct.pack(">H", 1) + buf[4:]  # port 1: nothing listens, refused
    for fam, hfam in ((AF_INET, socket.AF_INET), (AF_INET6, socket.AF_INET6)):
        if fam == AF_INET and v6only:
            continue
        host = host_call("connect", hfam, socket.SOCK_STREAM, buf, v6only)
        try:
            parse_connect(buf, fam, v6only=v6only)
            model = 0
        except SyscallError as e:
            model = e.errno
        assert E.name(model) == E.name(host), (name, fam)


def test_pack_round_trip():
    a = Addr(AF_INET6, LO6, 8080, flowinfo=0x12345, scope_id=0)
    raw = pack(a)
    assert len(raw) == 28 and raw[2:4] == b"\x1f\x90" and raw[4:8] == b"\x00\x01\x23\x45"
    assert parse_connect(raw, AF_INET6, v6only=False) == a
    b = Addr(AF_INET, bytes([127, 0, 0, 1]), 80)
    assert pack(b) == sin(AF_INET, 80, bytes([127, 0, 0, 1]))
    assert parse_sendto(pack(b), AF_INET6, v6only=False) == Addr(
        AF_INET6, MAP + bytes([127, 0, 0, 1]), 80)
    with pytest.raises(SyscallError) as e:
        parse_sendto(sin(AF_INET, 0, bytes([127, 0, 0, 1])), AF_INET, v6only=False)
    assert e.value.errno == E.EINVAL


def test_reuseport_listeners_share_connections():
    """SO_REUSEPORT listeners on one address each get connections, chosen by the client's
    port (Linux hashes the addresses: another choice, as fixed)."""
    space = PortSpace(True)
    a = space.bind(Binding(model_addr("127.0.0.1", 7100), reuseport=True, owner="a"))
    b = space.bind(Binding(model_addr("127.0.0.1", 7100), reuseport=True, owner="b"))
    space.listen(a)
    space.listen(b)
    dest = model_addr("127.0.0.1", 7100)
    got = [space.lookup(dest, listeners=True, source=model_addr("127.0.0.1", port))
           for port in (40000, 40001, 40002, 40003)]
    assert got == ["a", "b", "a", "b"]
