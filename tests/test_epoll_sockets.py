"""epoll on sockets (wait queues in vsnap/sockets.py, inet.py, hostnet.py), against Linux:

* epoll_sock.c (musl and glibc, byte-identical with a native run): an edge-triggered
  non-blocking echo server over AF_UNIX and over TCP on 127.0.0.1 with a forked client,
  where each wait reports exactly what Linux reports: once per event in ET (a second wait
  with nothing new gives 0), again and again in LT, one-shot items re-armed by MOD, a
  listener's EPOLLIN per new connection, a non-blocking connect's EPOLLOUT, EPOLLRDHUP on
  shutdown(SHUT_WR), EPOLLOUT once after the peer drains a full buffer, EPOLLERR|EPOLLHUP
  on a reset; UDP's arrivals and a sender's own EPOLLOUT; AF_UNIX datagrams and
  SOCK_SEQPACKET records (a sender hears EPOLLOUT as each of its messages is read, a
  receiver's full queue holds it back until one is); an item on a pipe whose only
  descriptor is in flight (SCM_RIGHTS) stays until the received copy is closed;
* checkpoints anywhere in those runs (ET items' "already reported" state, parked waits,
  descriptions in flight watched by an epoll) keep the promise;
* a host connection's news (bytes, the end, a client on a --listen port) wake the guest
  socket's watchers.
"""
from __future__ import annotations

import os

import socket

import pytest

from conftest import assert_no_traceback, make_root, run_api, run_cli, run_native
from vsnap.snapshot import image_bytes
from vsnap.testing import Capture, Guest, assert_transparent, fresh_root, measure, start

FLAVOURS = ("musl", "glibc")


@pytest.fixture(scope="module", autouse=True)
def prebuilt(builds):
    builds.prebuild(("epoll_sock",), FLAVOURS)


def against_native(prog: str, tmp_path, args=()) -> bytes:
    root = make_root(tmp_path / "native", prog)
    want = run_native(str(root / "prog"), args, cwd=root)
    assert want.status == 0 and want.stdout.endswith(b"EXIT-SUCCESS\n"), want.text()
    root = make_root(tmp_path / "api", prog)
    got, result = run_api(str(root / "prog"), args, root=root)
    assert got.stdout.decode().splitlines() == want.stdout.decode().splitlines(), result.message
    assert (got.stdout, got.stderr, got.status) == (want.stdout, want.stderr, want.status)
    root = make_root(tmp_path / "cli", prog)
    cli = run_cli("run", "./prog", *args, cwd=root)
    assert_no_traceback(cli)
    assert (cli.stdout, cli.stderr, cli.status) == (want.stdout, want.stderr, want.status)
    return want.stdout


def _lines(out: bytes, section: str) -> list[str]:
    text = out.decode()
    part = text.split(f"== {section}\n")[1].split("\n== ")[0]
    return [" ".join(line.split()) for line in part.splitlines()]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_epoll_on_sockets_matches_linux(builds, tmp_path, flavour):
    out = against_native(builds.get("epoll_sock", flavour), tmp_path)
    # what the run must have shown, not only "the same as Linux"
    for section in ("AF_UNIX", "TCP"):
        lines = _lines(out, section)
        # ET: one report per arrival, then nothing until the next
        assert lines.count("server ET: nothing new 0") == 5, lines
        assert "server more while readable 1 [0x1 10]" in lines
        assert "server second connection 1 [0x1 100]" in lines
        assert "server LT again 1 [0x1 11]" in lines
        assert "server one-shot fired 0" in lines and "server re-armed 1 [0x1 13]" in lines
        assert "server peer shut for writing 1 [0x2001 14]" in lines
        assert "client B drained 1 [0x4 2]" in lines and "client B full 0" in lines
        # A was deleted from the client's epoll before B joined: it is never heard of again
        assert "client B writable 1 [0x4 2]" in lines
        assert "server reset 1 [0x2019 20]" in lines
    assert "udp one datagram 2 [0x4 2] [0x1 1]" in _lines(out, "UDP")
    assert "dgram one read 1 [0x4 2]" in _lines(out, "AF_UNIX datagrams")
    assert "flight pipe written 1 [0x1 40]" in _lines(out, "in flight")
    assert "flight received copy closed 0" in _lines(out, "in flight")


@pytest.mark.parametrize("part, step", [("unix", 6), ("tcp", 6), ("udp", 1), ("dgram", 2),
                                        ("flight", 1)])
def test_epoll_on_sockets_survives_checkpoints(builds, tmp_path, part, step):
    """Saved around the system calls (the parked epoll_waits and reads of both processes
    among them): interest lists on sockets with their ET and one-shot state, ready lists,
    and (flight) an epoll watching a pipe whose only reference is a message in flight."""
    g = Guest(builds.get("epoll_sock", "musl"), (part,))
    m = measure(g, tmp_path)
    assert m.outcome.status == 0, m.outcome.stderr
    n = m.length
    # every step-th system call under --slow; a third of them by default (make test's time)
    every = step if os.environ.get("VSNAP_SLOW") else step * 3
    for k in sorted(set(m.syscalls[::every]) | {n * i // 9 for i in range(1, 9)}):
        assert_transparent(g, [k], reference=m.outcome, base=tmp_path, budget=3 * n)


def test_an_epoll_watching_a_description_in_flight_is_saved(builds, tmp_path):
    """Between close(p[0]) and the recvmsg, the pipe's read end is held by a message only:
    the image keeps the epoll item on it (a description no fd table holds) and the item
    reports after resume, as on Linux."""
    import json
    from vsnap.snapshot.codec import decode
    g = Guest(builds.get("epoll_sock", "musl"), ("flight",))
    m0 = measure(g, tmp_path)
    found = False
    for k in m0.syscalls:
        m = start(g, fresh_root(g, tmp_path), Capture())
        try:
            if m.advance(k) is not None:
                continue
            _, parts = decode(image_bytes(m))
        finally:
            m.close()
        fds = json.loads(parts["fds.json"])
        held = {e["description"] for e in fds["fds"]}
        eps = [d for d in fds["descriptions"] if d["kind"] == "epoll"]
        if any(it[0] not in held and fds["descriptions"][it[0]]["kind"] == "pipe"
               for d in eps for it in d["epoll"]["items"]):
            found = True
            assert_transparent(g, [k], reference=m0.outcome, base=tmp_path,
                               budget=3 * m0.length)
            break
    assert found, "no point where the epoll watched a pipe in flight"


def test_host_news_wake_the_guest_socket():
    """hostnet: bytes from the host, its end, and a client on a --listen port wake what
    the guest socket's watchers listen on (the wait queue InetSocket hands them)."""
    from vsnap.hostnet import HostListener, HostNet, HostStream
    from vsnap.inet import InetSocket
    net = HostNet()
    a, b = socket.socketpair()
    a.setblocking(False)
    h = HostStream(net, a)
    net.sockets.add(h)
    sock = InetSocket(None, socket.SOCK_STREAM, 0, (1, 0, 0), socket.AF_INET)
    keys = []
    sock.wq.add(keys.append)
    sock.host = h
    net.pump(0)
    assert keys == []                        # nothing came: no wake
    b.send(b"hi")
    net.pump(1.0)
    assert keys == [0x1] and bytes(h.rbuf) == b"hi"
    b.close()
    net.pump(1.0)
    assert keys == [0x1, 0] and h.eof
    h.close()

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    lsock.setblocking(False)
    hl = HostListener(net, lsock, lsock.getsockname()[1])
    net.sockets.add(hl)
    listener = InetSocket(None, socket.SOCK_STREAM, 0, (1, 0, 0), socket.AF_INET)
    lkeys = []
    listener.wq.add(lkeys.append)
    listener.host_listener = hl
    c = socket.create_connection(lsock.getsockname())
    net.pump(1.0)
    assert lkeys == [0x1] and len(hl.queue) == 1
    c.close()
    net.close_all()
