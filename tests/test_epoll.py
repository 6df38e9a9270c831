"""Readiness across processes (kernel/poll.py) and epoll (kernel/epoll.py), against Linux:

* poll, ppoll, select and pselect6 in a parent that waits on a pipe another process writes,
  closes or leaves alone (poll_procs.c): the wait ends when the data comes (not only on a
  signal), POLLHUP when the writer exits, timeouts on the virtual clock, EINTR from a timer
  or from the child's kill, the call's own signal mask put back after a park;
* checkpoints while the parent is parked in those waits: the promise holds.
"""
from __future__ import annotations

import pytest

from conftest import assert_no_traceback, make_root, run_api, run_cli, run_native
from vsnap.testing import Guest, assert_transparent, measure

FLAVOURS = ("musl", "glibc")
GUESTS = ("poll_procs",)


@pytest.fixture(scope="module", autouse=True)
def prebuilt(builds):
    builds.prebuild(GUESTS, FLAVOURS)


def against_native(prog: str, tmp_path, args=()) -> bytes:
    """Run natively, with the API and with the CLI: the same bytes and status each way."""
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


# -- poll and select across processes -------------------------------------------------------------

@pytest.mark.parametrize("flavour", FLAVOURS)
def test_poll_and_select_wake_when_another_process_acts(builds, tmp_path, flavour):
    out = against_native(builds.get("poll_procs", flavour), tmp_path)
    # what the run must have shown (not only "the same as Linux"): each wait ended its way
    assert b"poll data = 1\n  revents 0x1\n" in out
    assert b"poll hangup = 1\n  revents 0x10\n" in out
    assert b"ppoll 120ms = 0\n  waited >= 120ms: 1, left 0.000000000\n" in out
    assert b"ppoll, child's SIGUSR1 = -1 Interrupted system call\n" \
           b"  revents 0, handler ran 1, SIGUSR1 blocked again 1\n" in out


@pytest.mark.parametrize("part", ["data", "timeout", "signal"])
def test_saved_while_parked_in_poll_resumes_the_same(builds, tmp_path, part):
    """Saves all through the run, parked waits included: the resumed call runs again from
    scratch and keeps its first deadline (a timeout does not start over) and the mask."""
    g = Guest(builds.get("poll_procs", "musl"), (part,))
    m = measure(g, tmp_path)
    assert m.outcome.status == 0, m.outcome.stderr
    n = m.length
    for k in sorted({n * i // 9 for i in range(1, 9)} | set(m.syscalls[1::7])):
        assert_transparent(g, [k], reference=m.outcome, base=tmp_path, budget=3 * n)
