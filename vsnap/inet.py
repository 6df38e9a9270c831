"""TCP and UDP sockets over the guest's loopback, as kernel objects (no host sockets unless
the host network policy lets one in: then `host` is a hostnet.HostStream).

An InetSocket is a vsnap/sockets.py Socket whose behaviour differs where TCP's and UDP's do
from AF_UNIX's, each as Linux's net/ipv4/tcp*.c and udp.c:
- a connection between two guest sockets is the framework's pair of peers (bytes go to the
  peer's queue); a FIN (shutdown(SHUT_WR), close) shuts only the peer's receiving; a close
  with unread bytes is a reset (the peer's next call: ECONNRESET, or EPIPE if it had our FIN);
- writing after the peer closed succeeds once (the bytes vanish and the peer answers with a
  reset: EPIPE and SIGPIPE from then on), a send on a socket never connected is EPIPE;
- reads: bytes first, then end of file after a FIN, then a pending error, ENOTCONN when
  closed (tcp_recvmsg's order);
- poll as tcp_poll: a fresh socket is POLLOUT|POLLHUP, a refused one adds POLLIN, POLLERR
  and POLLRDHUP.
UDP keeps each datagram whole with the sender's address; a datagram to a port no one has
is dropped and, on a connected socket, the ICMP port unreachable Linux sends itself over lo
becomes ECONNREFUSED on its next call (ip4_datagram's sk_err).

Wakes of the socket's wait queue (for epoll, vsnap/sockets.py) as TCP's and UDP's: bytes
or a connection arriving (sk_data_ready: POLLIN), a FIN, a reset, a shutdown, a connect
completing (sk_state_change: all), and room made by the peer's read only when the sender
had run out of it (tcp_check_space calls sk_stream_write_space only with SOCK_NOSPACE set,
which a send or a poll that found no room sets). A UDP send over lo wakes its own sender
with POLLOUT (loopback_xmit orphans the skb: sock_wfree's write-space wake). A host
connection (hostnet.py) wakes the socket when the host's bytes, end, error, accepted
client or completed connect are taken in.
"""
from __future__ import annotations

from .abi import errno as E
from .errors import SyscallError
from .hostnet import WRITE_ROOM
from .sockets import (POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDHUP, POLLRDNORM, POLLWRBAND,
                      POLLWRNORM, RCV_SHUTDOWN, SEND_SHUTDOWN, SHUTDOWN_MASK, BrokenPipe,
                      Message, Socket, WouldBlock)

UDP_MAX = 65507          # 65535 - 8 (UDP header) - 20 (IPv4 header)
UDP6_MAX = 65527         # 65535 - 8 (UDP header); the IPv6 header is not counted
SKB_STRUCT, SHINFO = 256, 320   # sizeof(struct sk_buff), skb_shared_info (cache-aligned)
SMALL_HEAD = 576                # skb_small_head_cache's objects
SMALL_SKB = SKB_STRUCT + SMALL_HEAD
SKB_MAX_ALLOC = 16384 - SHINFO  # a head past this is paged (ip_append_data)


class InetSocket(Socket):
    def __init__(self, family, type_: int, protocol: int, cred, domain: int):
        super().__init__(family, type_, protocol, cred)
        self.domain = domain       # AF_INET or AF_INET6
        self.v6only = False        # IPV6_V6ONLY (net.ipv6.bindv6only = 0)
        self.binding = None        # inetports.Binding: its hold on a port
        self.remote = None         # the peer's inetaddr.Addr, as this socket names it
        self._host = None
        self._host_listener = None
        self.host = None           # hostnet.HostStream when the peer is on the host
        self.host_listener = None  # hostnet.HostListener on a --listen port
        self.levels: dict = {}     # (level, name) -> int: IPPROTO_TCP/IP/IPV6 options
        self.fin_in = False        # the peer's FIN arrived (tcp_fin's SOCK_DONE)
        self.fin_out = False       # this side sent its FIN
        self.fin_first = False     # ... before the peer's: it ends in TIME_WAIT
        self.reset_by_us = False   # an embryo its listener closed: it goes with a reset
        self.rmem = 0              # UDP: the truesize of the datagrams waiting
        self.connecting = False    # SS_CONNECTING: a non-blocking connect not looked at again
        self.autobound = False     # its port came with connect(), not bind()
        self.ports = None          # (PortSpace, clock) of its binding

    # the host's side wakes this socket's watchers when its news are taken in (hostnet.py)
    @property
    def host(self):
        return self._host

    @host.setter
    def host(self, h) -> None:
        self._host = h
        if h is not None:
            h.wake = self.wq.wake

    @property
    def host_listener(self):
        return self._host_listener

    @host_listener.setter
    def host_listener(self, h) -> None:
        self._host_listener = h
        if h is not None:
            h.wake = self.wq.wake

    def write_space(self) -> None:
        """TCP's room comes back through stream_recv (tcp_check_space), UDP's at the send."""

    # -- what differs from AF_UNIX ---------------------------------------------------------

    def pending(self) -> bool:
        """A connection waits for accept (host clients of a --listen port are taken in)."""
        if self.host_listener is not None and not self.dead:
            h = self.host_listener.take()
            if h is not None:
                self.queue.append(self.family.from_host(self, h))
        return bool(self.queue)

    def _host_news(self) -> None:
        """Take in what the host socket has (bytes, its end, an error, a connect done)."""
        if self.host is not None:
            self.host.poll_now()
            if self.state == "connecting":
                if self.host.connecting:
                    return
                if self.host.error:
                    self.err, self.host.error = self.host.error, 0
                    self.state, self.shutdown = "closed", SHUTDOWN_MASK
                else:
                    self.state = "connected"
                return
            if self.host.error and not self.err and not self.shutdown == SHUTDOWN_MASK:
                self.err = self.host.error
                self.shutdown = SHUTDOWN_MASK
                self.state = "closed"
            if self.host.eof and not self.fin_in:
                self.fin_in = True
                self.shutdown |= RCV_SHUTDOWN

    def stream_send(self, data: bytes, cred, fds=None) -> int:
        """One attempt of tcp_sendmsg."""
        if fds:
            raise SyscallError(E.EINVAL, "SCM_RIGHTS on a TCP socket")  # __scm_send
        self._host_news()
        if self.err or self.shutdown & SEND_SHUTDOWN:
            err = self.take_error()
            if err and err != E.EPIPE:
                raise SyscallError(err, "pending socket error")
            raise BrokenPipe()
        if self.state != "connected":
            raise BrokenPipe()     # tcp_sendmsg on a socket never connected: EPIPE
        if not data:
            return 0
        if self.host is not None:
            n = self.host.send(data)
            if n == 0:
                raise WouldBlock()
            return n
        peer = self.peer
        if peer is None or peer.dead:
            # the peer closed: these bytes reach a closed socket, which answers with a
            # reset; this call succeeds, the next ones see EPIPE (tcp_reset in CLOSE_WAIT)
            self.err, self.shutdown, self.state = E.EPIPE, SHUTDOWN_MASK, "closed"
            self.state_change()   # the reset arrives (tcp_reset: sk_state_change)
            return len(data)
        room = self._room()
        if room <= 0:
            raise WouldBlock()
        chunk = bytes(data[:room])
        peer.queue.append(Message(chunk, cred))
        peer.data_ready()
        return len(chunk)

    def _room(self) -> int:
        """What a guest connection takes before a writer waits: the peer's receive buffer
        and this side's send buffer (Linux autotunes both; these are their set sizes)."""
        peer = self.peer
        if peer is None:
            return 0
        return self.sndbuf + peer.rcvbuf - sum(len(m.data) for m in peer.queue)

    def stream_recv(self, n: int, peek: bool, passcred: bool, cred=None):
        """One read of tcp_recvmsg without waiting: (bytes, None, None)."""
        if self.state == "listening":
            raise SyscallError(E.ENOTCONN, "recv on a listening socket")
        self._host_news()
        if self.host is not None and self.host.rbuf:
            data = bytes(self.host.rbuf[:n])
            if not peek:
                del self.host.rbuf[:len(data)]
            return data, None, None
        if self.queue:
            out = bytearray()
            sender = self.peer if not peek and self.host is None else None
            full = sender is not None and sender._room() <= 0
            for msg in list(self.queue):
                if len(out) >= n:
                    break
                take = min(n - len(out), len(msg.data))
                out += msg.data[:take]
                if peek:
                    continue
                del msg.data[:take]
                if not msg.data:
                    self.queue.popleft()
            if full and not sender.dead and sender._room() > 0:
                # the sender had no room (SOCK_NOSPACE): the window update frees its queue
                sender.wq.wake(POLLOUT | POLLWRNORM | POLLWRBAND)
            return bytes(out), None, None
        if self.fin_in:
            return b"", None, None
        err = self.take_error()
        if err:
            raise SyscallError(err, "pending socket error")
        if self.shutdown & RCV_SHUTDOWN:
            return b"", None, None
        if self.state != "connected":
            raise SyscallError(E.ENOTCONN, "socket is not connected")
        raise WouldBlock()

    def readable(self) -> bool:
        self._host_news()
        if self.state == "listening":
            return self.pending() or self.dead
        if self.host is not None and self.host.rbuf:
            return True
        return bool(self.queue) or bool(self.err) or bool(self.shutdown & RCV_SHUTDOWN) or \
            self.state == "closed"

    def send_room(self) -> bool:
        if self.host is not None:
            self._host_news()
        return self._send_room_now()

    def _send_room_now(self) -> bool:
        """send_room without taking the host's news (poll took it once, at its start)."""
        if self.host is not None:
            return len(self.host.wbuf) < WRITE_ROOM or bool(self.err)
        return self._room() > 0

    def writable(self) -> bool:
        self._host_news()
        if self.err or self.shutdown & SEND_SHUTDOWN or self.state != "connected":
            return True
        peer = self.peer
        if self.host is None and (peer is None or peer.dead):
            return True
        return self.send_room()

    def poll(self) -> int:
        """tcp_poll. The host's news is taken once, first: taken again half way (as the
        send room's look did), bytes could arrive after POLLIN was decided, leaving the host
        socket drained and this mask without POLLIN (tests/test_hostnet_race.py)."""
        if not self.stream:
            return self._udp_poll()
        self._host_news()
        if self.state == "listening":
            return (POLLIN | POLLRDNORM) if self.pending() else 0
        mask = 0
        if self.shutdown == SHUTDOWN_MASK or self.state in ("closed", "unconnected"):
            mask |= POLLHUP
        if self.shutdown & RCV_SHUTDOWN:
            mask |= POLLIN | POLLRDNORM | POLLRDHUP
        if self.state != "connecting":
            if self.queue or (self.host is not None and self.host.rbuf):
                mask |= POLLIN | POLLRDNORM
            if not self.shutdown & SEND_SHUTDOWN:
                if self.state != "connected" or self._send_room_now():
                    mask |= POLLOUT | POLLWRNORM
            else:
                mask |= POLLOUT | POLLWRNORM
        if self.err:
            mask |= POLLERR
        return mask

    def _udp_poll(self) -> int:
        """udp_poll: datagram_poll, with the queue's first datagram counted."""
        mask = POLLERR if self.err else 0
        if self.shutdown & RCV_SHUTDOWN:
            mask |= POLLRDHUP | POLLIN | POLLRDNORM
        if self.shutdown == SHUTDOWN_MASK:
            mask |= POLLHUP
        if self.queue:
            mask |= POLLIN | POLLRDNORM
        if self.wmem << 1 < self.sndbuf:
            mask |= POLLOUT | POLLWRNORM | POLLWRBAND
        return mask

    def inq(self) -> int:
        if self.host is not None:
            self._host_news()
            return len(self.host.rbuf)
        return super().inq()

    def shut(self, how: int) -> None:
        """inet_shutdown: the bits, a FIN to the peer for SHUT_WR; ENOTCONN (with the bits
        set all the same) on a socket that is not connected."""
        mode = (how + 1) & SHUTDOWN_MASK
        if self.state == "listening" and self.stream:
            if mode & RCV_SHUTDOWN:  # a listener shut for reading stops listening
                self.family.stop_listening(self)
            self.state_change()
            return
        connected = self.state == "connected" or (not self.stream and self.remote)
        self.shutdown |= mode
        if self.stream and mode & SEND_SHUTDOWN and not self.fin_out and connected \
                and self.state == "connected":
            self._send_fin()
        self.state_change()   # inet_shutdown: sk_state_change, connected or not
        if not connected:
            raise SyscallError(E.ENOTCONN, "socket is not connected")

    def _send_fin(self) -> None:
        self.fin_out = True
        self.fin_first = not self.fin_in  # the active closer: TIME_WAIT is its
        if self.host is not None:
            self.host.shutdown_write()
            return
        peer = self.peer
        if peer is not None and not peer.dead:
            peer.fin_in = True
            peer.shutdown |= RCV_SHUTDOWN
            peer.state_change()   # tcp_fin

    def release(self) -> None:
        """tcp_close: a reset when bytes are left unread, else a FIN; the port is let go,
        or held in TIME_WAIT by the side that closed first."""
        if self.dead:
            return
        self.dead = True
        unread = bool(self.queue) or (self.host is not None and bool(self.host.rbuf))
        peer, self.peer = self.peer, None
        graceful = False  # a FIN, not a reset, ended this side
        if self.stream and self.state == "listening":
            while self.queue:
                embryo = self.queue.popleft()
                embryo.reset_by_us = True
                embryo.release()
            if self.host_listener is not None:
                self.family.drop_host_listener(self)
        elif self.stream and self.state == "connected":
            if self.host is not None:  # a reset too for one its listener never gave out
                self.family.close_host(self, reset=unread or self.reset_by_us)
            elif peer is not None and not peer.dead:
                if unread or self.reset_by_us:
                    # a reset: tcp_reset gives EPIPE to a peer that had our FIN (CLOSE_WAIT)
                    peer.err = E.EPIPE if self.fin_out else E.ECONNRESET
                    peer.shutdown, peer.state = SHUTDOWN_MASK, "closed"
                    peer.state_change()   # tcp_reset -> tcp_done
                else:
                    graceful = True
                    if not self.fin_out:
                        self._send_fin_to(peer)
            elif not unread:
                graceful = True  # the peer closed first, or went: no reset from here
                self.fin_first = self.fin_first or not self.fin_in
        self.state = "closed"
        self.shutdown = SHUTDOWN_MASK
        while self.queue:
            item = self.queue.popleft()
            if isinstance(item, Message):
                item.drop()
        # the side that sent the first FIN holds its port in TIME_WAIT (a reset leaves none)
        self.family.unbind(self, active_close=self.stream and graceful and self.fin_first)

    def _send_fin_to(self, peer) -> None:
        self.fin_out = True
        self.fin_first = not self.fin_in
        peer.fin_in = True
        peer.shutdown |= RCV_SHUTDOWN
        peer.state_change()

    # -- datagrams -------------------------------------------------------------------------

    def dgram_recv(self, n: int, peek: bool):
        """__skb_recv_udp: a pending error (ICMP port unreachable) comes before the
        datagrams that wait."""
        err = self.take_error()
        if err:
            raise SyscallError(err, "pending socket error")
        size = self.queue[0].size if self.queue and not peek else 0
        got = super().dgram_recv(n, peek)
        self.rmem -= size
        return got

    def dgram_take(self, data: bytes, addr, v6_packet: bool) -> None:
        """A datagram arrives (__udp_enqueue_schedule_skb): it costs its skb's truesize,
        and is dropped when that would pass the receive buffer (one is always taken)."""
        size = udp_truesize(len(data), v6_packet)
        if self.rmem and self.rmem + size > self.rcvbuf:
            return
        self.rmem += size
        self.queue.append(Message(data, None, addr=addr, size=size))
        self.data_ready()


def udp_truesize(n: int, v6_packet: bool) -> int:
    """What a UDP datagram of n bytes costs its receiver over lo, as x86-64 Linux 6.x
    counts it (measured with SO_MEMINFO): a head of the payload and what goes before it
    (headers, link-layer room, alignment: 59 bytes for IPv4, 72 for IPv6) in the small-head
    cache (576)
    or a kmalloc size class, plus the sk_buff (256) and skb_shared_info (320); past
    SKB_MAX_ALLOC the payload goes to pages, counted exactly, behind a small head."""
    if v6_packet and n >= 65489:
        return 67144   # the largest IPv6 payloads (measured)
    need = n + (72 if v6_packet else 59)
    if need + 1 > SKB_MAX_ALLOC:
        return SMALL_SKB + n
    head = (need + 63) & ~63
    if head + SHINFO <= SMALL_HEAD:
        return SMALL_SKB
    size = 1024
    while size < head + SHINFO:
        size <<= 1
    return SKB_STRUCT + size

