"""Checks per second: how many save-resume-compare examples vsnap.testing runs per second for
small guests (each example: run to k in exact-count mode, save, restore in a fresh machine,
run to the end, compare everything with the uninterrupted run).

    .venv/bin/python benchmarks/check.py

Goal: at least 20 examples per second for a guest of under a million instructions.
"""
from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from vsnap.build import build  # noqa: E402
from vsnap.testing import Guest, first_difference, measure, run_with_checkpoints  # noqa: E402

PROGRAMS = HERE.parent / "programs"
SECONDS = 5.0


def guests():
    sample = {"sample.txt": (PROGRAMS / "data" / "sample.txt").read_bytes()}
    yield "hello", Guest(build(str(PROGRAMS / "hello.c")))
    yield "rewrite", Guest(build(str(PROGRAMS / "rewrite.c")), ("records.dat",))
    yield "wordfreq", Guest(build(str(PROGRAMS / "wordfreq.c")), ("sample.txt", "5"), sample)
    yield "signals", Guest(build(str(PROGRAMS / "signals.c")))
    yield "counter 1", Guest(build(str(PROGRAMS / "counter.c")), ("1", "c.log"))


def main() -> int:
    rng = random.Random(1)
    print(f"{'guest':<12}{'instructions':>14}{'examples':>10}{'per second':>12}   goal")
    worst = None
    for name, guest in guests():
        with tempfile.TemporaryDirectory() as base:
            m = measure(guest, base)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < SECONDS:
                k = rng.randrange(m.length)
                got = run_with_checkpoints(guest, [k], base)
                assert first_difference(m.outcome, got) is None, (name, k)
                n += 1
            rate = n / (time.perf_counter() - t0)
        small = m.length < 1_000_000
        verdict = ("PASS" if rate >= 20 else "MISS") if small else "(over a million: no goal)"
        print(f"{name:<12}{m.length:>14,}{n:>10}{rate:>12.1f}   >= 20/s {verdict}")
        if small:
            worst = rate if worst is None else min(worst, rate)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
