"""eventfd and eventfd2 (kernel/eventfd.py, vsnap/eventcount.py) against Linux, musl and
glibc (eventfd.c): the counter and semaphore mode, the 8-byte rules, the value that cannot be
written, poll's bits, the anonymous inode (fstat, /proc/self/fd, fdinfo, what it refuses),
reads and writes that wait for another process, EINTR and SA_RESTART; a read nothing can end
stops the run with one line; eventfd counters in checkpoint images (test_epoll.py saves them
with epoll interest lists, mid-run)."""
from __future__ import annotations

import pytest

from conftest import make_root, run_api
from test_epoll import against_native
from vsnap.eventcount import MAX, EventCounter

FLAVOURS = ("musl", "glibc")


@pytest.fixture(scope="module", autouse=True)
def prebuilt(builds):
    builds.prebuild(["eventfd"], FLAVOURS)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_eventfd_matches_linux(builds, tmp_path, flavour):
    out = against_native(builds.get("eventfd", flavour), tmp_path)
    assert b"  readlink anon_inode:[eventfd]\n" in out
    assert b"read that waits = 8, value 41 or 42: 1\n" in out
    assert b"rd(fd)                             = -1 Interrupted system call\n" in out


def test_a_read_nothing_can_end_stops_the_run(builds, tmp_path):
    root = make_root(tmp_path / "v", builds.get("eventfd", "musl"))
    got, result = run_api(str(root / "prog"), ("hang",), root=root)
    assert result.status == 1 and got.stdout == b""
    assert result.message == ("vsnap: the guest waits forever: read on an eventfd, and no other "
                              "guest process could end the wait; stopped it")


def test_counter_records_are_checked():
    c = EventCounter(5, True, 2)
    assert EventCounter.load(c.saved()).saved() == c.saved()
    for bad, why in [({"count": -1, "semaphore": False, "ident": 0}, "unsigned 64-bit"),
                     ({"count": MAX + 1, "semaphore": False, "ident": 0}, "unsigned 64-bit"),
                     ({"count": 1, "semaphore": 1, "ident": 0}, "true or false"),
                     ({"count": 1, "semaphore": False}, "exactly the keys"),
                     ({"count": 1, "semaphore": False, "ident": -3}, "ident")]:
        with pytest.raises(ValueError, match=why):
            EventCounter.load(bad)
