"""vsnap check: is checkpoint/restore transparent for this program? If not, the smallest
counterexample hypothesis can find, printed so that a person can replay it.

It runs the program once, counted, to learn its length and where its system calls and signal
handlers are; draws checkpoint points (single ones, chains, near system calls, inside
handlers); for each, saves, resumes in a fresh machine and compares everything with the
uninterrupted run. The runs to the first point come from a few live machines kept between
examples (vsnap.liveruns.LiveRuns), each resumed guest in a copy of its root. On a difference
hypothesis shrinks the points (fewer, smaller) and the last failing example it replays is the
minimal one.
"""
from __future__ import annotations

import os
import shlex
import tempfile
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, given, seed, settings

from .kernel import Capture
from .scratch import drain, scratch
from .liveruns import LiveRuns
from .testing import Guest, Measured, checkpoint_points, first_difference, measure, start
from .trace import disassemble_one


@dataclass
class Verdict:
    transparent: bool
    examples: int
    measured: Measured
    points: list | None = None
    difference: str | None = None


def check(guest: Guest, *, examples: int = 50, seed_: int = 0, progress=None) -> Verdict:
    _private_hypothesis_dir()
    m = measure(guest)
    budget = 2 * m.length + 1_000_000  # a resumed guest that loops is a difference, not a hang
    done = [0]
    failure: list = []

    @seed(seed_)
    @settings(max_examples=examples, deadline=None, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck),
              phases=(Phase.explicit, Phase.generate, Phase.shrink))
    @given(points=checkpoint_points(m))
    def transparent(points):
        done[0] += 1
        if progress:
            progress(done[0], examples, points)
        got = live.run(points, budget=budget)
        diff = first_difference(m.outcome, got)
        if diff:
            failure[:] = [list(points), diff]  # the last failure seen is the shrunk one
            raise AssertionError(diff)

    try:
        with scratch("vsnap-check-") as base, LiveRuns(guest, base) as live:
            transparent()
    except AssertionError:
        return Verdict(False, done[0], m, failure[0], failure[1])
    finally:
        drain()  # nothing of the examples' roots outlives the check
    return Verdict(True, done[0], m)


def _private_hypothesis_dir() -> None:
    """hypothesis keeps caches in ./.hypothesis even without an example database; a user's
    `vsnap check` should not leave that in their folder."""
    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        return
    from hypothesis.configuration import set_hypothesis_home_dir

    from .build import cache_dir
    set_hypothesis_home_dir(os.path.join(os.path.dirname(cache_dir()), "hypothesis"))


def instruction_at(guest: Guest, k: int) -> str:
    """rip and the instruction there, after exactly k instructions."""
    with tempfile.TemporaryDirectory(prefix="vsnap-check-") as base:
        from .testing import fresh_root
        cap = Capture(guest.stdin)
        m = start(guest, fresh_root(guest, base), cap)
        if m.advance(k) is not None:
            return "(the guest has ended there)"
        rip = m.cpu.read("rip")
        insn = disassemble_one(m.mem.read(rip, 16), rip)
        m.close()
        return f"rip={rip:#x}: {insn}"


def replay_commands(guest: Guest, points: list) -> list[str]:
    prog = [shlex.quote(guest.program), *map(shlex.quote, guest.args)]
    cmds = [f"vsnap run --save-at {points[0]} -o p1.img --exit {' '.join(prog)}"]
    for i, k in enumerate(points[1:], start=2):
        cmds.append(f"vsnap resume p{i - 1}.img --save-at {k} -o p{i}.img --exit")
    cmds.append(f"vsnap resume p{len(points)}.img")
    return cmds


def report(guest: Guest, v: Verdict) -> str:
    m = v.measured
    if v.transparent:
        return (f"vsnap check: transparent: {v.examples} examples, each saved and resumed in a "
                f"fresh machine, matched the uninterrupted run ({m.length} instructions, "
                f"{len(m.syscalls)} system calls)")
    where = ", ".join(str(k) for k in v.points)
    lines = [f"vsnap check: NOT transparent: checkpoints at instruction{'s' if len(v.points) > 1 else ''} "
             f"{where} (of {m.length}) change the outcome",
             f"  first difference: {v.difference}",
             f"  the guest at instruction {v.points[0]}: {instruction_at(guest, v.points[0])}",
             "  replay it (from the program's root):"]
    lines += [f"    {c}" for c in replay_commands(guest, v.points)]
    if guest.files or guest.template:
        names = ", ".join(sorted(guest.files)) or f"a copy of {guest.template}"
        lines.append(f"  (in a root holding: {names})")
    if guest.stdin:
        lines.append(f"  (with {len(guest.stdin)} bytes on stdin: add < FILE to each command)")
    return "\n".join(lines)
