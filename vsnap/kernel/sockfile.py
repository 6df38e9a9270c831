"""A socket as an open file description's operations (OpenFile.ops, kind "socket"), and the
moving of bytes that read/write and the send/recv calls share: waiting (errors.Blocked, on
the virtual clock for SO_RCVTIMEO/SO_SNDTIMEO), SIGPIPE, MSG_DONTWAIT and MSG_WAITALL.

The socket itself is a vsnap/sockets.py Socket; its inode (fstat: S_IFSOCK on sockfs, and
/proc/self/fd's "socket:[INO]") takes its number from the counter pipes use, as Linux's
sockfs and pipefs both take get_next_ino(): the same numbers in every run.

A call that moved some bytes and must wait keeps its progress in the process's memo
(Process.remember: the same dict when the parked call runs again), so nothing moves twice;
a signal then ends it with the count moved, or EINTR (restarted under SA_RESTART unless the
socket has a timeout, as sock_intr_errno).
"""
from __future__ import annotations

import struct

from .. import signals as SIG
from ..abi import consts as C
from ..abi import errno as E
from ..errors import Blocked, SyscallError
from ..sockets import (SEND_SHUTDOWN, SOCK_SEQPACKET, SOCK_STREAM, BrokenPipe, WouldBlock,
                       release_files)

SOCK_DEV = 0x8          # sockfs: an anonymous device of its own (0:8 on a typical Linux)
SOCKFS_MAGIC = 0x534F434B
SIGPIPE = 13
MODE = 0o140777         # S_IFSOCK | rwxrwxrwx, as sock_alloc makes it
SIOCINQ, SIOCOUTQ = 0x541B, 0x5411     # FIONREAD and TIOCOUTQ
MSG_OOB, MSG_PEEK, MSG_CTRUNC, MSG_TRUNC = 0x1, 0x2, 0x8, 0x20
MSG_DONTWAIT, MSG_EOR, MSG_WAITALL, MSG_NOSIGNAL = 0x40, 0x80, 0x100, 0x4000
MSG_CMSG_CLOEXEC = 0x40000000
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032


# AF_ number -> family object (kernel/unixaddr.py's docstring lists what one provides);
# each family's module calls register() when imported (kernel/sockcalls.py imports them)
FAMILIES: dict[int, object] = {}


def register(family) -> None:
    """Make a family known to socket(2) by its AF_ number."""
    FAMILIES[family.number] = family


class SocketFile:
    """The operations of one open file description of a socket."""

    seekable = False

    def __init__(self, sock, uid: int, gid: int, born_ns: int):
        self.sock, self.uid, self.gid, self.born_ns = sock, uid, gid, born_ns

    def release(self, f) -> None:
        self.sock.release()

    def read(self, p, f, count: int) -> bytes:
        """read(2) is recv(fd, buf, count, 0); descriptors sent with the bytes are lost (no
        room for them: Linux closes them)."""
        out = bytearray()

        def put(offset: int, data: bytes) -> None:
            out[offset:offset + len(data)] = data
        got = receive(p, f, count, 0, put)
        release_files(got.fds, p.sys.locks)
        return bytes(out[:got.count])

    def write(self, p, f, data: bytes) -> int:
        return send(p, f, data, 0)

    def stat(self, p, f) -> dict:
        return dict(dev=SOCK_DEV, ino=self.sock.ino, nlink=1, mode=MODE, uid=self.uid,
                    gid=self.gid, rdev=0, size=0, blksize=4096, blocks=0,
                    atime_ns=self.born_ns, mtime_ns=self.born_ns, ctime_ns=self.born_ns)

    def chmod(self, p, f, mode: int) -> int:
        raise SyscallError(E.EOPNOTSUPP, "fchmod of a socket is not kept by vsnap")

    def set_times(self, p, f, atime_ns: int, mtime_ns: int, explicit: bool) -> None:
        raise SyscallError(E.EOPNOTSUPP, "futimens of a socket is not kept by vsnap")

    def statfs_magic(self) -> int:
        return SOCKFS_MAGIC

    def reopen(self, p, f, flags: int, status: int):
        raise SyscallError(E.ENXIO, "a socket cannot be opened through /proc/self/fd")

    def target(self, p, f) -> str:
        return f"socket:[{self.sock.ino}]"

    def poll(self, p, f) -> int:
        return self.sock.poll()

    def wait_queues(self, f) -> list:
        """What an epoll item on it listens on (kernel/epoll.py): the socket's sk_wq."""
        return [self.sock.wq]

    def fdinfo(self, p, f) -> str:
        """unix_show_fdinfo's line: descriptors waiting in the receive queue (a listener:
        in its embryos' queues)."""
        return f"scm_fds: {self.sock.fds_queued()}\n"

    def fcntl(self, p, f, cmd: int, arg: int) -> int | None:
        """The commands every file shares (None), but a pipe's size (pipe_fcntl: EBADF)."""
        if cmd in (F_SETPIPE_SZ, F_GETPIPE_SZ):
            raise SyscallError(E.EBADF, "a socket is not a pipe")
        return None

    def ioctl(self, p, f, request: int, argp: int) -> int:
        if request == SIOCINQ:
            value = self.sock.inq()
        elif request == SIOCOUTQ:
            if self.sock.state == "listening":
                raise SyscallError(E.EINVAL, "SIOCOUTQ on a listening socket")
            value = self.sock.wmem
        else:
            raise SyscallError(E.ENOTTY, f"ioctl {request:#x} on a socket")
        p.write(argp, struct.pack("<i", value))
        return 0


def socket_of(p, fd: int):
    """The Socket at `fd`: EBADF if no open file, ENOTSOCK if not a socket."""
    f = p.fds.get(fd)
    if f.kind != "socket":
        raise SyscallError(E.ENOTSOCK, f"fd {fd} is not a socket")
    return f, f.ops.sock


def cred_of(p) -> tuple[int, int, int]:
    return (p.task.pid, p.task.uid, p.task.gid)


# -- waiting ------------------------------------------------------------------------------------

def park(p, what: str, cond, st: dict, timeo_ns, done: int):
    """Park until cond() (or the socket's timeout, then EAGAIN or the count moved)."""
    clock = p.sys.clock
    if timeo_ns:
        if st["end"] is None:
            st["end"] = clock.monotonic_ns + timeo_ns
        if clock.monotonic_ns >= st["end"]:
            if done:
                return done
            raise SyscallError(E.EAGAIN, f"{what}: timed out")
    end = st["end"]
    ready = cond if end is None else (lambda: cond() or clock.monotonic_ns >= end)
    b = Blocked(what, ready, deadline=end,
                on_interrupt=lambda: done if done else -E.EINTR)
    b.restart = not timeo_ns        # sock_intr_errno: a timeout means EINTR, no restart
    raise b


def _nonblock(f, flags: int) -> bool:
    return bool(f.flags & C.O_NONBLOCK or flags & MSG_DONTWAIT)


def _sigpipe(p, flags: int) -> None:
    if not flags & MSG_NOSIGNAL:
        p.signals.post(SIG.SigInfo(SIGPIPE, SIG.SI_USER, pid=p.task.pid, uid=p.task.uid))


# -- sending -----------------------------------------------------------------------------------

def send(p, f, data: bytes, flags: int, fds=None, cred=None, dest=None) -> int:
    """sendmsg's work once its arguments are read: all of `data` on a stream (waiting for
    room as often as needed, unless non-blocking), one datagram otherwise. `fds` are the
    descriptions to send (not yet held), `cred` the SCM_CREDENTIALS (checked), `dest` a
    parsed address of the socket's family."""
    sock = f.ops.sock
    if flags & MSG_OOB:
        p.sys.refuse("MSG_OOB", "vsnap: MSG_OOB (out-of-band data) on sockets is not "
                     "implemented: EOPNOTSUPP")
        raise SyscallError(E.EOPNOTSUPP, "MSG_OOB")
    cred = cred or cred_of(p)
    nonblock = _nonblock(f, flags)
    st = p.remember({"done": 0, "end": None})
    if sock.type == SOCK_SEQPACKET:
        # unix_seqpacket_sendmsg: connected or ENOTCONN, any address ignored, then a datagram
        if sock.state != "connected":
            raise SyscallError(E.ENOTCONN, "socket is not connected")
        return _deliver(p, sock, sock.peer, data, cred, fds, nonblock, st)
    if not sock.stream:
        return _send_dgram(p, f, sock, data, flags, fds, cred, dest, nonblock, st)
    if dest is not None and not getattr(sock.family, "ignores_stream_dest", False):
        raise SyscallError(E.EISCONN if sock.state == "connected" else E.EOPNOTSUPP,
                           "an address on a stream send")
    done = st["done"]
    while True:
        try:
            n = sock.stream_send(data[done:], cred, fds if done == 0 else None)
        except WouldBlock:
            if nonblock:
                if done:
                    return done
                raise SyscallError(E.EAGAIN, "socket send buffer is full") from None
            return park(p, "send on a socket", sock.send_ready, st,
                         sock.opts.get("sndtimeo"), done)
        except BrokenPipe:
            if done:
                return done
            _sigpipe(p, flags)
            raise SyscallError(E.EPIPE, "the connection's other end is shut") from None
        except SyscallError:
            if done:
                return done
            raise
        done += n
        st["done"] = done
        if done >= len(data):
            return done


def _send_dgram(p, f, sock, data, flags, fds, cred, dest, nonblock, st) -> int:
    family = sock.family
    if hasattr(family, "send_dgram"):  # AF_INET: UDP (kernel/inetfamily.py)
        return family.send_dgram(p, sock, data, dest, nonblock)
    if dest is None:
        target = sock.peer
        if target is None:
            raise SyscallError(E.ENOTCONN, "datagram socket has no peer")
        if target.dead:
            sock.peer = None
            sock.state = "unconnected"
            raise SyscallError(E.ECONNREFUSED, "the peer is gone")
    else:
        target = family.find(p, sock, dest)
    family.sending(p, sock)           # AF_UNIX: autobind with SO_PASSCRED; UDP: always
    return _deliver(p, sock, target, data, cred, fds, nonblock, st)


def _deliver(p, sock, target, data, cred, fds, nonblock, st) -> int:
    """One datagram (or SOCK_SEQPACKET record) into `target`'s queue, waiting for room.
    unix_dgram_sendmsg sends no SIGPIPE with its EPIPE."""
    try:
        return sock.dgram_deliver(target, data, cred, fds, nonblock)
    except WouldBlock:
        return park(p, "send on a socket", lambda: target.dead or bool(
            sock.shutdown & SEND_SHUTDOWN) or bool(sock.err) or sock.writable_to(target),
            st, sock.opts.get("sndtimeo"), 0)
    except BrokenPipe:
        raise SyscallError(E.EPIPE, "the socket is shut") from None


# -- receiving ---------------------------------------------------------------------------------

class Received:
    """What one receive got: the count put, the message's full length (datagrams), the
    descriptions that came (held), the sender's credentials and address, flags to report."""

    __slots__ = ("count", "full", "fds", "cred", "addr", "flags")

    def __init__(self, count=0, full=0, fds=None, cred=None, addr=None, flags=0):
        self.count, self.full, self.fds, self.cred = count, full, fds, cred
        self.addr, self.flags = addr, flags


def receive(p, f, n: int, flags: int, put) -> Received:
    """recvmsg's work: bytes go out through put(offset, data) as they are taken (so a
    waiting MSG_WAITALL read keeps what it has). A stream read takes what waits (at least
    one byte, or all `n` with MSG_WAITALL); a datagram read takes one message."""
    sock = f.ops.sock
    if flags & MSG_OOB:
        p.sys.refuse("MSG_OOB", "vsnap: MSG_OOB (out-of-band data) on sockets is not "
                     "implemented: EOPNOTSUPP")
        raise SyscallError(E.EOPNOTSUPP, "MSG_OOB")
    nonblock = _nonblock(f, flags)
    peek = bool(flags & MSG_PEEK)
    st = p.remember({"done": 0, "end": None, "cred": None, "addr": None})
    timeo = sock.opts.get("rcvtimeo")
    if sock.type == SOCK_SEQPACKET and sock.state != "connected":
        raise SyscallError(E.ENOTCONN, "socket is not connected")
    if sock.type != SOCK_STREAM:
        while True:
            try:
                data, full, fds, cred, addr = sock.dgram_recv(n, peek)
            except WouldBlock:
                if nonblock:
                    raise SyscallError(E.EAGAIN, "no datagram waits") from None
                return park(p, "recv on a socket", sock.readable, st, timeo, 0)
            put(0, data)
            got = Received(len(data), full, fds, cred, addr,
                           MSG_TRUNC if full > len(data) else 0)
            if flags & MSG_TRUNC:
                got.count = full
            return got
    passcred = bool(sock.opts.get("passcred"))
    # sock_rcvlowat: all of n with MSG_WAITALL, else SO_RCVLOWAT's bytes (1), at most n
    lowat = sock.opts.get("rcvlowat", 1)
    target = n if flags & MSG_WAITALL and not peek else max(1, min(n, lowat))
    done = st["done"]
    if n == 0 and sock.state == "connected":
        return Received()
    while True:
        try:
            data, fds, cred = sock.stream_recv(n - done, peek, passcred, st["cred"])
        except WouldBlock:
            if done >= target:
                break
            if nonblock:
                if done:
                    break
                raise SyscallError(E.EAGAIN, "nothing to read on the socket") from None
            return _wait_recv(p, sock, st, timeo, done)
        except SyscallError:
            if done:
                break
            raise
        if not data and not fds:
            break                     # end of file, or the next bytes are another sender's
        put(done, data)
        done += len(data)
        st["done"] = done
        if cred is not None:
            st["cred"] = cred
        if st["addr"] is None:
            st["addr"] = sock.peer.addr if sock.peer is not None else None
        if fds or done >= target:
            return Received(done, done, fds, st["cred"], st["addr"])
    return Received(done, done, None, st["cred"], st["addr"])


def _wait_recv(p, sock, st, timeo, done):
    result = park(p, "recv on a socket", sock.readable, st, timeo, done)
    return Received(result, result, None, st["cred"], st["addr"])
