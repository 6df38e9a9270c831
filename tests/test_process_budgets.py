"""Bad input with processes: a fork bomb, a zombie flood, two processes that wait for each
other, RLIMIT_NPROC. Each ends with a clear result (one line, a defined status, no
traceback), and nothing of the guest runs on the host: vsnap never forks there."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

VSNAP = [sys.executable, "-m", "vsnap"]


def _run(prog, *args, opts=(), timeout=120):
    t0 = time.monotonic()
    p = subprocess.Popen([*VSNAP, "run", *opts, prog, *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    # vsnap makes no host process for a guest one: while it runs, it has no children
    time.sleep(0.5)
    kids = subprocess.run(["ps", "--ppid", str(p.pid), "-o", "pid="], capture_output=True,
                          text=True).stdout.split()
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err, time.monotonic() - t0, kids


@pytest.fixture(scope="module")
def bomb(builds):
    return builds.get("proc_bomb", "musl")


def test_a_fork_bomb_stops_within_seconds_on_the_budget(bomb):
    status, out, err, secs, kids = _run(bomb, "bomb", opts=("--max-processes", "40"))
    assert status == 137, err
    lines = err.decode().splitlines()
    assert lines[0] == ("vsnap: guest stopped: it forked past the budget of 40 processes "
                        "(--max-processes, zombies included); raise it if the program needs "
                        "more")
    assert b"Traceback" not in err and kids == []
    assert secs < 30


def test_the_default_budget_stops_a_fork_bomb_too(bomb):
    status, _, err, secs, kids = _run(bomb, "bomb")
    assert status == 137 and b"budget of 128 processes" in err and kids == []
    assert secs < 60


def test_zombies_count_against_the_budget(bomb):
    status, out, err, _, _ = _run(bomb, "zombies", opts=("--max-processes", "30"))
    assert status == 137 and b"budget of 30 processes" in err, err


def test_two_processes_waiting_for_each_other_end_the_run(bomb):
    status, out, err, _, _ = _run(bomb, "deadlock")
    assert status == 1
    assert err.decode().strip().startswith("vsnap: every guest process waits forever (1000 "
                                           "read on a pipe; 1001 read on a pipe): a "
                                           "deadlock; stopped them"), err


def test_rlimit_nproc_is_the_guests_own_limit_eagain(bomb, tmp_path):
    status, out, err, _, _ = _run(bomb, "nproc", "5")
    # five processes of the user at most: the guest itself and four children
    assert (status, out) == (0, b"after 4 forks: Resource temporarily unavailable\n"), err
