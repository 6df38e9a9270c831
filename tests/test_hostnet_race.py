"""Taking a host socket's news in and waiting for it (vsnap/hostnet.py), with the host peer
sending at a chosen moment: between a waiter's look at readiness and its wait.

The bug these catch: a guest's poll() took the host's news twice (once at its start, once
for the send room), so a line that arrived between the two was pulled into vsnap after
POLLIN was decided: the mask said "nothing to read", the host socket was drained, and the
wait on it never woke (the MUD's clients hung in about one run in five). And any news taken
outside a pump (a send, another process's look) could come after a waiter looked.
"""
from __future__ import annotations

import os
import socket
import time

from vsnap.hostnet import HostNet, HostStream
from vsnap.inet import InetSocket

POLLIN, POLLOUT = 0x1, 0x4
AF_INET, SOCK_STREAM = 2, 1


def host_pair(net: HostNet):
    """A connected host socket inside vsnap (a HostStream) and its host peer."""
    inside, peer = socket.socketpair()
    inside.setblocking(False)
    h = HostStream(net, inside)
    net.sockets.add(h)
    return h, peer


def guest_socket(h: HostStream) -> InetSocket:
    s = InetSocket(None, SOCK_STREAM, 0, (1, 0, 0), AF_INET)
    s.state, s.host = "connected", h
    return s


def test_poll_mask_agrees_with_what_it_took_in():
    """The peer sends right after poll's first look at the host: either the mask says
    POLLIN, or the bytes are still in the host socket for the wait to see."""
    net = HostNet()
    h, peer = host_pair(net)
    sock = guest_socket(h)
    real = h.poll_now
    calls = []

    def poll_now():
        real()
        calls.append(1)
        if len(calls) == 1:
            peer.send(b"who\n")   # arrives just after poll's look
            time.sleep(0.05)      # in the host's buffer before any second look

    h.poll_now = poll_now
    mask = sock.poll()
    assert bool(mask & POLLIN) == bool(h.rbuf), (mask, bytes(h.rbuf))
    h.poll_now = real
    # nothing said POLLIN: the wait must see the line (the host socket still has it)
    start = time.monotonic()
    net.pump(5.0)
    assert time.monotonic() - start < 2.0 and sock.poll() & POLLIN
    peer.close()


def test_pump_does_not_wait_for_news_already_taken():
    """News taken in outside a pump (a guest send or read that looked at its own socket),
    after a waiter looked: the next pump hands it back at once instead of waiting on a host
    socket that is drained already."""
    net = HostNet()
    h, peer = host_pair(net)
    net.pump(0)               # the waiter's look: nothing yet
    peer.send(b"line\n")
    time.sleep(0.05)
    h.poll_now()              # taken in by someone else's call
    assert h.rbuf == b"line\n"
    start = time.monotonic()
    net.pump(5.0)
    assert time.monotonic() - start < 2.0
    assert net.news           # so wait_parked does not move the virtual clock to a deadline
    start = time.monotonic()
    net.pump(0.3)             # handed back once: now a pump waits again
    assert time.monotonic() - start >= 0.25
    peer.close()


def test_pump_takes_fds_past_fd_setsize():
    """select() cannot watch a host fd past 1024; a busy guest (many host clients) has such
    fds. poll() can."""
    net = HostNet()
    inside, peer = socket.socketpair()
    high = os.dup2(inside.fileno(), 1500)
    inside.close()
    h = HostStream(net, socket.socket(fileno=high))
    h.sock.setblocking(False)
    net.sockets.add(h)
    peer.send(b"x")
    net.pump(2.0)
    assert h.rbuf == b"x"
    h.close()
    peer.close()
