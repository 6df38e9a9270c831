"""The host network, only where the user allows it.

A guest has a loopback interface and nothing else: by default no packet leaves vsnap. Two
options of `vsnap run` / `vsnap resume` open doors:

  --listen PORT       a guest TCP socket listening on PORT of its loopback (127.0.0.1, ::1
                      or a wildcard) also listens for real on the host's 127.0.0.1:PORT, so a
                      client on the host (nc, telnet, a Python socket) can connect. Guest
                      clients connecting to that port still reach the guest listener inside
                      vsnap; both kinds of connection wait in the one accept queue.
  --connect HOST:PORT a guest TCP connect to HOST:PORT is a real connect from the host, even
                      when HOST is a loopback address (then a guest listener on the same port
                      does not see it: the door goes out).

Anything else bound for a non-loopback address fails as it would for a Linux process in a
network namespace with only `lo`: ENETUNREACH ("Network is unreachable") from connect and
sendto, and the first refusal says once on stderr which option would allow it.

Host sockets are non-blocking and never read behind the guest's back more than a buffer's
worth: a guest read, poll or a wait of every guest process (Machine._all_parked) pumps them.
What arrives from them is the one input vsnap cannot replay: --stats counts it.

Each host side wakes its guest socket's watchers (`wake`, the socket's wait queue: epoll's
edge-triggered items) when news are taken in: a client accepted, bytes, the end, an error,
a connect done, room made in a full write buffer.

Taking news in and waiting for it are two steps, so news taken outside a pump (a guest's
send or poll that looks at its own socket, another process's readiness check) leaves the host
socket drained while a waiter that looked before it still thinks nothing is there. Each piece
of news counts in `generation`; a pump that finds news it has not handed back yet does not
block, so the waiters look again (HostNet.pump).
"""
from __future__ import annotations

import ipaddress
import select
import socket
import struct

from .abi import errno as E
from .errors import SyscallError, UsageError
from .vfs import host_errno_to_guest

BUFFER = 256 * 1024  # what a host socket's data may wait in vsnap before the guest reads it
BACKLOG = 128
WRITE_ROOM = 65536   # what the guest's writes may wait in vsnap for a host socket (inet.py)
POLLIN, POLLOUT = 0x1, 0x4


def _nobody(key: int) -> None:
    """The wake of a host side no guest socket holds (yet)."""


def parse_listen(text: str) -> int:
    """--listen PORT: 1-65535."""
    try:
        port = int(text, 10)
    except ValueError:
        raise UsageError(f"vsnap: --listen {text}: expected a TCP port number, 1-65535") \
            from None
    if not 0 < port < 65536:
        raise UsageError(f"vsnap: --listen {text}: a port is 1-65535")
    return port


def parse_connect(text: str) -> tuple[str, int]:
    """--connect HOST:PORT, HOST an IPv4 address, [IPv6] or localhost -> (ip text, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise UsageError(f"vsnap: --connect {text}: expected HOST:PORT "
                         f"(127.0.0.1:8080, [::1]:8080)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"vsnap: --connect {text}: {host!r} is not an IP address "
                         f"(names are not looked up: give the address)") from None
    try:
        port = int(port_text, 10)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise UsageError(f"vsnap: --connect {text}: a port is 1-65535")
    return str(ip), port


def from_args(a) -> "HostNet":
    """The policy of `vsnap run/resume --listen/--connect` (cli.py)."""
    listen = [parse_listen(t) for t in getattr(a, "listen", None) or ()]
    connect = [parse_connect(t) for t in getattr(a, "connect", None) or ()]
    return HostNet(listen, connect)


def _ip_key(ip: bytes) -> str:
    """The text of an address as the policy names it (v4-mapped ones as IPv4)."""
    a = ipaddress.ip_address(ip)
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    return str(a)


class HostNet:
    def __init__(self, listen=(), connect=()):
        self.listen_ports = set(listen)
        self.connect_to = set(connect)
        self.bytes_in = 0       # from host sockets into the guest: not reproducible
        self.bytes_out = 0
        self.accepted = 0       # connections from host clients
        self.connected = 0      # connections the guest opened to the host
        self.told = False       # the refusal notice is said once
        self.news = False       # the last pump found a host socket ready
        self.sockets: set = set()  # live HostListener and HostStream objects
        self.generation = 0     # news taken in from the host (bytes, an end, a connection)
        self.looked = 0         # the generation the last pump handed back to its caller
        self.notice = None      # the system's one-line notices (set by the first --listen)
        self.starved_told = False

    # -- the policy ------------------------------------------------------------------------

    def allows_connect(self, ip: bytes, port: int) -> bool:
        return (_ip_key(ip), port) in self.connect_to

    def listens(self, port: int) -> bool:
        return port in self.listen_ports

    def refuse(self, system, ip: bytes, port: int, proto: str) -> SyscallError:
        """ENETUNREACH for a destination off the guest's loopback; the first one says why."""
        where = _ip_key(ip)
        shown = f"[{where}]" if ":" in where else where
        if not self.told:
            self.told = True
            door = (f"vsnap run --connect {shown}:{port} would allow it"
                    if proto == "tcp" else "vsnap lets no UDP out (--connect is for TCP)")
            system.notice(f"vsnap: the guest has no network but its loopback: "
                          f"{proto} to {shown}:{port} fails with ENETUNREACH; {door}")
        system.refused[f"network ({proto})"] = system.refused.get(f"network ({proto})", 0) + 1
        return SyscallError(E.ENETUNREACH, f"no route to {shown}:{port}")

    def summary(self) -> str | None:
        """--stats's line about the host network, when the guest used it."""
        if not (self.bytes_in or self.bytes_out or self.accepted or self.connected):
            return None
        return (f"vsnap: host network: {self.accepted} connections accepted, "
                f"{self.connected} opened, {self.bytes_in} bytes in, {self.bytes_out} out; "
                f"the bytes in came from outside vsnap, so a rerun or a resume cannot "
                f"replay them")

    # -- host sockets ----------------------------------------------------------------------

    def open_listener(self, port: int) -> "HostListener":
        """A real listening socket on the host's 127.0.0.1:PORT (--listen PORT)."""
        _more_host_fds()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(BACKLOG)
        except OSError as e:
            s.close()
            raise SyscallError(E.EADDRINUSE if _guest_errno(e.errno) == E.EADDRINUSE else E.EACCES,
                               f"the host's 127.0.0.1:{port}: {e.strerror}") from None
        s.setblocking(False)
        h = HostListener(self, s, port)
        self.sockets.add(h)
        return h

    def open_connection(self, ip: bytes, port: int) -> "HostStream":
        """A real non-blocking connect to an allowed destination."""
        text = _ip_key(ip)
        fam = socket.AF_INET6 if ":" in text else socket.AF_INET
        _more_host_fds()
        try:
            s = socket.socket(fam, socket.SOCK_STREAM)
        except OSError as e:  # vsnap itself has no descriptor left (EMFILE, ENFILE)
            self.out_of_fds()
            raise SyscallError(E.ENOBUFS, f"no host socket for the connect: {e.strerror}") \
                from None
        s.setblocking(False)
        err = s.connect_ex((text, port))
        h = HostStream(self, s)
        err = _guest_errno(err) if err else 0
        if err not in (0, E.EINPROGRESS):
            h.error = err
        h.connecting = err == E.EINPROGRESS
        self.connected += 1
        self.sockets.add(h)
        return h

    def pump(self, timeout: float | None = 0.0, extra_fds=()) -> list[int]:
        """Wait up to `timeout` seconds (None: for ever) for a host socket to have news
        or one of `extra_fds` (the console, the host-signal pipe) to be readable; take
        the news in. Returns the extra fds that are readable."""
        # news taken in since the last pump (by a guest call that looked at its own socket)
        # may have come after a waiter looked: hand it back without waiting
        stale = self.generation != self.looked
        if stale:
            timeout = 0
        q = select.poll()  # not select.select: a host fd can be past FD_SETSIZE (1024)
        by_fd = {}
        for h in self.sockets:
            r, w = h.wants()
            if r or w:
                by_fd[h.fileno()] = h
                q.register(h.fileno(), (select.POLLIN if r else 0) | (select.POLLOUT if w else 0))
        for fd in extra_fds:
            q.register(fd, select.POLLIN)
        if not by_fd and not extra_fds and timeout == 0:
            self.news, self.looked = stale, self.generation
            return []
        events = q.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999)))
        ready = []
        for fd, ev in events:
            h = by_fd.get(fd)
            if h is None:
                ready.append(fd)
                continue
            if ev & (select.POLLOUT | select.POLLERR | select.POLLHUP) and h.wants()[1]:
                h.on_writable()
            if ev & ~select.POLLOUT:
                h.on_readable()
        self.news = stale or any(fd in by_fd for fd, _ in events)
        self.looked = self.generation
        return ready

    def out_of_fds(self) -> None:
        """vsnap's own descriptors ran out (each host connection is one): said once."""
        if not self.starved_told and self.notice is not None:
            self.starved_told = True
            import resource
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            self.notice(f"vsnap: vsnap has no host descriptor left (its own RLIMIT_NOFILE is "
                        f"{soft}): new host clients of --listen ports wait in the host's "
                        f"backlog until a host connection closes; a --connect fails with "
                        f"ENOBUFS")

    def fd_freed(self) -> None:
        """A host socket closed: listeners that ran out may accept again."""
        for h in self.sockets:
            if isinstance(h, HostListener):
                h.starved = False

    def waiting(self) -> bool:
        """Could a host socket still bring news (then a wait of every process is no
        deadlock: it waits on the host)."""
        return any(any(h.wants()) for h in self.sockets)

    def close_all(self) -> None:
        for h in list(self.sockets):
            h.close()


def _more_host_fds() -> None:
    """Each host connection costs vsnap a descriptor of its own: the soft limit goes up to
    the hard one (once), as servers do."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):
            pass


def _guest_errno(host: int | None) -> int:
    """A host socket's errno as the guest's: vfs.host_errno_to_guest, which knows where the
    host's numbers are Linux's and where they are not."""
    return host_errno_to_guest(OSError(host, ""))


class HostListener:
    """The host side of a --listen port: connections accepted as they come, queued until
    the guest accepts them."""

    def __init__(self, net: HostNet, sock: socket.socket, port: int):
        self.net, self.sock, self.port = net, sock, port
        self.queue: list[HostStream] = []
        self.closed = False
        self.wake = _nobody     # the guest listener's wait queue (inet.py sets it)
        self.starved = False  # vsnap had no descriptor for the last one: wait for a close

    def fileno(self) -> int:
        return self.sock.fileno()

    def wants(self) -> tuple[bool, bool]:
        return (not self.closed and not self.starved and len(self.queue) < BACKLOG), False

    def on_readable(self) -> None:
        while len(self.queue) < BACKLOG:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if _guest_errno(e.errno) in (E.EMFILE, E.ENFILE):
                    # the client stays in the host's backlog; watching the listener now
                    # would spin (it stays readable): wait for a host socket to close
                    self.starved = True
                    self.net.out_of_fds()
                return
            conn.setblocking(False)
            h = HostStream(self.net, conn)
            self.net.accepted += 1
            self.net.generation += 1
            self.net.sockets.add(h)
            self.queue.append(h)
            self.wake(POLLIN)

    def take(self) -> "HostStream | None":
        """The next host client, taking in any that came since the last look."""
        if not self.queue:
            self.on_readable()
        return self.queue.pop(0) if self.queue else None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for h in self.queue:  # never accepted: reset, as inet_csk_listen_stop does
                h.reset()
            self.queue.clear()
            self.sock.close()
            self.net.sockets.discard(self)


class HostStream:
    """A connected host TCP socket: what it sends waits in `rbuf` for the guest; what the
    guest writes goes out, the rest waiting in `wbuf` while the host socket is full."""

    def __init__(self, net: HostNet, sock: socket.socket):
        self.net, self.sock = net, sock
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.eof = False          # the host peer sent FIN
        self.error = 0            # a guest errno (ECONNRESET, ECONNREFUSED ...)
        self.connecting = False
        self.shut_wr = False      # the guest shut down writing: FIN once wbuf is out
        self.closed = False
        self.wake = _nobody       # the guest socket's wait queue (inet.py sets it)

    def fileno(self) -> int:
        return self.sock.fileno()

    def wants(self) -> tuple[bool, bool]:
        if self.closed:
            return False, False
        rd = not self.connecting and not self.eof and not self.error and len(self.rbuf) < BUFFER
        wr = self.connecting or (bool(self.wbuf) and not self.error)
        return rd, wr

    def on_writable(self) -> None:
        if self.connecting:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            self.connecting = False
            self.wake(0)          # tcp_finish_connect, or the error
            self.net.generation += 1
            if err:
                self.error = _guest_errno(err)
                return
        full = len(self.wbuf) >= WRITE_ROOM
        self._flush()
        if full and len(self.wbuf) < WRITE_ROOM:
            self.wake(POLLOUT)    # room again after the guest found none

    def _flush(self) -> None:
        while self.wbuf and not self.error:
            try:
                n = self.sock.send(self.wbuf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.error = _guest_errno(e.errno)
                self.wake(0)
                self.net.generation += 1
                return
            self.net.bytes_out += n
            self.net.generation += 1  # room in wbuf: a writer may go on
            del self.wbuf[:n]
        if not self.wbuf and self.shut_wr:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def on_readable(self) -> None:
        while len(self.rbuf) < BUFFER and not self.eof:
            try:
                data = self.sock.recv(BUFFER - len(self.rbuf))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.error = _guest_errno(e.errno)
                self.wake(0)
                self.net.generation += 1
                return
            self.net.generation += 1
            if not data:
                self.eof = True
                self.wake(0)      # the host's FIN: tcp_fin's sk_state_change
                return
            self.net.bytes_in += len(data)
            self.rbuf += data
            self.wake(POLLIN)

    def poll_now(self) -> None:
        """Take what the host has now (a guest read or poll looks)."""
        if self.closed:
            return
        rd, wr = self.wants()
        if not rd and not wr:
            return
        q = select.poll()  # not select.select: the fd can be past FD_SETSIZE
        q.register(self.fileno(), (select.POLLIN if rd else 0) | (select.POLLOUT if wr else 0))
        for _, ev in q.poll(0):
            if ev & (select.POLLOUT | select.POLLERR | select.POLLHUP) and wr:
                self.on_writable()
            if ev & ~select.POLLOUT and rd:
                self.on_readable()

    def send(self, data: bytes) -> int:
        """Queue what the guest writes; returns how much was taken (0: full)."""
        room = BUFFER - len(self.wbuf)
        take = bytes(data[:max(0, room)])
        self.wbuf += take
        if not self.connecting:
            self._flush()
        return len(take)

    def shutdown_write(self) -> None:
        self.shut_wr = True
        if not self.connecting:
            self._flush()

    def reset(self) -> None:
        """Close with a reset (SO_LINGER 0), what is left unsent thrown away."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.wbuf.clear()
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.wbuf and not self.error:
                self.sock.setblocking(True)  # the last words go out, as close() lets them
                self.sock.settimeout(1.0)
                try:
                    self.sock.sendall(self.wbuf)
                    self.net.bytes_out += len(self.wbuf)
                except OSError:
                    pass
            self.sock.close()
            self.net.sockets.discard(self)
            self.net.fd_freed()


def of(system) -> HostNet:
    """The system's host network: no doors unless the CLI opened some."""
    if system.net is None:
        system.net = HostNet()
    return system.net


def wait_parked(system, deadline_ns: int | None) -> None:
    """Every guest process waits and a host socket could end a wait: wait in real time
    for the host (sockets, and a host signal such as Ctrl-C) until the first virtual
    deadline, as a read of vsnap's terminal waits (kernel/poll.py). A deadline that passes
    with no news moves the virtual clock to it, as a sleep alone does."""
    import os
    clock = system.clock
    timeout = None if deadline_ns is None else max(0, deadline_ns - clock.monotonic_ns) / 1e9
    wake = getattr(system, "host_wake_fd", None)
    extra = [wake] if wake is not None else []
    if system.host_signals:
        timeout = 0
    ready = system.net.pump(timeout, extra)
    if wake is not None and wake in ready:
        os.read(wake, 4096)
    if system.host_signals and system.init is not None and system.init.ended is None:
        system.init.take_host_signals()
    elif not ready and not system.net.news and deadline_ns is not None:
        clock.monotonic_ns = max(clock.monotonic_ns, deadline_ns)
