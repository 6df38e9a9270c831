"""MAP_GROWSDOWN: a mapping that grows down when the process touches below it (Linux's
expand_stack), stopping short of the stack guard gap above the next mapping; natively and under
vsnap (musl and glibc), and across checkpoints (the flag is in memory.json)."""
from __future__ import annotations

import pytest

from conftest import require_native, run_api, run_native
from vsnap.testing import Guest, assert_transparent, measure


@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_growsdown_matches_linux(builds, libc, tmp_path):
    require_native()
    prog = builds.get("growsdown", libc)
    native = run_native(prog, cwd=tmp_path)
    got, _ = run_api(prog, root=tmp_path)
    assert b"-4096: ok" in native.stdout and b"signal 11" in native.stdout
    assert (got.stdout, got.status) == (native.stdout, native.status)


def test_growsdown_survives_checkpoints(builds, tmp_path):
    guest = Guest(builds.get("growsdown", "musl"))
    m = measure(guest, tmp_path)
    for k in m.syscalls[::2]:
        assert_transparent(guest, [k], reference=m.outcome, base=tmp_path)
