"""The current directory and directory descriptors hold a directory, not a path (issue 9):
renamed, they follow it; removed, getcwd is ENOENT and every name in them but "." and ".." is
ENOENT, even after a new directory took the old name. Differential: tests/guests/deadcwd.c
natively (in a fresh directory) and under vsnap, musl and glibc, the same bytes; and checkpoints
taken while the cwd and a held directory are renamed and removed change nothing.

(busybox sh's `cd d; rmdir ../d; pwd; echo x > f` cannot be compared: sh runs rmdir in a child
it forks, and vsnap runs one process, without clone.)"""
from __future__ import annotations

import os

import pytest

from conftest import make_root, run_api, run_native
from vsnap.testing import Guest, assert_transparent, measure

FLAVOURS = ("musl", "glibc")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_removed_and_renamed_cwd_and_held_directories_as_linux(builds, tmp_path, flavour):
    prog = builds.get("deadcwd", flavour)
    native = run_native(prog, cwd=make_root(tmp_path / "native"))
    ours, _ = run_api(prog, root=make_root(tmp_path / "vsnap"))
    # what Linux does, which vsnap got wrong before (it answered by the old path)
    for line in (b"removed: getcwd syscall errno 2", b"proc cwd removed: /e (deleted)",
                 b"create g: -1 errno No such file or directory", b"nlink . 0 .. 1 held 0",
                 b"openat held ..: 0", b"fchdir renamed: getcwd syscall /q",
                 b"self removed: getcwd syscall errno 2", b"back: getcwd syscall ."):
        assert line in native.stdout, line
    assert native.status == 0
    assert ours.stdout == native.stdout and ours.status == native.status
    assert ours.stderr == native.stderr


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_checkpoints_keep_a_removed_cwd_removed(builds, tmp_path, flavour):
    """Checkpoints at the system calls while the cwd and held directories are renamed and
    removed: a removed cwd and removed held directories stay removed after resume (a new
    directory of the same name does not take their place)."""
    guest = Guest(builds.get("deadcwd", flavour))
    m = measure(guest, tmp_path)
    assert m.outcome.status == 0
    step = 3 if flavour == "musl" else 5
    for k in m.syscalls[::step]:
        assert_transparent(guest, [k], reference=m.outcome, base=tmp_path)
    chain = [m.syscalls[len(m.syscalls) * i // 4] for i in (1, 2, 3)]
    assert_transparent(guest, chain, reference=m.outcome, base=tmp_path)


def test_resume_refused_when_the_saved_cwd_is_gone(builds, tmp_path):
    """vsnap follows a live cwd across a save by its name: moved away on the host meanwhile
    (out of the root, say), it cannot be followed, and the resume is refused in one line, not
    run in whatever directory took the name (or none)."""
    from vsnap.snapshot import image_bytes
    from vsnap.snapshot.restore import FileChanged, restore_bytes
    from vsnap.testing import Capture, fresh_root, start
    guest = Guest(builds.get("deadcwd"))
    root = fresh_root(guest, tmp_path)
    m = start(guest, root, Capture(b""))
    while m.process.task.cwd != "/c/b":   # after "rename a c": the cwd is /c/b
        assert m.advance(m.instructions + 1000) is None
    data = image_bytes(m)
    m.close()
    os.rename(root / "c", tmp_path / "outside")
    with pytest.raises(FileChanged, match=r"current directory /c/b is not there any more"):
        restore_bytes(data, where="image")
    os.rename(tmp_path / "outside", root / "c")
    restore_bytes(data, where="image")[0].close()   # back in its place: it resumes


@pytest.mark.parametrize("tamper, says", [
    (lambda p: p.pop("cwd_removed"), "process.cwd_removed: missing"),
    (lambda p: p["cwd_removed"].update(mode=0o40755), "process.cwd_removed.mode"),
    (lambda p: p["cwd_removed"].pop("ino"), "process.cwd_removed.ino: missing"),
    (lambda p: p.update(cwd_removed=1), "process.cwd_removed"),
])
def test_image_fields_of_a_removed_cwd_are_checked(builds, tmp_path, tamper, says):
    """kernel.json's process.cwd_removed is required (image format 4) and checked."""
    import json
    from vsnap.errors import VsnapError
    from vsnap.snapshot import image_bytes
    from vsnap.snapshot.codec import decode, encode
    from vsnap.snapshot.image import parse
    from vsnap.testing import Capture, fresh_root, start
    guest = Guest(builds.get("deadcwd"))
    m = start(guest, fresh_root(guest, tmp_path), Capture(b""))
    while not m.process.task.cwd_removed:
        assert m.advance(m.instructions + 1000) is None
    manifest, parts = decode(image_bytes(m))
    m.close()
    kernel = json.loads(parts["kernel.json"])
    assert set(kernel["process"]["cwd_removed"]) == {"mode", "mtime_ns", "ino"}
    parse(manifest, dict(parts), "good")   # untouched, it reads
    tamper(kernel["process"])
    parts["kernel.json"] = json.dumps(kernel).encode()
    manifest, parts = decode(encode(parts, manifest["program"]))
    with pytest.raises(VsnapError, match=says):
        parse(manifest, parts, "tampered")
