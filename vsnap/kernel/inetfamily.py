"""AF_INET and AF_INET6 as families of the socket framework (kernel/unixaddr.py FAMILIES):
TCP and UDP between guest processes over the guest's loopback, and through the doors the
host network policy opens (vsnap/hostnet.py).

Names are inetaddr.Addr; the ports are the system's two PortSpaces (inetports.py). The calls
whose Linux behaviour differs from AF_UNIX's in more than the name (connect, listen, a
datagram send) are hooks the framework's handlers call when a family has them.
"""
from __future__ import annotations

from ..abi import errno as E
from ..abi.consts import O_NONBLOCK
from ..errors import SyscallError
from ..hostnet import of as hostnet_of
from ..inet import UDP6_MAX, UDP_MAX, InetSocket
from ..inetaddr import (AF_INET, AF_INET6, PROT_SOCK, Addr, as_family, loopback_for, pack,
                        parse_bind, parse_connect, parse_sendto, wildcard)
from ..inetports import Binding, PortSpace
from ..sockets import (POLLERR, POLLOUT, POLLWRBAND, POLLWRNORM, SOCK_DGRAM, SOCK_STREAM,
                       WouldBlock)
from . import inetopts
from .inetopts import IPPROTO_TCP, IPPROTO_UDP
from .sockfile import park as wait
from .sockfile import register

SOCK_RAW = 3
TCP_SNDBUF, TCP_RCVBUF = 16384, 131072    # a new TCP socket's (net.ipv4.tcp_wmem/rmem)
# a connected one's send buffer, as tcp_sndbuf_expand sizes it for lo's 64 KiB MTU (Linux
# 6.x, x86-64): a send buffer left at the default grows to it when the connection is made
TCP_SNDBUF_CONNECTED = 3939840


class Net:
    """The guest's loopback network: its two port spaces (on the System, made on first use)."""

    def __init__(self):
        self.tcp = PortSpace(True)
        self.udp = PortSpace(False)


def net_of(p) -> Net:
    net = getattr(p.sys, "inet", None)
    if net is None:
        net = p.sys.inet = Net()
    return net


def _space(p, sock) -> PortSpace:
    n = net_of(p)
    n.tcp.expire(p.sys.clock.monotonic_ns)
    return n.tcp if sock.stream else n.udp


class InetFamily:
    ignores_stream_dest = True  # tcp_sendmsg does not look at a send's address

    def __init__(self, number: int):
        self.number = number
        self.name = "AF_INET" if number == AF_INET else "AF_INET6"

    def create(self, p, type_: int, protocol: int, cred) -> InetSocket:
        """inet_create / inet6_create: TCP for SOCK_STREAM, UDP for SOCK_DGRAM."""
        wanted = {SOCK_STREAM: IPPROTO_TCP, SOCK_DGRAM: IPPROTO_UDP}.get(type_)
        if type_ == SOCK_RAW:
            p.sys.refuse("socket(SOCK_RAW)", "vsnap: raw IP sockets are not implemented: "
                         "EPROTONOSUPPORT")
            raise SyscallError(E.EPROTONOSUPPORT, "SOCK_RAW")
        if wanted is None:
            raise SyscallError(E.ESOCKTNOSUPPORT, f"{self.name} socket type {type_}")
        if protocol not in (0, wanted):
            raise SyscallError(E.EPROTONOSUPPORT, f"{self.name} protocol {protocol}")
        sock = InetSocket(self, type_, wanted, cred, self.number)
        if type_ == SOCK_STREAM:  # tcp_wmem[1], tcp_rmem[1]; UDP keeps the core defaults
            sock.sndbuf, sock.rcvbuf = TCP_SNDBUF, TCP_RCVBUF
        return sock

    # -- names ---------------------------------------------------------------------------

    def parse(self, p, raw: bytes, for_bind: bool = False):
        """The bytes themselves: what they mean depends on the socket (IPV6_V6ONLY, its
        type), so bind/connect/send parse them with it."""
        return bytes(raw)

    def sockaddr(self, name) -> bytes:
        """getsockname of an unbound socket: the wildcard, port 0."""
        return pack(name if name is not None else wildcard(self.number))

    def peer_name(self, sock, accepting: bool = False):
        """What getpeername/accept give: the peer as this socket names it; None: ENOTCONN
        (a TCP socket not connected, or reset; accept names the peer all the same)."""
        if sock.stream and sock.state != "connected" and not accepting:
            return None
        return sock.remote

    def source_name(self, sock, got):
        """recvfrom's address: a datagram's sender; nothing on TCP (tcp_recvmsg)."""
        return None if sock.stream else got.addr

    def bind(self, p, sock: InetSocket, raw: bytes) -> None:
        """inet_bind / inet6_bind."""
        addr = parse_bind(raw, self.number, stream=sock.stream, v6only=sock.v6only)
        if addr.port and addr.port < PROT_SOCK and p.task.euid != 0:
            raise SyscallError(E.EACCES, f"port {addr.port} needs CAP_NET_BIND_SERVICE")
        if sock.binding is not None or sock.state != "unconnected":
            raise SyscallError(E.EINVAL, "socket is already bound")
        self._take_port(p, sock, addr, connect=False)

    def _take_port(self, p, sock: InetSocket, addr: Addr, connect: bool) -> None:
        b = Binding(addr, v6only=sock.v6only, reuseaddr=bool(sock.opts.get("reuseaddr")),
                    reuseport=bool(sock.opts.get("reuseport")), uid=sock.cred[1], owner=sock)
        space = _space(p, sock)
        space.bind(b, connect=connect)
        sock.binding, sock.addr, sock.v6only = b, b.local, b.v6only
        sock.ports = (space, p.sys.clock)  # release() has no process at hand
        sock.autobound = connect

    def autobind(self, p, sock: InetSocket, source: Addr | None = None,
                 connect: bool = False) -> None:
        """inet_autobind: an ephemeral port on the wildcard (or `source`)."""
        if sock.binding is None:
            self._take_port(p, sock, source or wildcard(self.number), connect)

    def unbind(self, sock: InetSocket, active_close: bool = False) -> None:
        b, sock.binding = sock.binding, None
        if b is None:
            return
        space, clock = sock.ports
        if active_close and sock.stream and sock.remote is not None and sock.host is None:
            space.time_wait(b, clock.monotonic_ns)
        else:
            space.release(b)

    # -- TCP -----------------------------------------------------------------------------

    def listen(self, p, sock: InetSocket, backlog: int) -> None:
        """inet_listen: autobind, the port checked again as a listener's, the host's port
        too when --listen names it."""
        if not sock.stream:
            raise SyscallError(E.EOPNOTSUPP, "listen on a UDP socket")
        if sock.state not in ("unconnected", "listening"):
            raise SyscallError(E.EINVAL, "listen on a connected socket")
        if sock.state == "unconnected":
            self.autobind(p, sock)
            _space(p, sock).listen(sock.binding)
            self._open_host(p, sock)
        sock.listen(backlog)

    def _open_host(self, p, sock: InetSocket) -> None:
        net = p.sys.net
        port = sock.addr.port
        if net is None or not net.listens(port):
            return
        if not (sock.addr.is_any() or sock.addr.v4() == bytes([127, 0, 0, 1])
                or sock.addr.ip == bytes(15) + b"\x01"):
            return
        net.notice = p.sys.notice
        try:
            sock.host_listener = net.open_listener(port)
        except SyscallError as e:
            _space(p, sock).release(sock.binding)
            sock.binding = None
            p.sys.notice(f"vsnap: --listen {port}: the host's 127.0.0.1:{port} cannot be "
                         f"taken ({e}); the guest's listen fails with EADDRINUSE")
            raise SyscallError(E.EADDRINUSE, str(e)) from None

    def stop_listening(self, sock: InetSocket) -> None:
        while sock.queue:
            embryo = sock.queue.popleft()
            embryo.reset_by_us = True
            embryo.release()
        self.drop_host_listener(sock)
        sock.state = "unconnected"
        if sock.binding is not None:
            sock.binding.state = "bound"

    def drop_host_listener(self, sock: InetSocket) -> None:
        if sock.host_listener is not None:
            sock.host_listener.close()
            sock.host_listener = None

    def connect(self, p, f, sock: InetSocket, raw: bytes) -> int:
        """inet_stream_connect / inet_dgram_connect; a connect that must wait parks here
        (sockfile._wait: SO_SNDTIMEO on the virtual clock, signals)."""
        try:
            return self._connect(p, sock, raw, bool(f.flags & O_NONBLOCK))
        except WouldBlock as w:
            st = p.remember({"done": 0, "end": None})
            return wait(p, "connect on a socket", w.args[0], st, sock.opts.get("sndtimeo"), 0)

    def _connect(self, p, sock: InetSocket, raw: bytes, nonblock: bool) -> int:
        if len(raw) < 2:
            raise SyscallError(E.EINVAL, "address shorter than its family")
        if not sock.stream:
            return self._udp_connect(p, sock, raw)
        if int.from_bytes(raw[:2], "little") == 0:
            if sock.state == "unconnected":
                return 0
            p.sys.refuse("connect(AF_UNSPEC) on TCP", "vsnap: connect(AF_UNSPEC) to "
                         "disconnect a TCP socket is not implemented: EOPNOTSUPP")
            raise SyscallError(E.EOPNOTSUPP, "TCP disconnect")
        if sock.state == "connecting" or (sock.connecting and sock.host is not None):
            return self._host_connect_done(p, sock, nonblock)
        if sock.connecting:  # SS_CONNECTING: a non-blocking connect, now looked at again
            sock.connecting = False
            if sock.state == "closed":
                sock.state = "unconnected"
                raise SyscallError(sock.take_error() or E.ECONNABORTED, "connect failed")
            return 0
        if sock.state in ("connected", "listening", "closed"):
            raise SyscallError(E.EISCONN, "socket is already connected")
        dest = parse_connect(raw, self.number, v6only=sock.v6only)
        net = p.sys.net
        if net is not None and net.allows_connect(dest.ip, dest.port):
            return self._host_connect(p, sock, dest, nonblock)
        if not dest.is_loopback():
            raise hostnet_of(p.sys).refuse(p.sys, dest.ip, dest.port, "tcp")
        self.autobind(p, sock, loopback_for(self.number, dest), connect=True)
        self._concrete_source(sock, dest)
        listener = _space(p, sock).lookup(dest, listeners=True, source=sock.addr)
        if listener is None or listener.dead:
            self._drop_autobound(sock)
            if nonblock:
                sock.err, sock.state, sock.connecting = E.ECONNREFUSED, "closed", True
                sock.shutdown = 3
                sock.state_change()   # the reset to its SYN: tcp_reset
                raise SyscallError(E.EINPROGRESS, "refused: SO_ERROR will say so")
            raise SyscallError(E.ECONNREFUSED, f"no one listens on {dest}")
        if listener.backlog_full() and not nonblock:
            # Linux drops the SYN and the client tries again; here it waits for room
            raise WouldBlock(lambda: listener.dead or not listener.backlog_full())
        self._establish(p, sock, listener, dest)
        if nonblock:
            sock.connecting = True
            raise SyscallError(E.EINPROGRESS, "connected, as loopback connects at once")
        return 0

    def _concrete_source(self, sock: InetSocket, dest: Addr) -> None:
        """A socket bound to a wildcard takes the route's source address on connect."""
        if sock.addr.is_any():
            src = loopback_for(self.number, dest).with_port(sock.addr.port)
            sock.addr = src
            sock.binding.local = src

    def _drop_autobound(self, sock: InetSocket) -> None:
        """A failed connect lets go of the port it took itself (tcp_set_state CLOSE puts
        a port that bind() did not lock)."""
        if sock.binding is not None and sock.autobound:
            sock.ports[0].release(sock.binding)
            sock.binding, sock.addr = None, None

    def _establish(self, p, client: InetSocket, listener: InetSocket, dest: Addr) -> None:
        """The three-way handshake over lo: a new socket in the listener's accept queue,
        connected to the client, holding the listener's port (inherit_port)."""
        fam = listener.family
        new = InetSocket(fam, listener.type, listener.protocol, listener.cred, listener.domain)
        new.opts = dict(listener.opts)
        new.levels = dict(listener.levels)
        new.sndbuf, new.rcvbuf = listener.sndbuf, listener.rcvbuf
        new.v6only = listener.v6only
        local = as_family(dest, listener.domain)
        new.addr = local
        new.remote = as_family(client.addr, listener.domain)
        new.binding = _space(p, listener).inherit(listener.binding, local, new)
        new.ports = listener.ports
        client.remote = as_family(dest, client.domain)
        new.connect_to(client)
        for side in (new, client):
            if side.sndbuf == TCP_SNDBUF:
                side.sndbuf = TCP_SNDBUF_CONNECTED
        listener.queue.append(new)
        client.state_change()    # tcp_finish_connect
        listener.data_ready()    # the child in the accept queue

    def from_host(self, listener: InetSocket, h) -> InetSocket:
        """A host client's connection to a --listen port, as the guest accepts it."""
        new = InetSocket(listener.family, listener.type, listener.protocol, listener.cred,
                         listener.domain)
        new.opts = dict(listener.opts)
        new.levels = dict(listener.levels)
        new.state = "connected"
        new.host = h
        try:
            ip, port = h.sock.getpeername()[:2]
            lip, lport = h.sock.getsockname()[:2]
        except OSError:
            ip, port, lip, lport = "127.0.0.1", 0, "127.0.0.1", listener.addr.port
        import socket as host_socket
        peer = Addr(AF_INET, host_socket.inet_aton(ip), port)
        local = Addr(AF_INET, host_socket.inet_aton(lip), lport)
        new.remote = as_family(peer, listener.domain)
        new.addr = as_family(local, listener.domain)
        return new

    def _host_connect(self, p, sock: InetSocket, dest: Addr, nonblock: bool) -> int:
        """A real connect from the host, as --connect allows."""
        net = p.sys.net
        net.notice = p.sys.notice
        sock.host = net.open_connection(dest.ip, dest.port)
        if sock.host.error:
            sock.state_change()   # refused at once: the error its watchers hear of
        sock.remote = dest
        sock.state, sock.connecting = "connecting", True
        sock.addr = loopback_for(self.number, dest).with_port(0)
        try:
            lip, lport = sock.host.sock.getsockname()[:2]
            import socket as host_socket
            fam = host_socket.AF_INET6 if ":" in lip else host_socket.AF_INET
            ip = host_socket.inet_pton(fam, lip)
            sock.addr = as_family(Addr(AF_INET6 if fam == host_socket.AF_INET6 else AF_INET,
                                       ip, lport), self.number)
        except OSError:
            pass
        return self._host_connect_done(p, sock, nonblock, first=True)

    def _host_connect_done(self, p, sock: InetSocket, nonblock: bool,
                           first: bool = False) -> int:
        """The connect to the host, looked at again: still under way (EINPROGRESS the
        first time, EALREADY after, or the caller waits), else 0 or its error."""
        if first and nonblock:  # as Linux's SYN_SENT: the answer comes later, whatever it is
            raise SyscallError(E.EINPROGRESS, "connecting to the host")
        sock.readable()  # takes the host's news (InetSocket._host_news)
        if sock.state == "connecting":
            if nonblock:
                raise SyscallError(E.EINPROGRESS if first else E.EALREADY,
                                   "connecting to the host")
            def done() -> bool:
                sock.readable()  # the host's news first
                return sock.state != "connecting"
            raise WouldBlock(done)
        sock.connecting = False
        if sock.state == "closed":
            sock.state, sock.shutdown = "unconnected", 0
            h, sock.host = sock.host, None
            if h is not None:
                h.close()
            raise SyscallError(sock.take_error() or E.ECONNABORTED,
                               "the host refused the connection")
        return 0

    def close_host(self, sock: InetSocket, reset: bool) -> None:
        h, sock.host = sock.host, None
        if reset:  # SO_LINGER 0: close sends a reset, as Linux does with unread bytes
            h.reset()
        else:
            h.close()

    # -- UDP -----------------------------------------------------------------------------

    def _udp_connect(self, p, sock: InetSocket, raw: bytes) -> int:
        """ip4_datagram_connect: the default destination and the only source."""
        dest = parse_connect(raw, self.number, v6only=sock.v6only)
        if dest is None:
            sock.remote = None
            sock.state = "unconnected"
            return 0
        if not dest.is_loopback():
            raise hostnet_of(p.sys).refuse(p.sys, dest.ip, dest.port, "udp")
        self.autobind(p, sock, connect=False)
        self._concrete_source(sock, dest)
        sock.remote = dest
        return 0

    def send_dgram(self, p, sock: InetSocket, data: bytes, dest_raw, nonblock: bool) -> int:
        """udp_sendmsg over lo: the datagram lands whole in the receiving socket's queue,
        or nowhere (then a connected sender hears ECONNREFUSED on its next call)."""
        err = sock.take_error()
        if err:
            raise SyscallError(err, "pending socket error")
        if dest_raw:
            dest = parse_sendto(dest_raw, self.number, v6only=sock.v6only)
        else:
            dest = None
        if dest is None:
            dest = sock.remote
            if dest is None:
                raise SyscallError(E.EDESTADDRREQ, "no destination on an unconnected socket")
        if sock.shutdown & 2:
            raise SyscallError(E.EPIPE, "socket is shut for sending")
        limit = UDP_MAX if self.number == AF_INET or dest.v4() is not None else UDP6_MAX
        if len(data) > limit:
            raise SyscallError(E.EMSGSIZE, f"a datagram of {len(data)} bytes")
        if not dest.is_loopback():
            raise hostnet_of(p.sys).refuse(p.sys, dest.ip, dest.port, "udp")
        self.autobind(p, sock)
        source = sock.addr
        if source.is_any():
            source = loopback_for(self.number, dest).with_port(source.port)
        target = _space(p, sock).lookup(dest, listeners=False, source=source)
        # loopback_xmit orphans the skb: its sender's write space comes back at once
        sock.wq.wake(POLLOUT | POLLWRNORM | POLLWRBAND)
        if target is None or target.dead:
            if sock.remote is not None:
                sock.err = E.ECONNREFUSED   # ICMP port unreachable, over lo at once
                sock.wq.wake(POLLERR)       # sk_error_report
            return len(data)
        target.dgram_take(data, as_family(source, target.domain), dest.v4() is None)
        return len(data)

    # -- options (kernel/inetopts.py) ------------------------------------------------------

    def setsockopt(self, p, sock, level, name, value: bytes) -> None:
        inetopts.setsockopt(self, p, sock, level, name, value)

    def getsockopt(self, p, sock, level, name, length: int) -> bytes:
        return inetopts.getsockopt(self, p, sock, level, name)

register(InetFamily(AF_INET))
register(InetFamily(AF_INET6))
