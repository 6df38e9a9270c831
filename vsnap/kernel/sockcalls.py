"""The socket system calls: socket, socketpair, bind, listen, accept, accept4, connect,
shutdown, getsockname, getpeername, sendto, recvfrom, sendmsg, recvmsg.

Handlers read and check arguments in Linux's order (net/socket.c), find the family by the
socket's domain (FAMILIES: AF_UNIX in kernel/unixaddr.py) and leave the bytes to
kernel/sockfile.py and vsnap/sockets.py. Every socket is a kernel object of vsnap's one host
process, never a host socket. setsockopt/getsockopt are in kernel/sockopts.py.
"""
from __future__ import annotations

import struct

from ..abi import consts as C
from ..abi import errno as E
from ..abi import syscalls
from ..errors import SyscallError
from ..fdtable import OpenFile
from ..sockets import WouldBlock, release_files
from . import scm, unixaddr  # noqa: F401  (unixaddr registers AF_UNIX)
from .fsutil import s32
from .registry import syscall
from .sigframe import RESTARTABLE
from .sockfile import (FAMILIES, MSG_CMSG_CLOEXEC, SocketFile, cred_of, park, receive, send,
                       socket_of)

SOCK_NONBLOCK, SOCK_CLOEXEC = C.O_NONBLOCK, C.O_CLOEXEC
SOCK_TYPE_MASK = 0xF
AF_MAX = 46
SOCKADDR_MAX = 128              # sizeof(struct sockaddr_storage)
MSGHDR = 56
IOV_MAX = 1024

# SA_RESTART restarts these after a handler (ERESTARTSYS) unless the socket has a timeout
# (sockfile.park marks those waits not to restart)
RESTARTABLE.update(syscalls.NUMBERS[n] for n in (
    "accept", "accept4", "connect", "sendto", "recvfrom", "sendmsg", "recvmsg"))


def new_file(p, sock, flags: int) -> OpenFile:
    """An open file description of `sock` (sock_alloc_file): O_RDWR, and O_NONBLOCK from
    SOCK_NONBLOCK; the inode number from the system's counter."""
    sock.ino, sock.book = p.sys.next_pipe_ino, p.sys.locks
    p.sys.next_pipe_ino += 1
    return OpenFile("socket", f"socket:[{sock.ino}]", C.O_RDWR | (flags & C.O_NONBLOCK),
                    ops=SocketFile(sock, p.task.uid, p.task.gid, p.sys.clock.realtime_ns))


def _install(p, files, flags: int) -> list[int]:
    fds = []
    try:
        for f in files:
            fds.append(p.fds.install(f, cloexec=bool(flags & SOCK_CLOEXEC)))
    except SyscallError:
        for fd in fds:
            p.fds.close(fd)
        for f in files:
            if f.refs == 0:
                f.close()
        raise
    return fds


def _type_flags(type_: int) -> tuple[int, int]:
    type_ &= 0xFFFFFFFF
    if type_ & ~(SOCK_TYPE_MASK | SOCK_NONBLOCK | SOCK_CLOEXEC):
        raise SyscallError(E.EINVAL, f"socket type flags {type_:#x}")
    return type_ & SOCK_TYPE_MASK, type_ & (SOCK_NONBLOCK | SOCK_CLOEXEC)


def _family(domain: int):
    domain = s32(domain)
    if not 0 <= domain < AF_MAX:
        raise SyscallError(E.EAFNOSUPPORT, f"address family {domain}")
    family = FAMILIES.get(domain)
    if family is None:
        raise SyscallError(E.EAFNOSUPPORT, f"address family {domain} is not implemented")
    return family


def read_addr(p, addr: int, length: int) -> bytes:
    """move_addr_to_kernel: EINVAL for a length above sockaddr_storage or negative."""
    length = s32(length)
    if length < 0 or length > SOCKADDR_MAX:
        raise SyscallError(E.EINVAL, f"address length {length}")
    return p.read(addr, length) if length else b""


def write_addr(p, raw: bytes, addr: int, lenp: int) -> None:
    """move_addr_to_user: as much of the address as the guest's length allows, and the full
    length into *lenp (EINVAL for a negative length)."""
    if not addr:
        return
    (room,) = struct.unpack("<i", p.read(lenp, 4))
    if room < 0:
        raise SyscallError(E.EINVAL, "negative address length")
    if room:
        p.write(addr, raw[:room])
    p.write(lenp, struct.pack("<i", len(raw)))


@syscall("socket", "int hex int")
def sys_socket(p, domain, type_, protocol):
    """int socket(int domain, int type, int protocol);"""
    kind, flags = _type_flags(type_)
    family = _family(domain)
    sock = family.create(p, kind, s32(protocol), cred_of(p))
    return _install(p, [new_file(p, sock, flags)], flags)[0]


@syscall("socketpair", "int hex int ptr")
def sys_socketpair(p, domain, type_, protocol, sv):
    """int socketpair(int domain, int type, int protocol, int sv[2]);"""
    kind, flags = _type_flags(type_)
    # __sys_socketpair reserves both descriptors and writes them before it makes the
    # sockets: a failure after that leaves their (freed again) numbers in sv
    first = p.fds.lowest_free(0)
    second = p.fds.lowest_free(first + 1)
    p.write(sv, struct.pack("<ii", first, second))
    family = _family(domain)
    if not hasattr(family, "pair"):
        if not hasattr(family, "create"):
            raise SyscallError(E.EAFNOSUPPORT, "socketpair")
        family.create(p, kind, s32(protocol), cred_of(p))  # its EPROTONOSUPPORT first
        raise SyscallError(E.EOPNOTSUPP, f"{family.name} has no socketpair")
    a, b = family.pair(p, kind, s32(protocol), cred_of(p))
    files = [new_file(p, a, flags), new_file(p, b, flags)]
    fds = _install(p, files, flags)
    assert fds == [first, second], "socketpair's descriptors moved"
    return 0


@syscall("bind", "fd ptr int")
def sys_bind(p, fd, addr, addrlen):
    """int bind(int sockfd, const struct sockaddr *addr, socklen_t addrlen);"""
    _, sock = socket_of(p, s32(fd))
    raw = read_addr(p, addr, addrlen)
    family = sock.family
    family.bind(p, sock, family.parse(p, raw, for_bind=True))
    return 0


@syscall("listen", "fd int")
def sys_listen(p, fd, backlog):
    """int listen(int sockfd, int backlog);"""
    _, sock = socket_of(p, s32(fd))
    backlog = s32(backlog)
    if hasattr(sock.family, "listen"):  # AF_INET: autobind, ports (kernel/inetfamily.py)
        sock.family.listen(p, sock, backlog if backlog >= 0 else -1)
        return 0
    if not sock.stream:
        raise SyscallError(E.EOPNOTSUPP, "listen on a datagram socket")
    sock.family.listening(p, sock)      # AF_UNIX: bound or EINVAL; TCP would pick a port
    if sock.state not in ("unconnected", "listening"):
        raise SyscallError(E.EINVAL, "listen on a connected socket")
    sock.listen(backlog if backlog >= 0 else -1)
    # init_peercred: who listens is the peer of who connects, and its own SO_PEERCRED
    sock.cred = sock.peercred = cred_of(p)
    return 0


@syscall("accept", "fd ptr ptr")
def sys_accept(p, fd, addr, addrlen):
    """int accept(int sockfd, struct sockaddr *addr, socklen_t *addrlen);"""
    return sys_accept4(p, fd, addr, addrlen, 0)


@syscall("accept4", "fd ptr ptr hex")
def sys_accept4(p, fd, addr, addrlen, flags):
    """int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);"""
    flags &= 0xFFFFFFFF
    if flags & ~(SOCK_CLOEXEC | SOCK_NONBLOCK):
        raise SyscallError(E.EINVAL, f"accept4 flags {flags:#x}")
    f, sock = socket_of(p, s32(fd))
    # do_accept takes the new descriptor before it looks at the queue: at RLIMIT_NOFILE
    # the call fails with EMFILE and the connection stays queued for a later accept
    p.fds.lowest_free()
    if not sock.stream:
        raise SyscallError(E.EOPNOTSUPP, "accept on a datagram socket")
    if sock.state != "listening":
        raise SyscallError(E.EINVAL, "accept on a socket that does not listen")
    pending = getattr(sock, "pending", lambda: bool(sock.queue))  # AF_INET: host clients too
    if not pending():
        if f.flags & C.O_NONBLOCK:
            raise SyscallError(E.EAGAIN, "no connection waits")
        if sock.shutdown & 1:            # unix_accept: "this means receive shutdown"
            raise SyscallError(E.EINVAL, "accept on a listener shut for receiving")
        st = p.remember({"done": 0, "end": None})
        return park(p, "accept on a socket", lambda: pending() or bool(sock.shutdown & 1),
                     st, sock.opts.get("rcvtimeo"), 0)
    new = sock.queue[0]
    if addr:
        write_addr(p, sock.family.sockaddr(_peer_name(new, accepting=True)), addr, addrlen)
    sock.queue.popleft()
    return _install(p, [new_file(p, new, flags)], flags)[0]


@syscall("connect", "fd ptr int")
def sys_connect(p, fd, addr, addrlen):
    """int connect(int sockfd, const struct sockaddr *addr, socklen_t addrlen);"""
    f, sock = socket_of(p, s32(fd))
    raw = read_addr(p, addr, addrlen)
    family = sock.family
    if hasattr(family, "connect"):       # a family whose connect is its own (TCP's states)
        return family.connect(p, f, sock, raw)
    if not sock.stream:
        if len(raw) >= 2 and int.from_bytes(raw[:2], "little") == 0:   # AF_UNSPEC
            sock.peer, sock.state = None, "unconnected"
            return 0
        other = family.find(p, sock, family.parse(p, raw))
        if sock.opts.get("passcred") and sock.addr is None:
            family.autobind(p, sock)
        if other.peer is not None and other.peer is not sock and not other.peer.dead \
                and other is not sock:
            raise SyscallError(E.EPERM, "that socket is connected to another")
        sock.peer, sock.state = other, "connected"
        return 0
    name = family.parse(p, raw)
    if sock.opts.get("passcred") and sock.addr is None:
        family.autobind(p, sock)
    other = family.find(p, sock, name)
    if other.state != "listening" or other.shutdown & 1:
        raise SyscallError(E.ECONNREFUSED, "no one listens there")
    if other.backlog_full() and sock.state == "connected" and (
            f.flags & C.O_NONBLOCK or sock.opts.get("sndtimeo")):
        # unix_stream_connect looks at the backlog before at this socket's own state
        raise SyscallError(E.EAGAIN, "the listener's backlog is full")
    if sock.state == "connected":
        raise SyscallError(E.EISCONN, "socket is already connected")
    if sock.state != "unconnected":
        raise SyscallError(E.EINVAL, "connect on a listening socket")
    try:
        other.request(sock, nonblock=bool(f.flags & C.O_NONBLOCK))
    except WouldBlock:
        st = p.remember({"done": 0, "end": None})
        return park(p, "connect on a socket", lambda: other.dead or not other.backlog_full(),
                     st, sock.opts.get("sndtimeo"), 0)
    return 0


@syscall("shutdown", "fd int")
def sys_shutdown(p, fd, how):
    """int shutdown(int sockfd, int how);"""
    _, sock = socket_of(p, s32(fd))
    how = s32(how)
    if not 0 <= how <= 2:
        raise SyscallError(E.EINVAL, f"shutdown how {how}")
    sock.shut(how)
    return 0


@syscall("getsockname", "fd ptr ptr")
def sys_getsockname(p, fd, addr, addrlen):
    """int getsockname(int sockfd, struct sockaddr *addr, socklen_t *addrlen);"""
    _, sock = socket_of(p, s32(fd))
    write_addr(p, sock.family.sockaddr(sock.addr), addr, addrlen)
    return 0


@syscall("getpeername", "fd ptr ptr")
def sys_getpeername(p, fd, addr, addrlen):
    """int getpeername(int sockfd, struct sockaddr *addr, socklen_t *addrlen);"""
    _, sock = socket_of(p, s32(fd))
    write_addr(p, sock.family.sockaddr(_peer_name(sock)), addr, addrlen)
    return 0


def _peer_name(sock, accepting: bool = False):
    """The peer's name as this socket's family gives it (AF_INET: the peer seen from here,
    v4-mapped for a v6 socket; it may be a host socket). ENOTCONN when there is none; accept
    names the peer even of a connection already reset (inet_getname with peer == 2)."""
    if hasattr(sock.family, "peer_name"):
        name = sock.family.peer_name(sock, accepting)
        if name is None:
            raise SyscallError(E.ENOTCONN, "socket is not connected")
        return name
    if sock.peer is None:
        if accepting:
            return None
        raise SyscallError(E.ENOTCONN, "socket is not connected")
    return sock.peer.addr


def _dest(sock, p, raw: bytes):
    """A send's address: None without one; on a stream only its presence matters."""
    if not raw:
        return None
    return raw if sock.stream else sock.family.parse(p, raw)


@syscall("sendto", "fd buf size hex ptr int")
def sys_sendto(p, fd, buf, length, flags, addr, addrlen):
    """ssize_t sendto(int sockfd, const void *buf, size_t len, int flags,
                      const struct sockaddr *dest_addr, socklen_t addrlen);"""
    f, sock = socket_of(p, s32(fd))
    length = min(length, 0x7FFFFFFF)
    data = p.read(buf, length) if length else b""
    raw = read_addr(p, addr, addrlen) if addr else b""
    return send(p, f, data, flags & 0xFFFFFFFF, dest=_dest(sock, p, raw))


@syscall("recvfrom", "fd ptr size hex ptr ptr")
def sys_recvfrom(p, fd, buf, length, flags, addr, addrlen):
    """ssize_t recvfrom(int sockfd, void *buf, size_t len, int flags,
                        struct sockaddr *src_addr, socklen_t *addrlen);"""
    f, sock = socket_of(p, s32(fd))
    length = min(length, 0x7FFFFFFF)
    got = receive(p, f, length, flags & 0xFFFFFFFF,
                  lambda off, data: p.write(buf + off, data))
    release_files(got.fds, p.sys.locks)
    if addr:
        write_addr(p, _from(sock, got), addr, addrlen)
    return got.count


def _from(sock, got) -> bytes:
    """The sender's address as recvfrom/recvmsg give it: nothing (length 0) from an
    unbound sender (unix_copy_addr leaves msg_namelen at 0)."""
    addr = sock.family.source_name(sock, got) if hasattr(sock.family, "source_name") \
        else got.addr
    if addr is None:
        return b""
    return sock.family.sockaddr(addr)


def _iovecs(p, iov: int, count: int) -> list[tuple[int, int]]:
    if count > IOV_MAX:
        raise SyscallError(E.EMSGSIZE, f"{count} iovecs")
    raw = p.read(iov, 16 * count) if count else b""
    out = [struct.unpack_from("<QQ", raw, 16 * i) for i in range(count)]
    if any(n > 0x7FFFFFFFFFFFFFFF for _, n in out):
        raise SyscallError(E.EINVAL, "iovec length")
    return out


def _msghdr(p, msg: int):
    raw = p.read(msg, MSGHDR)
    name, namelen, iov, iovlen, control, controllen, mflags = struct.unpack(
        "<QI4xQQQQi4x", raw)
    return name, namelen, iov, iovlen, control, controllen, mflags


@syscall("sendmsg", "fd ptr hex")
def sys_sendmsg(p, fd, msg, flags):
    """ssize_t sendmsg(int sockfd, const struct msghdr *msg, int flags);"""
    f, sock = socket_of(p, s32(fd))
    name, namelen, iov, iovlen, control, controllen, _ = _msghdr(p, msg)
    raw = read_addr(p, name, namelen) if name else b""
    iovs = _iovecs(p, iov, iovlen)
    if controllen > scm.MAX_CONTROL:
        raise SyscallError(E.ENOBUFS, "control buffer too large")
    files, cred = scm.parse(p, p.read(control, controllen) if controllen >= scm.CMSG_HDR
                            else b"")
    data = b"".join(p.read(base, n) for base, n in iovs if n)
    return send(p, f, data, flags & 0xFFFFFFFF, fds=files or None, cred=cred,
                dest=_dest(sock, p, raw))


@syscall("recvmsg", "fd ptr hex")
def sys_recvmsg(p, fd, msg, flags):
    """ssize_t recvmsg(int sockfd, struct msghdr *msg, int flags);"""
    f, sock = socket_of(p, s32(fd))
    flags &= 0xFFFFFFFF
    name, namelen, iov, iovlen, control, controllen, _ = _msghdr(p, msg)
    if s32(namelen) < 0:
        raise SyscallError(E.EINVAL, "negative msg_namelen")
    iovs = _iovecs(p, iov, iovlen)
    total = min(sum(n for _, n in iovs), 0x7FFFFFFF)

    def put(offset: int, data: bytes) -> None:
        at = 0
        for base, n in iovs:
            if offset < at + n and data:
                start = offset - at
                piece = data[:n - start]
                p.write(base + start, piece)
                data = data[len(piece):]
                offset += len(piece)
            at += n
    got = receive(p, f, total, flags, put)
    out = scm.ControlOut(controllen if control else 0)
    if sock.opts.get("passcred"):       # scm_recv: even for no message ({0, 0, 0})
        out.put(scm.SOL_SOCKET, scm.SCM_CREDENTIALS, struct.pack("<iII", *(got.cred or (
            0, 0, 0))))
    if got.fds:
        out.rights(p, got.fds, bool(flags & MSG_CMSG_CLOEXEC))
    if out.out:
        p.write(control, bytes(out.out))
    src = _from(sock, got) if name else b""
    if name and src:
        p.write(name, src[:s32(namelen)])
    p.write(msg + 8, struct.pack("<I", len(src) if name else 0))
    p.write(msg + 40, struct.pack("<Q", len(out.out)))
    # ____sys_recvmsg starts msg_flags with the call's MSG_CMSG_CLOEXEC
    p.write(msg + 48, struct.pack("<i", got.flags | out.flags | (flags & MSG_CMSG_CLOEXEC)))
    return got.count

