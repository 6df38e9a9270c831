"""The promise, as property tests, through vsnap.testing (the same code `vsnap check` runs):

    for every program P and every instruction k:  run(P) == resume(save(run(P, stop at k)))

same stdout and stderr bytes, same exit status, same files left behind (names, modes, content,
times), same final registers. Here each resume is a fresh Machine in this process;
test_checkpoint_cli.py does it in fresh processes through the command line.
"""
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from guestrun import PROGRAMS, guest, measured, root_for
from vsnap.snapshot import checkpoint, image_bytes, restore
from guestrun import Capture
from vsnap.testing import assert_transparent, checkpoint_points, start

# long runs get fewer examples: each example runs the program to k in exact-count mode
EXAMPLES = {"malloc_stress": 3, "primes": 4, "compute": 5, "signals": 25}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ckpt")


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_save_anywhere_resume_same(name, base):
    m = measured(name, str(base))
    assert m.outcome.stdout.endswith(b"EXIT-SUCCESS\n")

    @settings(max_examples=EXAMPLES.get(name, 8), deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(points=checkpoint_points(m))
    def prop(points):
        assert_transparent(guest(name), points, reference=m.outcome, base=base)

    prop()


@pytest.mark.parametrize("name", ["hello", "counter", "rewrite"])
def test_first_last_and_chains(name, base):
    m = measured(name, str(base))
    total = m.length
    for points in ([0], [total - 1], [total // 3, 2 * total // 3, total - 2]):
        assert_transparent(guest(name), points, reference=m.outcome, base=base)


def test_save_at_system_call_boundaries(base):
    m = measured("counter", str(base))
    assert len(m.syscalls) > 10
    for k in m.syscalls[:-1:3]:
        for j in (k - 1, k, k + 1):  # just before, after, and one past a system call
            assert_transparent(guest("counter"), [j], reference=m.outcome, base=base)


def test_save_inside_handlers_and_with_signals_pending_or_blocked(base):
    """Checkpoints where signal state is most delicate: with a handler's frame on the stack
    (the signal blocked while it runs), and with a blocked signal pending."""
    m = measured("signals", str(base))
    usr1 = 1 << 9
    pending = [n for n, p, b in m.signal_states if p & usr1 and b & usr1]
    assert pending and m.in_handlers, "the guest's signal phases were not found"
    for k in sorted(set(pending[:2] + m.in_handlers[::max(1, len(m.in_handlers) // 6)])):
        for j in (k - 1, k, k + 1):
            assert_transparent(guest("signals"), [j], reference=m.outcome, base=base)


def test_save_twice_gives_identical_images(base):
    m = start(guest("counter"), root_for(base), Capture(b""))
    m.advance(123_456)
    assert image_bytes(m) == image_bytes(m)


def test_save_resume_save_gives_identical_images(base):
    cap = Capture(b"")
    m = start(guest("counter"), root_for(base), cap)
    m.advance(1_000_000)
    path = str(base / "again.img")
    checkpoint(m, path)
    first = Path(path).read_bytes()
    m2, _ = restore(path, console=cap.console)
    assert image_bytes(m2) == first


def test_position_is_known_after_any_run(base):
    """Every run counts (the clock follows the count): a run stopped anywhere knows its
    position, and advancing behind it is refused."""
    m = start(guest("counter"), root_for(base), Capture(b""))
    result = m.run(max_instructions=300_000)
    assert result.instructions == 300_000 == m.instructions
    m = start(guest("counter"), root_for(base), Capture(b""))
    m.advance(1_000)
    with pytest.raises(ValueError, match="already past"):
        m.advance(10)


def test_a_closed_machine_lets_go_of_its_files_and_does_not_run_again(base):
    m = start(guest("counter"), root_for(base), Capture(b""))
    m.advance(1_500_000)  # counter.log is open by now
    host_fds = [e.file.host_fd for e in m.process.fds.fds.values() if e.file.host_fd is not None]
    assert host_fds
    m.close()
    for fd in host_fds:
        with pytest.raises(OSError):
            os.fstat(fd)
    assert not m.running
    with pytest.raises(ValueError, match="closed"):
        m.advance(2_000_000)
    with pytest.raises(ValueError, match="closed"):
        m.run()
