"""The promise for programs of several processes: a save at any global instruction k (while a
process waits on a pipe, between fork and exec, with zombies about, in the middle of a turn)
and a resume in a fresh machine give exactly what the uninterrupted run gives: the same bytes,
the same exit status, the same final registers of the first process (snapshot/tree.py).

The guests are the differential ones of test_processes.py (each checked against Linux there),
musl and glibc builds; hypothesis draws the points, as for one process in test_checkpoint.py.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings

from vsnap.snapshot import checkpoint, restore
from vsnap.snapshot.codec import ImageError
from vsnap.snapshot.inodes import CannotSave
from vsnap.testing import (Capture, Guest, assert_transparent, checkpoint_points, fresh_root,
                           measure, run_with_checkpoints, start)

# every guest of test_processes.py whose run a tree image can hold at any k (the vfork ones
# are below: their child runs in the parent's memory for a while, and a save then is refused)
TREES = {"proc_wait": 6, "proc_zombie": 6, "proc_pipes": 8, "proc_dup2": 5, "proc_exec": 6,
         "proc_pgrp": 4, "proc_kill": 5, "proc_waitflags": 6, "proc_sigchld": 6,
         "proc_locks": 5, "proc_prctl": 4}
FLAVOURS = ["musl", "glibc"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("trees")


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("name", sorted(TREES))
def test_save_a_tree_anywhere_resume_same(builds, base, name, flavour):
    g = Guest(builds.get(name, flavour))
    m = measure(g, base)
    assert m.outcome.status == 0, m.outcome.stderr

    # the long tier (--slow) draws twice as many points
    @settings(max_examples=TREES[name] * (2 if os.environ.get("VSNAP_SLOW") else 1) // 2 + 1,
              deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(points=checkpoint_points(m, max_chain=2))
    def prop(points):
        assert_transparent(g, points, reference=m.outcome, base=base, budget=3 * m.length)

    prop()


@pytest.mark.parametrize("args", [(), ("--setsid",), ("smb",)])
def test_the_seed001_starter_resumes_the_same_anywhere(builds, base, args):
    """The story of seeds/001 saved mid-way: before, during and after the kill(0, SIGUSR1).
    (The smb variant, one more server with a handler, runs in the long tier: --slow.)"""
    if args == ("smb",) and not os.environ.get("VSNAP_SLOW"):
        pytest.skip("the long tier's (--slow): the other two variants cover the default")
    g = Guest(builds.get("seed001/starter", "musl"), args)
    m = measure(g, base)
    n = m.length
    for k in (n // 5, n // 2, 4 * n // 5, n - 1, *m.syscalls[::9]):
        assert_transparent(g, [k], reference=m.outcome, base=base, budget=3 * n)


def test_a_save_while_a_process_waits_on_a_pipe_and_one_is_a_zombie(builds, base, tmp_path):
    """Saved at each system call of proc_pipes (parked readers and writers, children that
    ended and were not yet waited for), resumed through image files in a fresh process."""
    g = Guest(builds.get("proc_pipes", "musl"))
    m = measure(g, base)
    for k in m.syscalls[1::5 if os.environ.get("VSNAP_SLOW") else 11]:
        assert_transparent(g, [k], reference=m.outcome, base=base, budget=3 * m.length)


def test_vsnap_resume_of_a_tree_in_a_fresh_process(builds, tmp_path):
    prog = builds.get("proc_pipes", "musl")
    run = [sys.executable, "-m", "vsnap"]
    whole = subprocess.run([*run, "run", "--log", str(tmp_path / "l0"), prog],
                           cwd=tmp_path, capture_output=True, timeout=120)
    m = measure(Guest(prog))
    k = m.syscalls[len(m.syscalls) // 2]
    first = subprocess.run([*run, "run", "--save-at", str(k), "-o", "t.img", "--exit", "--log",
                            str(tmp_path / "l1"), prog], cwd=tmp_path, capture_output=True,
                           timeout=120)
    assert first.returncode == whole.returncode
    inspect = subprocess.run([*run, "inspect", "t.img", "tree"], cwd=tmp_path,
                             capture_output=True, timeout=60)
    assert inspect.returncode == 0, inspect.stderr
    assert b"1000" in inspect.stdout and b"pgid" in inspect.stdout
    second = subprocess.run([*run, "resume", "t.img", "--log", str(tmp_path / "l2")],
                            cwd=tmp_path, capture_output=True, timeout=120)
    assert (first.stdout + second.stdout, second.returncode) == (whole.stdout,
                                                                   whole.returncode)


@pytest.mark.parametrize("name", ["proc_vfork", "proc_spawn"])
def test_a_save_inside_a_vfork_is_refused_with_one_line_and_elsewhere_taken(builds, base,
                                                                          name):
    g = Guest(builds.get(name, "musl"))
    m = measure(g, base)
    refused = taken = 0
    for k in range(1, m.length, max(1, m.length // 60)):
        try:
            out = run_with_checkpoints(g, [k], base, budget=3 * m.length)
        except CannotSave as e:
            assert "vfork child running in its parent's memory" in str(e)
            assert "\n" not in str(e)
            refused += 1
            continue
        assert (out.stdout, out.status) == (m.outcome.stdout, m.outcome.status), k
        taken += 1
    assert taken > 0


def test_a_damaged_tree_is_refused_with_one_line(builds, tmp_path):
    import json
    import zipfile
    g = Guest(builds.get("proc_pipes", "musl"))
    m = measure(g)
    root = fresh_root(g, tmp_path)
    machine = start(g, root, Capture())
    k = m.syscalls[len(m.syscalls) // 2]
    assert machine.advance(k) is None
    assert len(machine.system.processes) > 1
    checkpoint(machine, str(tmp_path / "t.img"))
    machine.close()
    # a process table whose child names a parent that is not there
    with zipfile.ZipFile(tmp_path / "t.img") as z:
        parts = {n: z.read(n) for n in z.namelist()}
    tree = json.loads(parts["tree.json"])
    tree["table"]["processes"][-1]["ppid"] = 4242
    from vsnap.snapshot.atomic import write_atomically
    from vsnap.snapshot.codec import decode
    manifest, _ = decode((tmp_path / "t.img").read_bytes())
    parts["tree.json"] = json.dumps(tree).encode()
    parts.pop("manifest.json")
    write_atomically(str(tmp_path / "bad.img"), parts, manifest["program"])
    with pytest.raises(ImageError) as e:
        restore(str(tmp_path / "bad.img"), root=str(root))
    assert "\n" not in str(e.value) and "tree.json" in str(e.value)


def test_vsnap_check_and_diff_work_on_trees(builds, tmp_path):
    prog = builds.get("proc_pipes", "musl")
    run = [sys.executable, "-m", "vsnap"]
    check = subprocess.run([*run, "check", "--examples", "12", prog], cwd=tmp_path,
                           capture_output=True, timeout=600)
    assert check.returncode == 0 and check.stdout.startswith(b"vsnap check: transparent"), \
        check.stdout + check.stderr
    m = measure(Guest(prog))
    a, b = m.syscalls[2], m.syscalls[len(m.syscalls) // 2]  # before the first fork, after
    for k, name in ((a, "a.img"), (b, "b.img")):
        out = subprocess.run([*run, "run", "--save-at", str(k), "-o", name, "--exit", "--log",
                              str(tmp_path / "log"), prog], cwd=tmp_path, capture_output=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
    diff = subprocess.run([*run, "diff", "a.img", "b.img"], cwd=tmp_path,
                          capture_output=True, timeout=60)
    assert diff.returncode in (0, 1) and b"Traceback" not in diff.stderr
    assert b"processes:" in diff.stdout, diff.stdout
