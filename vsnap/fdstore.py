"""The notify socket and the file descriptor store of `vsnap run --watch`, as systemd keeps
them for a service (sd_notify(3), systemd.service(5) FileDescriptorStoreMax=).

vsnap holds a datagram socket in the guest's world, a kernel-side AF_UNIX socket that no
guest process owns (the System's), bound to the abstract name NOTIFY_SOCKET names
("@vsnap/notify": no file in the sandbox). What a guest sends there is read at once, when
the datagram arrives (a queue that takes each message as it is appended): the same bytes give
the same store in every run, with no reader to schedule.

Every process of the service may send (systemd's NotifyAccess=all; its default for
Type=notify is main, the first process only); a process vsnap started beside the service is
not heard. A message is newline-separated KEY=VALUE lines, as systemd parses them:
  READY=1, STOPPING=1, STATUS=...   remembered (the supervisor reads them);
  FDSTORE=1 [FDNAME=NAME]           the descriptors sent with it (SCM_RIGHTS) are kept, under
                                    NAME ("stored" without one); a description already in the
                                    store is not kept twice (systemd's same_fd); a NAME that
                                    is not valid (longer than 255, not printable ASCII, a ':')
                                    refuses them all; past the store's limit they are refused,
                                    and each refusal is said once on vsnap's log;
  FDSTOREREMOVE=1 FDNAME=NAME       every stored descriptor of that name is closed;
  anything else                     ignored, as systemd ignores what it does not know.
Descriptors sent without FDSTORE=1 are closed. A message with a NUL byte, or longer than
systemd's buffer (4096 bytes), is ignored whole (said on the log).

A stored description holds one reference of its own (its socket stays open while the guest
restarts). One whose socket reports POLLHUP or POLLERR (the client hung up) leaves the store
(systemd's FDPOLL=1 default): vsnap looks at each message and before each restart, the points
at which the store is read; between them nothing can tell the difference.
"""
from __future__ import annotations

from collections import deque

from .sockets import POLLERR, POLLHUP, SOCK_DGRAM, Socket, release_files

NOTIFY_NAME = "@vsnap/notify"
NOTIFY_BUFFER_MAX = 4096        # systemd's PIPE_BUF-sized notification buffer
FDNAME_MAX = 255                # fdname_is_valid
DEFAULT_STORE_MAX = 64          # vsnap's FileDescriptorStoreMax= (systemd's default is 0)
SYSTEM_CRED = (1, 0, 0)         # the sender of what the System sends: pid 1, root


def fdname_valid(name: str) -> bool:
    """systemd's fdname_is_valid: 1-255 printable ASCII characters, no ':'."""
    return 0 < len(name) <= FDNAME_MAX and all(
        0x20 <= ord(c) < 0x7F and c != ":" for c in name)


class _Inbox(deque):
    """The notify socket's receive queue: each message is handed to the store as it
    arrives, so the queue stays empty and a sender never waits."""

    def __init__(self, take):
        super().__init__()
        self.take = take

    def append(self, msg) -> None:
        self.take(msg)


class FdStore:
    """The store of one watched service, and the notify socket its messages reach."""

    def __init__(self, system, family, *, limit: int = DEFAULT_STORE_MAX,
                 name: str = NOTIFY_NAME, log=None):
        self.system, self.limit = system, limit
        self.log = log or system.notice
        self.items: list[tuple[str, object]] = []      # (FDNAME, OpenFile), in store order
        self.ready = self.stopping = False
        self.status: str | None = None
        self.said: set[str] = set()                    # refusals said once each
        self.name = name
        # NotifyAccess=all: any process of the service may send; accepts(pid) says which
        # are (Watch: not the processes it started beside the service)
        self.accepts = lambda pid: True
        sock = Socket(family, SOCK_DGRAM, 0, SYSTEM_CRED)
        sock.queue = _Inbox(self._message)
        sock.book = system.locks
        # bound as unixaddr binds an abstract name: guests find it by that name
        table = getattr(system, "unix_names", None)
        if table is None:
            table = system.unix_names = {}
        key = ("abstract", b"\0" + name[1:].encode()) if name.startswith("@") else None
        if key is None:
            raise ValueError("the notify socket's name must be abstract (@NAME)")
        table[key] = sock
        sock.addr, sock.bound = key, (table, key)
        self.sock = sock

    # -- the messages ------------------------------------------------------------------------

    def _say_once(self, what: str, line: str) -> None:
        if what not in self.said:
            self.said.add(what)
            self.log(line)

    def _message(self, msg) -> None:
        fds, msg.fds = msg.fds or [], None
        msg.freed()
        pid = msg.cred[0] if msg.cred else "?"
        data = bytes(msg.data)
        if not self.accepts(pid):
            self._say_once(f"pid {pid}", f"vsnap: --watch: a notify message from pid {pid}, "
                           f"not a process of the service: ignored (NotifyAccess=all)")
            release_files(fds, self.system.locks)
            return
        if len(data) > NOTIFY_BUFFER_MAX or b"\0" in data:
            why = "longer than 4096 bytes" if len(data) > NOTIFY_BUFFER_MAX else \
                "with a NUL byte"
            self.log(f"vsnap: --watch: a notify message {why} from pid {pid}: ignored")
            release_files(fds, self.system.locks)
            return
        fields = {}
        for line in data.decode("utf-8", "replace").split("\n"):
            if "=" in line:
                key, value = line.split("=", 1)
                fields[key] = value
        if fields.get("READY") == "1":
            self.ready = True
        if fields.get("STOPPING") == "1":
            self.stopping = True
        if "STATUS" in fields:
            self.status = fields["STATUS"]
        name = fields.get("FDNAME")
        if fields.get("FDSTOREREMOVE") == "1":
            if name is None or not fdname_valid(name):
                self.log(f"vsnap: --watch: FDSTOREREMOVE=1 from pid {pid} without a valid "
                         f"FDNAME=: ignored")
            else:
                self.remove(name)
        self.sweep()
        if fds and fields.get("FDSTORE") == "1":
            self._store(fds, name if name is not None else "stored", pid)
        elif fds:  # not ours to keep (systemd: "Got extra auxiliary fds, closing")
            release_files(fds, self.system.locks)

    def _store(self, fds: list, name: str, pid) -> None:
        if not fdname_valid(name):
            self.log(f"vsnap: --watch: FDSTORE=1 from pid {pid} with an invalid FDNAME= "
                     f"({name[:40]!r}): {len(fds)} fd{'s' if len(fds) != 1 else ''} refused")
            release_files(fds, self.system.locks)
            return
        for f in fds:
            if any(g is f for _, g in self.items):
                release_files([f], self.system.locks)  # already kept (same_fd): once
                continue
            if len(self.items) >= self.limit:
                state = f"is full ({self.limit}" if self.limit else "is off (0"
                self._say_once("full", f"vsnap: --watch: the fd store {state}, "
                               f"--fdstore-max): FDSTORE=1 from pid {pid} refused")
                release_files([f], self.system.locks)
                continue
            self.items.append((name, f))

    # -- the store ---------------------------------------------------------------------------

    def remove(self, name: str) -> int:
        """FDSTOREREMOVE: close every stored fd named `name`; how many went."""
        gone = [f for n, f in self.items if n == name]
        self.items = [(n, f) for n, f in self.items if n != name]
        release_files(gone, self.system.locks)
        return len(gone)

    def sweep(self) -> list[str]:
        """Stored descriptions that report POLLHUP or POLLERR (a socket whose peer hung up,
        a pipe with no one at the other end) leave the store (FDPOLL): the names of those
        dropped."""
        from .kernel.poll import readiness
        keep, gone = [], []
        p = self.system.init
        for name, f in self.items:
            if f.ops is not None and readiness(p, f) & (POLLHUP | POLLERR):
                gone.append((name, f))
            else:
                keep.append((name, f))
        self.items = keep
        release_files([f for _, f in gone], self.system.locks)
        return [n for n, _ in gone]

    def new_start(self) -> None:
        """The service starts again: what it said about its state was the old process's."""
        self.ready = self.stopping = False
        self.status = None

    def close(self) -> None:
        """The watch is over: the stored descriptions and the notify socket go."""
        items, self.items = self.items, []
        release_files([f for _, f in items], self.system.locks)
        self.sock.release()
