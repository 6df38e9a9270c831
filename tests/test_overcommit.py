"""The memory budget counts touched pages, as Linux's overcommit does, not reservations: a large
anonymous mapping the guest never touches costs nothing; touching past the budget ends the
guest as the OOM killer would (137); --stats reports the peak; reservations have a ceiling
(RESERVE_FACTOR times the budget), past which mmap fails with ENOMEM."""
from __future__ import annotations

import re

import pytest

from conftest import assert_no_traceback, make_root, run_cli, run_native
from vsnap.memory import RESERVE_FACTOR


@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_an_untouched_reservation_does_not_count(builds, libc, tmp_path):
    prog = builds.get("reserve", libc)
    root = make_root(tmp_path / "root", prog)
    args = ("1024", "8")  # 1 GiB reserved, 8 MiB touched, with a 64 MiB budget
    native = run_native(prog, args, cwd=root)
    got = run_cli("run", "--max-memory", "64M", "--stats", "./prog", *args, cwd=root)
    assert_no_traceback(got)
    assert (got.stdout, got.status) == (native.stdout, native.status) == \
        (b"reserved 1024 MiB, touched 8 MiB\n", 0)
    peak = int(re.search(rb"peak memory (\d+) KiB touched", got.stderr).group(1))
    assert 8 << 10 <= peak < 16 << 10, got.text()  # 8 MiB, plus the stack and the program


@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_touching_past_the_budget_ends_the_guest(builds, libc, tmp_path):
    root = make_root(tmp_path / "root", builds.get("reserve", libc))
    got = run_cli("run", "--max-memory", "64M", "./prog", "1024", "512", cwd=root)
    assert_no_traceback(got)
    assert got.status == 137 and got.stdout == b"", got.text()
    assert "memory budget of 64 MiB exceeded" in got.text()


def test_reservations_have_a_ceiling(builds, tmp_path):
    root = make_root(tmp_path / "root", builds.get("reserve", "musl"))
    over = str(64 * RESERVE_FACTOR + 1)
    got = run_cli("run", "--max-memory", "64M", "./prog", over, "0", cwd=root)
    assert (got.stdout, got.status) == (f"mmap of {over} MiB failed\n".encode(), 1), got.text()
