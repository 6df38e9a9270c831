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
from vsnap.testing import Guest, assert_transparent, measure, run_with_checkpoints, \
    first_difference

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
@pytest.mark.parametrize("mode", ["ghost", "named"])
def test_a_sparse_file_keeps_its_holes(builds, tmp_path, mode, flavour):
    """A file with a 1 GiB hole, open (and deleted, for a ghost) at the save: the image holds
    its data, not its hole; the save takes milliseconds, not seconds; and the resumed file has
    the same size and st_blocks (still sparse) as in an uninterrupted run, and as on Linux."""
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
