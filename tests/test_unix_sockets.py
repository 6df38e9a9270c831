"""AF_UNIX sockets between guest processes (vsnap/sockets.py, kernel/sock*.py, scm.py,
unixaddr.py), against Linux:

* every call and error in one process (unix_calls.c, musl and glibc): socket, socketpair,
  bind/connect by path and abstract name, autobind, listen/accept/accept4, shutdown, names,
  poll bits, FIONREAD/SIOCOUTQ, fstat and /proc/self/fd, SOL_SOCKET options, MSG_PEEK/TRUNC/
  DONTWAIT/NOSIGNAL/WAITALL, SIGPIPE, ECONNRESET, SCM_RIGHTS and its truncation,
  SCM_CREDENTIALS, a datagram flood and a stream filled to where Linux stops them;
* between processes (unix_procs.c): descriptors passed both ways, a forking server, a peer
  killed, a connection flood, a blocking bulk write, datagrams, signals and SA_RESTART;
* a lie in SCM_CREDENTIALS: EPERM, as for an unprivileged process on Linux;
* a checkpoint with a socket open is refused in one line (sockets are not saved yet);
* the stream object alone against a model of a byte queue (Hypothesis).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from conftest import run_in_root, NATIVE_ENV, make_root, require_native, run_native
from vsnap.abi import errno as E
from vsnap.errors import SyscallError
from vsnap.fdtable import OpenFile
from vsnap.sockets import SOCK_STREAM, BrokenPipe, WouldBlock, pair
from vsnap.testing import Guest, measure, run_with_checkpoints

FLAVOURS = ("musl", "glibc")
PROC_MODES = ("fdpass", "server", "vanish", "flood", "bulk", "dgram", "restart", "creds",
              "exec")


@pytest.fixture(scope="module", autouse=True)
def prebuilt(builds):
    builds.prebuild(["unix_calls", "unix_procs"], FLAVOURS)


vsnap_run = run_in_root


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_unix_calls_match_linux(builds, tmp_path, flavour):
    prog = builds.get("unix_calls", flavour)
    native = run_native(prog, cwd=make_root(tmp_path / "n"))
    under, _, notices = vsnap_run(prog, tmp_path)
    assert native.status == 0, native.text()
    assert under.stdout == native.stdout
    assert under.status == native.status
    assert notices == []
    # lines that only real sockets give (a stub answering -1 everywhere would not)
    for line in (b"FIONREAD 10", b"dgram flood: 278 then", b"s1 is a socket 1",
                 b"recvfrom 11 to abstract from len 8 same as sender 1",
                 b"fd0 cloexec 1 fd1 cloexec 1 fd2 cloexec 1", b"readlink is socket:[st_ino] 1",
                 b"pid_ok 1 uid_ok 1 gid_ok 1]"):
        assert line in under.stdout, line


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("mode", PROC_MODES)
def test_unix_sockets_between_processes_match_linux(builds, tmp_path, flavour, mode):
    prog = builds.get("unix_procs", flavour)
    native = run_native(prog, [mode], cwd=make_root(tmp_path / "n"))
    under, _, notices = vsnap_run(prog, tmp_path, [mode])
    assert native.status == 0, native.text()
    assert (under.stdout, under.status) == (native.stdout, native.status)
    assert notices == []
    assert under.stdout.endswith(b"done\n")


def test_a_lie_in_scm_credentials_is_eperm_as_for_an_unprivileged_process(builds, tmp_path):
    """Root may claim any pid and uid; vsnap's guest is never privileged, so it compares
    with Linux run as nobody."""
    require_native()
    prog = builds.get("unix_procs", "musl")
    where = tempfile.mkdtemp()      # pytest's own directories are closed to nobody
    try:
        os.chmod(where, 0o755)
        shutil.copy(prog, os.path.join(where, "prog"))

        def nobody():
            os.setgid(65534)
            os.setuid(65534)
        native = subprocess.run([os.path.join(where, "prog"), "lie"], cwd=where,
                                env=NATIVE_ENV, capture_output=True, preexec_fn=nobody,
                                timeout=60)
    finally:
        shutil.rmtree(where)
    under, _, _ = vsnap_run(prog, tmp_path, ["lie"])
    assert native.returncode == 0, native.stderr
    assert under.stdout == native.stdout
    assert b"other pid: -1 EPERM" in under.stdout and b"own: 4 " in under.stdout


def test_a_checkpoint_with_a_socket_open_is_taken(builds, tmp_path):
    """Sockets are part of the image now (snapshot/sockimage.py; the promise around them:
    tests/test_socket_checkpoints.py): a save during the 1 MiB transfer resumes the same."""
    g = Guest(builds.get("unix_procs", "musl"), ("bulk",))
    m = measure(g, tmp_path)
    out = run_with_checkpoints(g, [m.length // 2], tmp_path, budget=3 * m.length)
    assert (out.stdout, out.status) == (m.outcome.stdout, m.outcome.status)


def test_a_socket_in_flight_keeps_its_description_alive():
    """SCM_RIGHTS holds a reference: the sender's close does not release the description;
    a message thrown away unread (the receiver closes) does."""
    released = []

    class Ops:
        seekable = False

        def release(self, f):
            released.append(f)
    a, b = pair(_Family(), SOCK_STREAM, 0, (1, 2, 3))
    f = OpenFile("pipe", "pipe:[1]", 0, ops=Ops())
    f.refs = 1                     # one fd holds it
    a.stream_send(b"x", (1, 2, 3), [f])
    f.refs -= 1                    # the sender closes that fd
    assert f.refs == 1 and not released
    b.release()                    # the receiver goes with the message unread
    assert released == [f]


class _Family:
    number = 1

    def unbind(self, sock):
        pass


class _File:
    """A stand-in open file description: counts its references and its release."""

    def __init__(self):
        self.refs, self.closed = 1, False

    def close(self):
        self.closed = True


CREDS = [(1000, 1000, 1000), (1001, 1000, 1000)]


class StreamModel(RuleBasedStateMachine):
    """A connected stream pair against a model: per direction, a list of sends (bytes, the
    sender's credentials, the descriptions sent with them). What is read is what was written,
    in order; a read ends after bytes that brought descriptions (it takes them) and, with
    credentials asked for, before another sender's bytes; peeks take nothing; the send buffer
    accounts to zero when all is read; in-flight descriptions are released exactly once."""

    def __init__(self):
        super().__init__()
        self.a, self.b = pair(_Family(), SOCK_STREAM, 0, CREDS[0])
        self.sends = {0: [], 1: []}          # [bytearray, cred, files or None] for end i
        self.shut_wr = {0: False, 1: False}
        self.files: list[_File] = []

    def ends(self, i):
        return (self.a, self.b) if i == 0 else (self.b, self.a)

    def queued(self, i) -> bytes:
        return b"".join(bytes(m[0]) for m in self.sends[i])

    @rule(i=st.integers(0, 1), data=st.binary(max_size=70000), who=st.integers(0, 1),
          nfds=st.integers(0, 3))
    def send(self, i, data, who=0, nfds=0):
        me, _ = self.ends(i)
        files = [_File() for _ in range(nfds)] if len(data) <= 30000 else []
        try:
            n = me.stream_send(data, CREDS[who], files or None)
        except WouldBlock:
            assert not me.send_room() and data
            return
        except BrokenPipe:
            assert self.shut_wr[i]
            return
        assert not self.shut_wr[i]
        assert 0 < n <= len(data) or (n == 0 and not data)
        if n:
            self.sends[1 - i].append([bytearray(data[:n]), CREDS[who], files or None])
            self.files += files
        for f in files:
            f.refs -= 1                      # the sender closes its descriptors at once
        if files:
            assert all(f.refs == 1 for f in files) if n else all(f.refs == 0 for f in files)

    def expected(self, i, n, passcred):
        """(bytes, files, cred) the model says a read of n takes, without taking them."""
        out, cred = bytearray(), None
        for data, c, files in self.sends[i]:
            if len(out) >= n:
                break
            if passcred and cred is not None and c != cred:
                break
            cred = c if passcred else None
            out += data[:n - len(out)]
            if files:
                return bytes(out), files, cred
        return bytes(out), None, cred

    @rule(i=st.integers(0, 1), n=st.integers(1, 80000), peek=st.booleans(),
          passcred=st.booleans())
    def recv(self, i, n, peek, passcred=False):
        me, _ = self.ends(i)
        try:
            data, fds, cred = me.stream_recv(n, peek, passcred)
        except WouldBlock:
            assert not self.sends[i] and not self.shut_wr[1 - i]
            return
        want, files, want_cred = self.expected(i, n, passcred)
        assert data == want
        assert (fds or None) == files and cred == want_cred
        if not data:
            assert self.shut_wr[1 - i]
        for f in fds or ():                  # the receiver installs, then closes, them
            f.refs -= 1
            if f.refs == 0:
                f.close()
        if peek:
            return
        taken = len(data)
        while taken:
            first = self.sends[i][0]
            k = min(taken, len(first[0]))
            del first[0][:k]
            taken -= k
            if fds and first[2] == fds:     # taken with its first bytes, not the rest
                first[2] = None
            if not first[0]:
                self.sends[i].pop(0)

    @rule(i=st.integers(0, 1))
    def shutdown_write(self, i):
        me, _ = self.ends(i)
        me.shut(1)
        self.shut_wr[i] = True

    @invariant()
    def accounting(self):
        for i in (0, 1):
            me, peer = self.ends(i)
            assert me.inq() == len(self.queued(i))
            assert peer.wmem >= 0
            if not self.sends[i]:
                assert peer.wmem == 0
            assert peer.writable() == (peer.wmem << 2 <= peer.sndbuf or bool(peer.shutdown & 2))
        in_flight = {id(f) for i in (0, 1) for m in self.sends[i] for f in (m[2] or ())}
        for f in self.files:
            assert f.closed == (id(f) not in in_flight) and f.refs == (id(f) in in_flight)

    @rule()
    def fill_and_drain(self):
        """A writer that fills the buffer is let go again by a reader that drains it."""
        self.send(0, b"z" * 300000)
        while self.sends[1]:
            self.recv(1, 100000, False)
        assert self.a.send_room() or self.shut_wr[0]

    def teardown(self):
        """Closing both ends releases whatever is still in flight."""
        self.a.release()
        self.b.release()
        assert all(f.closed and f.refs == 0 for f in self.files)


TestStreamModel = StreamModel.TestCase
TestStreamModel.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_errors_of_an_unconnected_stream():
    a, _ = pair(_Family(), SOCK_STREAM, 0, (1, 2, 3))
    a.peer = None
    a.state = "unconnected"
    with pytest.raises(SyscallError) as e:
        a.stream_send(b"x", (1, 2, 3))
    assert e.value.errno == E.ENOTCONN
    with pytest.raises(SyscallError) as e:
        a.stream_recv(1, False, False)
    assert e.value.errno == E.EINVAL
