"""Timers: setitimer/getitimer (REAL, VIRTUAL, PROF) and POSIX timers, the same guest
(tests/guests/timers.c) natively and under vsnap, musl and glibc. Natively the timers run on
real time; the guest prints only what does not depend on the machine's speed (which signals
came, their siginfo, overruns of a blocked periodic timer with wide margins). Then the promise
with timers armed: checkpoints anywhere give the run an uninterrupted one gives."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

import vsnap
from conftest import require_native, run_native
from vsnap.testing import Guest, assert_transparent, checkpoint_points, measure


@pytest.mark.parametrize("flavour", ["musl", "glibc"])
@pytest.mark.parametrize("mode", ["itimer", "posix", "errors"])
def test_timers_match_native(mode, flavour, builds, tmp_path):
    prog = builds.get("timers", flavour)
    result, out, err = vsnap.run(prog, mode, root=str(tmp_path), cwd=str(tmp_path))
    assert result.status == 0 and out.endswith(b"done\n"), (out, err)
    require_native()
    native = run_native(prog, [mode], cwd=tmp_path)
    assert (out, err, result.status) == (native.stdout, native.stderr, native.status)


def test_timer_signals_carry_their_siginfo(builds, tmp_path):
    """What the differential test holds vsnap to, spelled out: SI_TIMER (-2), the timer id,
    the sigev_value, and one queued signal with an overrun for a blocked periodic timer."""
    result, out, _ = vsnap.run(builds.get("timers", "musl"), "posix", root=str(tmp_path))
    assert b"MONOTONIC one-shot         got 1 code -2 timerid 0 overrun 0 value 42\n" in out
    assert b"periodic, blocked 250ms    got 1 code -2 timerid 1 overrun 1 value 7\n" in out
    assert b"CPU clock, sleeping        got 0\n" in out


@pytest.fixture(scope="module")
def work(builds, tmp_path_factory):
    guest = Guest(builds.get("timers", "musl"), ("work",))
    base = tmp_path_factory.mktemp("timers")
    return guest, measure(guest, base), base


def test_work_mode_fires_timers_while_working(work):
    _, m, _ = work
    lines = m.outcome.stdout.decode().splitlines()
    assert lines[-1] == "done", lines
    last = lines[-3].split()  # round 3: USR1 n VTALRM m
    assert int(last[3]) > 1 and int(last[5]) > 1, lines


def test_checkpoints_with_timers_armed(work):
    """Saved while a POSIX timer and ITIMER_VIRTUAL are armed (and inside their handlers),
    resumed, and run on: the same signals at the same points as without the checkpoint."""
    guest, m, base = work
    armed = m.syscalls[len(m.syscalls) // 10:]
    for k in armed[::max(1, len(armed) // 8)] + m.in_handlers[::max(1, len(m.in_handlers) // 4)]:
        assert_transparent(guest, [k], reference=m.outcome, base=base)

    @settings(max_examples=6, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(points=checkpoint_points(m))
    def prop(points):
        assert_transparent(guest, points, reference=m.outcome, base=base)

    prop()


def test_checkpoint_with_a_blocked_timer_signal_pending(builds, tmp_path):
    """A queued SI_TIMER signal with its overrun, and the timer's deadline, travel in the
    image: posix mode saved in its blocked 250 ms sleep and after it."""
    guest = Guest(builds.get("timers", "musl"), ("posix",))
    m = measure(guest, tmp_path)
    usr2 = 1 << 11
    pending = [n for n, p, b in m.signal_states if p & usr2 and b & usr2]
    assert pending
    for k in (pending[0], pending[-1], pending[-1] + 1):
        assert_transparent(guest, [k], reference=m.outcome, base=tmp_path)


def test_timers_are_in_the_image_and_checked(builds, tmp_path):
    import json
    import zipfile
    from vsnap.snapshot import checkpoint, load
    from vsnap.snapshot.codec import ImageError
    from vsnap.snapshot.image import parse
    prog = builds.get("timers", "musl")
    m = vsnap.Machine(prog, ["work"], root=str(tmp_path), console=vsnap.Capture().console)
    marks = []
    m.system.strace = lambda line: marks.append(m.cpu.instructions) \
        if line.startswith("setitimer") else None
    m.run(count=True)
    m = vsnap.Machine(prog, ["work"], root=str(tmp_path), console=vsnap.Capture().console)
    m.advance(marks[0])
    img = tmp_path / "t.img"
    checkpoint(m, str(img))
    timers = load(str(img)).kernel["timers"]
    assert timers.posix[0].interval == 300_000 and timers.posix[0].deadline is not None
    assert timers.itimers[1].deadline is not None
    with zipfile.ZipFile(img) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    manifest = json.loads(parts["manifest.json"])
    for field, bad in (("clock", 77), ("notify", 4), ("signo", 99), ("deadline", -1)):
        kernel = json.loads(parts["kernel.json"])
        kernel["timers"]["posix"][0][field] = bad
        with pytest.raises(ImageError, match="timers"):
            parse(manifest, dict(parts, **{"kernel.json": json.dumps(kernel).encode()}), "x")
