"""AF_INET/AF_INET6 sockets between guest processes over vsnap's loopback, and the host
network policy (vsnap/inet.py, kernel/inetfamily.py, vsnap/hostnet.py).

* inet_tcp.c and inet_udp.c, natively (this machine's real loopback) and under vsnap, musl
  and glibc, byte for byte: ports are a free base the test finds and passes to both;
* the host network: refused by default with Linux's errno (ENETUNREACH, as in a network
  namespace with only lo, which the native side runs in when `unshare -n` works) and one
  notice; `--listen PORT` with a real client on the host; `--connect HOST:PORT` to a real
  server on the host; without them, both stay inside vsnap; bad option values.
"""
from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import VSNAP, make_root, run_api, run_cli, run_native

FLAVOURS = ("musl", "glibc")


@pytest.fixture(scope="module", autouse=True)
def prebuilt(builds):
    builds.prebuild(["inet_tcp", "inet_udp", "inet_echo"], FLAVOURS)


def _free(port: int) -> bool:
    for fam, kind in ((socket.AF_INET6, socket.SOCK_STREAM), (socket.AF_INET6, socket.SOCK_DGRAM)):
        s = socket.socket(fam, kind)
        try:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_base(n: int = 4) -> int:
    """n consecutive ports free on the host (TCP and UDP, v4 and v6), below the ephemeral
    range, chosen from the test's pid so parallel runs do not meet."""
    start = 20000 + (os.getpid() * 37) % 9000
    for base in range(start, start + 3000, 10):
        if all(_free(base + i) for i in range(n)):
            return base
    pytest.skip("no free ports on this host")


@pytest.mark.parametrize("prog", ["inet_tcp", "inet_udp"])
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_matches_linux(builds, tmp_path, prog, flavour):
    exe = builds.get(prog, flavour)
    base = str(free_base())
    native = run_native(exe, [base], cwd=make_root(tmp_path / "n"))
    assert native.status == 0, native.text()
    root = make_root(tmp_path / "v", exe)
    notices: list[str] = []
    under, _ = run_api(str(root / "prog"), [base], root=root, log=notices)
    assert under.stdout == native.stdout
    assert under.status == 0
    assert notices == []
    # what the test rests on: connections made, refused, reset; datagrams moved
    if prog == "inet_tcp":
        assert b"server got hello then 0" in under.stdout
        assert b"after reset -1 Connection reset by peer" in under.stdout
        assert b"v6 accepted peer: family 10 len 28 ip ::ffff:127.0.0.1" in under.stdout
    else:
        assert b"second send -1 Connection refused" in under.stdout
        assert b"flood of 1-byte datagrams: 256 arrive" in under.stdout
        assert b"v6 socket got 2 v4 from ::ffff:127.0.0.1 len 28" in under.stdout


def test_udp_truesize_as_linux():
    """What a datagram costs its receiver (inet.udp_truesize) against this kernel's
    SO_MEMINFO, across the size classes, IPv4 and IPv6."""
    from vsnap.inet import udp_truesize
    for fam, addr, v6 in ((socket.AF_INET, "127.0.0.1", False), (socket.AF_INET6, "::1", True)):
        r = socket.socket(fam, socket.SOCK_DGRAM)
        r.bind((addr, 0))
        s = socket.socket(fam, socket.SOCK_DGRAM)
        for size in list(range(0, 17000, 11)) + [65000, 65488, 65489, 65507]:
            s.sendto(b"x" * size, r.getsockname())
            native = struct.unpack("9I", r.getsockopt(socket.SOL_SOCKET, 55, 36))[0]
            r.recv(70000)
            assert udp_truesize(size, v6) == native, (fam, size)
        r.close()
        s.close()


def _native_no_network(exe: str, args) -> bytes | None:
    """The program in a network namespace with only lo up, or None where that cannot be."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    proc = subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                           exe, *args], capture_output=True, timeout=60)
    return proc.stdout if proc.returncode == 0 else None


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_host_network_refused_by_default(builds, tmp_path, flavour):
    exe = builds.get("inet_echo", flavour)
    root = make_root(tmp_path / "v", exe)
    out = run_cli("run", "--root", str(root), str(root / "prog"), "reach")
    assert out.status == 0, out.text()
    lines = out.stdout.decode().splitlines()
    assert len(lines) == 5 and all(ln.endswith(("Network is unreachable", "Network unreachable")) for ln in lines)
    notice = [ln for ln in out.text().splitlines() if ln.startswith("vsnap:")]
    assert notice == ["vsnap: the guest has no network but its loopback: tcp to 8.8.8.8:53 "
                      "fails with ENETUNREACH; vsnap run --connect 8.8.8.8:53 would allow it"]
    native = _native_no_network(exe, ["reach"])
    if native is not None:
        assert out.stdout == native


def _start(*argv) -> subprocess.Popen:
    return subprocess.Popen([*VSNAP, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen) -> tuple[bytes, bytes]:
    """vsnap's stdout and stderr once it ends; a hang fails with what it said so far."""
    try:
        return proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(15)  # the guest dies of SIGTERM; vsnap says where it was
        out, err = proc.communicate(timeout=30)
        raise AssertionError(f"vsnap did not end: {out!r} {err.decode(errors='replace')}")


def _connect(port: int, proc: subprocess.Popen, timeout: float = 60) -> socket.socket:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"vsnap ended first: {proc.communicate()}")
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("vsnap never listened on the host")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_listen_serves_a_host_client(builds, tmp_path, flavour):
    exe = builds.get("inet_echo", flavour)
    root = make_root(tmp_path / "v", exe)
    port = free_base(1)
    proc = _start("run", "--stats", "--listen", str(port), "--root", str(root),
                  str(root / "prog"), "serve", str(port))
    try:
        c = _connect(port, proc)
        f = c.makefile("rwb")
        transcript = []
        for line in (b"hello\n", b"a second line\n"):
            f.write(line)
            f.flush()
            transcript.append(f.readline())
        c.shutdown(socket.SHUT_WR)
        transcript.append(c.recv(100))
        c.close()
        out, err = _finish(proc)
    finally:
        proc.kill()
    assert transcript == [b"echo: hello\n", b"echo: a second line\n", b""]
    assert out == b"listening\nserved: hello\nserved: a second line\nserved 2 lines\n"
    assert proc.returncode == 0
    assert (b"vsnap: host network: 1 connections accepted, 0 opened, 20 bytes in, 32 out; "
            b"the bytes in came from outside vsnap") in err


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_forked_child_serves_a_host_client(builds, tmp_path, flavour):
    """Every guest process waits (the parent in waitpid, the child on the host socket): vsnap
    waits on the host (Machine._all_parked) instead of calling it a deadlock."""
    exe = builds.get("inet_echo", flavour)
    root = make_root(tmp_path / "v", exe)
    port = free_base(1)
    proc = _start("run", "--listen", str(port), "--root", str(root), str(root / "prog"),
                  "forkserve", str(port))
    try:
        c = _connect(port, proc)
        time.sleep(0.3)  # both guest processes wait by now
        f = c.makefile("rwb")
        f.write(b"one\n")
        f.flush()
        assert f.readline() == b"echo: one\n"
        f.close()  # (the file holds the socket open: both go)
        c.close()
        out, err = _finish(proc)
    finally:
        proc.kill()
    assert out == b"listening\nserved: one\nserved 1 lines\nchild done\n", err
    assert proc.returncode == 0


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_poll_waits_for_a_host_client(builds, tmp_path, flavour):
    """A lone guest in poll() with only host sockets to wake it waits for the host, not
    for its virtual timeout, and not for ever (it parks; the run loop waits on the host)."""
    exe = builds.get("inet_echo", flavour)
    root = make_root(tmp_path / "v", exe)
    port = free_base(1)
    proc = _start("run", "--listen", str(port), "--root", str(root), str(root / "prog"),
                  "pollserve", str(port))
    try:
        c = _connect(port, proc)
        time.sleep(0.2)  # the guest is in poll() by now, with nothing ready
        c.sendall(b"first ")
        assert c.recv(100) == b"first "
        time.sleep(0.2)
        c.sendall(b"second")
        assert c.recv(100) == b"second"
        c.close()
        out, err = _finish(proc)
    finally:
        proc.kill()
    assert out == b"listening\nechoed 12 bytes, read ended with 0\n", err
    assert proc.returncode == 0


def test_vsnap_save_reaches_a_guest_waiting_on_a_host_client(builds, tmp_path):
    """`vsnap save` while a lone guest waits in poll() for a host client: the save is served
    at once (the wait is a park, and the run loop serves the request), and the image resumes
    with the host connection reset by the peer, as CRIU without TCP repair."""
    exe = builds.get("inet_echo", "musl")
    root = make_root(tmp_path / "v", exe)
    port = free_base(1)
    proc = _start("run", "--listen", str(port), "--root", str(root), str(root / "prog"),
                  "pollserve", str(port))
    try:
        c = _connect(port, proc)
        c.sendall(b"first ")
        assert c.recv(100) == b"first "
        time.sleep(0.2)  # the guest is in poll() again, nothing ready
        img = tmp_path / "echo.img"
        t0 = time.monotonic()
        saved = run_cli("save", "--exit", "-o", str(img), str(proc.pid))
        assert saved.status == 0, saved.text()
        assert time.monotonic() - t0 < 20  # served, not timed out (30 s)
        out, err = _finish(proc)
        c.close()
    finally:
        proc.kill()
    assert out == b"listening\n", err
    resumed = run_cli("resume", "--root", str(root), str(img))
    assert resumed.status == 0, resumed.text()
    assert resumed.stdout == b"echoed 6 bytes, read ended with -1\n", resumed.text()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_listen_port_serves_guest_clients_inside(builds, tmp_path, flavour):
    """A guest client of a --listen port reaches the guest listener inside vsnap."""
    exe = builds.get("inet_echo", flavour)
    root = make_root(tmp_path / "v", exe)
    port = free_base(1)
    out = run_cli("run", "--listen", str(port), "--root", str(root), str(root / "prog"),
                  "serve", str(port), "guest")
    assert out.status == 0, out.text()
    assert out.stdout == (b"listening\nreply: echo: from guest\nserved: from guest\n"
                          b"served 1 lines\n") or out.stdout == (
        b"listening\nserved: from guest\nreply: echo: from guest\nserved 1 lines\n")


def test_without_listen_no_host_client_gets_in(builds, tmp_path):
    """Listening without --listen stays inside vsnap: the host's port stays closed, and a
    lone server waits for a client no one can be: the run ends with the one line."""
    exe = builds.get("inet_echo", "musl")
    root = make_root(tmp_path / "v", exe)
    port = free_base(1)
    out = run_cli("run", "--root", str(root), str(root / "prog"), "serve", str(port))
    assert out.status == 1
    assert out.stdout == b"listening\n"
    assert b"the guest waits forever: accept on a socket" in out.stderr
    assert _free(port)


class HostServer:
    """A TCP server on the host's 127.0.0.1: answers one connection with what it read."""

    def __init__(self, port: int):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen()
        self.sock.settimeout(60)
        self.got: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            c, _ = self.sock.accept()
        except OSError:
            return
        data = b""
        while chunk := c.recv(100):
            data += chunk
        self.got.append(data)
        c.sendall(b"host says: " + data)
        c.close()

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_connect_reaches_a_host_server(builds, tmp_path, flavour):
    exe = builds.get("inet_echo", flavour)
    root = make_root(tmp_path / "v", exe)
    port = free_base(1)
    server = HostServer(port)
    try:
        out = run_cli("run", "--stats", "--connect", f"127.0.0.1:{port}", "--root", str(root),
                      str(root / "prog"), "client", "127.0.0.1", str(port))
        server.thread.join(30)
    finally:
        server.close()
    assert out.status == 0, out.text()
    assert out.stdout == b"reply: host says: ping\n"
    assert server.got == [b"ping\n"]
    assert b"vsnap: host network: 0 connections accepted, 1 opened, 16 bytes in, 5 out" \
        in out.stderr


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_nonblocking_connect_to_the_host(builds, tmp_path, flavour):
    """EINPROGRESS, then writable with SO_ERROR 0 once the host accepted; refused by the
    host: writable with SO_ERROR ECONNREFUSED, as Linux."""
    exe = builds.get("inet_echo", flavour)
    root = make_root(tmp_path / "v", exe)
    port = free_base(2)
    server = HostServer(port)
    try:
        out = run_cli("run", "--connect", f"127.0.0.1:{port}", "--connect",
                      f"127.0.0.1:{port + 1}", "--root", str(root), str(root / "prog"),
                      "nbclient", "127.0.0.1", str(port))
        server.thread.join(30)
        refused = run_cli("run", "--connect", f"127.0.0.1:{port + 1}", "--root", str(root),
                          str(root / "prog"), "nbclient", "127.0.0.1", str(port + 1))
    finally:
        server.close()
    assert out.stdout.decode().splitlines() == [
        "connect: Operation now in progress" if flavour == "glibc"
        else "connect: Operation in progress",
        "poll 1 writable 1, SO_ERROR 0", "reply: host says: ping"], out.text()
    assert refused.stdout.decode().splitlines()[1] == "poll 1 writable 1, SO_ERROR " + (
        "Connection refused"), refused.text()
    assert refused.status == 1


def test_without_connect_loopback_stays_inside(builds, tmp_path):
    """127.0.0.1 is the guest's own loopback: with no --connect, a host server there is not
    reached (the guest sees no listener: ECONNREFUSED)."""
    exe = builds.get("inet_echo", "musl")
    root = make_root(tmp_path / "v", exe)
    port = free_base(1)
    server = HostServer(port)
    try:
        out = run_cli("run", "--root", str(root), str(root / "prog"), "client", "127.0.0.1",
                      str(port))
    finally:
        server.close()
    assert out.stdout == b"connect: Connection refused\n"
    assert server.got == []


@pytest.mark.parametrize("args,message", [
    (["--listen", "0"], "vsnap: --listen 0: a port is 1-65535"),
    (["--listen", "http"], "vsnap: --listen http: expected a TCP port number, 1-65535"),
    (["--connect", "example.com:80"], "vsnap: --connect example.com:80: 'example.com' is not "
     "an IP address (names are not looked up: give the address)"),
    (["--connect", "127.0.0.1"], "vsnap: --connect 127.0.0.1: expected HOST:PORT "
     "(127.0.0.1:8080, [::1]:8080)"),
    (["--connect", "[::1]:99999"], "vsnap: --connect [::1]:99999: a port is 1-65535"),
])
@pytest.mark.parametrize("command", ["run", "resume"])
def test_bad_network_options(tmp_path, args, message, command):
    out = run_cli(command, *args, str(tmp_path / "nothing"))
    assert out.status == 2
    assert out.stderr.decode().splitlines() == [message]
    assert out.stdout == b""
