"""The promise with AF_UNIX sockets between processes (snapshot/sockimage.py): a save at any
instruction (data and descriptors in flight, a backlog of clients not yet accepted, sockets
held only in flight, peers gone with bytes unread, a process parked in accept, recv or a send
part way) and a resume in a fresh machine give exactly what the uninterrupted run gives; the
sockets come back exactly (a second save of the resumed guest writes the same records); a
tampered record is refused in one line naming it; `vsnap inspect` shows the sockets.

The guests: tests/guests/sock_ckpt.c (made for this) and the modes of unix_procs.c that
test_unix_sockets.py checks against Linux. The default tier saves at a few chosen points;
--slow draws many (hypothesis) and saves at every system call.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings

from vsnap.snapshot import image_bytes, restore
from vsnap.snapshot.atomic import write_atomically
from vsnap.snapshot.codec import ImageError, decode
from vsnap.snapshot.restore import FileChanged, restore_bytes
from vsnap.testing import (Capture, Guest, assert_transparent, checkpoint_points, fresh_root,
                           measure, start)

SLOW = os.environ.get("VSNAP_SLOW") == "1"
OWN = ["pair", "listen", "dgram", "inflight", "shut"]
# unix_procs.c modes (compared with Linux in test_unix_sockets.py); bulk's 11 M
# instructions are the long tier's
THEIRS = ["fdpass", "server", "vanish", "dgram", "creds", "flood", "restart"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("sockets")


def _parked(m):
    """(pid, what it waits in, the call's memo) of each process of machine m parked now."""
    return [(pid, q.blocked.what, q.memo and q.memo[1])
            for pid, q in sorted(m.system.processes.items()) if q.blocked]


def _find(g, base, length, cond, steps=400):
    """The first of `steps` even instruction points of a run at which cond(machine) holds
    (one run, advanced point by point), or None."""
    m = start(g, fresh_root(g, base), Capture())
    try:
        for i in range(1, steps):
            k = length * i // steps
            if m.advance(k) is not None:
                return None
            if cond(m):
                return k
    finally:
        m.close()
    return None


def _waits_in(what, partial=False):
    def cond(m):
        return any(why == what and (not partial or isinstance(memo, dict) and memo["done"])
                   for _, why, memo in _parked(m))
    return cond


def _backlog(m):
    """A listener holds a client's connection, and the client wrote to it already."""
    return any(f.kind == "socket" and f.ops.sock.state == "listening"
               and any(e.queue for e in f.ops.sock.queue)
               for q in m.system.processes.values() for f in q.fds.descriptions())


def _points(m, n):
    """n of the first process's system calls and n even points of the whole run (the
    others' calls lie between)."""
    calls = m.syscalls
    return sorted({*calls[::max(1, len(calls) // n)],
                   *(m.length * i // (n + 1) for i in range(1, n + 1))})


@pytest.mark.parametrize("mode", OWN)
def test_sockets_saved_at_system_calls_resume_the_same(builds, base, mode):
    g = Guest(builds.get("sock_ckpt", "musl"), (mode,))
    m = measure(g, base)
    assert m.outcome.status == 0, m.outcome.stderr
    points = m.syscalls if SLOW else _points(m, 4)
    for k in points:
        assert_transparent(g, [k], reference=m.outcome, base=base, budget=3 * m.length)


@pytest.mark.parametrize("mode", THEIRS + (["bulk"] if SLOW else []))
def test_unix_procs_saved_mid_way_resume_the_same(builds, base, mode):
    g = Guest(builds.get("unix_procs", "musl"), (mode,))
    m = measure(g, base)
    assert m.outcome.status == 0, m.outcome.stderr
    for k in (m.syscalls[1::3] if SLOW else _points(m, 2)):
        assert_transparent(g, [k], reference=m.outcome, base=base, budget=3 * m.length)


@pytest.mark.parametrize("flavour", ["musl", "glibc"])
@pytest.mark.parametrize("mode", OWN)
def test_sockets_saved_anywhere_resume_the_same(builds, base, mode, flavour):
    """hypothesis draws chains of points anywhere, near system calls and in handlers (the
    long tier's: the default tier's points are the test above's)."""
    if not SLOW:
        pytest.skip("the long tier's (--slow)")
    g = Guest(builds.get("sock_ckpt", flavour), (mode,))
    m = measure(g, base)

    @settings(max_examples=12, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(points=checkpoint_points(m, max_chain=3))
    def prop(points):
        assert_transparent(g, points, reference=m.outcome, base=base, budget=3 * m.length)

    prop()


@pytest.mark.parametrize("mode,what,partial", [
    ("listen", "accept on a socket", False),
    ("dgram", "recv on a socket", False),
    ("pair", "send on a socket", True),       # a 64 KiB write with some of it moved
])
def test_a_save_while_parked_in_a_socket_call_resumes_the_same(builds, base, mode, what,
                                                                partial):
    g = Guest(builds.get("sock_ckpt", "musl"), (mode,))
    m = measure(g, base)
    found = _find(g, base, m.length, _waits_in(what, partial))
    assert found is not None, f"no point where a process waits in {what}"
    assert_transparent(g, [found], reference=m.outcome, base=base, budget=3 * m.length)
    assert_transparent(g, [found, found + 1], reference=m.outcome, base=base,
                       budget=3 * m.length)


def _image(builds, base, mode, pick):
    """An image of sock_ckpt MODE saved at the system call pick(m) chooses, and its root."""
    g = Guest(builds.get("sock_ckpt", "musl"), (mode,))
    m = measure(g, base)
    m.outcome_program = g.program
    k = pick(m)
    assert k is not None
    root = fresh_root(g, base)
    machine = start(g, root, Capture())
    assert machine.advance(k) is None
    data = image_bytes(machine)
    machine.close()
    return data, root


def _sockets_of(data: bytes) -> list:
    _, parts = decode(data)
    return json.loads(parts["fds.json"])["sockets"]


@pytest.mark.parametrize("mode", ["listen", "inflight", "dgram", "shut"])
def test_sockets_come_back_exactly(builds, base, mode):
    """Saved, resumed and saved again at once: the same records (inodes, names and how they
    are bound, peers, queues, options, descriptions in flight), and the same name table."""
    data, root = _image(builds, base, mode, lambda m: m.length // 2)
    first = _sockets_of(data)
    assert first
    m, _ = restore_bytes(data, console=Capture().console)
    try:
        table = sorted(repr(k) for k in getattr(m.system, "unix_names", {}))
        again = image_bytes(m)
    finally:
        m.close()
    assert _sockets_of(again) == first
    bound = sum(1 for s in first if s["bound"] is not None)
    assert len(table) == bound


def _in_flight(m):
    """The descriptions only a socket's queue holds (sent, not yet received)."""
    from vsnap.snapshot.sockimage import reach
    held = [f for q in m.system.processes.values() for f in q.fds.descriptions()]
    descs = list({id(f): f for f in held}.values())
    n = len(descs)
    reach(descs)
    return descs[n:]


def test_a_socket_held_only_in_flight_is_saved_with_its_queue(builds, base):
    g = Guest(builds.get("sock_ckpt", "musl"), ("inflight",))
    m = measure(g, base)
    # d1 in c0's queue, c1 in d1's: both closed by the process
    k = _find(g, base, m.length, lambda mm: sum(f.kind == "socket"
                                                for f in _in_flight(mm)) == 2)
    assert k is not None
    data, _ = _image(builds, base, "inflight", lambda _m: k)
    fds = json.loads(decode(data)[1]["fds.json"])
    held = {e["description"] for e in fds["fds"]}
    assert sum(1 for i, d in enumerate(fds["descriptions"])
               if i not in held and d["kind"] == "socket") == 2
    assert_transparent(g, [k], reference=m.outcome, base=base, budget=3 * m.length)
    assert_transparent(g, [k, k + 50, k + 400], reference=m.outcome, base=base,
                       budget=3 * m.length)


def _backlog_point(base):
    def pick(m):
        return _find(Guest(m.outcome_program, ("listen",)), base, m.length, _backlog)
    return pick


# tampered images ----------------------------------------------------------------------------------

def _rewrite(data: bytes, tmp_path, change) -> str:
    manifest, parts = decode(data)
    fds = json.loads(parts["fds.json"])
    tree = json.loads(parts["tree.json"])
    change(fds, tree)
    parts["fds.json"] = json.dumps(fds).encode()
    parts["tree.json"] = json.dumps(tree).encode()
    parts.pop("manifest.json", None)
    path = str(tmp_path / "bad.img")
    write_atomically(path, parts, manifest["program"])
    return path


def _first(fds, pred):
    return next(s for s in fds["sockets"] if pred(s))


def _listener(fds):
    return _first(fds, lambda s: s["state"] == "listening" and s["queue"])


def _with_message(fds):
    return _first(fds, lambda s: any("data" in q for q in s["queue"]))


def _msg(fds):
    return next(q for q in _with_message(fds)["queue"] if "data" in q)


TAMPERS = {
    "peer out of range": (lambda f, t: f["sockets"][0].__setitem__("peer", 999), "peer"),
    "unknown family": (lambda f, t: f["sockets"][0].__setitem__("family", 44), "family"),
    "bad type": (lambda f, t: f["sockets"][0].__setitem__("type", 3), "type"),
    "bad state": (lambda f, t: f["sockets"][0].__setitem__("state", "dancing"), "state"),
    "unknown option": (lambda f, t: f["sockets"][0]["opts"].__setitem__("turbo", True),
                       "opts"),
    "bad timeout": (lambda f, t: f["sockets"][0]["opts"].__setitem__("rcvtimeo", -5), "opts"),
    "huge buffer": (lambda f, t: f["sockets"][0].__setitem__("sndbuf", 1 << 40), "sndbuf"),
    "bad shutdown": (lambda f, t: f["sockets"][0].__setitem__("shutdown", 9), "shutdown"),
    "path name too long": (lambda f, t: f["sockets"][0].__setitem__(
        "addr", ["path", {"hex": "41" * 200}]), "addr"),
    "embryo held by a description": (lambda f, t: _listener(f)["queue"][0].__setitem__(
        "embryo", next(d["socket"] for d in f["descriptions"] if d["kind"] == "socket")),
        "queue"),
    "message in a listener": (lambda f, t: _listener(f)["queue"].append(
        {"data": "", "cred": [1, 0, 0], "fds": None, "addr": None, "sender": None,
         "size": 0}), "queue"),
    "data not base64": (lambda f, t: _msg(f).__setitem__("data", "**"), "data"),
    "fd in flight out of range": (lambda f, t: _msg(f).__setitem__("fds", [4000]), "fds"),
    "sender out of range": (lambda f, t: _msg(f).__setitem__("sender", 77), "sender"),
    "path of a socket description": (lambda f, t: next(
        d for d in f["descriptions"] if d["kind"] == "socket").__setitem__(
        "path", "socket:[1]"), "path"),
    "a socket held twice": (lambda f, t: f["descriptions"].append(dict(next(
        d for d in f["descriptions"] if d["kind"] == "socket"))), "socket"),
    "write-only socket": (lambda f, t: next(
        d for d in f["descriptions"] if d["kind"] == "socket").__setitem__("flags", 1),
        "flags"),
    "an orphan socket": (lambda f, t: f["sockets"].append(dict(f["sockets"][-1], peer=None,
                                                              queue=[], bound=None)),
                         "sockets["),
    "abstract binding of a path": (lambda f, t: _first(
        f, lambda s: s["bound"] and "path" in s["bound"]).__setitem__(
        "bound", {"abstract": True}), "bound"),
    "two sockets on one name": (lambda f, t: [s.__setitem__("bound", {"abstract": True})
                                              or s.__setitem__("addr", ["abstract",
                                                                        {"hex": "0061"}])
                                              for s in f["sockets"]
                                              if s["state"] == "listening"], "bound"),
}


@pytest.fixture(scope="module")
def backlog_image(builds, base):
    """An image of `listen` with clients waiting in a backlog, and its root."""
    return _image(builds, base, "listen", _backlog_point(base))


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_a_tampered_socket_record_is_refused_in_one_line(backlog_image, tmp_path, name):
    change, word = TAMPERS[name]
    data, root = backlog_image
    fds = json.loads(decode(data)[1]["fds.json"])
    assert any(s["state"] == "listening" and s["queue"] for s in fds["sockets"]), \
        "the save point should hold a backlog"
    path = _rewrite(data, tmp_path, change)
    with pytest.raises(ImageError) as e:
        restore(path, root=str(root))
    msg = str(e.value)
    assert "\n" not in msg and "fds.json" in msg and word in msg, msg
    assert "Traceback" not in msg


def test_a_tampered_parked_call_memo_is_refused_in_one_line(builds, base, tmp_path):
    g = Guest(builds.get("sock_ckpt", "musl"), ("pair",))
    m = measure(g, base)
    k = _find(g, base, m.length, _waits_in("send on a socket", partial=True))
    data, root = _image(builds, base, "pair", lambda _m: k)

    def change(fds, tree):
        for p in tree["processes"]:
            if p["memo"] and isinstance(p["memo"][1], dict):
                p["memo"][1]["done"] = "lots"
    with pytest.raises(ImageError) as e:
        restore(_rewrite(data, tmp_path, change), root=str(root))
    assert "\n" not in str(e.value) and "memo" in str(e.value)


def test_a_resume_whose_socket_file_is_gone_is_refused_unless_forced(builds, base, tmp_path):
    data, root = _image(builds, base, "listen", _backlog_point(base))
    path = tmp_path / "t.img"
    path.write_bytes(data)
    os.unlink(root / "srv.sock")
    with pytest.raises(FileChanged) as e:
        restore(str(path), root=str(root))
    assert "srv.sock" in str(e.value) and "\n" not in str(e.value)
    m, warnings = restore(str(path), root=str(root), force=True)
    m.close()
    assert any("srv.sock" in w for w in warnings)


# vsnap inspect and resume in a fresh process ----------------------------------------------------

def test_inspect_shows_the_sockets_and_a_fresh_process_resumes(builds, tmp_path):
    prog = builds.get("sock_ckpt", "musl")
    run = [sys.executable, "-m", "vsnap"]
    m = measure(Guest(prog, ("pair",)), tmp_path)
    k = _find(Guest(prog, ("pair",)), tmp_path, m.length, _waits_in("send on a socket", True))
    whole = subprocess.run([*run, "run", "--log", str(tmp_path / "l0"), prog, "pair"],
                           cwd=tmp_path, capture_output=True, timeout=300)
    first = subprocess.run([*run, "run", "--save-at", str(k), "-o", "t.img", "--exit",
                            "--log", str(tmp_path / "l1"), prog, "pair"], cwd=tmp_path,
                           capture_output=True, timeout=300)
    assert first.returncode == 0, first.stderr
    fds = subprocess.run([*run, "inspect", "t.img", "fds"], cwd=tmp_path,
                         capture_output=True, timeout=60)
    assert fds.returncode == 0, fds.stderr
    text = fds.stdout.decode()
    assert "Sockets:" in text and "AF_UNIX STREAM connected" in text, text
    assert "bytes queued" in text and "fd 3" in text
    summary = subprocess.run([*run, "inspect", "t.img"], cwd=tmp_path, capture_output=True,
                             timeout=60)
    assert b"sockets " in summary.stdout
    as_json = subprocess.run([*run, "inspect", "--json", "t.img", "fds"], cwd=tmp_path,
                             capture_output=True, timeout=60)
    if as_json.returncode == 0:
        assert json.loads(as_json.stdout)["sockets"]
    second = subprocess.run([*run, "resume", "t.img", "--log", str(tmp_path / "l2")],
                            cwd=tmp_path, capture_output=True, timeout=300)
    assert (first.stdout + second.stdout, second.returncode) == (whole.stdout,
                                                                   whole.returncode)


def test_inspect_names_descriptors_in_flight(builds, base, tmp_path):
    def pick(m):
        return _find(Guest(m.outcome_program, ("pair",)), base, m.length,
                     lambda mm: bool(_in_flight(mm)))
    data, _ = _image(builds, base, "pair", pick)
    path = tmp_path / "t.img"
    path.write_bytes(data)
    from vsnap.snapshot.inspect import render
    from vsnap.snapshot.restore import load
    img = load(str(path))
    text = render(img, "fds")
    assert any(q.get("fds") for s in img.sockets for q in s["queue"])
    assert "2 fds in flight" in text and "in flight to socket:[" in text, text


# AF_INET / AF_INET6 ------------------------------------------------------------------------------

INET = {"inet_tcp": "47000", "inet_udp": "47100"}   # any base port: the loopback is vsnap's


@pytest.mark.parametrize("name", sorted(INET))
def test_loopback_tcp_and_udp_saved_mid_way_resume_the_same(builds, base, name):
    """TCP connections, listeners, TIME_WAIT ports and UDP datagrams between guest processes
    (the programs test_inet_sockets.py compares with Linux) saved at points across the run."""
    g = Guest(builds.get(name, "musl"), (INET[name],))
    m = measure(g, base)
    assert m.outcome.status == 0, m.outcome.stderr
    n = 24 if SLOW else 3
    for k in (m.length * i // (n + 1) for i in range(1, n + 1)):
        assert_transparent(g, [k], reference=m.outcome, base=base, budget=3 * m.length)


def test_loopback_tcp_sockets_and_ports_come_back_exactly(builds, base):
    g = Guest(builds.get("inet_tcp", "musl"), (INET["inet_tcp"],))
    m = measure(g, base)

    def tcp_time_wait(mm):
        net = getattr(mm.system, "inet", None)
        return net is not None and any(b.state == "timewait" for bs in net.tcp.ports.values()
                                       for b in bs) and _backlog_or_conn(mm)
    k = _find(g, base, m.length, tcp_time_wait, steps=120)
    assert k is not None
    root = fresh_root(g, base)
    machine = start(g, root, Capture())
    assert machine.advance(k) is None
    data = image_bytes(machine)
    machine.close()
    again_m, _ = restore_bytes(data, console=Capture().console)
    try:
        again = image_bytes(again_m)
    finally:
        again_m.close()
    one, two = (json.loads(decode(x)[1]["fds.json"]) for x in (data, again))
    assert one["sockets"] == two["sockets"] and one["socket_system"] == two["socket_system"]
    assert any(s["family"] == 2 for s in one["sockets"])
    assert_transparent(g, [k], reference=m.outcome, base=base, budget=3 * m.length)


def _backlog_or_conn(m):
    return any(f.kind == "socket" and f.ops.sock.family.number in (2, 10)
               and f.ops.sock.state in ("listening", "connected")
               for q in m.system.processes.values() for f in q.fds.descriptions())


def _host_port():
    import socket
    for port in range(21000 + os.getpid() % 4000, 26000, 7):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    pytest.skip("no free port on this host")


def _vsnap(*args, cwd, timeout=120, **kw):
    return subprocess.run([sys.executable, "-m", "vsnap", *map(str, args)], cwd=cwd,
                          capture_output=True, timeout=timeout, **kw)


def _started(proc, what: bytes, timeout=60):
    """Read proc's stdout until `what` (the guest said it listens)."""
    import select
    import time
    got, end = b"", time.monotonic() + timeout
    while what not in got:
        r, _, _ = select.select([proc.stdout], [], [], max(0.0, end - time.monotonic()))
        if not r:
            proc.kill()
            raise AssertionError(f"the guest never said {what!r}: {got!r}")
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            raise AssertionError(f"vsnap ended first: {got!r} {proc.stderr.read()!r}")
        got += chunk
    return got


def test_a_host_connection_is_recorded_and_resumes_reset_by_the_peer(builds, tmp_path):
    """A guest serving a client on the host (--listen), saved while it waits for the
    client's next line: the image records the connection, inspect shows it, and the resumed
    guest (a new process, no host socket) reads ECONNRESET and ends as a reset ends it."""
    import socket
    prog = builds.get("inet_echo", "musl")
    port = _host_port()
    run = subprocess.Popen([sys.executable, "-m", "vsnap", "run", "--listen", str(port), prog,
                            "serve", str(port)], cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        _started(run, b"listening\n")
        c = socket.create_connection(("127.0.0.1", port), timeout=30)
        c.sendall(b"hello\n")
        assert c.recv(100) == b"echo: hello\n"
        saved = _vsnap("save", run.pid, "-o", tmp_path / "h.img", "--exit", cwd=tmp_path)
        assert saved.returncode == 0, saved.stderr
        run.wait(timeout=60)
        c.close()
    finally:
        if run.poll() is None:
            run.kill()
    fds = _vsnap("inspect", "h.img", "fds", cwd=tmp_path)
    assert fds.returncode == 0, fds.stderr
    text = fds.stdout.decode()
    assert "AF_INET STREAM connected" in text and "connected to the host at 127.0.0.1:" in text
    assert "reset by the peer" in text and f"127.0.0.1:{port}" in text, text
    resumed = _vsnap("resume", "--strace", "h.img", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == b"served 1 lines\n", resumed.stdout
    assert b"ECONNRESET" in resumed.stderr
    assert b"not carried over" in resumed.stderr and b"Traceback" not in resumed.stderr

    # bytes the host had sent that the guest had not read yet are read first, then the
    # reset (here taken by the write of the echo; the next read is the end)
    def unread(fds, tree):
        s = _first(fds, lambda s: s["family"] == 2 and s["inet"]["host"] is not None)
        s["inet"]["host"]["unread"] = "bGF0ZQo="          # "late\n"
    _rewrite((tmp_path / "h.img").read_bytes(), tmp_path, unread)
    late = _vsnap("resume", "bad.img", cwd=tmp_path)
    assert (late.returncode, late.stdout) == (0, b"served: late\nserved 2 lines\n"), late


def test_a_host_listener_comes_back_with_the_same_listen_port(builds, tmp_path):
    """Saved while waiting in accept on a --listen port: resumed with --listen PORT a host
    client is served; resumed without it the listener is guest-only and vsnap says so."""
    import socket
    prog = builds.get("inet_echo", "musl")
    port = _host_port()
    run = subprocess.Popen([sys.executable, "-m", "vsnap", "run", "--listen", str(port), prog,
                            "serve", str(port)], cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        _started(run, b"listening\n")
        saved = _vsnap("save", run.pid, "-o", tmp_path / "l.img", "--exit", cwd=tmp_path)
        assert saved.returncode == 0, saved.stderr
        run.wait(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    text = _vsnap("inspect", "l.img", "fds", cwd=tmp_path).stdout.decode()
    assert f"also listens on the host's 127.0.0.1:{port}" in text, text
    alone = _vsnap("resume", "l.img", cwd=tmp_path, timeout=120)
    assert b"restored for guest clients only" in alone.stderr
    assert alone.returncode != 0 and b"Traceback" not in alone.stderr
    resumed = subprocess.Popen([sys.executable, "-m", "vsnap", "resume", "--listen", str(port),
                                "l.img"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        import time
        end = time.monotonic() + 60
        while True:
            try:
                c = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except OSError:
                assert time.monotonic() < end and resumed.poll() is None, resumed.stderr
                time.sleep(0.05)
        c.sendall(b"again\n")
        assert c.recv(100) == b"echo: again\n"
        c.shutdown(socket.SHUT_WR)
        assert c.recv(100) == b""
        c.close()
        out, err = resumed.communicate(timeout=60)
    finally:
        if resumed.poll() is None:
            resumed.kill()
    assert resumed.returncode == 0, err
    assert out == b"served: again\nserved 1 lines\n", out


@pytest.fixture(scope="module")
def tcp_image(builds, base):
    """An image of inet_tcp with a listener and connections live, and its root."""
    g = Guest(builds.get("inet_tcp", "musl"), (INET["inet_tcp"],))
    m = measure(g, base)
    k = _find(g, base, m.length, _backlog_or_conn, steps=60)
    assert k is not None
    root = fresh_root(g, base)
    machine = start(g, root, Capture())
    assert machine.advance(k) is None
    data = image_bytes(machine)
    machine.close()
    return data, root


def _space(fds):
    return fds["socket_system"]["inet"]["tcp"]


def _first_binding(fds):
    return next(b for _, chain in _space(fds)["ports"] for b in chain if b["owner"] is not None)


INET_TAMPERS = {
    "short IPv4 address": (lambda f, t: _first(f, lambda s: s["addr"]).__setitem__(
        "addr", {"inet": [2, "7f00", 80, 0, 0]}), "addr"),
    "UDP protocol on TCP": (lambda f, t: _first(f, lambda s: s["family"] == 2).__setitem__(
        "protocol", 17), "protocol"),
    "port held twice by one socket": (lambda f, t: _space(f)["ports"].append(
        [65000, [dict(_first_binding(f), local=[2, "7f000001", 65000, 0, 0])]]), "owner"),
    "binding on another port": (lambda f, t: _first_binding(f).__setitem__(
        "local", [2, "7f000001", 1, 0, 0]), "local"),
    "ephemeral counter out of range": (lambda f, t: _space(f).__setitem__("next_odd", 5),
                                       "next_odd"),
    "unknown system part": (lambda f, t: f["socket_system"].__setitem__("ax25", {}),
                            "socket_system"),
    "host side on a guest connection": (lambda f, t: _first(
        f, lambda s: s["family"] == 2 and s["peer"] is not None)["inet"].__setitem__(
        "host", {"unread": "", "unsent": "", "eof": False, "error": 0, "connecting": False}),
        "host"),
}


@pytest.mark.parametrize("name", sorted(INET_TAMPERS))
def test_a_tampered_inet_record_is_refused_in_one_line(tcp_image, tmp_path, name):
    change, word = INET_TAMPERS[name]
    data, root = tcp_image
    path = _rewrite(data, tmp_path, change)
    with pytest.raises(ImageError) as e:
        restore(path, root=str(root))
    msg = str(e.value)
    assert "\n" not in msg and "fds.json" in msg and word in msg, msg


@pytest.mark.parametrize("which", ["listen", "tcp"])
def test_random_damage_to_socket_records_never_escapes_as_a_traceback(backlog_image,
                                                                      tcp_image, which):
    """Fields of the socket records set to odd values, one or two at a time: each image is
    refused in one line or resumes; nothing else may come out."""
    import copy
    import random
    data, root = backlog_image if which == "listen" else tcp_image
    manifest, parts = decode(data)
    fds0 = json.loads(parts["fds.json"])
    odd = [None, -1, 0, 1, 2, 5, 99, 1 << 40, "x", [], {}, True, [1, 2], {"hex": "00"},
           ["path", {"hex": "41"}], {"inet": [2, "7f000001", 5, 0, 0]}]

    def paths(o, pre=()):
        items = o.items() if isinstance(o, dict) else enumerate(o) if isinstance(o, list) \
            else ()
        for k, v in items:
            yield pre + (k,)
            yield from paths(v, pre + (k,))
    every = [("sockets",) + p for p in paths(fds0["sockets"])] + \
        [("socket_system",) + p for p in paths(fds0["socket_system"])]
    rnd = random.Random(13)
    for _ in range(200 if SLOW else 40):
        fds = copy.deepcopy(fds0)
        for _ in range(rnd.randint(1, 2)):
            p, o = rnd.choice(every), fds
            for x in p[:-1]:
                o = o[x]
            o[p[-1]] = copy.deepcopy(rnd.choice(odd))
        damaged = dict(parts, **{"fds.json": json.dumps(fds).encode()})
        damaged.pop("manifest.json", None)
        from vsnap.snapshot.codec import encode
        try:
            m, _ = restore_bytes(encode(damaged, manifest["program"]),
                                 console=Capture().console)
            m.close()
        except (ImageError, FileChanged) as e:
            assert "\n" not in str(e)
