"""AF_UNIX's address space: socket names that are paths inside the sandbox (bind makes an
S_IFSOCK inode there, connect finds the socket bound to that inode), abstract names (a
leading NUL byte: no file, gone with the socket) and autobind (an abstract name of five hex
digits, the lowest free: the same names in every run).

This is the first family of the socket framework (vsnap/sockets.py holds the sockets). A
family is an object with `number`, `name`, `create(p, type, protocol, cred) -> Socket` (a
subclass may change readiness or errors), `parse(p, raw, for_bind) -> name` (any hashable
value; None for bind: autobind), `bind`, `autobind`, `find(p, sock, name) -> Socket` (the
listener or datagram target), `sockaddr(name) -> bytes`, `unbind(sock)`, `setsockopt` and
`getsockopt` for its own levels, `listening(p, sock)` (before listen: a name or EINVAL),
`sending(p, sock)` (before a datagram: autobind?), and optionally `pair` (socketpair) and
`connect(p, f, sock, raw)` (replacing the generic one in kernel/sockcalls.py). kernel/sockcalls.py finds it in
FAMILIES by the domain number (kernel/sockfile.py register) and never looks inside a name.
"""
from __future__ import annotations

import os
import stat as S

from ..abi import consts as C
from ..abi import errno as E
from ..access import MAY_WRITE
from ..errors import SyscallError
from ..sockets import SOCK_DGRAM, SOCK_SEQPACKET, SOCK_STREAM, Socket, pair
from .fsutil import host_errors, touch_parent, touch_path
from .sockfile import register

AF_UNIX = 1
SUN_PATH = 108          # sizeof(sun_path)
SUN_OFFSET = 2          # offsetof(struct sockaddr_un, sun_path)

def names(p) -> dict:
    """The system's bound AF_UNIX names -> sockets: ("abstract", bytes) and ("inode", host
    dev, host ino). Kept on the System, made on first use."""
    table = getattr(p.sys, "unix_names", None)
    if table is None:
        table = p.sys.unix_names = {}
    return table


class UnixFamily:
    """AF_UNIX: stream, datagram and seqpacket sockets between guest processes (a
    seqpacket socket connects as a stream and carries records as datagrams)."""

    number = AF_UNIX
    name = "AF_UNIX"

    def create(self, p, type_: int, protocol: int, cred) -> Socket:
        if type_ not in (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET):
            raise SyscallError(E.ESOCKTNOSUPPORT, f"AF_UNIX socket type {type_}")
        if protocol not in (0, AF_UNIX):     # PF_UNIX is accepted as a protocol too
            raise SyscallError(E.EPROTONOSUPPORT, f"AF_UNIX protocol {protocol}")
        return Socket(self, type_, 0, cred)

    def pair(self, p, type_: int, protocol: int, cred):
        """socketpair(2): two connected sockets, both unbound."""
        self.create(p, type_, protocol, cred)       # its errors, in its order
        return pair(self, type_, 0, cred)

    # -- names --------------------------------------------------------------------------------

    def parse(self, p, raw: bytes, for_bind: bool = False):
        """A sockaddr_un (unix_validate_addr, unix_mkname_bsd): ("path", bytes) or
        ("abstract", bytes), or None for a bind of the family alone (autobind)."""
        if len(raw) < SUN_OFFSET or int.from_bytes(raw[:2], "little") != AF_UNIX:
            raise SyscallError(E.EINVAL, "not an AF_UNIX address")
        if for_bind and len(raw) == SUN_OFFSET:
            return None
        if len(raw) <= SUN_OFFSET or len(raw) > SUN_OFFSET + SUN_PATH:
            raise SyscallError(E.EINVAL, f"AF_UNIX address of {len(raw)} bytes")
        path = raw[SUN_OFFSET:]
        if path[0] == 0:
            return ("abstract", bytes(path))
        return ("path", bytes(path.split(b"\0", 1)[0]))

    def sockaddr(self, name) -> bytes:
        """What getsockname/getpeername/recvfrom write: the family alone when unbound; a path
        with its NUL; an abstract name as bound."""
        head = AF_UNIX.to_bytes(2, "little")
        if name is None:
            return head
        kind, value = name[0], name[1]
        return head + value + (b"\0" if kind == "path" else b"")

    def bind(self, p, sock: Socket, name) -> None:
        """unix_bind: autobind (a bound socket keeps its name: 0), an abstract name
        (EINVAL when bound, EADDRINUSE when taken), or a path (EADDRINUSE when it exists,
        checked first as unix_bind_bsd makes the inode before it looks at the socket)."""
        if name is None:
            if sock.addr is None:
                self.autobind(p, sock)
            return
        table = names(p)
        if name[0] == "abstract":
            if sock.addr is not None:
                raise SyscallError(E.EINVAL, "socket is already bound")
            if ("abstract", name[1]) in table:
                raise SyscallError(E.EADDRINUSE, "abstract name in use")
            _name(sock, table, ("abstract", name[1]), name)
            return
        path = name[1]
        r = _resolve(p, path, follow=False)
        if r.exists:
            raise SyscallError(E.EADDRINUSE, f"{r.guest} exists")
        if r.special or r.host is None:
            raise SyscallError(E.EACCES, f"{r.guest}: vsnap's virtual directories are "
                               f"read-only")
        if sock.addr is not None:
            raise SyscallError(E.EINVAL, "socket is already bound")
        with host_errors():
            os.mknod(r.host, S.S_IFSOCK | 0o600)
            os.chmod(r.host, 0o777 & ~p.task.umask, follow_symlinks=False)
            touch_path(p, r.host)
            touch_parent(p, r.host)
            st = os.lstat(r.host)
        _name(sock, table, ("inode", st.st_dev, st.st_ino), name)

    def autobind(self, p, sock: Socket) -> None:
        """An abstract name "\\0XXXXX" (unix_autobind): five hex digits, the lowest free
        (Linux starts at a random number). It depends only on the names bound now, so a
        resumed guest, which had no socket open when saved, is given the same ones."""
        table = names(p)
        for n in range(1 << 20):
            name = b"\0" + b"%05x" % n
            if ("abstract", name) not in table:
                break
        else:
            raise SyscallError(E.ENOSPC, "every autobind name is taken")
        _name(sock, table, ("abstract", name), ("abstract", name))

    def find(self, p, sock: Socket, name) -> Socket:
        """The socket bound to `name` (unix_find_other): a path must be a socket inode with a
        socket bound to it (ENOENT, ECONNREFUSED otherwise), of the caller's type
        (EPROTOTYPE)."""
        table = names(p)
        if name[0] == "abstract":
            other = table.get(("abstract", name[1]))
            if other is None:
                raise SyscallError(E.ECONNREFUSED, "no socket has that abstract name")
        else:
            r = _resolve(p, name[1], follow=True)
            if not r.exists:
                raise SyscallError(E.ENOENT, r.guest)
            if r.host is None:
                raise SyscallError(E.ECONNREFUSED, f"{r.guest} is not a socket")
            with host_errors():
                st = os.stat(r.host)
            if not S.S_ISSOCK(st.st_mode):
                raise SyscallError(E.ECONNREFUSED, f"{r.guest} is not a socket")
            if not _creds(p).permits(st.st_mode, MAY_WRITE):
                raise SyscallError(E.EACCES, f"{r.guest}: no write permission")
            other = table.get(("inode", st.st_dev, st.st_ino))
            if other is None:
                raise SyscallError(E.ECONNREFUSED, f"no socket is bound to {r.guest}")
        if other.type != sock.type:
            raise SyscallError(E.EPROTOTYPE, "the socket there is of another type")
        return other

    def listening(self, p, sock: Socket) -> None:
        """listen(2)'s word on the name: unix_listen refuses an unbound socket."""
        if sock.addr is None:
            raise SyscallError(E.EINVAL, "listen on an unbound socket")

    def sending(self, p, sock: Socket) -> None:
        """Before a datagram goes: a socket passing credentials gets a name to be answered
        at (unix_dgram_sendmsg's autobind)."""
        if sock.addr is None and sock.opts.get("passcred"):
            self.autobind(p, sock)

    def unbind(self, sock: Socket) -> None:
        """The socket is gone: its name is free again (a path's inode stays, as on Linux)."""
        table, key = sock.bound or (None, None)
        if table is not None and table.get(key) is sock:
            del table[key]

    # -- options beyond SOL_SOCKET --------------------------------------------------------------

    def setsockopt(self, p, sock, level, name, value: bytes) -> None:
        raise SyscallError(E.EOPNOTSUPP, f"AF_UNIX has no options at level {level}")

    def getsockopt(self, p, sock, level, name, length: int) -> bytes:
        raise SyscallError(E.EOPNOTSUPP, f"AF_UNIX has no options at level {level}")


def _name(sock: Socket, table: dict, key, name) -> None:
    table[key] = sock
    sock.addr, sock.bound = name, (table, key)


def _creds(p):
    from .fsutil import creds
    return creds(p)


def _resolve(p, path: bytes, follow: bool):
    from .dirref import resolve
    return resolve(p, C.AT_FDCWD, os.fsdecode(path), follow=follow, creds=_creds(p))


register(UnixFamily())
