"""Progress bars for long work (vsnap/progress.py): drawn when stderr is a terminal, absent
otherwise, and never in the way of the guest's output or vsnap's own lines.

The terminal is a real pseudo-terminal (the pty module) with a window size, as a user's is.
The runs are long enough (seconds) to pass the bar's DELAY_S; their exact timing does not
matter.
"""
from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
import threading

import pytest

pytest.importorskip("tqdm")  # a dependency (pyproject.toml); the bars need it

VSNAP = [sys.executable, "-m", "vsnap"]
STATS = re.compile(rb"vsnap: (\d+) instructions, \d+ system calls, ([\d.]+) s wall, [\d.]+ s "
                   rb"virtual, exit status 0"
                   rb"(?:, peak memory \d+ KiB touched)?")
SECONDS = 2.0  # how long the counted runs below last: several ticks past the bar's delay


def run(argv, *, cwd, terminal: bool) -> tuple[int, bytes, bytes]:
    """(status, stdout, stderr) of a command whose stderr is a terminal (a pty sized 100x24)
    or a pipe. stdout is a pipe either way: the guest's output is compared byte for byte."""
    if not terminal:
        p = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=600)
        return p.returncode, p.stdout, p.stderr
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    err = bytearray()

    def drain():
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child has closed its end
                return
            if not chunk:
                return
            err.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    out, _ = p.communicate(timeout=600)
    reader.join()
    os.close(master)
    return p.returncode, out, bytes(err)


@pytest.fixture(scope="module")
def compute(builds):
    return builds.get("compute", "musl")


@pytest.fixture(scope="module")
def sized(compute, tmp_path_factory):
    """(steps, instructions) for a compute.c run that lasts about SECONDS counted on this
    machine, whatever counting costs (measured: a short counted run first)."""
    steps = 2_000_000
    while True:
        _, _, err = run([*VSNAP, "run", "--stats", compute, str(steps)],
                        cwd=tmp_path_factory.mktemp("sizing"), terminal=False)
        n, secs = STATS.search(err).groups()
        if float(secs) > 0.25:
            break
        steps *= 8
    scale = SECONDS / float(secs)
    return str(int(steps * scale)), int(int(n) * scale)


def test_counted_run_shows_progress_on_a_terminal_only(compute, sized, tmp_path):
    argv = [*VSNAP, "run", "--stats", compute, sized[0]]
    status, out, err = run(argv, cwd=tmp_path, terminal=True)
    assert status == 0
    assert re.search(rb"vsnap: [\d.]+[MG] instructions \[[\d:]+, [\d.]+[MG] instructions/s\]",
                     err), err
    assert STATS.search(err)
    # the bar is gone before the last line: the line starts at the left edge
    assert re.search(rb"\r\s*\r+" + STATS.pattern, err)
    status2, out2, err2 = run(argv, cwd=tmp_path, terminal=False)
    assert (status2, out2) == (status, out)
    assert STATS.fullmatch(err2.rstrip(b"\n")) and err2.count(b"\n") == 1  # as before


def test_budget_shows_the_way_to_it(compute, sized, tmp_path):
    budget = sized[1] * 4 // 5
    status, _, err = run([*VSNAP, "run", "--max-instructions", str(budget), compute, sized[0]],
                         cwd=tmp_path, terminal=True)
    assert status == 152
    assert re.search(rb"\d+%\|.*\| [\d.]+[MG]?/[\d.]+[MG]? \[", err), err
    assert f"over the budget of {budget}".encode() in err


NOTE = re.compile(rb"next save at ([\d,]+), (\d) saved")


def test_save_every_shows_the_next_save(compute, sized, tmp_path):
    # The bar shows the note at its ticks, so a tick must fall between two saves: each leg
    # lasts a quarter of SECONDS as sized, but the sizing ran under other tests' load and this
    # run may go faster (CI once saw no tick between saves). A run that shows no note is tried
    # again twice as long, with the same three saves.
    steps, n = int(sized[0]), sized[1]
    for _ in range(3):
        every = n // 4   # three saves, then the guest ends before a fourth
        argv = [*VSNAP, "run", "--save-every", str(every), "-o", "c.img", compute, str(steps)]
        for p in tmp_path.glob("*.img"):
            p.unlink()
        status, out, err = run(argv, cwd=tmp_path, terminal=True)
        assert status == 0 and b"EXIT-SUCCESS" in out
        notes = {(int(at.replace(b",", b"")), int(done)) for at, done in NOTE.findall(err)}
        if notes:
            break
        steps, n = steps * 2, n * 2
    assert notes, err
    # each note names the save after the ones already made
    assert all(at == (done + 1) * every and 1 <= done <= 3 for at, done in notes), (notes, every)
    # vsnap's own lines clear the bar first: each begins at the left edge of a clean line
    saved = re.findall(rb"(\r *\r|\n|^)vsnap: saved c\.000(\d)\.img at instruction", err)
    assert [n for _, n in saved] == [b"1", b"2", b"3"], err
    images = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".img")
    assert images == ["c.0001.img", "c.0002.img", "c.0003.img"]
    _, _, quiet_err = run(argv, cwd=tmp_path, terminal=False)
    assert b"\r" not in quiet_err and b"next save" not in quiet_err


def test_check_shows_examples_done_of_total(builds, tmp_path):
    argv = [*VSNAP, "check", "--examples", "150", builds.get("hello", "musl")]
    status, out, err = run(argv, cwd=tmp_path, terminal=True)
    assert status == 0 and out.startswith(b"vsnap check: transparent: 150 examples")
    assert re.search(rb"vsnap check: +\d+%\|.*\| +\d+/150 \[.*example/s, saves at \d", err), err
    status2, out2, err2 = run(argv, cwd=tmp_path, terminal=False)
    assert (status2, out2, err2) == (status, out, b"")


def test_quiet_and_plain_runs_draw_no_bar(builds, compute, sized, tmp_path):
    """-q drops the bar; a plain run is not counted, so it has none, and does not even load
    tqdm (start-up): the module list comes from the probe of tests/test_startup.py."""
    _, _, err = run([*VSNAP, "run", "-q", "--stats", compute, sized[0]], cwd=tmp_path,
                    terminal=True)
    assert STATS.fullmatch(err.strip())
    from test_startup import PROBE
    listing = tmp_path / "modules.txt"
    status, out, err = run([sys.executable, "-c", PROBE, str(listing), "run",
                            builds.get("hello", "musl")], cwd=tmp_path, terminal=True)
    assert status == 0 and out == b"Hello, world!\nEXIT-SUCCESS\n" and err == b""
    assert not any(m.split(".")[0] == "tqdm" for m in listing.read_text().split("\n"))
