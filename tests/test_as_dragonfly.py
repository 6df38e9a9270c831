"""`vsnap resume --as-dragonfly`: a resume as DragonFly BSD's checkpt(1) would make it (the pid,
process group and fds 0-2 from the resumer; deleted-but-open files, pipes and several
processes refused), beside a normal resume that keeps them. The guest caches its ids before
the save and compares after it, so it can tell; each process step is a fresh `vsnap`."""
import re
import subprocess
import sys

import pytest

from vsnap.abi.syscalls import NUMBERS
from vsnap.kernel import Capture
from vsnap.machine import Machine

FLAVOURS = ["musl", "glibc"]
VSNAP = [sys.executable, "-m", "vsnap"]
IDS = re.compile(rb"(before|after): pid (\d+) ppid (\d+) pgrp (\d+) sid (\d+) uid (\d+) gid (\d+)")


def vsnap(*args, cwd):
    p = subprocess.run([*VSNAP, *map(str, args)], cwd=cwd, capture_output=True, timeout=300)
    assert b"Traceback" not in p.stderr, p.stderr.decode()
    return p


def save_point(prog: str, args, root) -> int:
    """The instruction count at the guest's sched_yield() (its marker for the save)."""
    m = Machine(prog, args, root=str(root), cwd=str(root), console=Capture(b"").console)
    found, dispatch = [], m.process.dispatch

    def spy():
        if not found and m.cpu.read("rax") == NUMBERS["sched_yield"]:
            found.append(m.cpu.instructions)
        dispatch()

    m.cpu.on_syscall(spy)
    m.run()
    m.close()
    assert found, "the guest never reached its save point"
    return found[0]


def saved(builds, flavour, tmp_path, *args):
    """(image, root, the save's stdout): the guest saved at its marker and stopped."""
    prog = builds.get("dfly_ids", flavour)
    root = tmp_path / "root"
    root.mkdir(parents=True)
    k = save_point(prog, args, tmp_path)
    img = tmp_path / "g.img"
    a = vsnap("run", "--save-at", k, "-o", img, "--exit", prog, *args, cwd=root)
    assert a.returncode == 0 and img.exists(), a.stderr.decode()
    return img, root, a.stdout


def ids(out: bytes) -> dict:
    return {m[0]: tuple(map(int, m[1:])) for m in IDS.findall(out)}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_normal_resume_keeps_the_ids(builds, flavour, tmp_path):
    img, root, before = saved(builds, flavour, tmp_path)
    b = vsnap("resume", img, cwd=root)
    assert b.returncode == 0, b.stderr.decode()
    assert ids(before)[b"before"] == ids(b.stdout)[b"after"]
    assert b"pid unchanged, pgrp unchanged, ppid unchanged, sid unchanged" in b.stdout
    assert b"note.txt: written before the save\n" in b.stdout
    assert b"as-dragonfly" not in b.stderr


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_as_dragonfly_gives_the_resumers_ids_and_says_so(builds, flavour, tmp_path):
    img, root, before = saved(builds, flavour, tmp_path)
    fresh = ids(vsnap("run", builds.get("dfly_ids", flavour), cwd=tmp_path).stdout)[b"before"]
    b = vsnap("resume", "--as-dragonfly", img, cwd=root)
    assert b.returncode == 0, b.stderr.decode()
    pid0, ppid0, pgrp0, sid0, uid0, gid0 = ids(before)[b"before"]
    pid, ppid, pgrp, sid, uid, gid = ids(b.stdout)[b"after"]
    assert pid != pid0                      # a new pid, never the saved one
    assert pgrp == pid != pgrp0             # its own new process group
    assert (ppid, sid) == (fresh[1], fresh[3])  # the parent and session of a fresh program
    assert (uid, gid) == (fresh[4], fresh[5]) == (uid0, gid0)  # vsnap's fixed 1000/1000
    assert b"pid changed, pgrp changed" in b.stdout          # the guest can tell
    assert b"note.txt: written before the save\n" in b.stdout  # regular files come back
    notice = [line for line in b.stderr.splitlines() if b"--as-dragonfly" in line]
    assert len(notice) == 1
    assert f"new pid {pid} instead of {pid0}".encode() in notice[0]
    assert f"process group {pgrp} instead of {pgrp0}".encode() in notice[0]
    assert b"uid/gid 1000/1000" in notice[0]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_as_dragonfly_puts_the_resumers_stdout_on_fd_1(builds, flavour, tmp_path):
    img, root, _ = saved(builds, flavour, tmp_path, "redirect")
    b = vsnap("resume", img, cwd=root)          # fd 1 is out.txt again
    assert b"after:" not in b.stdout and b"after:" in (root / "out.txt").read_bytes()
    written = (root / "out.txt").read_bytes()
    # out.txt has changed since the save, but DragonFly does not keep fd 1: no refusal
    d = vsnap("resume", "--as-dragonfly", img, cwd=root)
    assert d.returncode == 0, d.stderr.decode()
    assert b"after:" in d.stdout and (root / "out.txt").read_bytes() == written
    assert b"fd 1 (/out.txt) is the resumer's stdout" in d.stderr


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_as_dragonfly_refuses_a_deleted_open_file(builds, flavour, tmp_path):
    img, root, _ = saved(builds, flavour, tmp_path, "ghost")
    d = vsnap("resume", "--as-dragonfly", img, cwd=root)
    assert d.returncode != 0 and d.stdout == b""
    assert d.stderr.count(b"\n") == 1 and b"/ghost.txt was deleted while open" in d.stderr
    b = vsnap("resume", img, cwd=root)          # vsnap itself brings it back
    assert b.returncode == 0 and b"pid unchanged" in b.stdout


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_as_dragonfly_refuses_a_deleted_mapped_file(builds, flavour, tmp_path):
    img, root, _ = saved(builds, flavour, tmp_path, "ghostmap")
    d = vsnap("resume", "--as-dragonfly", img, cwd=root)
    assert d.returncode != 0 and d.stdout == b""
    assert d.stderr.count(b"\n") == 1 and b"/mapped.txt was deleted while mapped" in d.stderr
    b = vsnap("resume", img, cwd=root)
    assert b.returncode == 0 and b"pid unchanged" in b.stdout


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_as_dragonfly_refuses_a_tree(builds, flavour, tmp_path):
    img, root, _ = saved(builds, flavour, tmp_path, "fork")
    d = vsnap("resume", "--as-dragonfly", img, cwd=root)
    assert d.returncode != 0 and d.stdout == b""
    assert d.stderr.count(b"\n") == 1 and b"DragonFly checkpoints one process" in d.stderr


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_as_dragonfly_refuses_a_pipe(builds, flavour, tmp_path):
    img, root, _ = saved(builds, flavour, tmp_path, "pipe")
    d = vsnap("resume", "--as-dragonfly", img, cwd=root)
    assert d.returncode != 0 and d.stdout == b""
    assert d.stderr.count(b"\n") == 1 and b"fd 4 is a pipe" in d.stderr


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_dragonfly_resume_saves_and_resumes_under_its_new_pid(builds, flavour, tmp_path):
    """The new pid is the guest's from then on: saved again, it comes back with it."""
    img, root, before = saved(builds, flavour, tmp_path)
    k = save_point(builds.get("dfly_ids", flavour), (), tmp_path)
    again = tmp_path / "again.img"
    d = vsnap("resume", "--as-dragonfly", img, "--save-at", k + 1, "-o", again, "--exit",
              cwd=root)
    assert d.returncode == 0 and again.exists(), d.stderr.decode()
    assert b"after:" not in d.stdout
    b = vsnap("resume", again, cwd=root)
    assert b.returncode == 0, b.stderr.decode()
    pid0 = ids(before)[b"before"][0]
    pid = ids(b.stdout)[b"after"][0]
    assert pid != pid0 and f"new pid {pid} instead of {pid0}".encode() in d.stderr
    assert b"pid changed" in b.stdout and b"as-dragonfly" not in b.stderr
