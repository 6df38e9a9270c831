"""Exact instruction counting per translated block (vsnap/counter.py), against the reference
that counts every instruction with its own hook: the same count at the end of every run, and
the same machine (registers and count) at every exact stop, wherever it falls: inside rep
string instructions, in blocks that fault, in signal handlers, in self-modifying code."""
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vsnap
from vsnap.testing import assert_transparent, measure, workloads

from guestrun import PROGRAMS as PROGRAM_ARGS
from guestrun import Guest

FLAVOURS = ("musl", "musl-pie", "glibc", "glibc-pie")
SPECIAL = {"selfmod": ["60"], "repstr": [], "faulty": []}


def _machine(path, args, root, mode, monkeypatch):
    monkeypatch.setenv("VSNAP_COUNTER", mode)
    out = bytearray()
    console = vsnap.Console(read=lambda n: b"", write_out=out.extend, write_err=out.extend)
    return vsnap.Machine(path, list(args), root=str(root), console=console), out


def _counted(path, args, root, mode, monkeypatch):
    m, out = _machine(path, args, root, mode, monkeypatch)
    r = m.run(count=True)
    return r.instructions, r.status, bytes(out)


def _root(tmp_path):
    from conftest import SAMPLE
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "sample.txt").write_bytes(SAMPLE.read_bytes())
    return tmp_path


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("name", sorted(PROGRAM_ARGS) + sorted(SPECIAL))
def test_block_counts_equal_the_reference(builds, name, flavour, tmp_path, monkeypatch):
    path = builds.get(name, flavour)
    args = PROGRAM_ARGS.get(name, SPECIAL.get(name))
    block = _counted(path, args, _root(tmp_path / "a"), "block", monkeypatch)
    ref = _counted(path, args, _root(tmp_path / "b"), "insn", monkeypatch)
    assert block == ref
    assert block[0] > 0


def _stops(path, args, root, mode, ks, monkeypatch):
    m, _ = _machine(path, args, root, mode, monkeypatch)
    seen = []
    for k in ks:
        r = m.advance(k)
        if r is not None:
            seen.append(("ended", r.status))
            break
        seen.append((m.instructions, m.cpu.snapshot_registers()))
    return seen


@pytest.mark.parametrize("flavour", ["musl", "glibc-pie"])
@pytest.mark.parametrize("name", ["repstr", "faulty", "selfmod", "signals", "wordfreq"])
def test_exact_stops_equal_the_reference(builds, name, flavour, tmp_path_factory,
                                         monkeypatch):
    path = builds.get(name, flavour)
    args = SPECIAL.get(name, PROGRAM_ARGS.get(name))
    base = tmp_path_factory.mktemp(name)
    length = _counted(path, args, _root(base / "len"), "insn", monkeypatch)[0]
    runs = iter(range(10**6))

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.integers(0, length), min_size=1, max_size=6).map(sorted))
    def same(ks):
        i = next(runs)
        roots = [_root(base / f"{i}{mode}") for mode in ("b", "r")]
        block = _stops(path, args, roots[0], "block", ks, monkeypatch)
        ref = _stops(path, args, roots[1], "insn", ks, monkeypatch)
        assert block == ref
    same()
    # the first and the last instruction, and one past the end
    for ks in ([0, 1], [length - 1, length], [length + 1]):
        i = next(runs)
        a = _stops(path, args, _root(base / f"{i}b"), "block", ks, monkeypatch)
        b = _stops(path, args, _root(base / f"{i}r"), "insn", ks, monkeypatch)
        assert a == b


def _positions(builds, name, monkeypatch, tmp_path, hook):
    """Instruction counts where `hook` (a Machine method) is entered, in a reference run."""
    path = builds.get(name, "musl")
    m, _ = _machine(path, SPECIAL[name], _root(tmp_path), "insn", monkeypatch)
    seen, original = [], getattr(m, hook)

    def spy(*a, **kw):
        seen.append(m.cpu.instructions)
        return original(*a, **kw)
    setattr(m, hook, spy)
    m.run(count=True)
    return path, seen


def test_stops_next_to_every_fault(builds, tmp_path, monkeypatch):
    """Just before, at and after each instruction that faults into a guest handler."""
    path, faults = _positions(builds, "faulty", monkeypatch, tmp_path / "p", "_fault_to_handler")
    assert len(faults) == 100  # 20 rounds of a bad load, a read-only store, ud2, int3, int n
    ks = sorted({k + d for k in faults for d in (-1, 0, 1)})
    a = _stops(path, [], _root(tmp_path / "b"), "block", ks, monkeypatch)
    b = _stops(path, [], _root(tmp_path / "r"), "insn", ks, monkeypatch)
    assert a == b and len(a) == len(ks)


def test_stops_inside_rep_instructions(builds, tmp_path, monkeypatch):
    """Every instruction of a stretch inside `rep movsb`: each iteration is an instruction,
    and a stop there leaves rcx part-way down."""
    path = builds.get("repstr", "musl")
    m, _ = _machine(path, [], _root(tmp_path / "scan"), "insn", monkeypatch)
    k = 0
    while True:  # the first stop where rip is at a rep movsb with rcx > 100
        k += 500
        assert m.advance(k) is None
        rip = m.cpu.read("rip")
        if m.mem.read(rip, 2) == b"\xf3\xa4" and m.cpu.read("rcx") > 100:
            break
    ks = list(range(k - 3, k + 40))
    a = _stops(path, [], _root(tmp_path / "b"), "block", ks, monkeypatch)
    b = _stops(path, [], _root(tmp_path / "r"), "insn", ks, monkeypatch)
    assert a == b
    rcx = [regs["rcx"] for _, regs in a[4:]]
    assert rcx == list(range(rcx[0], rcx[0] - len(rcx), -1))  # one iteration per instruction


def test_generated_workloads_count_as_the_reference(tmp_path_factory, monkeypatch):
    base = tmp_path_factory.mktemp("workloads")
    runs = iter(range(10**6))

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(guest=workloads())
    def same(guest):
        i = next(runs)
        counts = []
        for mode in ("block", "insn"):
            root = base / f"{i}{mode}"
            root.mkdir()
            for rel, data in guest.files.items():
                (root / rel).write_bytes(data)
            counts.append(_counted(guest.program, guest.args, root, mode, monkeypatch))
        assert counts[0] == counts[1]
    same()


@pytest.mark.parametrize("name", ["selfmod", "repstr", "faulty"])
def test_checkpoints_anywhere_in_the_new_guests(builds, name, tmp_path_factory):
    guest = Guest(builds.get(name, "musl"), tuple(SPECIAL[name]))
    base = tmp_path_factory.mktemp(name)
    m = measure(guest, base)

    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.integers(0, max(0, m.length - 1)))
    def transparent(k):
        assert_transparent(guest, [k], reference=m.outcome, base=base)
    transparent()


def test_an_image_counted_another_way_is_refused_in_one_line(tmp_path):
    """A position counted under another definition of "instruction" would resume at another
    point: refused, never resumed there. An image without the field is damaged (every image
    of this format records it)."""
    import json
    import subprocess
    import sys
    from guestrun import Capture, guest, root_for, start
    from vsnap.counter import COUNTING
    from vsnap.snapshot import ImageError, checkpoint, load
    from vsnap.snapshot.codec import decode, encode
    root = root_for(tmp_path)
    m = start(guest("counter"), root, Capture(b""))
    assert m.advance(200_000) is None
    path = tmp_path / "c.img"
    checkpoint(m, str(path))
    manifest, parts = decode(path.read_bytes())
    kernel = json.loads(parts["kernel.json"])
    assert kernel["counting"] == COUNTING
    del kernel["counting"]
    parts["kernel.json"] = json.dumps(kernel).encode()
    old = tmp_path / "old.img"
    old.write_bytes(encode(parts, manifest["program"]))
    with pytest.raises(ImageError, match="counting: missing"):
        load(str(old))
    kernel["counting"] = "per-retired-instruction"
    parts["kernel.json"] = json.dumps(kernel).encode()
    other = tmp_path / "other.img"
    other.write_bytes(encode(parts, manifest["program"]))
    with pytest.raises(ImageError, match="counted as 'per-retired-instruction'"):
        load(str(other))
    p = subprocess.run([sys.executable, "-m", "vsnap", "resume", str(other)], cwd=root,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "counted as" in p.stderr


@pytest.mark.parametrize("flavour", ["musl", "glibc"])
def test_code_rewritten_between_mprotects_runs_as_natively(builds, flavour, tmp_path):
    """A page rewritten while writable and made executable again runs its new code: Unicorn
    kept running its old translation until vsnap dropped it at mprotect (10 instead of 15)."""
    from conftest import run_api, run_native
    path = builds.get("selfmod", flavour)
    native = run_native(path, ["20"], cwd=tmp_path)
    assert native.stdout == b"mprotect: 15\nrwx: 221\npatched: 30\n"
    for count in (False, True):
        out, _ = run_api(path, ["20"], root=tmp_path, count=count)
        assert (out.stdout, out.status) == (native.stdout, native.status)


def test_the_start_up_decoder_counts_as_capstones_python_package(builds):
    """Blocks are decoded through capstone's library directly (the Python package takes
    ~70 ms to import, and every run counts): the same counts, on 3,000 random byte runs of
    a real program, the undecodable ones included."""
    import random
    from vsnap.insncount import _native_decoder
    from vsnap.trace import instruction_count
    native = _native_decoder()
    assert native is not None, "capstone 5's library was not found beside its package"
    data = open(builds.get("counter", "glibc"), "rb").read()
    rng = random.Random(1)
    for _ in range(3000):
        off, n = rng.randrange(len(data) - 64), rng.randrange(1, 64)
        code = data[off:off + n]
        assert native(code, 0x400000 + off) == instruction_count(code, 0x400000 + off)


@pytest.mark.parametrize("flavour", ["musl", "glibc-pie"])
def test_read_only_code_is_counted_by_the_engine_not_capstone(builds, flavour, tmp_path,
                                                              monkeypatch):
    """A block the counter has not seen is counted from Unicorn's own translation of it
    (uc_ctl's TB request) where the guest cannot write the code: capstone decodes only code
    the guest can write (and the part of a block before a fault or a served rdtsc). Before,
    every new block went through capstone (4,001 of them for bash -c ':', 80 ms with its
    import). The counts still equal the per-instruction reference."""
    import vsnap.counter as counter
    decoded = []
    real = counter.count_code

    def spy(code, address):
        decoded.append(address)
        return real(code, address)

    monkeypatch.setattr(counter, "count_code", spy)
    path = builds.get("wordfreq", flavour)
    args = PROGRAM_ARGS["wordfreq"]
    block = _counted(path, args, _root(tmp_path / "a"), "block", monkeypatch)
    assert decoded == [], [hex(a) for a in decoded[:10]]
    ref = _counted(path, args, _root(tmp_path / "b"), "insn", monkeypatch)
    assert block == ref and block[0] > 0
