"""File times and file contents: utimensat and its older relatives, fallocate and sparse files,
SEEK_DATA/SEEK_HOLE, sendfile, copy_file_range, the sync calls, fadvise64, readahead, statfs.

Differential: the same guest natively and under vsnap (musl and glibc), each in a fresh empty
directory of the same host file system, must print the same bytes; times that come from a clock
are printed as facts that hold on either clock (see tests/guests/filetimes.c). Then Debian's
static busybox, where it is installed: tar keeps archived times, touch -d and cp -a set them.
Then what only vsnap promises: reads leave atime alone (noatime), the books of ctime and atime
survive a checkpoint, and statfs answers fixed numbers.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import vsnap
from conftest import assert_no_traceback, require_native, run_api
from vsnap.clock import EPOCH_START_NS
from vsnap.machine import DEFAULT_ENV
from vsnap.testing import Guest, assert_transparent, measure

from conftest import BUSYBOX  # noqa: E402  (None: no static busybox here)
ENV = (*DEFAULT_ENV, "TZ=UTC")  # busybox reads dates in local time: the same zone both ways


def native(prog: str, args=(), *, cwd: Path) -> tuple[bytes, bytes, int]:
    require_native()
    p = subprocess.run([prog, *args], cwd=cwd, capture_output=True, timeout=60,
                       env=dict(e.split("=", 1) for e in ENV))
    return p.stdout, p.stderr, p.returncode


@pytest.mark.parametrize("flavour", ["musl", "glibc"])
@pytest.mark.parametrize("name", ["filetimes", "extents"])
def test_guest_matches_native(name, flavour, builds, tmp_path):
    """Every call's results and errors, and the data and holes a file ends with, as Linux."""
    prog = builds.get(name, flavour)
    (tmp_path / "n").mkdir()
    (tmp_path / "v").mkdir()
    want = native(prog, cwd=tmp_path / "n")
    got, _ = run_api(prog, root=tmp_path / "v")
    assert_no_traceback(got)
    assert want[2] == 0 and want[0].endswith(b"EXIT-SUCCESS\n"), want
    assert (got.stdout, got.stderr, got.status) == want


# busybox -----------------------------------------------------------------------------------------
def _tree(root: Path) -> None:
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "a.txt").write_bytes(b"alpha\n")
    (root / "d" / "sub" / "b").write_bytes(b"beta\n")
    os.chmod(root / "d" / "sub" / "b", 0o600)
    os.utime(root / "d" / "a.txt", ns=(915_148_800_000_000_007, 981_173_106_000_000_000))
    os.utime(root / "d" / "sub" / "b", ns=(946_684_800_000_000_000, 946_684_799_000_000_000))


def _busybox_both(tmp_path: Path, steps: list) -> tuple[list, list]:
    """Run each busybox command natively in one root and under vsnap in another; the outputs."""
    if BUSYBOX is None:
        pytest.skip(f"no {BUSYBOX} here")
    outs = {}
    for side in ("native", "vsnap"):
        root = tmp_path / side
        root.mkdir()
        _tree(root)
        outs[side] = []
        for args in steps:
            if side == "native":
                out = native(BUSYBOX, args, cwd=root)
            else:
                r, o, e = vsnap.run(BUSYBOX, *args, root=str(root), cwd=str(root), env=ENV)
                assert b"Traceback" not in e
                out = (o, e, r.status)
            outs[side].append(out)
    return outs["native"], outs["vsnap"]


STAT = ["stat", "-c", "%n %X %Y %a"]


def test_busybox_tar_round_trip_keeps_times(tmp_path):
    """tar -x set every archived mtime through utimes: before vsnap had it, tar exited 0 and
    every extracted file had the time of the extraction."""
    steps = [["tar", "-cf", "a.tar", "d"], ["mkdir", "out"], ["tar", "-C", "out", "-xf", "a.tar"],
             [*STAT, "out/d/a.txt", "out/d/sub/b"]]
    want, got = _busybox_both(tmp_path, steps)
    assert [s[2] for s in got] == [0, 0, 0, 0], got
    assert got[3][0] == want[3][0]
    # tar keeps the mtime (and sets the atime to it), not the clock of the extraction
    assert got[3][0] == (b"out/d/a.txt 981173106 981173106 644\n"
                         b"out/d/sub/b 946684799 946684799 600\n")


def test_busybox_touch_sets_the_times_it_is_given(tmp_path):
    steps = [["touch", "-d", "2001-02-03 04:05:06", "f"], [*STAT, "f"],
             ["touch", "-a", "-d", "2002-03-04 05:06:07", "f"], [*STAT, "f"],
             ["touch", "-m", "-d", "1999-12-31 23:59:59", "f"], [*STAT, "f"],
             ["touch", "-h", "-d", "1990-01-01 00:00:00", "d/a.txt"], [*STAT, "d/a.txt"]]
    want, got = _busybox_both(tmp_path, steps)
    assert [s[2] for s in got] == [s[2] for s in want] == [0] * len(steps), got
    assert [s[0] for s in got] == [s[0] for s in want]
    assert got[1][0] == b"f 981173106 981173106 644\n"
    assert got[5][0] == b"f 1015218367 946684799 644\n"


def test_busybox_cp_a_keeps_times_and_modes(tmp_path):
    """cp -a: the copies keep the times and modes. (Ownership needs chown, which is not this
    change's: only the copies are compared, not cp's complaint about owners.)"""
    steps = [["cp", "-a", "d", "e"], [*STAT, "e/a.txt", "e/sub/b"]]
    want, got = _busybox_both(tmp_path, steps)
    assert got[1] == want[1]
    # busybox gives the copy the source's mtime as both times
    assert got[1][0] == b"e/a.txt 981173106 981173106 644\ne/sub/b 946684799 946684799 600\n"


def test_statfs_answers_fixed_numbers(tmp_path):
    """Not the host's numbers: a fixed 16 GiB ext4 with 8 GiB free, mounted noatime; /proc is
    procfs. (README: where vsnap differs from Linux.)"""
    if BUSYBOX is None:
        pytest.skip(f"no {BUSYBOX} here")
    r, out, err = vsnap.run(BUSYBOX, "stat", "-f", "-c", "%n %t %s %S %b %f %a %c %d %l", ".",
                            "/proc", root=str(tmp_path), cwd=str(tmp_path), env=ENV)
    assert r.status == 0, err
    assert out == (b". ef53 4096 4096 4194304 2097152 2097152 1048576 524288 255\n"
                   b"/proc 9fa0 4096 4096 0 0 0 0 0 255\n")


# what only vsnap promises -----------------------------------------------------------------------
def _times(out: bytes) -> dict:
    return {line.split(b":")[0]: line.split(b": ")[1].split() for line in out.splitlines()}


def test_a_read_leaves_atime_alone_and_chmod_moves_ctime(builds, tmp_path):
    """noatime: vsnap's reads (and the host's, under them) never stamp atime; ctime comes from
    the virtual clock and follows a status change. Linux with relatime would move the atime
    here (README)."""
    r, out, err = vsnap.run(builds.get("timesave"), root=str(tmp_path), cwd=str(tmp_path))
    assert r.status == 0, err
    t = _times(out)
    assert t[b"set"][:4] == [b"atime", b"1000.000000001", b"mtime", b"2000.000000002"]
    assert t[b"after a read"] == t[b"set"]
    ctime_set, ctime_chmod = float(t[b"set"][5]), float(t[b"after fchmod"][5])
    assert EPOCH_START_NS / 1e9 <= ctime_set < ctime_chmod < 1.8e9


def test_times_survive_checkpoints(builds, tmp_path):
    """The atime and the recorded ctime live in the host file and in the kernel's books: a
    checkpoint (which hashes the open file) and a resume must keep both."""
    guest = Guest(builds.get("timesave"))
    m = measure(guest, base=tmp_path)
    assert m.outcome.status == 0
    for n in m.syscalls:
        assert_transparent(guest, [n], reference=m.outcome, base=tmp_path)


def test_holes_and_copies_survive_checkpoints(builds, tmp_path):
    """A sparse file open while checkpoints fall between the fallocate, lseek, sendfile and
    copy_file_range calls: the resumed guest finds the same data, holes and offsets."""
    guest = Guest(builds.get("extents"))
    m = measure(guest, base=tmp_path)
    assert m.outcome.status == 0 and b"punch: 0\n" in m.outcome.stdout
    for n in m.syscalls[::max(1, len(m.syscalls) // 12)]:
        assert_transparent(guest, [n], reference=m.outcome, base=tmp_path)
