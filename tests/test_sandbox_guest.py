"""The sandbox seen from a real guest: programs/escape.c tries 48 ways out of its root.

In a root that holds a decoy etc/passwd ("SANDBOX"), every attempt must either fail or read the
decoy, the output must equal what the same program printed under a real Linux chroot
(programs/data/escape.expected), and nothing outside the root may be created or changed.
"""
import os
from pathlib import Path

import pytest

import vsnap
from vsnap.build import build

REPO = Path(__file__).resolve().parents[1]


def tree(path: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(path))] = (st.st_mode, st.st_size, st.st_mtime_ns,
                                             os.readlink(p) if p.is_symlink() else None)
    return out


@pytest.fixture(scope="module")
def escape():
    return build(str(REPO / "programs" / "escape.c"))


def test_escape_attempts_stay_inside_the_root(escape, tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("HOST SECRET\n")
    root = outside / "root"
    (root / "etc").mkdir(parents=True)
    (root / "home").mkdir()
    (root / "etc" / "passwd").write_text("SANDBOX\n")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("HOST PASSWD\n")
    before = {p: v for p, v in tree(tmp_path).items() if not p.startswith("outside/root")}
    monkeypatch.chdir(root)
    result, out, err = vsnap.run(escape, root=str(root))
    assert result.status == 0, err
    assert out == (REPO / "programs" / "data" / "escape.expected").read_bytes()
    assert b"HOST" not in out and b"root:" not in out
    assert out.count(b"SANDBOX") >= 10
    after = {p: v for p, v in tree(tmp_path).items() if not p.startswith("outside/root")}
    assert after == before  # nothing outside the root was created, removed or touched


def test_guest_cwd_outside_root_starts_at_slash(escape, tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.chdir(tmp_path)  # the host cwd is outside the root
    m = vsnap.Machine(escape, root=str(root), console=vsnap.Console(write_out=lambda b: None))
    assert m.process.task.cwd == "/"
