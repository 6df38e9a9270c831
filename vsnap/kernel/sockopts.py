"""setsockopt and getsockopt: the SOL_SOCKET options (net/core/sock.c sk_setsockopt,
sk_getsockopt) kept on the socket; other levels are the family's (Family.setsockopt).

Buffer sizes are stored doubled, as Linux does (room for its bookkeeping), within
wmem_max/rmem_max and the minimums, and the send buffer limits how much a sender may have
queued (vsnap/sockets.py). Timeouts are nanoseconds of the virtual clock; 0 waits forever.
"""
from __future__ import annotations

import struct

from ..abi import errno as E
from ..errors import SyscallError
from ..sockets import SOCK_MIN_RCVBUF, SOCK_MIN_SNDBUF, SYSCTL_RMEM_MAX, SYSCTL_WMEM_MAX
from .fsutil import s32
from .registry import syscall
from .sockfile import socket_of

SOL_SOCKET = 1
SO_DEBUG, SO_REUSEADDR, SO_TYPE, SO_ERROR, SO_DONTROUTE, SO_BROADCAST = 1, 2, 3, 4, 5, 6
SO_SNDBUF, SO_RCVBUF, SO_KEEPALIVE, SO_OOBINLINE, SO_PRIORITY, SO_LINGER = 7, 8, 9, 10, 12, 13
SO_REUSEPORT, SO_PASSCRED, SO_PEERCRED, SO_RCVLOWAT, SO_SNDLOWAT = 15, 16, 17, 18, 19
SO_RCVTIMEO, SO_SNDTIMEO = 20, 21                   # the _OLD numbers: x86-64's own
SO_ACCEPTCONN, SO_SNDBUFFORCE, SO_RCVBUFFORCE = 30, 32, 33
SO_PROTOCOL, SO_DOMAIN = 38, 39
SO_RCVTIMEO_NEW, SO_SNDTIMEO_NEW = 66, 67
# flags kept as booleans and read back as 0/1 (sock_valbool_flag and friends)
BOOLEANS = {SO_REUSEADDR: "reuseaddr", SO_KEEPALIVE: "keepalive", SO_PASSCRED: "passcred",
            SO_DONTROUTE: "dontroute", SO_BROADCAST: "broadcast", SO_OOBINLINE: "oobinline",
            SO_REUSEPORT: "reuseport"}
TIMEOUTS = {SO_RCVTIMEO: "rcvtimeo", SO_SNDTIMEO: "sndtimeo", SO_RCVTIMEO_NEW: "rcvtimeo",
            SO_SNDTIMEO_NEW: "sndtimeo"}


@syscall("setsockopt", "fd int int ptr int")
def sys_setsockopt(p, fd, level, name, optval, optlen):
    """int setsockopt(int sockfd, int level, int optname, const void *optval,
                      socklen_t optlen);"""
    _, sock = socket_of(p, s32(fd))
    level, name, optlen = s32(level), s32(name), s32(optlen)
    if optlen < 0:
        raise SyscallError(E.EINVAL, "negative optlen")
    value = p.read(optval, optlen) if optlen else b""
    if level != SOL_SOCKET:
        sock.family.setsockopt(p, sock, level, name, value)
        return 0
    if name in TIMEOUTS:
        if len(value) < 16:
            raise SyscallError(E.EINVAL, "a timeval is 16 bytes")
        sec, usec = struct.unpack_from("<qq", value)
        if not 0 <= usec < 1000000:
            raise SyscallError(E.EDOM, f"tv_usec {usec}")
        # a negative time is "no wait at all" in Linux (it warns); 0 is "forever"
        sock.opts[TIMEOUTS[name]] = 1 if sec < 0 else (sec * 10**9 + usec * 1000) or None
        return 0
    if name == SO_LINGER:
        if len(value) < 8:
            raise SyscallError(E.EINVAL, "struct linger is 8 bytes")
        onoff, secs = struct.unpack_from("<ii", value)
        old = sock.opts.get("linger", (0, 0))
        sock.opts["linger"] = (1, max(secs, 0)) if onoff else (0, old[1])
        return 0
    if len(value) < 4:
        raise SyscallError(E.EINVAL, "an int option is 4 bytes")
    (val,) = struct.unpack_from("<i", value)
    if name in BOOLEANS:
        sock.opts[BOOLEANS[name]] = val != 0
    elif name in (SO_SNDBUF, SO_SNDBUFFORCE):
        if name == SO_SNDBUFFORCE:
            raise SyscallError(E.EPERM, "SO_SNDBUFFORCE needs CAP_NET_ADMIN")
        sock.sndbuf = max(min(val & 0xFFFFFFFF, SYSCTL_WMEM_MAX) * 2, SOCK_MIN_SNDBUF)
    elif name in (SO_RCVBUF, SO_RCVBUFFORCE):
        if name == SO_RCVBUFFORCE:
            raise SyscallError(E.EPERM, "SO_RCVBUFFORCE needs CAP_NET_ADMIN")
        sock.rcvbuf = max(min(val & 0xFFFFFFFF, SYSCTL_RMEM_MAX) * 2, SOCK_MIN_RCVBUF)
    elif name == SO_PRIORITY:
        if not 0 <= val <= 6:
            raise SyscallError(E.EPERM, "priorities above 6 need CAP_NET_ADMIN")
        sock.opts["priority"] = val
    elif name == SO_RCVLOWAT:
        # a stream read waits for this many bytes (sock_rcvlowat); 0 is 1, negative INT_MAX
        sock.opts["rcvlowat"] = (val or 1) if val >= 0 else 0x7FFFFFFF
    elif name == SO_DEBUG:
        if val:
            raise SyscallError(E.EACCES, "SO_DEBUG needs CAP_NET_ADMIN")
        sock.opts["debug"] = False
    elif name in (SO_TYPE, SO_ERROR, SO_PROTOCOL, SO_DOMAIN, SO_ACCEPTCONN, SO_PEERCRED,
                  SO_SNDLOWAT):
        raise SyscallError(E.ENOPROTOOPT, f"option {name} is read-only")
    else:
        p.sys.refuse(f"setsockopt({name})", f"vsnap: setsockopt SOL_SOCKET option {name} "
                     f"is not implemented: ENOPROTOOPT")
        raise SyscallError(E.ENOPROTOOPT, f"SOL_SOCKET option {name}")
    return 0


@syscall("getsockopt", "fd int int ptr ptr")
def sys_getsockopt(p, fd, level, name, optval, optlen):
    """int getsockopt(int sockfd, int level, int optname, void *optval, socklen_t *optlen);"""
    _, sock = socket_of(p, s32(fd))
    level, name = s32(level), s32(name)
    (length,) = struct.unpack("<i", p.read(optlen, 4))
    if length < 0:
        raise SyscallError(E.EINVAL, "negative optlen")
    if level != SOL_SOCKET:
        value = sock.family.getsockopt(p, sock, level, name, length)
    else:
        value = _get(sock, name)
    value = value[:length]
    if value:
        p.write(optval, value)
    p.write(optlen, struct.pack("<i", len(value)))
    return 0


def _get(sock, name: int) -> bytes:
    def i32(v: int) -> bytes:
        return struct.pack("<i", v)
    if name in BOOLEANS:
        return i32(int(bool(sock.opts.get(BOOLEANS[name]))))
    if name in TIMEOUTS:
        ns = sock.opts.get(TIMEOUTS[name]) or 0
        return struct.pack("<qq", ns // 10**9, ns % 10**9 // 1000)
    simple = {SO_TYPE: sock.type, SO_PROTOCOL: sock.protocol, SO_DOMAIN: sock.family.number,
              SO_SNDBUF: sock.sndbuf, SO_RCVBUF: sock.rcvbuf,
              SO_ACCEPTCONN: int(sock.state == "listening"),
              SO_PRIORITY: sock.opts.get("priority", 0), SO_DEBUG: 0,
              SO_RCVLOWAT: sock.opts.get("rcvlowat", 1), SO_SNDLOWAT: 1}
    if name in simple:
        return i32(simple[name])
    if name == SO_ERROR:
        return i32(sock.take_error())
    if name == SO_LINGER:
        return struct.pack("<ii", *sock.opts.get("linger", (0, 0)))
    if name == SO_PEERCRED:
        cred = sock.peercred or (0, 0xFFFFFFFF, 0xFFFFFFFF)
        return struct.pack("<iII", *cred)
    raise SyscallError(E.ENOPROTOOPT, f"SOL_SOCKET option {name}")
