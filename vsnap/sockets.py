"""Sockets as kernel objects, whatever their family: what Linux's net/unix/af_unix.c keeps
for a connection, a datagram queue and a listener, all in memory.

Every guest process runs inside vsnap's one host process, so a socket between two guest
processes is never a host socket: it is a Socket whose receive queue holds Messages (Linux's
skbs). A stream sender appends to its peer's queue; a message carries the bytes of (part of)
one send, the sender's credentials, and the descriptors sent with it (SCM_RIGHTS), which
travel with those bytes: a read stops after the message that brought descriptors, and (with
credentials asked for) never joins the bytes of two senders, as unix_stream_read_generic.
A datagram socket's queue keeps each message whole, with the sender's address.

The family is not known here: a Socket's `addr` and a message's `addr` are whatever the
family's address space (kernel/unixaddr.py, later inet) uses as a name, and connecting or
sending to a name is the family's business; this module only moves bytes between sockets
already found. No process references are kept: a call that cannot go on raises WouldBlock
and the handler parks the caller until readable()/writable()/acceptable() says so.

Descriptors in flight are OpenFile references held by the message (refs + 1, as Linux's fget
in scm_fp_copy): closing the sender's last fd keeps the description alive until the message
is read or thrown away (and an epoll item on it stays, as Linux keeps it).

Each socket has one wait queue (`wq`, Linux's sk_wq; vsnap/waitq.py) that epoll items on it
listen on, woken where af_unix.c wakes it: sk_data_ready (POLLIN) when a message or a
connection is queued, unix_write_space (POLLOUT) each time one of its sent messages is
freed (read to its end or thrown away) and a quarter of its send buffer is then free,
sk_state_change (0: anything) on shutdown and on the peer's close. Linux's peer_wait relay
of a datagram receiver (unix_dgram_peer_wake_me) reaches the sender through the same
write-space wake of the message read.
"""
from __future__ import annotations

from collections import deque

from .abi import errno as E
from .errors import SyscallError
from .waitq import WaitQueue

SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET = 1, 2, 5
RCV_SHUTDOWN, SEND_SHUTDOWN = 1, 2          # include/net/sock.h
SHUTDOWN_MASK = 3
WMEM_DEFAULT = RMEM_DEFAULT = 212992        # /proc/sys/net/core/{w,r}mem_default
SOCK_MIN_SNDBUF, SOCK_MIN_RCVBUF = 4608, 2304   # 2 * (2048 + sizeof(struct sk_buff)) ...
SYSCTL_WMEM_MAX = SYSCTL_RMEM_MAX = 212992  # /proc/sys/net/core/{w,r}mem_max
SOMAXCONN = 4096                            # /proc/sys/net/core/somaxconn
MAX_DGRAM_QLEN = 10                         # /proc/sys/net/unix/max_dgram_qlen
SCM_MAX_FD = 253                            # descriptors in one SCM_RIGHTS message
# what one skb costs its sender's send buffer (its truesize), as x86-64 Linux 6.x counts it:
# the sk_buff, and a kmalloc'd head holding the bytes and skb_shared_info, plus whole pages
SKB_STRUCT, SHINFO, PAGE = 256, 320, 4096
SKB_MAX_HEAD = PAGE - SHINFO                # a head that fits one page (SKB_MAX_HEAD(0))
SKB_MAX_ALLOC = 4 * PAGE - SHINFO           # a datagram's largest head (SKB_MAX_ORDER(0, 2))
UNIX_SKB_FRAGS_SZ = 32768                   # a stream skb's page part at most
MAX_SKB_FRAGS = 17
KMALLOC_SIZES = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)

POLLIN, POLLOUT, POLLERR, POLLHUP = 0x1, 0x4, 0x8, 0x10
POLLRDNORM, POLLWRNORM, POLLWRBAND, POLLRDHUP = 0x40, 0x100, 0x200, 0x2000


def _kmalloc(n: int) -> int:
    """The bytes kmalloc(n) really takes: a slab size class, or whole pages (a power of two)."""
    for size in KMALLOC_SIZES:
        if n <= size:
            return size
    return PAGE << max(0, (n - 1) // PAGE).bit_length()


def _page_align(n: int) -> int:
    return (n + PAGE - 1) // PAGE * PAGE


def truesize(head: int, paged: int) -> int:
    """An skb with `head` bytes in its head and `paged` in pages: SKB_TRUESIZE(ksize)."""
    return SKB_STRUCT + _kmalloc(((head + 63) & ~63) + SHINFO) + _page_align(paged)


def stream_chunk(left: int, sndbuf: int) -> tuple[int, int]:
    """(bytes, truesize) of the next skb of a stream send (unix_stream_sendmsg): at most
    half the send buffer, a page head and 32 KiB of pages."""
    size = min(left, (sndbuf >> 1) - 64, SKB_MAX_HEAD + UNIX_SKB_FRAGS_SZ)
    size = max(size, 1)
    paged = min(size, _page_align(max(0, size - SKB_MAX_HEAD)))
    return size, truesize(size - paged, paged)


def dgram_truesize(size: int) -> int:
    """unix_dgram_sendmsg's skb: a head of up to SKB_MAX_ALLOC, the rest in pages."""
    paged = 0
    if size > SKB_MAX_ALLOC:
        paged = _page_align(min(size - SKB_MAX_ALLOC, MAX_SKB_FRAGS * PAGE))
    return truesize(size - paged, paged)


class WouldBlock(Exception):
    """The call cannot go on now: park the caller until the condition named holds."""


class BrokenPipe(Exception):
    """A stream write with no one to read: SIGPIPE (unless MSG_NOSIGNAL) and EPIPE."""


class Message:
    """One skb: bytes, who sent them (pid, uid, gid), the descriptions sent with them (or
    None), the sender's address (datagrams) and the socket whose send buffer it counts in."""

    __slots__ = ("data", "cred", "fds", "addr", "sender", "size")

    def __init__(self, data: bytes, cred, fds=None, addr=None, sender=None, size=0):
        self.data, self.cred, self.fds, self.addr = bytearray(data), cred, fds, addr
        self.sender, self.size = sender, size
        if sender is not None:
            sender.wmem += size

    def freed(self) -> None:
        """Read to its end (or thrown away): its sender's buffer gets its truesize back."""
        if self.sender is not None:
            sender, self.sender = self.sender, None
            sender.wmem -= self.size
            sender.write_space()  # sock_wfree -> sk_write_space

    def drop(self, book=None) -> None:
        """Thrown away unread: its descriptions lose their in-flight reference."""
        self.freed()
        fds, self.fds = self.fds, None
        release_files(fds, book)


def release_files(fds, book=None) -> None:
    """Let go of in-flight references (a message dropped, or descriptors not delivered). A
    description whose last reference this was loses its flock and OFD locks in `book` (the
    system's locks.LockBook), as the close of its last descriptor would."""
    for f in fds or ():
        f.refs -= 1
        if f.refs <= 0:
            if book is not None:
                book.drop_owner(f)
            f.close()


def hold_files(fds) -> list:
    """Take an in-flight reference on each description (scm_fp_copy's fget)."""
    for f in fds:
        f.refs += 1
    return list(fds)


class Socket:
    """One socket: its family's name for it, its peer, its receive queue (messages, or for a
    listener the embryonic connections accept() takes), shutdown bits, a pending error, and
    the options its calls read. `family` is the family object (kernel side) that owns names."""

    def __init__(self, family, type_: int, protocol: int = 0, cred=(0, 0, 0)):
        self.family, self.type, self.protocol = family, type_, protocol
        self.state = "unconnected"       # listening, connected, closed
        self.peer: Socket | None = None
        self.queue: deque = deque()
        self.shutdown = 0
        self.err = 0                     # SO_ERROR, taken by the next call that looks
        self.addr = None                 # the family's name of this socket (bound)
        self.bound = None                # the family's record of that name (to free it)
        self.backlog = 0
        self.sndbuf, self.rcvbuf = WMEM_DEFAULT, RMEM_DEFAULT
        self.wmem = 0                    # truesize of what it sent that waits (sk_wmem_alloc)
        self.cred = cred                 # (pid, uid, gid) of its creator: SO_PEERCRED's source
        self.peercred = None
        self.opts: dict = {}             # reuseaddr, keepalive, passcred, linger, timeouts...
        self.dead = False
        self.ino = 0                     # set by the kernel side (sockfs inode)
        self.book = None                 # the system's file locks, for descriptions it frees
        self.wq = WaitQueue()            # epoll items watching it (never saved: waitq.py)

    @property
    def stream(self) -> bool:
        return self.type in (SOCK_STREAM, SOCK_SEQPACKET)

    # -- wakes (for epoll) -------------------------------------------------------------------

    def data_ready(self) -> None:
        """sock_def_readable: a message or a connection was queued here."""
        self.wq.wake(POLLIN | POLLRDNORM)

    def state_change(self) -> None:
        """sock_def_wakeup (sk_state_change, sk_error_report): every watcher."""
        self.wq.wake(0)

    def write_space(self) -> None:
        """unix_write_space: one of its messages was freed; watchers hear of it when a
        quarter of the send buffer is free (unix_writable)."""
        if self.state != "listening" and self.wmem << 2 <= self.sndbuf:
            self.wq.wake(POLLOUT | POLLWRNORM | POLLWRBAND)

    # -- connections -----------------------------------------------------------------------

    def connect_to(self, other: "Socket") -> None:
        """Join two sockets as peers (socketpair, or an accepted connection)."""
        self.peer, other.peer = other, self
        self.state = other.state = "connected"

    def listen(self, backlog: int) -> None:
        """listen(2): the backlog, capped at somaxconn, and the listening state."""
        if not self.stream:
            raise SyscallError(E.EOPNOTSUPP, "listen on a datagram socket")
        if self.state == "connected":
            raise SyscallError(E.EINVAL, "listen on a connected socket")
        self.backlog = min(max(backlog, 0), SOMAXCONN) if backlog >= 0 else SOMAXCONN
        self.state = "listening"

    def backlog_full(self) -> bool:
        """unix_recvq_full: more embryos than the backlog (so a backlog of N takes N + 1)."""
        return len(self.queue) > self.backlog

    def request(self, client: "Socket", nonblock: bool) -> "Socket":
        """A stream connect to this listener: a new embryo socket, already connected to
        `client`, in the backlog queue for accept(). Full backlog: EAGAIN or WouldBlock."""
        if self.state != "listening" or self.dead:
            raise SyscallError(E.ECONNREFUSED, "no one listens there")
        if self.type != client.type:
            raise SyscallError(E.EPROTOTYPE, "socket types differ")
        if self.backlog_full():
            if nonblock:
                raise SyscallError(E.EAGAIN, "the listener's backlog is full")
            raise WouldBlock()
        new = Socket(self.family, self.type, self.protocol, self.cred)
        new.addr, new.book = self.addr, self.book
        # SO_PASSCRED goes to the accepted socket; its buffer sizes are the defaults
        new.opts = {k: v for k, v in self.opts.items() if k in ("passcred",)}
        new.connect_to(client)
        new.peercred, client.peercred = client.cred, self.cred
        self.queue.append(new)
        self.data_ready()
        return new

    def accept(self, nonblock: bool) -> "Socket":
        if self.state != "listening":
            raise SyscallError(E.EINVAL, "accept on a socket that does not listen")
        if not self.queue:
            if nonblock:
                raise SyscallError(E.EAGAIN, "no connection waits")
            raise WouldBlock()
        return self.queue.popleft()

    def take_error(self) -> int:
        err, self.err = self.err, 0
        return err

    # -- shutdown and close ----------------------------------------------------------------

    def shut(self, how: int) -> None:
        """shutdown(2) with how 0, 1, 2 (SHUT_RD, SHUT_WR, SHUT_RDWR): this side's bits, and
        the mirrored bits on a connection's peer (unix_shutdown)."""
        mode = (how + 1) & SHUTDOWN_MASK
        self.shutdown |= mode
        if self.stream and self.peer is not None:
            peer_mode = (RCV_SHUTDOWN if mode & SEND_SHUTDOWN else 0) | (
                SEND_SHUTDOWN if mode & RCV_SHUTDOWN else 0)
            self.peer.shutdown |= peer_mode
        self.state_change()              # unix_shutdown wakes both sides
        if self.stream and self.peer is not None:
            self.peer.state_change()

    def release(self) -> None:
        """The last reference went (unix_release_sock): a connection's peer sees both
        directions shut, and ECONNRESET if this side left bytes unread; queued messages and
        embryos are thrown away (an embryo's client then sees the reset too)."""
        if self.dead:
            return
        self.dead = True
        unread = bool(self.queue)
        peer, self.peer = self.peer, None
        old = self.state
        self.state = "closed"
        self.shutdown = SHUTDOWN_MASK
        if peer is not None and self.stream:
            peer.shutdown = SHUTDOWN_MASK
            if unread or old == "embryo":
                peer.err = E.ECONNRESET
            peer.state_change()
        while self.queue:
            item = self.queue.popleft()
            if isinstance(item, Socket):
                item.state = "embryo"
                item.release()
            else:
                item.drop(self.book)
        self.family.unbind(self)

    # -- readiness ---------------------------------------------------------------------------

    def readable(self) -> bool:
        """A receive would not block: bytes (or a connection) wait, an error, or EOF."""
        return bool(self.queue) or bool(self.err) or bool(self.shutdown & RCV_SHUTDOWN) or (
            self.stream and self.state == "closed")

    def writable(self) -> bool:
        """A send would not block (unix_writable): a quarter of the send buffer free, or the
        send would fail at once."""
        if self.err or self.shutdown & SEND_SHUTDOWN:
            return True
        peer = self.peer
        if peer is None or peer.dead or peer.shutdown & RCV_SHUTDOWN:
            return True
        if not self.stream and len(peer.queue) > MAX_DGRAM_QLEN and peer.peer is not self:
            return False
        return self.wmem << 2 <= self.sndbuf

    def writable_to(self, target: "Socket") -> bool:
        """A datagram to `target` would not block: its queue has room (or it is this
        socket's connected peer's own) and this socket's send buffer too."""
        return (target.peer is self or len(target.queue) <= MAX_DGRAM_QLEN) and \
            self.send_room()

    def send_ready(self) -> bool:
        """A parked stream send can go on: room, or something that ends it at once (this
        side shut, as the peer's close or SHUT_RD does; a pending error)."""
        return self.send_room() or bool(self.shutdown & SEND_SHUTDOWN) or bool(self.err) \
            or self.peer is None

    def send_room(self) -> bool:
        """A stream send can allocate a message now (sock_alloc_send_pskb's wmem check)."""
        return self.wmem < self.sndbuf

    def poll(self) -> int:
        """unix_poll (stream) and unix_dgram_poll (datagram)."""
        mask = POLLERR if self.err else 0
        if self.shutdown == SHUTDOWN_MASK:
            mask |= POLLHUP
        if self.shutdown & RCV_SHUTDOWN:
            mask |= POLLRDHUP | POLLIN | POLLRDNORM
        if self.queue:
            mask |= POLLIN | POLLRDNORM
        if self.stream:
            if self.state in ("closed", "unconnected"):
                mask |= POLLHUP
            if self.state != "listening" and self.wmem << 2 <= self.sndbuf:
                mask |= POLLOUT | POLLWRNORM | POLLWRBAND
            return mask
        peer = self.peer
        full = (peer is not None and peer.peer is not self and not peer.dead
                and len(peer.queue) > MAX_DGRAM_QLEN)
        if not full and self.wmem << 2 <= self.sndbuf:
            mask |= POLLOUT | POLLWRNORM | POLLWRBAND
        return mask

    def fds_queued(self) -> int:
        """Descriptors in flight to this socket (a listener's: to its embryos)."""
        if self.state == "listening":
            return sum(s.fds_queued() for s in self.queue)
        return sum(len(m.fds) for m in self.queue if m.fds)

    def inq(self) -> int:
        """SIOCINQ: the unread bytes of a stream; the first datagram's size."""
        if self.state == "listening":
            raise SyscallError(E.EINVAL, "SIOCINQ on a listening socket")
        if self.stream:
            return sum(len(m.data) for m in self.queue)
        return len(self.queue[0].data) if self.queue else 0

    # -- streams -----------------------------------------------------------------------------

    def stream_send(self, data: bytes, cred, fds=None) -> int:
        """One attempt of unix_stream_sendmsg: the bytes queued at the peer now (> 0, or 0 for
        empty data, whose descriptors Linux drops too), in messages of at most half the send
        buffer; `fds` (held references) go with the first message. Not connected: ENOTCONN;
        this side shut for sending (the peer closed): BrokenPipe; then a pending error
        (taken); no room: WouldBlock."""
        if self.peer is None:
            raise SyscallError(E.ENOTCONN, "socket is not connected")
        if self.shutdown & SEND_SHUTDOWN:
            raise BrokenPipe()
        if not data:
            return 0                     # unix_stream_sendmsg's loop never runs: fds unsent
        err = self.take_error()
        if err:
            raise SyscallError(err, "pending socket error")
        if not self.send_room():
            raise WouldBlock()
        peer = self.peer
        if peer.dead or peer.shutdown & RCV_SHUTDOWN:
            raise BrokenPipe()
        taken = 0
        while True:
            size, cost = stream_chunk(len(data) - taken, self.sndbuf)
            chunk = data[taken:taken + size]
            msg = Message(chunk, cred, hold_files(fds) if fds and taken == 0 else None,
                          self.addr, sender=self, size=cost)
            peer.queue.append(msg)
            peer.data_ready()
            taken += len(chunk)
            if taken >= len(data) or not self.send_room():
                return taken

    def stream_recv(self, n: int, peek: bool, passcred: bool, cred=None):
        """One read of unix_stream_read_generic without waiting: (bytes, fds, cred) where fds
        are the held references of the message whose bytes ended the read (the caller
        installs or releases them). Nothing queued: EOF (b"") when shut or closed, a pending
        error, else WouldBlock. A read never joins two senders' bytes when credentials are
        asked for (`cred`: the sender a MSG_WAITALL read began with; another's next bytes
        give b""), and ends after a message that carried descriptors."""
        if self.state != "connected":
            raise SyscallError(E.EINVAL, "stream socket is not connected")
        if not self.queue:
            err = self.take_error()
            if err:
                raise SyscallError(err, "pending socket error")
            if self.shutdown & RCV_SHUTDOWN:
                return b"", None, None
            raise WouldBlock()
        out, fds = bytearray(), None
        i = 0
        while i < len(self.queue) and len(out) < n:
            msg = self.queue[i]
            if passcred:
                if cred is None:
                    cred = msg.cred
                elif msg.cred != cred:
                    break
            else:
                cred = None
            take = min(n - len(out), len(msg.data))
            out += msg.data[:take]
            if peek:
                if msg.fds:
                    fds = hold_files(msg.fds)
                    break
                i += 1
                continue
            del msg.data[:take]
            if msg.fds:
                fds, msg.fds = msg.fds, None
            if not msg.data:
                self.queue.popleft()
                msg.freed()
            if fds:
                break
        return bytes(out), fds, cred

    # -- datagrams ---------------------------------------------------------------------------

    def dgram_deliver(self, target: "Socket", data: bytes, cred, fds, nonblock: bool) -> int:
        """unix_dgram_sendmsg once the target is found: one whole message in its queue (with
        this socket's name as the sender's address). Too big for the send buffer: EMSGSIZE;
        the target's queue full: EAGAIN or WouldBlock."""
        if len(data) > self.sndbuf - 32:
            raise SyscallError(E.EMSGSIZE, f"datagram of {len(data)} bytes")
        # sock_alloc_send_pskb: a pending error, this side shut, no room; then the target
        err = self.take_error()
        if err:
            raise SyscallError(err, "pending socket error")
        if self.shutdown & SEND_SHUTDOWN:
            raise BrokenPipe()
        if not self.send_room():
            if nonblock:
                raise SyscallError(E.EAGAIN, "the send buffer is full")
            raise WouldBlock()
        if target.dead:
            if self.type == SOCK_SEQPACKET:
                raise BrokenPipe()
            raise SyscallError(E.ECONNREFUSED, "the peer is gone")
        if target.peer is not None and target.peer is not self and not target.peer.dead:
            raise SyscallError(E.EPERM, "the target is connected to another socket")
        if target.shutdown & RCV_SHUTDOWN:
            raise BrokenPipe()
        if target.peer is not self and len(target.queue) > MAX_DGRAM_QLEN:
            if nonblock:
                raise SyscallError(E.EAGAIN, "the receiver's queue is full")
            raise WouldBlock()
        target.queue.append(Message(data, cred, hold_files(fds) if fds else None, self.addr,
                                    sender=self, size=dgram_truesize(len(data))))
        target.data_ready()
        return len(data)

    def dgram_recv(self, n: int, peek: bool):
        """One datagram: (bytes up to n, its full length, fds, cred, sender's address)."""
        if not self.queue:
            err = self.take_error()
            if err:
                raise SyscallError(err, "pending socket error")
            if self.shutdown & RCV_SHUTDOWN:
                return b"", 0, None, None, None
            raise WouldBlock()
        msg = self.queue[0]
        data = bytes(msg.data[:n])
        if peek:
            return data, len(msg.data), hold_files(msg.fds) if msg.fds else None, \
                msg.cred, msg.addr
        self.queue.popleft()
        msg.freed()
        fds, msg.fds = msg.fds, None
        return data, len(msg.data), fds, msg.cred, msg.addr


def pair(family, type_: int, protocol: int, cred) -> tuple[Socket, Socket]:
    """socketpair(2): two sockets connected to each other, each the other's SO_PEERCRED."""
    a = Socket(family, type_, protocol, cred)
    b = Socket(family, type_, protocol, cred)
    a.connect_to(b)
    a.peercred = b.peercred = cred
    return a, b
