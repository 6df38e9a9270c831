"""File mappings share pages with the file until written (copy-on-write), as on Linux: a
write() to the file, through any descriptor, shows in the pages the process has not written,
MAP_SHARED read-only mappings always show the file, pages past the end of the file are SIGBUS;
and all of it survives a checkpoint (memory.json keeps which pages still follow which file).

tests/guests/mmap_cow.c and mmap_ghost.c print what they see at each step; each runs natively
and under vsnap, musl and glibc, and the bytes must agree."""
from __future__ import annotations

import json
import os
import zipfile

import pytest

from conftest import require_native, run_api, run_native
from vsnap.kernel import Capture
from vsnap.snapshot import checkpoint
from vsnap.snapshot.restore import FileChanged, restore
from vsnap.testing import Guest, assert_transparent, measure, start

PROGRAMS = ("mmap_cow", "mmap_ghost", "mmap_exec")
LIBCS = ("musl", "glibc")


@pytest.mark.parametrize("libc", LIBCS)
@pytest.mark.parametrize("name", PROGRAMS)
def test_file_mappings_match_linux(builds, name, libc, tmp_path):
    require_native()
    prog = builds.get(name, libc)
    (tmp_path / "native").mkdir()
    native = run_native(prog, cwd=tmp_path / "native")
    (tmp_path / "vsnap").mkdir()
    got, _ = run_api(prog, root=tmp_path / "vsnap")
    assert native.status == 0, native.text()
    assert b"BUS7" in native.stdout or name != "mmap_cow"  # the SIGBUS step ran
    assert (got.stdout, got.stderr, got.status) == (native.stdout, native.stderr,
                                                     native.status)
    assert os.listdir(tmp_path / "vsnap") == os.listdir(tmp_path / "native")


@pytest.mark.parametrize("libc", LIBCS)
@pytest.mark.parametrize("name", PROGRAMS)
def test_file_mappings_survive_checkpoints(builds, name, libc, tmp_path):
    """A checkpoint at (and around) every few system calls: after the resume, later writes to
    the file still show in the clean pages, and never in the pages the process wrote."""
    guest = Guest(builds.get(name, libc))
    m = measure(guest, tmp_path)
    assert m.outcome.status == 0
    step = 3 if name == "mmap_cow" else 1
    if name == "mmap_exec":
        assert m.outcome.stdout == b"1 1 2\n"
    for k in m.syscalls[::step]:
        assert_transparent(guest, [k], reference=m.outcome, base=tmp_path)
    assert_transparent(guest, m.syscalls[10::25][:3], reference=m.outcome, base=tmp_path)


def _saved_after(builds, tmp_path, name: str, marker: bytes):
    """Run `name` until its stdout has `marker`; save there."""
    cap = Capture()
    root = tmp_path / "root"
    root.mkdir()
    m = start(Guest(builds.get(name, "musl")), root, cap)
    n = 0
    while marker not in cap.out:
        n += 2000
        assert m.advance(n) is None, "the program ended first"
    image = tmp_path / "saved.img"
    checkpoint(m, str(image))
    m.close()
    return image, root


def _memory(image) -> dict:
    with zipfile.ZipFile(image) as z:
        return json.loads(z.read("memory.json"))


def test_image_records_which_pages_follow_the_file(builds, tmp_path):
    image, _ = _saved_after(builds, tmp_path, "mmap_cow", b"\ncow ")
    files = [v for v in _memory(image)["vmas"] if "file" in v]
    assert len(files) == 2
    private = next(v for v in files if v["perms"].endswith("p"))
    shared = next(v for v in files if v["perms"].endswith("s"))
    assert private["file"]["own"] == [[1, 1]]  # the page it wrote; pages 0 and 2 follow
    assert shared["file"]["own"] == []
    for v in files:
        assert v["file"]["path"] == "/f.dat" and v["file"]["offset"] == "0x0"
        assert v["file"]["identity"]["size"] == 3 * 4096
        assert not v["file"]["identity"]["deleted"]


def test_image_keeps_mapped_files_that_were_deleted(builds, tmp_path):
    image, _ = _saved_after(builds, tmp_path, "mmap_ghost", b"round 1")
    files = {v["file"]["path"]: v["file"] for v in _memory(image)["vmas"] if "file" in v}
    assert set(files) == {"/g1.dat", "/g2.dat", "/g3.dat"}
    assert "description" in files["/g1.dat"]           # shares the open descriptor's file
    assert files["/g2.dat"]["ghost"].startswith("files/")  # nobody else holds it
    assert not files["/g3.dat"]["identity"]["deleted"]  # reopened by name on resume
    with zipfile.ZipFile(image) as z:
        assert z.read(files["/g2.dat"]["ghost"]) == b"z" * 4096


def test_resume_refuses_a_mapped_file_that_changed(builds, tmp_path):
    """g3.dat has no descriptor open at the save: only its mapping holds it."""
    image, root = _saved_after(builds, tmp_path, "mmap_ghost", b"round 1")
    with open(root / "g3.dat", "r+b") as f:
        f.write(b"9")
    with pytest.raises(FileChanged, match="g3.dat"):
        restore(str(image))



def test_a_resume_leaves_the_atime_of_a_mapped_file_alone(tmp_path):
    """Restoring a file mapping opened the file without O_NOATIME, and reading its pages then
    let the host (relatime) stamp the file's atime with the wall clock: the file left by a
    resumed run differed from an uninterrupted run's (vsnap behaves as if mounted noatime)."""
    import subprocess
    import sys
    from test_liveruns import FILES  # a file written, linked, mapped MAP_SHARED, written again
    from vsnap.build import build
    src = tmp_path / "files.c"
    src.write_text(FILES)
    prog = build(str(src))
    atimes = []
    for how in ("whole", "split"):
        root = tmp_path / how
        root.mkdir()
        run = [sys.executable, "-m", "vsnap"]
        if how == "whole":
            subprocess.run([*run, "run", prog], cwd=root, check=True, capture_output=True)
        else:
            subprocess.run([*run, "run", "--save-at", "60000", "-o", "s.img", "--exit", prog],
                           cwd=root, check=True, capture_output=True)
            subprocess.run([*run, "resume", "s.img"], cwd=root, check=True,
                           capture_output=True)
        atimes.append(os.stat(root / "data.txt").st_atime_ns)
    assert atimes[0] == atimes[1] and atimes[0] // 10**9 == 1_700_000_000, atimes
