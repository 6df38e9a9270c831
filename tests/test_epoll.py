"""Readiness across processes (kernel/poll.py) and epoll (kernel/epoll.py), against Linux:

* poll, ppoll, select and pselect6 in a parent that waits on a pipe another process writes,
  closes or leaves alone (poll_procs.c): the wait ends when the data comes (not only on a
  signal), POLLHUP when the writer exits, timeouts on the virtual clock, EINTR from a timer
  or from the child's kill, the call's own signal mask put back after a park;
* epoll (epoll.c, musl and glibc): every error in Linux's order, level- and edge-triggered
  and one-shot items on pipes and eventfds (an edge-triggered item reports every wake),
  the ready list's order and maxevents, the (description, fd) key and its classic
  surprise, nested epolls and an epoll fd in poll, waits that other processes end,
  timeouts, EINTR with SA_RESTART, epoll_pwait's mask, an epoll shared across fork;
* checkpoints while those waits are parked, and with interest lists, edge-triggered and
  one-shot state, eventfd counters and pipes in the image: the promise holds; bad epoll
  and eventfd records are refused with one line.
"""
from __future__ import annotations

import os

import json

import pytest

from conftest import assert_no_traceback, make_root, run_api, run_cli, run_native
from vsnap.snapshot import image_bytes
from vsnap.snapshot.codec import ImageError, decode, encode
from vsnap.snapshot.restore import restore_bytes
from vsnap.testing import Capture, Guest, assert_transparent, fresh_root, measure, start

FLAVOURS = ("musl", "glibc")
GUESTS = ("poll_procs", "epoll", "eventfd")


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


# -- epoll against Linux -------------------------------------------------------------------------

@pytest.mark.parametrize("flavour", FLAVOURS)
def test_epoll_matches_linux(builds, tmp_path, flavour):
    out = against_native(builds.get("epoll", flavour), tmp_path)
    # the run shows what it is about, not only that it matches
    assert b"  ET write to a readable pipe: 1 [0x1 0x1]\n" in out
    assert b"  ET read 100 of a full pipe: 0\n  ET read frees a page: 1 [0x4 0x2]\n" in out
    assert b"  closed fd, open description: 1 [0x1 0xabc]\n" in out
    assert b"  SIGALRM with SA_RESTART: -1 Interrupted system call\n" in out
    assert b"  child's EPOLL_CTL_ADD shows here: 1 [0x4 0x77]\n" in out


def test_epoll_wait_nothing_can_end_stops_the_run(builds, tmp_path):
    """An epoll_wait on a pipe only the waiter could write: Linux waits forever; vsnap ends
    the run with one line."""
    root = make_root(tmp_path / "v", builds.get("epoll", "musl"))
    got, result = run_api(str(root / "prog"), ("hang",), root=root)
    assert result.status == 1 and got.stdout == b""
    assert result.message == ("vsnap: the guest waits in epoll_wait for descriptors nothing else "
                              "can make ready: a deadlock (Linux would hang here); stopped it")


# -- checkpoints ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, part, step", [
    ("epoll", "modes", 2), ("epoll", "gotcha", 1), ("epoll", "nested", 1),
    ("epoll", "procs", 3), ("eventfd", None, 4)])
def test_epoll_and_eventfd_state_survives_checkpoints(builds, tmp_path, name, part, step):
    """Saved around the system calls (and inside the long waits): interest lists with their
    edge-triggered and one-shot state and ready lists, eventfd counters, parked waits."""
    g = Guest(builds.get(name, "musl"), (part,) if part else ())
    m = measure(g, tmp_path)
    assert m.outcome.status == 0, m.outcome.stderr
    n = m.length
    # every step-th system call under --slow; a third of them by default (make test's time)
    every = step if os.environ.get("VSNAP_SLOW") else step * 3
    for k in sorted(set(m.syscalls[::every]) | {n * i // 9 for i in range(1, 9)}):
        assert_transparent(g, [k], reference=m.outcome, base=tmp_path, budget=3 * n)


def _live_image(builds, tmp_path, part="modes", at=0.5) -> bytes:
    g = Guest(builds.get("epoll", "musl"), (part,))
    m0 = measure(g, tmp_path)
    m = start(g, fresh_root(g, tmp_path), Capture())
    assert m.advance(int(m0.length * at)) is None
    try:
        return image_bytes(m)
    finally:
        m.close()


def _tampered(data: bytes, change) -> bytes:
    manifest, parts = decode(data)
    fds = json.loads(parts["fds.json"])
    change(fds["descriptions"])
    parts["fds.json"] = json.dumps(fds).encode()
    return encode(parts, manifest["program"])


def _epoll(descs, with_items=True):
    return next(d for d in descs if d["kind"] == "epoll" and (d["epoll"]["items"] or
                                                               not with_items))


def _self_loop(descs):
    ep = _epoll(descs)
    ep["epoll"]["items"][0][0] = descs.index(ep)


def _cycle(descs):
    """Two new epolls inside each other."""
    a, b = dict(_epoll(descs)), dict(_epoll(descs))
    n = len(descs)
    a["epoll"] = {"items": [[n + 1, 90, 1, 0, 100]], "ready": []}
    b["epoll"] = {"items": [[n, 91, 1, 0, 101]], "ready": []}
    descs += [a, b]


def _twice(descs):
    items = _epoll(descs)["epoll"]["items"]
    items.append(list(items[0]))


def _watch_a_file(descs):
    """/dev/null has no poll method: epoll_ctl says EPERM, and an image cannot hold it."""
    descs.append({"id": len(descs), "kind": "null", "path": "/dev/null", "flags": 2,
                  "offset": 0, "stream": None})
    _epoll(descs)["epoll"]["items"][0][0] = len(descs) - 1


def _same_ident(descs):
    efds = [d for d in descs if d["kind"] == "eventfd"]
    extra = json.loads(json.dumps(efds[0]))
    descs.append(extra)


@pytest.mark.parametrize("change, says", [
    (lambda d: _epoll(d)["epoll"]["items"][0].__setitem__(0, 4000), "not another one"),
    (_self_loop, "not another one"),
    (_cycle, "in a cycle"),
    (_twice, "registered twice"),
    (_watch_a_file, "which epoll cannot watch"),
    (lambda d: _epoll(d)["epoll"].update(ready=[0, 0]), "an item twice"),
    (lambda d: _epoll(d)["epoll"]["items"][0].__setitem__(2, -1), "items[0]"),
    (lambda d: _epoll(d)["epoll"]["items"][0].__setitem__(3, 1 << 64), "items[0]"),
    (lambda d: next(x for x in d if x["kind"] == "eventfd")["eventfd"].update(count=-1),
     "unsigned 64-bit"),
    (_same_ident, "one eventfd-id"),
])
def test_bad_epoll_and_eventfd_records_are_refused(builds, tmp_path, change, says):
    good = _live_image(builds, tmp_path, "procs", 0.3)
    restore_bytes(good)[0].close()           # the untouched image resumes
    with pytest.raises(ImageError) as e:
        restore_bytes(_tampered(good, change))
    assert says in str(e.value) and "\n" not in str(e.value)


def test_inspect_shows_counters_and_interest_lists(builds, tmp_path):
    from vsnap.snapshot.image import parse
    from vsnap.snapshot.inspect import render
    text = render(parse(*decode(_live_image(builds, tmp_path, "procs", 0.3)), "live"), "fds")
    assert "Eventfds and epolls:" in text
    assert "  eventfd (fd 7): count 0" in text
    assert "  epoll (fd 8): 2 items" in text
    assert "    fd 7 anon_inode:[eventfd]  events 0x19 data 0x2" in text


def test_fds_json_is_the_same_from_run_to_run(builds, tmp_path):
    """Items keep their order as ranks, not as the counter of this host process (the two
    runs here make their items at different counts of it)."""
    one, two = (decode(_live_image(builds, tmp_path / d, "nested"))[1]["fds.json"]
                for d in "ab")
    assert one == two and b'"epoll"' in one
