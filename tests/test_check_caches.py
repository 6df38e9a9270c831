"""What `vsnap check` keeps from one machine to the next (it makes two per example, hundreds per
check), and why none of it can serve a stale answer:

* block counts learned for a program's text (vsnap/knownblocks.py) are given to a new machine
  only where its text holds the same bytes: another build at the same addresses counts as
  the per-instruction reference does;
* a parsed program and a file's SHA-256 are kept by the file's identity (vsnap/loader.py):
  a changed file, or one changed too recently to tell, is read again.
"""
import os
import shutil
import time
from pathlib import Path

import pytest

import vsnap
from vsnap import knownblocks, loader
from vsnap.build import build
from vsnap.memory import Vma

NOPS = str(Path(__file__).parent / "guests" / "nops.c")


def _count(path, root, mode, monkeypatch):
    monkeypatch.setenv("VSNAP_COUNTER", mode)
    out = bytearray()
    console = vsnap.Console(read=lambda n: b"", write_out=out.extend, write_err=out.extend)
    m = vsnap.Machine(path, [], root=str(root), console=console)
    r = m.run(count=True)
    return r.instructions, r.status


def _misses(path, root, monkeypatch):
    """Blocks the counter had to ask Python about in one run."""
    import vsnap.counter as counter
    asked = []
    real = counter.BlockCounter.__init__

    def init(self, uc, lib, cacheable, known=None):
        real(self, uc, lib, lambda a, s: asked.append(a) or cacheable(a, s), known)
    monkeypatch.setattr(counter.BlockCounter, "__init__", init)
    n = _count(path, root, "block", monkeypatch)
    monkeypatch.setattr(counter.BlockCounter, "__init__", real)
    return n, len(asked)


def test_counts_learned_for_one_build_are_not_given_to_another(tmp_path, monkeypatch):
    """Two builds with the same layout: one block of 64 one-byte nops, or of 8 eight-byte
    nops, run three times. Learned per address and size alone, the second would count too many."""
    knownblocks.forget_all()
    many = build(NOPS, extra_flags=("-nostdlib", "-DMANY"))
    few = build(NOPS, extra_flags=("-nostdlib",))
    many_ref = _count(many, tmp_path, "insn", monkeypatch)
    few_ref = _count(few, tmp_path, "insn", monkeypatch)
    assert many_ref[0] - few_ref[0] == 3 * (64 - 8)
    assert _count(many, tmp_path, "block", monkeypatch) == many_ref  # learned now
    assert _count(few, tmp_path, "block", monkeypatch) == few_ref
    assert _count(many, tmp_path, "block", monkeypatch) == many_ref


def test_a_second_machine_starts_with_what_the_first_learned(tmp_path, monkeypatch):
    knownblocks.forget_all()
    prog = build(str(Path(__file__).parent.parent / "programs" / "hello.c"))
    first, asked_first = _misses(prog, tmp_path, monkeypatch)
    second, asked_second = _misses(prog, tmp_path, monkeypatch)
    assert first == second == _count(prog, tmp_path, "insn", monkeypatch)
    assert asked_first > 20
    assert asked_second <= 1  # the miss that seeds the table


class _Mem:
    """Just what KnownBlocks reads: the VMAs, and bytes."""

    def __init__(self, vmas, data: dict):
        self.vmas, self._data = vmas, data

    def read(self, addr, size):
        for start, blob in self._data.items():
            if start <= addr and addr + size <= start + len(blob):
                return blob[addr - start:addr - start + size]
        raise AssertionError("read outside the fake memory")


def _entries(seed):
    import struct
    out = set()
    for buf, count in seed:
        raw = bytes(buf)[:16 * count]
        out |= {struct.unpack_from("<QII", raw, 16 * i) for i in range(count)}
    return out


def test_known_blocks_only_for_the_same_bytes_and_read_only_text():
    knownblocks.forget_all()
    text = Vma(0x1000, 0x2000, 5, "text")
    a, b = bytes(range(256)) * 16, bytes(reversed(range(256))) * 16
    first = knownblocks.KnownBlocks(_Mem([text], {0x1000: a}))
    assert first.seed() == []
    first.learned(0x1010, 8, 3, a[0x10:0x18])
    first.learned(0x1020, 8, 5, b"not these bytes")  # memory changed under it: not kept
    assert _entries(knownblocks.KnownBlocks(_Mem([text], {0x1000: a})).seed()) == \
        {(0x1010, 8, 3)}
    assert knownblocks.KnownBlocks(_Mem([text], {0x1000: b})).seed() == []
    writable = Vma(0x1000, 0x2000, 7, "text")
    assert knownblocks.KnownBlocks(_Mem([writable], {0x1000: a})).seed() == []
    first.invalidate()  # executable memory changed: nothing more is learned for it
    first.learned(0x1030, 8, 2, a[0x30:0x38])
    assert _entries(knownblocks.KnownBlocks(_Mem([text], {0x1000: a})).seed()) == \
        {(0x1010, 8, 3)}


def _age(path: Path, monkeypatch, seconds: float = 5.0) -> None:
    """Make the file old enough to be trusted: the clock the cache reads moves on."""
    now = time.time_ns()
    monkeypatch.setattr(loader.time, "time_ns", lambda: now + int(seconds * 1e9))


def test_a_changed_program_is_not_served_from_the_cache(tmp_path, monkeypatch):
    """Rewritten in place with the same size and its old modification time put back: only
    the change time (and the bytes) tell."""
    hello = build(str(Path(__file__).parent.parent / "programs" / "hello.c"))
    prog = tmp_path / "prog"
    shutil.copyfile(hello, prog)
    _age(prog, monkeypatch)
    first = loader.read_program(str(prog))
    assert loader.read_program(str(prog)) is first  # kept
    assert loader.file_sha256(str(prog)) == first.sha256
    was = os.stat(prog)
    time.sleep(0.05)  # past the kernel's timestamp tick
    data = bytearray(first.data)
    data[-1] ^= 1  # in the section headers, which loading does not read
    with open(prog, "r+b") as f:  # rewritten in place: the same inode
        f.write(data)
    os.utime(prog, ns=(was.st_atime_ns, was.st_mtime_ns))
    assert os.stat(prog).st_size == was.st_size and os.stat(prog).st_ino == was.st_ino
    _age(prog, monkeypatch)
    again = loader.read_program(str(prog))
    assert again is not first and again.data == data
    assert loader.file_sha256(str(prog)) == again.sha256 != first.sha256


def test_a_file_changed_within_the_timestamp_tick_is_read_again(tmp_path):
    """Two writes in one tick of the kernel's file clock leave the same times: a file
    changed within the last two seconds is never kept."""
    path = tmp_path / "f"
    path.write_bytes(b"a" * 100)
    before = loader.file_sha256(str(path))
    st = os.stat(path)
    path.write_bytes(b"b" * 100)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert loader.file_sha256(str(path)) != before


def test_restore_refuses_a_program_replaced_after_the_save(tmp_path, monkeypatch):
    """The program's hash a restore checks comes from the cache only while the file is the
    one hashed: a replaced program is refused as before."""
    from vsnap.snapshot import ImageError, image_bytes
    from vsnap.snapshot.restore import restore_bytes
    hello = build(str(Path(__file__).parent.parent / "programs" / "hello.c"))
    prog = tmp_path / "hello"
    shutil.copyfile(hello, prog)
    _age(prog, monkeypatch)
    console = vsnap.Console(read=lambda n: b"", write_out=lambda b: None,
                            write_err=lambda b: None)
    m = vsnap.Machine(str(prog), [], root=str(tmp_path), console=console)
    assert m.advance(100) is None
    data = image_bytes(m)
    restore_bytes(data, console=console)[0].close()  # the program is unchanged: it resumes
    time.sleep(0.05)
    other = Path(build(str(Path(__file__).parent.parent / "programs" / "counter.c")))
    os.replace(shutil.copyfile(other, tmp_path / "new"), prog)
    _age(prog, monkeypatch)
    with pytest.raises(ImageError, match="not the program that was saved"):
        restore_bytes(data, console=console)
