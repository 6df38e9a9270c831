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
