"""Checkpoints keep every open file as it was: one inode stays one inode (hard links, names
removed while open), sparse files keep their holes, and every kind of descriptor in every state
saves and resumes, or is refused with one line.

Each guest here is run natively (the reference for what Linux does), under vsnap (the same
bytes), and under vsnap with checkpoints at many points (the same bytes as vsnap's
uninterrupted run, inode numbers included: vsnap's are deterministic, Linux's are not, so the
guests print them only when asked to with "raw").
"""
from __future__ import annotations

import os
import time

import pytest

from conftest import make_root, run_api, run_native
from vsnap.testing import Guest, assert_transparent, measure

FLAVOURS = ("musl", "glibc")


def _native_and_vsnap(builds, tmp_path, name, flavour, args):
    prog = builds.get(name, flavour)
    native = run_native(prog, args, cwd=make_root(tmp_path / "native"))
    ours, _ = run_api(prog, args, root=make_root(tmp_path / "vsnap"))
    return prog, native, ours


def _around_syscalls(m, step: int) -> list[int]:
    """Checkpoint points: every step-th system call, and one instruction either side."""
    return [k + d for k in m.syscalls[::step] for d in (-1, 0, 1) if 0 <= k + d < m.length]


# one inode, one inode again (item 6) ---------------------------------------------------------

@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("mode", ["none", "a", "b", "ab", "moved"])
def test_hard_links_removed_while_open_stay_one_inode(builds, tmp_path, mode, flavour):
    """Three descriptors through two hard links (read-write, read-only, write-only); then no
    name, either name, both, or both with a third link made first are removed. Linux keeps one
    inode: same st_ino everywhere, writes through one seen through the others, st_nlink the
    names left. So must vsnap, and so must every resume."""
    prog, native, ours = _native_and_vsnap(builds, tmp_path, "linkghost", flavour, (mode,))
    assert native.status == 0 and b"fd1==fd2 1 fd1==fd3 1" in native.stdout
    assert ours.stdout == native.stdout and ours.status == native.status
    guest = Guest(prog, (mode, "raw"))
    m = measure(guest, tmp_path)
    assert m.outcome.status == 0
    step = 4 if flavour == "musl" else 9
    for k in _around_syscalls(m, step)[::3]:
        assert_transparent(guest, [k], reference=m.outcome, base=tmp_path)
    chain = [m.syscalls[len(m.syscalls) * i // 4] for i in (1, 2, 3)]
    assert_transparent(guest, chain, reference=m.outcome, base=tmp_path)


# holes stay holes (item 7) -------------------------------------------------------------------

@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("mode", ["ghost", "named", "ghost-prealloc"])
def test_a_sparse_file_keeps_its_holes(builds, tmp_path, mode, flavour):
    """A file with a 1 GiB hole, open (and deleted, for a ghost) at the save: the image holds
    its data, not its hole; the save takes milliseconds, not seconds; and the resumed file has
    the same size and st_blocks (still sparse) as in an uninterrupted run, and as on Linux.
    With blocks reserved by fallocate and never written (inside the file and past its end),
    those still count in st_blocks after the resume, and still read as a hole."""
    from vsnap.kernel import Capture
    from vsnap.snapshot import checkpoint, restore
    from vsnap.testing import fresh_root, start
    prog, native, ours = _native_and_vsnap(builds, tmp_path, "sparse", flavour, (mode,))
    assert native.status == 0 and b"size 1073741828" in native.stdout
    assert ours.stdout == native.stdout and ours.status == 0
    guest = Guest(prog, (mode,))
    m = measure(guest, tmp_path)
    k = next(n for n in m.syscalls if n > m.syscalls[len(m.syscalls) // 3])
    cap = Capture(b"")
    live = start(guest, fresh_root(guest, tmp_path), cap)
    assert live.advance(k) is None
    image = tmp_path / "sparse.img"
    began = time.monotonic()
    checkpoint(live, str(image))
    took = time.monotonic() - began
    live.close()
    assert image.stat().st_size < 1 << 20, "the hole went into the image"
    assert took < 5, f"saving a file with a 1 GiB hole took {took:.1f} s"
    resumed, _ = restore(str(image), console=cap.console)
    resumed.run()
    assert bytes(cap.out) == m.outcome.stdout  # st_blocks included: the hole is still one
    for k in _around_syscalls(m, 8)[::2]:
        assert_transparent(guest, [k], reference=m.outcome, base=tmp_path)


def test_content_digest_is_what_split_and_sha256sum_say_and_skips_holes(tmp_path):
    """The digest that checks a file by name: `split -b 1M --filter=sha256sum F | sha256sum`,
    the same for a sparse file and a dense copy of it."""
    import shutil
    import subprocess
    from vsnap.snapshot.extents import content_digest, data_extents
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:
        f.write(b"x" * 5000)
        f.seek(3 << 20)
        f.write(b"y" * 10)
        f.seek((5 << 20) + 123)
        f.write(b"z")
    dense = tmp_path / "dense"
    dense.write_bytes(sparse.read_bytes())
    size = sparse.stat().st_size
    fds = [os.open(p, os.O_RDONLY) for p in (sparse, dense)]
    try:
        extents = data_extents(fds[0], size)
        assert sum(n for _, n in extents) < 1 << 20  # the holes are seen as holes
        digests = {content_digest(fd, size) for fd in fds}
    finally:
        for fd in fds:
            os.close(fd)
    assert len(digests) == 1
    if shutil.which("split") and shutil.which("sha256sum"):
        out = subprocess.run(f"split -b 1M --filter=sha256sum {sparse} | sha256sum",
                             shell=True, capture_output=True, check=True).stdout
        assert out.split()[0].decode() == digests.pop()


# every kind, every state (item 8) ------------------------------------------------------------

# scenario of tests/guests/fdkinds.c -> True where a native run is the reference too (the
# others involve vsnap's own /dev, /proc and terminal, or the host's root)
SCENARIOS = {
    "file-plain": True, "file-renamed": True, "file-unlinked": True, "file-replaced": True,
    "file-dir-renamed": True, "file-wronly-unlinked": True, "file-append": True,
    "dir-plain": True, "dir-renamed": True, "dir-removed": True, "dir-replaced": True,
    "dir-partial": True, "dir-partial-changed": True, "dir-partial-removed": True,
    "dir-root": False, "dir-dev": False, "dir-dev-partial": False, "dir-proc": False,
    "dir-proc-self": False, "null": True, "console-dup": True, "console-tty": False,
    "proc-maps": False, "many": False,
}


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("scenario", sorted(s for s, native in SCENARIOS.items() if native))
def test_descriptors_in_each_state_behave_as_on_linux(builds, tmp_path, scenario, flavour):
    """The reference for the checkpoints below: the same bytes as a native run (a removed
    directory lists nothing: getdents fails with ENOENT, even half way through a listing)."""
    _, native, ours = _native_and_vsnap(builds, tmp_path, "fdkinds", flavour, (scenario,))
    assert native.status == 0, native.stdout
    assert ours.stdout == native.stdout and ours.status == 0


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_kind_of_descriptor_in_every_state_saves_and_resumes(builds, tmp_path,
                                                                     scenario):
    """One descriptor per scenario: a file renamed, removed, replaced, write-only and removed;
    a directory renamed, removed, replaced, half listed (and changed or removed meanwhile);
    the root, vsnap's /dev, /proc and /proc/self; /dev/null; the terminal; /proc/self/maps
    half read. Checkpoints before, between and after its uses change nothing."""
    guest = Guest(builds.get("fdkinds"), (scenario,))
    m = measure(guest, tmp_path)
    assert m.outcome.status == 0, m.outcome.stdout
    points = _around_syscalls(m, 1)
    start = next(i for i, k in enumerate(points) if k >= m.syscalls[-45])  # past the set-up
    for k in points[start::4]:
        assert_transparent(guest, [k], reference=m.outcome, base=tmp_path)


@pytest.mark.parametrize("scenario", ["dir-removed", "dir-dev"])
def test_save_and_resume_from_the_command_line_without_a_traceback(builds, tmp_path,
                                                                    scenario):
    """The two crashes of the report: a checkpoint with a removed directory open
    (FileNotFoundError, no image) and a resume with vsnap's /dev open (KeyError)."""
    from conftest import assert_no_traceback, run_cli
    prog = builds.get("fdkinds")
    whole = run_cli("run", "--stats", "--root", str(make_root(tmp_path / "a")), prog, scenario)
    n = int(whole.text().rsplit("vsnap: ", 1)[1].split()[0])
    saved = run_cli("run", "--save-at", str(n - 300), "-o", str(tmp_path / "x.img"), "--exit",
                    "--root", str(make_root(tmp_path / "b")), prog, scenario)
    assert_no_traceback(saved)
    assert saved.status == 0, saved.text()
    resumed = run_cli("resume", str(tmp_path / "x.img"))
    assert_no_traceback(resumed)
    assert saved.stdout + resumed.stdout == whole.stdout and resumed.status == 0


def test_a_kind_vsnap_cannot_save_is_refused_at_save_in_one_line(tmp_path):
    """Not a crash at resume: a save refuses what it has no entry for, naming the fd."""
    from guestrun import Capture, guest, root_for, start
    from vsnap.errors import VsnapError
    from vsnap.fdtable import OpenFile
    from vsnap.snapshot import checkpoint
    m = start(guest("counter"), root_for(tmp_path), Capture(b""))
    assert m.advance(100_000) is None
    # a kind KINDS has no entry for (sockets, pipes, epoll and eventfd all have one now)
    fd = m.process.fds.install(OpenFile("timerfd", "anon_inode:[timerfd]", 2))
    with pytest.raises(VsnapError) as e:
        checkpoint(m, str(tmp_path / "x.img"))
    assert str(e.value).count("\n") == 0
    assert (f"fd {fd} is a timerfd open on anon_inode:[timerfd], which vsnap cannot "
            f"checkpoint") in str(e.value)
    assert not (tmp_path / "x.img").exists()
    m.close()
