"""DragonFly's checkpoints from inside the guest (issue 12; sys_checkpoint(2), checkpt(1)):
<vsnap/checkpoint.h>, a call that returns 0 and then the resumer's retval, the template, the
two signals and their default actions, a handler that overrides them, CKPT_THAW (checkpt -r),
`vsnap save PID --signal`, and the promise around the call."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from vsnap.testing import Guest, assert_transparent, measure

VSNAP = [sys.executable, "-m", "vsnap"]


def vsnap(*args, cwd, timeout=120):
    return subprocess.run([*VSNAP, *args], cwd=cwd, capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def calls(builds):
    return builds.get("ckpt_calls", "musl")


def test_natively_there_is_no_such_call(calls, tmp_path):
    out = subprocess.run([calls], cwd=tmp_path, capture_output=True, timeout=30)
    assert out.stdout == b"CKPT_FREEZE into a file            -1 Function not implemented\n"


def test_the_call_returns_zero_then_the_resumers_retval(calls, tmp_path):
    first = vsnap("run", calls, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.decode().splitlines() == [
        "sys_checkpoint returned 0",
        "fd 3 still open, at the end of the image: yes",
        "a bad type                         -1 Invalid argument",
        "another pid                        -1 Invalid argument",
        "the terminal's fd                  -1 Bad file descriptor",
        "a file open read-only              -1 Bad file descriptor",
        "a closed fd                        -1 Bad file descriptor",
        "a thaw of a pid                    -1 Invalid argument"]
    image = tmp_path / "self.img"
    inspect = vsnap("inspect", str(image), cwd=tmp_path)
    assert inspect.returncode == 0 and b"instructions" in inspect.stdout
    again = vsnap("resume", str(image), cwd=tmp_path)
    assert again.stdout.splitlines()[:2] == [b"sys_checkpoint returned 1",
                                             b"fd 3 still open, at the end of the image: yes"]
    seven = vsnap("resume", "--retval", "7", str(image), cwd=tmp_path)
    assert seven.stdout.splitlines()[0] == b"sys_checkpoint returned 7"


def test_a_checkpoint_aware_program_and_checkpt_r(builds, tmp_path):
    aware = builds.get("dragonfly/ckptaware", "musl")
    checkpt = builds.get("dragonfly/checkpt", "musl")
    first = vsnap("run", aware, cwd=tmp_path)
    assert first.stdout == b"step 3: checkpointed, going on\ndone after 6 steps\n", first.stderr
    name = os.path.basename(aware)
    ckpt = tmp_path / f"{name[:15]}.ckpt"  # %N: the program's name, as comm keeps it
    assert ckpt.exists(), sorted(os.listdir(tmp_path))
    resumed = vsnap("resume", str(ckpt), cwd=tmp_path)
    assert resumed.stdout == (b"step 3: resumed from the checkpoint (sys_checkpoint returned "
                              b"1); log reopened\ndone after 6 steps\n")
    thawed = vsnap("run", checkpt, "-r", ckpt.name, cwd=tmp_path)  # a path in the guest
    assert thawed.stdout == resumed.stdout and thawed.returncode == 0, thawed.stderr
    bad = vsnap("run", checkpt, "-r", "/no/such/file", cwd=tmp_path)
    assert bad.returncode == 1 and b"No such file" in bad.stderr
    (tmp_path / "junk").write_bytes(b"not an image")
    junk = vsnap("run", checkpt, "-r", "junk", cwd=tmp_path)
    assert junk.returncode == 1 and b"cannot thaw junk: Invalid argument" in junk.stderr


def test_the_signals_default_actions_and_the_template(builds, tmp_path):
    prog = builds.get("ckpt_signals", "musl")
    cont = vsnap("run", "--ckptfile", "saved-%P.ckpt", prog, cwd=tmp_path)
    assert (cont.returncode, cont.stdout) == (0, b"before\nafter the signal\n"), cont.stderr
    assert (tmp_path / "saved-1000.ckpt").exists()
    assert vsnap("resume", "saved-1000.ckpt", cwd=tmp_path).stdout == b"after the signal\n"
    gone = vsnap("run", "--ckptfile", "exit.ckpt", prog, "exit", cwd=tmp_path)
    assert (gone.returncode, gone.stdout) == (128 + 63, b"before\n")
    assert vsnap("resume", "exit.ckpt", cwd=tmp_path).stdout == b"after the signal\n"
    handled = vsnap("run", "--ckptfile", "none.ckpt", prog, "handler", cwd=tmp_path)
    assert handled.stdout == b"before\nhandler ran\nafter the signal\n"
    assert not (tmp_path / "none.ckpt").exists()  # a handler takes the place of the action


def test_vsnap_save_signal_lets_the_guest_decide(builds, tmp_path):
    prog = builds.get("ckpt_signals", "musl")
    p = subprocess.Popen([*VSNAP, "run", "--ckptfile", "asked.ckpt", prog, "wait"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)
        out = vsnap("save", str(p.pid), "--signal", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        for _ in range(100):
            if (tmp_path / "asked.ckpt").exists():
                break
            time.sleep(0.1)
        assert (tmp_path / "asked.ckpt").exists()
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=60)


def test_the_promise_holds_around_the_call(builds, tmp_path):
    g = Guest(builds.get("ckpt_promise", "musl"))
    m = measure(g, tmp_path)
    assert m.outcome.status == 0
    calls = [k for k in m.syscalls]
    for k in sorted({*calls[-12:], m.length // 2, m.length - 1}):
        for j in (k - 1, k, k + 1):
            assert_transparent(g, [j], reference=m.outcome, base=tmp_path)


def test_control_e_on_the_terminal_checkpoints_the_guest(builds, tmp_path):
    """^E in a line typed on the guest's terminal (a real pseudo-terminal here): SIGCKPT to
    the guest's process group, whose default action saves it; the ^E itself is not read."""
    import pty
    prog = builds.get("ckpt_signals", "musl")
    master, slave = pty.openpty()
    p = subprocess.Popen([*VSNAP, "run", "--ckptfile", "key.ckpt", prog, "line"],
                         cwd=tmp_path, stdin=slave, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    os.close(slave)
    os.write(master, b"ab\x05cd\n")
    out, err = p.communicate(timeout=60)
    os.close(master)
    assert out == b"read: abcd\nafter the line\n", err
    assert (tmp_path / "key.ckpt").exists()
    resumed = vsnap("resume", "key.ckpt", cwd=tmp_path)
    assert resumed.stdout == b"read: abcd\nafter the line\n"


def test_a_child_checkpoints_the_tree_and_its_call_returns_twice(builds, tmp_path):
    prog = builds.get("ckpt_child", "musl")
    first = vsnap("run", prog, cwd=tmp_path)
    assert first.stdout == b"child: returned 0\nparent: done\n", first.stderr
    again = vsnap("resume", "--retval", "5", "child.img", cwd=tmp_path)
    assert (again.returncode, again.stdout) == (0, b"child: returned 5\nparent: done\n")
    tree = vsnap("inspect", "child.img", "tree", cwd=tmp_path)
    assert b"(1000)" in tree.stdout and b"(1001)" in tree.stdout


def test_sigckpt_from_another_process_saves_the_tree(builds, tmp_path):
    prog = builds.get("ckpt_kill", "musl")
    first = vsnap("run", "--ckptfile", "kc-%P.ckpt", prog, cwd=tmp_path)
    assert first.stdout == b"child: woke\nparent: done\n", first.stderr
    assert b"SIGCKPT: saved process 1001 to /kc-1001.ckpt" in first.stderr
    again = vsnap("resume", "kc-1001.ckpt", cwd=tmp_path)
    assert again.stdout == first.stdout
