"""The options of Internet sockets below SOL_SOCKET (kernel/sockopts.py holds those): the ints
Linux keeps at IPPROTO_IP, IPPROTO_TCP and IPPROTO_IPV6, with their defaults and the values
each accepts, and IPV6_V6ONLY, which is the socket's own state. An option vsnap does not keep
is ENOPROTOOPT, said once; another protocol's level is EOPNOTSUPP, as ip_setsockopt answers.
"""
from __future__ import annotations

import struct

from ..abi import errno as E
from ..inetaddr import AF_INET, AF_INET6
from ..errors import SyscallError

IPPROTO_IP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_IPV6 = 0, 6, 17, 41
SOL_TCP, SOL_IP, SOL_IPV6 = IPPROTO_TCP, IPPROTO_IP, IPPROTO_IPV6


def _int(value: bytes) -> int:
    if len(value) < 4:
        raise SyscallError(E.EINVAL, "an int option is 4 bytes")
    return struct.unpack_from("<i", value)[0]


# level, name -> (default, check(value) -> stored value or raise); the ints Linux keeps
def _range(lo, hi, default_for=None):
    def check(v):
        if v == -1 and default_for is not None:
            return default_for
        if not lo <= v <= hi:
            raise SyscallError(E.EINVAL, f"option value {v}")
        return v
    return check


def _bool(v):
    return int(v != 0)


TCP_OPTIONS = {1: (0, _bool),                 # TCP_NODELAY
               3: (0, _bool),                 # TCP_CORK
               4: (7200, _range(1, 32767)),   # TCP_KEEPIDLE
               5: (75, _range(1, 32767)),     # TCP_KEEPINTVL
               6: (9, _range(1, 127)),        # TCP_KEEPCNT
               7: (6, _range(1, 127)),        # TCP_SYNCNT
               12: (1, _bool),                # TCP_QUICKACK
               18: (0, _range(0, 0x7FFFFFFF))}  # TCP_USER_TIMEOUT
IP_OPTIONS = {1: (0, _range(-0x80000000, 0x7FFFFFFF)),  # IP_TOS (low byte kept)
              2: (64, _range(1, 255, default_for=64)),  # IP_TTL
              33: (1, _range(0, 255, default_for=1)),   # IP_MULTICAST_TTL
              34: (1, _bool)}                           # IP_MULTICAST_LOOP
IPV6_OPTIONS = {16: (64, _range(0, 255, default_for=64)),   # IPV6_UNICAST_HOPS
                18: (1, _range(0, 255, default_for=1)),     # IPV6_MULTICAST_HOPS
                19: (1, _bool),                             # IPV6_MULTICAST_LOOP
                67: (0, _range(0, 255, default_for=0))}     # IPV6_TCLASS
IPV6_V6ONLY = 26


def _foreign_level(family, sock, level: int) -> bool:
    """An AF_INET socket asked about a level IPv4 does not serve: ip_setsockopt and
    ip_getsockopt answer EOPNOTSUPP (not a gap of vsnap's: no notice)."""
    return family.number == AF_INET and level not in (SOL_IP, SOL_TCP if sock.stream
                                                     else IPPROTO_UDP)

def _table(family, sock, level: int):
    if level == SOL_TCP and sock.stream:
        return TCP_OPTIONS
    if level == SOL_IP:
        return IP_OPTIONS
    if level == SOL_IPV6 and family.number == AF_INET6:
        return IPV6_OPTIONS
    return None

def setsockopt(family, p, sock, level, name, value: bytes) -> None:
    """setsockopt at IPPROTO_IP, IPPROTO_TCP, IPPROTO_IPV6 for an AF_INET/AF_INET6 family."""
    if level == SOL_IPV6 and family.number == AF_INET6 and name == IPV6_V6ONLY:
        v = _int(value)
        if sock.binding is not None:
            raise SyscallError(E.EINVAL, "IPV6_V6ONLY after bind")
        sock.v6only = v != 0
        return
    _, check = _option(family, p, sock, level, name, "setsockopt")
    v = check(_int(value))
    if level == SOL_IP and name == 1:
        v &= 0xFF
    if sock.stream and (level, name) in ((SOL_IP, 1), (SOL_IPV6, 67)):
        v &= ~3  # TCP keeps the ECN bits its own (do_ip_setsockopt, ipv6's tclass)
    sock.levels[(level, name)] = v

def getsockopt(family, p, sock, level, name) -> bytes:
    if level == SOL_IPV6 and family.number == AF_INET6 and name == IPV6_V6ONLY:
        return struct.pack("<i", int(sock.v6only))
    default, _ = _option(family, p, sock, level, name, "getsockopt")
    return struct.pack("<i", sock.levels.get((level, name), default))

def _option(family, p, sock, level: int, name: int, call: str) -> tuple:
    """The option's (default, check) from its level's table: EOPNOTSUPP for another
    protocol's level, ENOPROTOOPT (said once) for an option vsnap does not keep."""
    if _foreign_level(family, sock, level):
        raise SyscallError(E.EOPNOTSUPP, f"level {level} on an AF_INET socket")
    table = _table(family, sock, level)
    if table is None or name not in table:
        p.sys.refuse(f"{call}({level}, {name})", f"vsnap: {call} level {level} "
                     f"option {name} on {family.name} is not implemented: ENOPROTOOPT")
        raise SyscallError(E.ENOPROTOOPT, f"level {level} option {name}")
    return table[name]
