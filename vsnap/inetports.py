"""The guest's port numbers: one space for TCP and one for UDP, with Linux's rules for who
may share a port (net/ipv4/inet_connection_sock.c inet_bind_conflict, udp.c
udp_lib_lport_inuse), the ephemeral ports a bind to port 0 or an unbound connect takes, and
which socket a connection or a datagram reaches.

Rules, as Linux's:
- Two sockets overlap on a port when their local addresses do (a wildcard overlaps every
  address of its family; a v6 wildcard that is not IPV6_V6ONLY overlaps IPv4 too; Linux's
  comparison is not symmetric and neither is this one, see overlap()).
- TCP: overlapping sockets may share a port when both set SO_REUSEADDR and the one already
  there is not listening, or when both set SO_REUSEPORT and have the same owner uid (or the
  one there is in TIME_WAIT). listen() checks again as a listener: so with SO_REUSEADDR a
  server rebinds while its old connections live on (or linger in TIME_WAIT), but two
  listeners on one address need SO_REUSEPORT. A connection that closed first stays in
  TIME_WAIT for 60 s of virtual time, holding its port (TCP_TIMEWAIT_LEN).
- UDP: sharing needs SO_REUSEADDR on both, or SO_REUSEPORT on both with the same uid.
- Ephemeral ports come from 32768-60999 (ip_local_port_range). Linux starts its search at a
  pseudo-random offset; vsnap counts up from the bottom of the range, so runs are
  reproducible: like Linux, a bind to port 0 takes odd ports first and connect() even ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .abi import errno as E
from .errors import SyscallError
from .inetaddr import AF_INET, AF_INET6, ANY4, ANY6, MAPPED_PREFIX, Addr

EPHEMERAL_LOW, EPHEMERAL_HIGH = 32768, 60999
TIMEWAIT_NS = 60 * 1_000_000_000
LOOPBACK4_IPV6 = bytes([127, 0, 0, 6])  # the v4 view of a v6 socket on a v6 address

# a binding's state, as far as port sharing cares
BOUND, LISTEN, TIMEWAIT = "bound", "listen", "timewait"


@dataclass(eq=False)
class Binding:
    """A socket's hold on a port: what the sharing rules look at."""
    local: Addr
    v6only: bool = False
    reuseaddr: bool = False
    reuseport: bool = False
    uid: int = 0
    state: str = BOUND
    owner: object = None     # the socket (None for a TIME_WAIT leftover)
    until: int | None = None  # TIME_WAIT: the virtual time it ends
    seq: int = 0             # bind order (lookups prefer what Linux's hash chains give)

    def v4_view(self) -> int | None:
        """sk_rcv_saddr: the IPv4 address the socket is bound to (None for v6 ::1 and the
        like, which Linux keeps as 127.0.0.6 so it equals no real v4 address)."""
        a = self.local
        if a.family == AF_INET:
            return a.ip
        if a.ip == ANY6:
            return ANY4
        if a.ip.startswith(MAPPED_PREFIX):
            return a.ip[12:]
        return LOOPBACK4_IPV6


def _v6_type(ip: bytes | None) -> str:
    if ip is None or ip.startswith(MAPPED_PREFIX):
        return "mapped"
    return "any" if ip == ANY6 else "unicast"


def overlap(a: Binding, b: Binding) -> bool:
    """inet_rcv_saddr_equal(a, b, match_wildcard=true): may a and b not both hold a port.
    a is the socket asking; Linux's answer depends on which one asks."""
    return _addr_equal(a, b, True, True)


def _addr_equal(a: Binding, b: Binding, wild1: bool, wild2: bool) -> bool:
    """ipv4_rcv_saddr_equal / ipv6_rcv_saddr_equal with their wildcard switches."""
    if a.local.family == AF_INET:
        if b.v6only:
            return False
        x, y = a.v4_view(), b.v4_view()
        return x == y or (wild1 and x == ANY4) or (wild2 and y == ANY4)
    ip1 = a.local.ip
    ip2 = b.local.ip if b.local.family == AF_INET6 else None
    t1, t2 = _v6_type(ip1), _v6_type(ip2)
    if t1 == "mapped" and t2 == "mapped":
        if b.v6only:
            return False
        x, y = a.v4_view(), b.v4_view()
        return x == y or (wild1 and x == ANY4) or (wild2 and y == ANY4)
    if t1 == "any" and t2 == "any":
        return True
    if t2 == "any" and wild2 and not (b.v6only and t1 == "mapped"):
        return True
    if t1 == "any" and wild1 and not (a.v6only and t2 == "mapped"):
        return True
    return ip2 is not None and ip1 == ip2


ANY, STRICT = 1, -1  # tb->fastreuseport: FASTREUSEPORT_ANY, FASTREUSEPORT_STRICT


@dataclass
class Fast:
    """A TCP port bucket's fast path (tb->fastreuse, fastreuseport, fastuid, fast_*):
    remembered from the binds so far, never recomputed when a socket leaves, so a bind
    Linux lets through here it would refuse against the same sockets bound in another
    order. Modelled because programs see it."""
    reuse: bool
    reuseport: int
    uid: int
    local: Addr
    v6only: bool


def _reuseport_match(fast: Fast, b: Binding) -> bool:
    """sk_reuseport_match: b joins without the conflict check."""
    if fast.reuseport == 0 or not b.reuseport or fast.uid != b.uid:
        return False
    if fast.reuseport == ANY:
        return True
    # the bucket's remembered socket as sk1 with its wildcard matching, b exactly
    ref = Binding(fast.local, fast.v6only)
    return _addr_equal(ref, b, True, False)


def _may_share(tcp: bool, a: Binding, b: Binding) -> bool:
    """Can a join b on their port (inet_bind_conflict with relax, udp_lib_lport_inuse)."""
    if tcp:
        if a.reuseaddr and b.reuseaddr and b.state != LISTEN:
            return True
        return a.reuseport and b.reuseport and (b.state == TIMEWAIT or a.uid == b.uid)
    if a.reuseaddr and b.reuseaddr:
        return True
    return a.reuseport and b.reuseport and a.uid == b.uid


@dataclass
class PortSpace:
    """One protocol's ports: port -> the bindings on it, in bind order."""
    tcp: bool
    ports: dict = field(default_factory=dict)
    fast: dict = field(default_factory=dict)  # TCP: port -> Fast, the bucket's fast path
    next_odd: int = EPHEMERAL_LOW + 1
    next_even: int = EPHEMERAL_LOW
    seq: int = 0

    def expire(self, now_ns: int) -> None:
        """TIME_WAIT leftovers whose 60 s have passed let their ports go."""
        for port in [p for p, bs in self.ports.items()
                     if any(b.until is not None and b.until <= now_ns for b in bs)]:
            self._set(port, [b for b in self.ports[port]
                             if b.until is None or b.until > now_ns])

    def _set(self, port: int, bindings: list) -> None:
        if bindings:
            self.ports[port] = bindings
        else:  # the bucket goes, and its fast-path memory with it
            self.ports.pop(port, None)
            self.fast.pop(port, None)

    def conflict(self, b: Binding, port: int) -> bool:
        return any(o is not b and overlap(b, o) and not _may_share(self.tcp, b, o)
                   for o in self.ports.get(port, ()))

    def bind(self, b: Binding, *, connect: bool = False) -> Binding:
        """Put b on its port; port 0 picks an ephemeral one. EADDRINUSE as Linux, or
        EADDRINUSE (bind) / EADDRNOTAVAIL (connect) when no ephemeral port is free."""
        if b.local.family == AF_INET6 and _v6_type(b.local.ip) == "unicast":
            b.v6only = True  # inet6_bind: bound to a v6 address, it can take no v4 traffic
        port = b.local.port
        if port == 0:
            port = self._ephemeral(b, connect)
        else:
            self._get_port(b, port)
        self._add(b, port)
        return b

    def _get_port(self, b: Binding, port: int) -> None:
        """inet_csk_get_port for a given port: the bucket's fast path first (which lets
        some binds through that the full check would refuse, as Linux does), then the
        conflict check. UDP has no fast path (udp_lib_get_port)."""
        if not self.ports.get(port):
            return
        if self.tcp:
            fast = self.fast.get(port)
            if fast is not None and ((fast.reuse and b.reuseaddr and b.state != LISTEN)
                                     or _reuseport_match(fast, b)):
                return
        if self.tcp and self.conflict(b, port) or not self.tcp and self._udp_inuse(b, port):
            raise SyscallError(E.EADDRINUSE, f"port {b.local.port or port} is in use")

    def _udp_inuse(self, b: Binding, port: int) -> bool:
        """udp_lib_lport_inuse: the hash chain in its order; the first overlapping socket
        that b may join by SO_REUSEPORT ends the search with a yes, even if another
        further on would refuse (Linux's answer, so ours)."""
        for o in self.ports.get(port, ()):
            if o is b or (o.reuseaddr and b.reuseaddr) or not overlap(b, o):
                continue
            return not (o.reuseport and b.reuseport and o.uid == b.uid)
        return False

    def _add(self, b: Binding, port: int) -> None:
        if self.tcp:
            self._update_fast(b, port)
        self.seq += 1
        b.seq = self.seq
        b.local = b.local.with_port(port)
        chain = self.ports.setdefault(port, [])
        if self.tcp or (b.reuseport and b.local.family == AF_INET6):
            chain.append(b)  # udp_lib_get_port puts v6 SO_REUSEPORT sockets at the tail
        else:
            chain.insert(0, b)

    def _update_fast(self, b: Binding, port: int) -> None:
        """inet_csk_update_fastreuse: what the next bind on this port may skip."""
        reuse = b.reuseaddr and b.state != LISTEN
        fast = self.fast.get(port)
        if not self.ports.get(port) or fast is None:
            self.fast[port] = Fast(reuse, ANY if b.reuseport else 0, b.uid, b.local, b.v6only)
            return
        if not reuse:
            fast.reuse = False
        if not b.reuseport:
            fast.reuseport = 0
        elif not _reuseport_match(fast, b):
            fast.reuseport, fast.uid, fast.local, fast.v6only = STRICT, b.uid, b.local, b.v6only

    def _ephemeral(self, b: Binding, connect: bool) -> int:
        size = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
        if self.tcp:
            first = "next_even" if connect else "next_odd"
            order = (first, "next_odd" if connect else "next_even")
        else:
            order = ("next_even",)  # UDP: one counter over the whole range
        for attr in order:
            start = getattr(self, attr)
            step = 2 if self.tcp else 1
            for i in range(0, size, step):
                port = EPHEMERAL_LOW + (start - EPHEMERAL_LOW + i) % size
                if port in self.ports and (connect or self.conflict(b, port)):
                    continue  # connect() takes a port no one holds; simpler than Linux's
                nxt = EPHEMERAL_LOW + (port - EPHEMERAL_LOW + step) % size
                setattr(self, attr, nxt)
                return port
        raise SyscallError(E.EADDRNOTAVAIL if connect else E.EADDRINUSE,
                           "no ephemeral port is free")

    def inherit(self, listener: Binding, local: Addr, owner) -> Binding:
        """An accepted connection holds its listener's port too, with its options
        (inet_csk_clone_lock, __inet_inherit_port), and is not checked against it."""
        b = Binding(local, listener.v6only, listener.reuseaddr, listener.reuseport,
                    listener.uid, BOUND, owner)
        self._add(b, local.port)
        return b

    def listen(self, b: Binding) -> None:
        """listen(): the port is taken again by b as a listener (inet_csk_get_port)."""
        old, b.state = b.state, LISTEN
        try:
            self._get_port(b, b.local.port)
        except SyscallError:
            b.state = old
            raise
        self._update_fast(b, b.local.port)

    def release(self, b: Binding) -> None:
        port = b.local.port
        self._set(port, [o for o in self.ports.get(port, ()) if o is not b])

    def time_wait(self, b: Binding, now_ns: int) -> None:
        """b's connection closed first: its port stays held 60 s (TIME_WAIT)."""
        b.state, b.owner, b.until = TIMEWAIT, None, now_ns + TIMEWAIT_NS

    def lookup(self, dest: Addr, *, listeners: bool, source: Addr | None = None):
        """The socket a connection (listeners=True) or a datagram to `dest` reaches; None:
        no one (ECONNREFUSED, or an ICMP port unreachable). A connected datagram socket
        takes only its peer's datagrams and is preferred (Linux scores it higher); an
        exact local address beats a wildcard; for IPv4, an AF_INET socket beats a v6 one.
        Among SO_REUSEPORT sockets that score alike, the source port chooses (Linux hashes
        the addresses: a different but fixed choice)."""
        v4 = dest.v4()
        best, score, group = None, -1, []
        for b in self.ports.get(dest.port, ()):
            if b.owner is None or b.state == TIMEWAIT:
                continue
            if listeners and b.state != LISTEN:
                continue
            s = _match(b, dest, v4)
            if s < 0:
                continue
            peer = getattr(b.owner, "remote", None) if not listeners else None
            if peer is not None:
                if source is None or not _same_endpoint(peer, source):
                    continue
                s += 8
            if s > score or (s == score and not self.tcp and b.seq > best.seq
                             and not b.reuseport):
                best, score, group = b, s, [b]
            elif s == score:
                group.append(b)
        if best is None:
            return None
        if len(group) > 1 and all(g.reuseport for g in group):
            best = group[(source.port if source else 0) % len(group)]
        return best.owner


def _match(b: Binding, dest: Addr, v4: bytes | None) -> int:
    """How well b's local address takes dest: -1 not at all."""
    a = b.local
    if v4 is not None:
        if a.family == AF_INET:
            return 4 if a.ip == v4 else (2 if a.ip == ANY4 else -1)
        if b.v6only:
            return -1
        if a.ip == MAPPED_PREFIX + v4:
            return 3
        return 1 if a.ip in (ANY6, MAPPED_PREFIX + ANY4) else -1
    if a.family != AF_INET6:
        return -1
    return 3 if a.ip == dest.ip else (1 if a.ip == ANY6 else -1)


def _same_endpoint(x: Addr, y: Addr) -> bool:
    if x.port != y.port:
        return False
    vx, vy = x.v4(), y.v4()
    return vx == vy if vx is not None or vy is not None else x.ip == y.ip


def to_json(space: PortSpace) -> dict:
    """What a checkpoint keeps of the space itself: the ephemeral counters and TIME_WAIT
    leftovers (live sockets bring their own bindings back)."""
    tw = [[p, b.local.family, b.local.ip.hex(), int(b.reuseaddr), int(b.reuseport),
           b.uid, b.until] for p, bs in sorted(space.ports.items()) for b in bs
          if b.state == TIMEWAIT]
    return {"next_odd": space.next_odd, "next_even": space.next_even, "seq": space.seq,
            "timewait": tw}


def from_json(tcp: bool, d: dict) -> PortSpace:
    space = PortSpace(tcp, next_odd=int(d["next_odd"]), next_even=int(d["next_even"]),
                      seq=int(d["seq"]))
    for port, fam, ip, ra, rp, uid, until in d["timewait"]:
        if fam not in (AF_INET, AF_INET6) or not 0 < port < 65536:
            raise ValueError(f"bad TIME_WAIT entry for port {port}")
        b = Binding(Addr(fam, bytes.fromhex(ip), port), reuseaddr=bool(ra),
                    reuseport=bool(rp), uid=int(uid), state=TIMEWAIT, until=int(until))
        space.ports.setdefault(port, []).append(b)
    return space
