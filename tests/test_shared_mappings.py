"""MAP_SHARED mappings of a file open for writing (sharedfile.py): the guest's stores reach the
file and a write() to the file is in the mapping, in the process and its forked children, as on
Linux; checkpoints keep such a mapping by reference (path, offset, the file's identity), never
its pages, and a resume refuses a file that changed.

tests/guests/shared_file.c prints what it sees at each step (stores, write(), msync's errors,
/proc/self/maps, fork, mremap, mprotect, ftruncate and SIGBUS, munmap); shared_big.c maps a
16 MiB file. Each runs natively and under vsnap, musl and glibc, and the bytes must agree."""
from __future__ import annotations

import json
import os
import zipfile

import pytest

from conftest import require_native, run_cli, run_native
from vsnap.kernel import Capture
from vsnap.snapshot import checkpoint
from vsnap.snapshot.restore import FileChanged, restore
from vsnap.testing import Guest, assert_transparent, measure, run_to_end, start

LIBCS = ("musl", "glibc")


@pytest.mark.parametrize("libc", LIBCS)
@pytest.mark.parametrize("name", ("shared_file", "shared_big"))
def test_shared_file_mappings_match_linux(builds, name, libc, tmp_path):
    require_native()
    prog = builds.get(name, libc)
    (tmp_path / "native").mkdir()
    native = run_native(prog, cwd=tmp_path / "native")
    assert native.status == 0, native.text()
    (tmp_path / "vsnap").mkdir()
    got = run_cli("run", prog, cwd=tmp_path / "vsnap")
    assert (got.stdout, got.stderr, got.status) == (native.stdout, native.stderr,
                                                     native.status)
    if name == "shared_file":  # the steps that matter ran, with Linux's answers
        for line in (b"store      pread@0=8 'STOREDaa'", b"write     map='WRITTEN'",
                     b"maps rw-s off=0 ino-ok=1 name=s.dat", b"fork      map='CHILD'",
                     b"mprotect ro-file=-1 Permission denied", b"shrunk 98 0 -7 -7",
                     b"ro sees 'sTXRED' read into it=-1 Bad address",
                     b"private sees 'STORED' own 'obbb'", b"child shrank it: 87 -7",
                     b"write from past eof=-1 Bad address", b"munmap     pread@4096=8 'U"):
            assert line in native.stdout, line
    for f in os.listdir(tmp_path / "native"):
        assert (tmp_path / "vsnap" / f).read_bytes() == (tmp_path / "native" / f).read_bytes()


@pytest.mark.parametrize("libc", LIBCS)
def test_shared_file_mappings_survive_checkpoints(builds, libc, tmp_path):
    """A checkpoint at and around every system call (the fork's child with its mapping too):
    the stores before and after each resume reach the file, and write()s reach the mapping;
    the files left (bytes and mtime) and the output are an uninterrupted run's."""
    guest = Guest(builds.get("shared_file", libc))
    m = measure(guest, tmp_path)
    assert m.outcome.status == 0 and b"munmap" in m.outcome.stdout
    # every call in the long tier (--slow); by default every other one, the two flavours
    # taking alternate halves, so that each call is still covered by one of them
    calls = m.syscalls if os.environ.get("VSNAP_SLOW") else \
        m.syscalls[LIBCS.index(libc) % 2::2]
    for k in calls:
        assert_transparent(guest, [k - 1, k + 1], reference=m.outcome, base=tmp_path)
    assert_transparent(guest, m.syscalls[5::9][:3], reference=m.outcome, base=tmp_path)


def _saved_after(builds, tmp_path, name: str, marker: bytes, libc: str = "musl"):
    """Run `name` until its stdout has `marker`; save there; what it printed."""
    cap = Capture()
    root = tmp_path / "root"
    root.mkdir()
    m = start(Guest(builds.get(name, libc)), root, cap)
    n = 0
    while marker not in cap.out:
        n += 20000
        assert m.advance(n) is None, "the program ended first"
    image = tmp_path / "saved.img"
    checkpoint(m, str(image))
    m.close()
    return image, root, bytes(cap.out)


def _memory(image) -> dict:
    with zipfile.ZipFile(image) as z:
        return json.loads(z.read("memory.json"))


@pytest.mark.parametrize("libc", LIBCS)
def test_a_16_mib_shared_mapping_is_saved_by_reference(builds, libc, tmp_path):
    """Every page of the 16 MiB mapping was written before the save: the image holds none of
    them (a few KiB of JSON), and the resumed guest's stores reach the file as before."""
    image, root, before = _saved_after(builds, tmp_path, "shared_big", b"mapped", libc)
    assert os.path.getsize(image) < 1 << 20, os.path.getsize(image)
    [v] = [v for v in _memory(image)["vmas"] if v.get("file", {}).get("path") == "/big.dat"]
    assert v["perms"] == "rw-s" and v["pages"] == [] and v["file"]["direct"]
    assert v["file"]["identity"]["size"] == 16 << 20 and v["file"]["own"] == []
    cap = Capture()
    m, warnings = restore(str(image), console=cap.console)
    assert warnings == []
    assert m.run().status == 0
    whole = run_to_end(Guest(builds.get("shared_big", libc)), tmp_path)
    assert before + bytes(cap.out) == whole.stdout
    assert (root / "big.dat").read_bytes() == whole.files["big.dat"][3]


def test_private_file_mappings_save_only_their_own_pages(builds, tmp_path):
    """mmap_cow's private mapping wrote its page 1 only: that page is in the image, pages 0
    and 2 come back from the file. Its shared mapping (read-only, of a file open for writing:
    direct) saves no page at all."""
    image, _, _ = _saved_after(builds, tmp_path, "mmap_cow", b"\ncow ")
    files = [v for v in _memory(image)["vmas"] if "file" in v]
    private = next(v for v in files if v["perms"].endswith("p"))
    shared = next(v for v in files if v["perms"].endswith("s"))
    assert private["file"]["own"] == [[1, 1]]
    assert [run[:2] for run in private["pages"]] == [[1, 1]]
    assert shared["pages"] == [] and shared["file"]["direct"]


def test_resume_refuses_a_shared_mapped_file_that_changed(builds, tmp_path):
    image, root, _ = _saved_after(builds, tmp_path, "shared_big", b"mapped")
    with open(root / "big.dat", "r+b") as f:
        f.seek(9 << 20)
        f.write(b"changed")
    with pytest.raises(FileChanged, match="big.dat"):
        restore(str(image))
    refused = run_cli("resume", str(image), cwd=root)
    assert refused.status != 0 and b"big.dat" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1 and b"Traceback" not in refused.stderr
    forced = run_cli("resume", "--force", str(image), cwd=root)
    assert b"warning: --force" in forced.stderr and b"big.dat" in forced.stderr
    assert b"may misbehave" in forced.stderr and b"mapped" in forced.stderr
    assert forced.status == 0
