"""The guest's terminal (vsnap/terminal.py, kernel/tty.py): its settings are real state, applied
to vsnap's own host terminal, put back when vsnap ends, and kept in checkpoints.

Differential: tests/guests/tty.c runs natively and under `vsnap run`, each with a fresh
pseudo-terminal as its controlling terminal (stdin and stdout; a new session, as a login's),
the same keys typed at the same points; what each prints (and the terminal echoes) must be the
same bytes: the settings read back after setting them, raw-mode reads that return byte by
byte (^C and ^E bytes too), the window size and SIGWINCH, the foreground group, the errors.
"""
from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import tempfile
import termios
import time

import pytest

from conftest import NATIVE_ENV, NATIVE_OK, VSNAP
from vsnap.testing import Guest, assert_transparent, measure

LIBCS = ("musl", "glibc")
# what is typed, each after the guest printed the marker: (marker, keys)
WALK = [(b"raw>", b"x"), (b"got 1: 78", b"\x03"), (b"got 1: 03", b"\x05"),
        (b"two>", b"zz"), (b"cooked>", b"ab\n")]


def _ctty():
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def on_pty(argv, script=(), *, cwd, size=(30, 100), env=None, kill_at: bytes | None = None,
           timeout: float = 60):
    """Run argv in a new session whose controlling terminal is a fresh pseudo-terminal
    (stdin and stdout; stderr a file), type each script entry's keys once its marker is
    printed, and (kill_at) send SIGTERM once that is printed. Returns (status, what the
    terminal showed, stderr, the terminal's settings after the end)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    before = termios.tcgetattr(slave)
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=err, cwd=cwd, env=env,
                             start_new_session=True, preexec_fn=_ctty)
        out, todo, seen, end = bytearray(), list(script), 0, time.monotonic() + timeout
        try:
            while time.monotonic() < end:
                ready, _, _ = select.select([master], [], [], 0.05)
                if ready:
                    out += os.read(master, 4096)
                if todo and todo[0][0] in out[seen:]:
                    marker, keys = todo.pop(0)
                    seen = out.index(marker, seen) + len(marker)
                    time.sleep(0.05)  # the guest is in its read (or about to be)
                    os.write(master, keys)
                if kill_at is not None and kill_at in out:
                    p.send_signal(signal.SIGTERM)
                    kill_at = None
                if p.poll() is not None and not ready:
                    break
            else:
                p.kill()
                pytest.fail(f"{argv} did not end; the terminal showed {bytes(out)!r}")
            after = termios.tcgetattr(slave)
        finally:
            p.wait()
            os.close(master)
            os.close(slave)
        err.seek(0)
        return p.returncode, bytes(out), err.read(), (before, after)


@pytest.fixture(scope="module")
def progs(builds):
    return {libc: builds.get("tty", libc) for libc in LIBCS}


@pytest.mark.parametrize("libc", LIBCS)
def test_the_terminal_as_a_native_run_sees_it(progs, libc, tmp_path):
    if not NATIVE_OK:
        pytest.skip("native runs need x86-64 Linux")
    prog = progs[libc]
    native = on_pty([prog], WALK, cwd=tmp_path, env=NATIVE_ENV)
    ours = on_pty([*VSNAP, "run", prog], WALK, cwd=tmp_path)
    assert ours[0] == native[0] == 0, ours[2]
    assert ours[1] == native[1], ours[2].decode()
    shown = native[1]
    # what the comparison is about is there: raw reads byte by byte, the size, SIGWINCH
    assert b"read back the same: 1" in shown and b"got 1: 05" in shown
    assert b"winsize 30 100" in shown and b"winsize 40 120, SIGWINCH 1" in shown
    assert b"SIGWINCH 1\r\n" in shown and b"got 3: 61 62 0a" in shown


@pytest.mark.parametrize("how", ["leave", "crash", "wait"])
def test_vsnap_puts_the_host_terminal_back_however_it_ends(progs, how, tmp_path):
    """The guest leaves its terminal raw (by ending, by a crash, by SIGTERM sent to vsnap
    while it waits in raw mode); Linux would leave it so, vsnap gives the user back the
    terminal it found."""
    status, shown, err, (before, after) = on_pty(
        [*VSNAP, "run", progs["musl"], how], cwd=tmp_path,
        kill_at=b"raw" if how == "wait" else None)
    assert b"raw" in shown, err
    assert status == {"leave": 0, "crash": 139, "wait": 143}[how], err
    assert b"Traceback" not in err
    assert after == before


def test_raw_mode_really_is_raw_on_the_host_terminal(progs, tmp_path):
    """While the guest waits in raw mode the host terminal is raw (ICANON, ECHO, ISIG off)."""
    master, slave = os.openpty()
    p = subprocess.Popen([*VSNAP, "run", progs["musl"], "wait"], stdin=slave, stdout=slave,
                         stderr=subprocess.DEVNULL, cwd=tmp_path, start_new_session=True,
                         preexec_fn=_ctty)
    try:
        out = b""
        while b"raw" not in out:
            out += os.read(master, 100)
        lflag = termios.tcgetattr(slave)[3]
        assert lflag & (termios.ICANON | termios.ECHO | termios.ISIG) == 0
        os.write(master, b"q")  # one byte, no newline: the read returns it
        assert p.wait(timeout=60) == 0
        assert termios.tcgetattr(slave)[3] & termios.ICANON
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
        os.close(slave)


def test_the_terminal_settings_survive_a_checkpoint(builds, tmp_path):
    """Settings and a size set before the save are read back after the resume (captured
    console: /dev/tty is the terminal), at points between setting and reading them."""
    g = Guest(builds.get("tty", "musl"), ("keep",))
    m = measure(g, tmp_path)
    assert b"same: 1" in m.outcome.stdout and b"winsize 33 99 1 2" in m.outcome.stdout
    calls = list(m.syscalls)
    for k in (calls[3], (calls[5] + m.length) // 2, m.length - 20):
        assert_transparent(g, [k], reference=m.outcome, base=tmp_path)


def test_a_resumed_guest_gets_its_settings_on_the_new_host_terminal(progs, tmp_path):
    """Saved in raw-ish mode on one pseudo-terminal, resumed on another: the guest reads its
    settings back unchanged, the new host terminal has them while it runs, and gets its own
    back at the end; vsnap inspect says the mode in one line."""
    prog = progs["musl"]
    whole = on_pty([*VSNAP, "run", prog, "keep"], cwd=tmp_path)
    saved = on_pty([*VSNAP, "run", "--save-at", "80000", "--exit", "-o", "t.img", prog,
                    "keep"], cwd=tmp_path)
    assert saved[0] == 0 and (tmp_path / "t.img").exists(), saved[2]
    assert saved[3][1] == saved[3][0]  # put back when the run stopped at the save
    resumed = on_pty([*VSNAP, "resume", "t.img"], cwd=tmp_path, size=(50, 60))
    assert resumed[0] == 0, resumed[2]
    assert resumed[1] == whole[1] and b"same: 1" in whole[1]
    assert resumed[3][1] == resumed[3][0]
    shown = subprocess.run([*VSNAP, "inspect", "t.img"], cwd=tmp_path, capture_output=True)
    assert (b"terminal     raw (VMIN 0, VTIME 7), no echo, signal keys (set by the guest), "
            b"size 33x99 set, foreground group 1000") in shown.stdout


@pytest.mark.parametrize("field, value, said", [
    ("cc", "zz", "terminal.termios.cc"), ("cc", "00", "terminal.termios.cc"),
    ("lflag", -1, "terminal.termios.lflag"), ("line", 256, "terminal.termios.line"),
    ("winsize", [1, 2, 3], "terminal.winsize"), ("winsize", [1, 2, 3, 70000], "winsize[3]"),
    ("foreground", 0, "terminal.foreground")])
def test_an_image_s_terminal_is_checked(builds, tmp_path, field, value, said):
    """kernel.json's terminal is untrusted input: each field is checked, one line says which."""
    import json
    from vsnap.kernel import Capture
    from vsnap.snapshot import ImageError, image_bytes, load
    from vsnap.snapshot.codec import decode, encode
    from vsnap.testing import start
    m = start(Guest(builds.get("tty", "musl"), ("keep",)), tmp_path, Capture())
    assert m.advance(80_000) is None
    manifest, parts = decode(image_bytes(m))
    k = json.loads(parts["kernel.json"])
    assert k["terminal"]["set"] and k["terminal"]["winsize"] == [33, 99, 1, 2]
    (k["terminal"]["termios"] if field in ("cc", "lflag", "line") else k["terminal"])[field] = value
    parts["kernel.json"] = json.dumps(k).encode()
    (tmp_path / "bad.img").write_bytes(encode(parts, manifest["program"]))
    with pytest.raises(ImageError, match=said.replace("[", r"\[").replace("]", r"\]")):
        load(str(tmp_path / "bad.img"))
