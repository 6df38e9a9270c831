"""The promise, as property tests:

    for every program P and every instruction k:  run(P) == resume(save(run(P, stop at k)))

same stdout and stderr bytes, same exit status, same files left behind (names, modes, content,
times), same final registers. Here the resume is a fresh Machine object in this process;
test_checkpoint_cli.py does it in a fresh process through the command line.
"""
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guestrun import PROGRAMS, Capture, finish, fresh_root, length, start, syscall_states
from vsnap.snapshot import checkpoint, image_bytes, restore

# long runs get fewer examples: each example runs the program to k in exact-count mode
EXAMPLES = {"malloc_stress": 3, "primes": 4, "compute": 5, "signals": 25}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ckpt")


_roots = iter(range(10**9))


def uninterrupted(name: str, base: Path):
    root = fresh_root(base, f"full-{name}-{next(_roots)}")
    cap = Capture()
    m = start(name, root, cap)
    return finish(m, cap, root)


def split(name: str, base: Path, ks: list[int]):
    """Run to ks[0], save, resume in a fresh machine, run to ks[1], save, ... then to the end."""
    root = fresh_root(base, f"split-{name}-{next(_roots)}")
    cap = Capture()
    m = start(name, root, cap)
    for i, k in enumerate(ks):
        assert m.advance(k) is None, f"{name} ended before instruction {k}"
        path = str(base / f"{name}-{next(_roots)}.img")
        checkpoint(m, path)
        del m  # nothing of the old machine may survive into the new one
        m, warnings = restore(path, console=cap.console)
        assert warnings == []
    return finish(m, cap, root)


def same(a, b):
    assert a.stdout == b.stdout
    assert a.stderr == b.stderr
    assert a.status == b.status
    assert a.files == b.files
    assert a.registers == b.registers


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_save_anywhere_resume_same(name, base):
    total = length(name, str(base))
    reference = uninterrupted(name, base)
    assert reference.stdout.endswith(b"EXIT-SUCCESS\n")

    @settings(max_examples=EXAMPLES.get(name, 8), deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(k=st.integers(0, total - 1))
    def prop(k):
        same(split(name, base, [k]), reference)

    prop()


@pytest.mark.parametrize("name", ["hello", "counter", "rewrite"])
def test_first_last_and_chains(name, base):
    total = length(name, str(base))
    reference = uninterrupted(name, base)
    same(split(name, base, [0]), reference)           # before the first instruction
    same(split(name, base, [total - 1]), reference)   # before the last (exit_group)
    third = total // 3
    same(split(name, base, [third, 2 * third, total - 2]), reference)  # a chain of three


def test_save_at_system_call_boundaries(base):
    reference = uninterrupted("counter", base)
    positions = [n for n, _, _ in syscall_states("counter", base)]
    assert len(positions) > 10
    for k in positions[:-1:3]:
        for j in (k - 1, k, k + 1):  # just before, after, and one past a system call
            same(split("counter", base, [j]), reference)


def test_save_twice_gives_identical_images(base):
    root = fresh_root(base, "twice")
    m = start("counter", root, Capture())
    m.advance(123_456)
    assert image_bytes(m) == image_bytes(m)


def test_save_resume_save_gives_identical_images(base):
    root = fresh_root(base, "again")
    cap = Capture()
    m = start("counter", root, cap)
    m.advance(1_000_000)
    path = str(base / "again.img")
    checkpoint(m, path)
    first = Path(path).read_bytes()
    m2, _ = restore(path, console=cap.console)
    assert image_bytes(m2) == first


def test_position_unknown_after_a_free_run_stop(base):
    root = fresh_root(base, "free")
    m = start("counter", root, Capture())
    m.instructions = None  # as after a stop requested by `vsnap save PID`
    with pytest.raises(ValueError):
        m.advance(10)


def test_save_inside_handlers_and_with_signals_pending_or_blocked(base):
    """Checkpoints where signal state is most delicate: with a handler's frame on the stack
    (the signal blocked while it runs), and with a blocked signal pending."""
    reference = uninterrupted("signals", base)
    states = syscall_states("signals", base)
    usr1 = 1 << 9
    pending = [n for n, p, b in states if p & usr1 and b & usr1]
    in_handler = [n for n, p, b in states if b and not p]
    assert pending and in_handler, "the guest's signal phases were not found"
    for k in sorted(set(pending[:2] + in_handler[::max(1, len(in_handler) // 6)])):
        for j in (k - 1, k, k + 1):
            same(split("signals", base, [j]), reference)
