"""A small supervisor with systemd's socket activation and file descriptor store, for the MUD
(programs/mud/) and as the reference behaviour for `vsnap run --watch`.

What it does, in systemd's terms (sd_listen_fds(3), sd_notify(3), systemd.service(5)):

- it makes the listening socket (127.0.0.1:PORT) and passes it as fd 3 with LISTEN_FDS,
  LISTEN_PID (the service's own pid: set in the child between fork and exec) and
  LISTEN_FDNAMES (colon-separated, "mud" for the listener);
- it binds a datagram socket and names it in NOTIFY_SOCKET ("@name" is an abstract address),
  and hears only the service's own pid there (NotifyAccess=main; SO_PASSCRED names senders);
  the service sends "READY=1", "FDSTORE=1\\nFDNAME=NAME" with the fd in SCM_RIGHTS (the store
  keeps a copy) and "FDSTOREREMOVE=1\\nFDNAME=NAME" (the store closes it); a stored fd that
  reports POLLHUP or POLLERR leaves the store too (systemd's FDPOLL default);
- when the service dies (Restart=on-failure: a signal or a non-zero exit), it starts it again
  with the listener and the stored fds as fds 3.. and their names in LISTEN_FDNAMES, so the
  clients behind the stored fds stay connected. Exit status 0 ends the supervision.

    python tests/mudharness.py PORT -- PROGRAM ARGS...    (stops on Ctrl-C or exit 0)
"""
from __future__ import annotations

import array
import os
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading


class FdStoreSupervisor:
    """Runs `argv` under socket activation with an fd store, restarting it when it fails."""

    def __init__(self, argv, port: int, *, cwd=None, env=None, stderr=None,
                 abstract: bool = True, max_restarts: int = 5):
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(env if env is not None else os.environ)
        self.stderr = stderr            # an open file for the service's fd 2, or None
        self.max_restarts = max_restarts
        self.listener = socket.create_server(("127.0.0.1", port), reuse_port=False, backlog=16)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # non-blocking: the loop looks at the service's pid between messages
        self.notify.setblocking(False)
        self.notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._dir = None
        name = f"mudharness-{os.getpid()}-{id(self):x}"
        if abstract:
            self.notify.bind("\0" + name)
            self.notify_name = "@" + name
        else:
            # a short absolute path: sun_path holds 108 bytes, and systemd's are absolute
            self._dir = tempfile.mkdtemp(prefix="mh")
            self.notify_name = os.path.join(self._dir, "notify")
            self.notify.bind(self.notify_name)
        self.store: dict[str, socket.socket] = {}   # FDNAME -> the stored copy
        self.statuses: list[int] = []               # each ended service's wait status
        self.stored_at_death: list[list[str]] = []  # the names the store held at each death
        self.ready = 0                              # READY=1 messages
        self.messages: list[str] = []
        self.ignored: list[str] = []                # from another process than the service
        self.pid: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.done = threading.Event()

    # -- the service --------------------------------------------------------------------------

    def _spawn(self) -> int:
        fds = [self.listener.fileno()] + [s.fileno() for s in self.store.values()]
        names = ["mud", *self.store]
        env = dict(self.env, LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES=":".join(names),
                   NOTIFY_SOCKET=self.notify_name)
        env.pop("LISTEN_PID", None)
        pid = os.fork()
        if pid == 0:  # the child: only dup2, chdir and execve between fork and exec
            try:
                high = [os.dup(fd) for fd in fds]       # out of the way of 3..
                if self.stderr is not None:
                    os.dup2(self.stderr.fileno(), 2)
                for i, fd in enumerate(high):
                    os.dup2(fd, 3 + i)                  # dup2 makes the copy inheritable
                os.closerange(3 + len(high), 1 << 16)  # as systemd: nothing else leaks in
                if self.cwd:
                    os.chdir(self.cwd)
                env["LISTEN_PID"] = str(os.getpid())   # only the service itself takes them
                os.execve(self.argv[0], self.argv, env)
            finally:
                os._exit(127)
        return pid

    def _message(self) -> bool:
        """One notify datagram, if one is waiting. As systemd's NotifyAccess=main, only the
        service's own process is heard: the kernel names the sender (SO_PASSCRED)."""
        try:
            data, anc, _flags, _addr = self.notify.recvmsg(
                4096, socket.CMSG_SPACE(16 * 4) + socket.CMSG_SPACE(12))
        except BlockingIOError:
            return False
        fds, sender = [], None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += array.array("i", payload[:len(payload) // 4 * 4])
            elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                sender = struct.unpack("<iII", payload[:12])[0]
        if sender is None or sender != self.pid:
            self.ignored.append(data.decode(errors="replace"))
            for fd in fds:
                os.close(fd)
            return True
        fields = dict(line.split("=", 1) for line in data.decode(errors="replace").split("\n")
                      if "=" in line)
        self.messages.append(data.decode(errors="replace"))
        name = fields.get("FDNAME", "stored")
        if fields.get("READY") == "1":
            self.ready += 1
        if fields.get("FDSTORE") == "1":
            for fd in fds:
                old = self.store.pop(name, None)
                if old is not None:
                    old.close()
                self.store[name] = socket.socket(fileno=fd)
            fds = []
        if fields.get("FDSTOREREMOVE") == "1":
            old = self.store.pop(name, None)
            if old is not None:
                old.close()
        for fd in fds:   # fds with no FDSTORE=1: not ours to keep
            os.close(fd)
        return True

    def _poll_store(self) -> None:
        """FDPOLL: a stored connection that hung up leaves the store."""
        if not self.store:
            return
        p = select.poll()
        for s in self.store.values():
            p.register(s.fileno(), 0)   # POLLHUP and POLLERR are always reported
        dead = {fd for fd, ev in p.poll(0) if ev & (select.POLLHUP | select.POLLERR)}
        for name in [n for n, s in self.store.items() if s.fileno() in dead]:
            self.store.pop(name).close()

    def _run(self) -> None:
        restarts = 0
        try:
            self.pid = self._spawn()
            while not self._stop.is_set():
                select.select([self.notify], [], [], 0.02)   # a message, or a look at the pid
                while self._message():
                    pass
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid == 0:
                    continue
                while self._message():   # what it said before it died comes first
                    pass
                self._poll_store()
                self.statuses.append(status)
                self.stored_at_death.append(sorted(self.store))
                self.pid = None
                failed = os.WIFSIGNALED(status) or os.waitstatus_to_exitcode(status) != 0
                if not failed or restarts >= self.max_restarts:
                    break
                restarts += 1
                self.pid = self._spawn()
        finally:
            self.done.set()

    # -- the handle ---------------------------------------------------------------------------

    def start(self) -> "FdStoreSupervisor":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float) -> int:
        """The last wait status, once supervision ended (the service exited 0)."""
        if not self.done.wait(timeout):
            raise TimeoutError("the supervised service is still running")
        return self.statuses[-1]

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        for s in self.store.values():
            s.close()
        self.store.clear()
        self.listener.close()
        self.notify.close()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        print("usage: mudharness.py PORT -- PROGRAM ARGS...", file=sys.stderr)
        return 2
    sup = FdStoreSupervisor(argv[2:], int(argv[0]), stderr=sys.stderr).start()
    try:
        while not sup.done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sup.stop()
    for status in sup.statuses:
        print(f"mudharness: the service ended with wait status {status:#x}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
