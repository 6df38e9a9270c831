"""Internet socket addresses as the guest passes them: struct sockaddr_in and sockaddr_in6,
and the guest's network, which is a loopback interface and nothing else.

Layouts (netinet/in.h, x86-64):
  sockaddr_in   16 bytes: sin_family u16 (host order), sin_port u16 (network order),
                sin_addr 4 bytes, 8 bytes of zero
  sockaddr_in6  28 bytes: sin6_family u16, sin6_port u16 (network), sin6_flowinfo u32
                (network), sin6_addr 16 bytes, sin6_scope_id u32 (host order). The kernel
                takes 24 bytes (SIN6_LEN_RFC2133, without the scope id) as enough.

The parse functions check what Linux's inet_bind, inet6_bind, tcp_v4_connect,
tcp_v6_connect, ip4_datagram_connect, udp_sendmsg and udpv6_sendmsg check, in their order,
and raise the errno they return. An address is an Addr: the family the socket speaks, the
IP bytes (4 or 16) and the port. A v6 socket reaches an IPv4 peer through a v4-mapped
address (::ffff:a.b.c.d) unless it is IPV6_V6ONLY.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from .abi import errno as E
from .errors import SyscallError

AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 10
SOCKADDR_IN_LEN = 16
SOCKADDR_IN6_LEN = 28
SIN6_LEN_RFC2133 = 24
ANY4 = bytes(4)
ANY6 = bytes(16)
LOOPBACK4 = bytes([127, 0, 0, 1])
LOOPBACK6 = bytes(15) + b"\x01"
MAPPED_PREFIX = bytes(10) + b"\xff\xff"
PROT_SOCK = 1024  # ports below need CAP_NET_BIND_SERVICE (ip_unprivileged_port_start)


@dataclass(frozen=True)
class Addr:
    family: int          # AF_INET or AF_INET6: the socket's family, as getsockname says it
    ip: bytes            # 4 bytes (AF_INET) or 16 (AF_INET6)
    port: int
    flowinfo: int = 0
    scope_id: int = 0

    def __str__(self) -> str:
        ip = str(ipaddress.ip_address(self.ip))
        return f"[{ip}]:{self.port}" if self.family == AF_INET6 else f"{ip}:{self.port}"

    def v4(self) -> bytes | None:
        """The IPv4 address this stands for (itself, or a v4-mapped v6 one), else None."""
        if self.family == AF_INET:
            return self.ip
        return self.ip[12:] if self.ip.startswith(MAPPED_PREFIX) else None

    def is_any(self) -> bool:
        return self.ip in (ANY4, ANY6) or self.ip == MAPPED_PREFIX + ANY4

    def is_loopback(self) -> bool:
        """On the guest's only interface: 127.0.0.0/8 (also v4-mapped) or ::1."""
        v4 = self.v4()
        return v4[0] == 127 if v4 is not None else self.ip == LOOPBACK6

    def with_port(self, port: int) -> "Addr":
        return Addr(self.family, self.ip, port, self.flowinfo, self.scope_id)


def mapped(ip4: bytes) -> bytes:
    return MAPPED_PREFIX + ip4


def as_family(addr: Addr, family: int) -> Addr:
    """The same endpoint as a socket of `family` names it (a v4 peer of a v6 socket is
    v4-mapped; a v4-mapped address seen by a v4 socket is plain)."""
    if addr.family == family:
        return addr
    if family == AF_INET6:
        return Addr(AF_INET6, mapped(addr.ip), addr.port)
    return Addr(AF_INET, addr.v4() or ANY4, addr.port)


def pack(addr: Addr) -> bytes:
    """The sockaddr the kernel writes back (getsockname, getpeername, accept, recvfrom)."""
    if addr.family == AF_INET:
        return struct.pack("<H", AF_INET) + struct.pack(">H", addr.port) + addr.ip + bytes(8)
    return (struct.pack("<H", AF_INET6) + struct.pack(">HI", addr.port, addr.flowinfo)
            + addr.ip + struct.pack("<I", addr.scope_id))


def _family(buf: bytes) -> int:
    if len(buf) < 2:
        raise SyscallError(E.EINVAL, "address shorter than its family field")
    return struct.unpack_from("<H", buf)[0]


def _in(buf: bytes) -> Addr:
    port, = struct.unpack_from(">H", buf, 2)
    return Addr(AF_INET, bytes(buf[4:8]), port)


def _in6(buf: bytes) -> Addr:
    port, flow = struct.unpack_from(">HI", buf, 2)
    scope = struct.unpack_from("<I", buf, 24)[0] if len(buf) >= SOCKADDR_IN6_LEN else 0
    return Addr(AF_INET6, bytes(buf[8:24]), port, flow, scope)


def _link_local(ip: bytes) -> bool:
    return ip[0] == 0xFE and ip[1] & 0xC0 == 0x80


def _multicast6(ip: bytes) -> bool:
    return ip[0] == 0xFF


def _check_local4(ip: bytes) -> None:
    """inet_addr_valid_or_nonlocal: only the loopback net and INADDR_ANY are local here."""
    if ip != ANY4 and ip[0] != 127:
        raise SyscallError(E.EADDRNOTAVAIL, f"{ipaddress.ip_address(ip)} is not an address "
                           f"of the guest (it has only the loopback interface)")


def parse_bind(buf: bytes, family: int, *, stream: bool, v6only: bool) -> Addr:
    """bind(2)'s address for a socket of `family` (inet_bind, inet6_bind). The port
    privilege check (EACCES) and the already-bound check (EINVAL) are the caller's."""
    if family == AF_INET:
        if len(buf) < SOCKADDR_IN_LEN:
            raise SyscallError(E.EINVAL, f"sockaddr_in of {len(buf)} bytes")
        fam = _family(buf)
        addr = _in(buf)
        # AF_UNSPEC with INADDR_ANY is taken as AF_INET, for old programs (inet_bind)
        if fam != AF_INET and not (fam == AF_UNSPEC and addr.ip == ANY4):
            raise SyscallError(E.EAFNOSUPPORT, f"address family {fam} on an AF_INET socket")
        _check_local4(addr.ip)
        return addr
    if len(buf) < SIN6_LEN_RFC2133:
        raise SyscallError(E.EINVAL, f"sockaddr_in6 of {len(buf)} bytes")
    fam = _family(buf)
    if fam != AF_INET6:
        raise SyscallError(E.EAFNOSUPPORT, f"address family {fam} on an AF_INET6 socket")
    addr = _in6(buf)
    if _multicast6(addr.ip) and stream:
        raise SyscallError(E.EINVAL, "a stream socket bound to a multicast address")
    if addr.ip.startswith(MAPPED_PREFIX):
        if v6only:
            raise SyscallError(E.EINVAL, "a v4-mapped address on an IPV6_V6ONLY socket")
        _check_local4(addr.ip[12:])
    elif addr.ip != ANY6:
        if _link_local(addr.ip) or (_multicast6(addr.ip) and addr.ip[1] & 0xF in (1, 2)):
            if len(buf) < SOCKADDR_IN6_LEN or not addr.scope_id:
                raise SyscallError(E.EINVAL, "a link-local address without a scope id")
            if addr.scope_id != 1:  # interface 1 is lo, the only one
                raise SyscallError(E.ENODEV, f"no interface {addr.scope_id}")
        if addr.ip != LOOPBACK6 and not _multicast6(addr.ip):
            raise SyscallError(E.EADDRNOTAVAIL, f"{ipaddress.ip_address(addr.ip)} is not an "
                               f"address of the guest (it has only the loopback interface)")
    return addr


def parse_connect(buf: bytes, family: int, *, v6only: bool) -> Addr | None:
    """connect(2)'s address (tcp_v4_connect, tcp_v6_connect, ip4/ip6_datagram_connect).
    None: AF_UNSPEC, which dissolves the association. A v4 destination of a v6 socket comes
    back v4-mapped; INADDR_ANY and :: mean the loopback (a BSD custom Linux keeps)."""
    fam = _family(buf)
    if fam == AF_UNSPEC:
        return None
    if family == AF_INET:
        if len(buf) < SOCKADDR_IN_LEN:
            raise SyscallError(E.EINVAL, f"sockaddr_in of {len(buf)} bytes")
        if fam != AF_INET:
            raise SyscallError(E.EAFNOSUPPORT, f"address family {fam} on an AF_INET socket")
        addr = _in(buf)
        return Addr(AF_INET, LOOPBACK4, addr.port) if addr.ip == ANY4 else addr
    if len(buf) < SIN6_LEN_RFC2133:
        raise SyscallError(E.EINVAL, f"sockaddr_in6 of {len(buf)} bytes")
    if fam != AF_INET6:
        raise SyscallError(E.EAFNOSUPPORT, f"address family {fam} on an AF_INET6 socket")
    addr = _in6(buf)
    if addr.ip == ANY6:
        return Addr(AF_INET6, LOOPBACK6, addr.port, addr.flowinfo, addr.scope_id)
    if addr.ip.startswith(MAPPED_PREFIX):
        if v6only:
            raise SyscallError(E.ENETUNREACH, "a v4-mapped destination on an IPV6_V6ONLY socket")
        if addr.ip[12:] == ANY4:
            return Addr(AF_INET6, mapped(LOOPBACK4), addr.port)
    return addr


def parse_sendto(buf: bytes, family: int, *, v6only: bool) -> Addr | None:
    """sendto(2)'s destination on a datagram socket (udp_sendmsg, udpv6_sendmsg). None:
    AF_UNSPEC on a v6 socket, as if no address had been given."""
    if family == AF_INET:
        if len(buf) < SOCKADDR_IN_LEN:
            raise SyscallError(E.EINVAL, f"sockaddr_in of {len(buf)} bytes")
        fam = _family(buf)
        if fam not in (AF_INET, AF_UNSPEC):
            raise SyscallError(E.EAFNOSUPPORT, f"address family {fam} on an AF_INET socket")
        addr = _in(buf)
    else:
        fam = _family(buf)
        if fam == AF_INET:  # a v6 socket sends to a plain sockaddr_in (udpv6_sendmsg)
            if v6only:
                raise SyscallError(E.ENETUNREACH, "an IPv4 destination on an IPV6_V6ONLY socket")
            if len(buf) < SOCKADDR_IN_LEN:
                raise SyscallError(E.EINVAL, f"sockaddr_in of {len(buf)} bytes")
            a = _in(buf)
            addr = Addr(AF_INET6, mapped(a.ip), a.port)
        elif fam == AF_UNSPEC:
            return None
        elif fam != AF_INET6:
            raise SyscallError(E.EINVAL, f"address family {fam} on an AF_INET6 socket")
        else:
            if len(buf) < SIN6_LEN_RFC2133:
                raise SyscallError(E.EINVAL, f"sockaddr_in6 of {len(buf)} bytes")
            addr = _in6(buf)
            if addr.ip.startswith(MAPPED_PREFIX) and v6only:
                raise SyscallError(E.ENETUNREACH, "a v4-mapped destination on an IPV6_V6ONLY "
                                   "socket")
    if addr.port == 0:
        raise SyscallError(E.EINVAL, "destination port 0")
    if addr.is_any():
        ip = LOOPBACK4 if family == AF_INET else (
            mapped(LOOPBACK4) if addr.ip.startswith(MAPPED_PREFIX) else LOOPBACK6)
        addr = Addr(family, ip, addr.port)
    return addr


def wildcard(family: int, port: int = 0) -> Addr:
    return Addr(family, ANY4 if family == AF_INET else ANY6, port)


def loopback_for(family: int, dest: Addr | None = None) -> Addr:
    """The source address a connect or send from an unbound socket takes: Linux routes
    127.x.y.z out of lo with the source 127.0.0.1 and ::1 with ::1."""
    if family == AF_INET:
        return Addr(AF_INET, LOOPBACK4, 0)
    if dest is not None and dest.ip.startswith(MAPPED_PREFIX):
        return Addr(AF_INET6, mapped(LOOPBACK4), 0)
    return Addr(AF_INET6, LOOPBACK6, 0)
