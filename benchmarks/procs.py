"""vsnap benchmark: whole guest runs that fork and talk through pipes, next to native.

    .venv/bin/python benchmarks/procs.py [--quick]

The same static binaries run natively and under `vsnap run` (a fresh `python -m vsnap run`
process each time, its start-up included in both of a pair of runs, so it cancels):

  fork rate      benchmarks/forkloop.c N: N rounds of fork + _exit + waitpid; forks per
                 second = N / (time of a run with N rounds - time of one with 0).
  fork of 64 MiB forkloop.c N 64: the same after touching 64 MiB of heap (one write a page);
                 milliseconds per round, the same way.
  pipe           benchmarks/pipethru.c MIB CHUNK: a parent writes MIB MiB through a pipe,
                 CHUNK bytes a write, to a forked child that reads CHUNK at a time and counts;
                 MiB/s = MIB / (time of the run - time of a run that moves 0 bytes). Chunks of
                 64 KiB (a whole pipe) and 4 KiB (a page, PIPE_BUF).
  unix socket    pipethru.c MIB 65536 unix: the same through a connected AF_UNIX stream
                 socketpair (vsnap/sockets.py: messages in a receive queue, not a pipe ring).

Each time is the best of REPEAT runs; the guest's output must be what the arguments make it,
natively and under vsnap (the script stops with an error otherwise). Native runs move more (a larger N or MIB)
so that their time is not lost in process start. The guests cannot time themselves under
vsnap: their clock there is virtual (1 ns an instruction, clock.py).
--quick: small sizes and one run each, for tests/test_benchmarks.py (numbers meaningless).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from vsnap.build import build  # noqa: E402

HERE = os.path.join(ROOT, "benchmarks")
REPEAT = 3

# (native work, vsnap work) for each benchmark; --quick uses the second pair
SIZES = {"forks": (5_000, 60), "forks64": (100, 10), "pipe64k": (1024, 24),
         "pipe4k": (256, 24), "unix64k": (1024, 24)}
QUICK = {"forks": (200, 4), "forks64": (4, 2), "pipe64k": (8, 1), "pipe4k": (2, 1),
         "unix64k": (8, 1)}


def timed(cmd: list[str], cwd: str, repeat: int) -> tuple[float, bytes]:
    """Best wall time of `repeat` runs of cmd, and its stdout (the same every run)."""
    best, out = None, None
    env = dict(os.environ, PYTHONPATH=ROOT)
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, timeout=300)
        t = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)}: exit status {r.returncode}: "
                             f"{r.stderr.decode(errors='replace').strip()}")
        if out is not None and r.stdout != out:
            raise SystemExit(f"{' '.join(cmd)} printed something else on another run")
        best, out = (t if best is None else min(best, t)), r.stdout
    return best, out


class Runner:
    """Runs a binary natively or under `vsnap run` and times the work beyond a zero run."""

    def __init__(self, repeat: int, cwd: str):
        self.repeat, self.cwd = repeat, cwd
        self.vsnap = [sys.executable, "-m", "vsnap", "run", "-q"]

    def work(self, prog: str, under_vsnap: bool, args: list[str], zero: list[str]
             ) -> tuple[float | None, bytes]:
        """Seconds of the work in `args` beyond the same program run with `zero` (None when
        the difference is lost in the noise), and the output of the run with `args`."""
        pre = self.vsnap if under_vsnap else []
        t, out = timed(pre + [prog, *args], self.cwd, self.repeat)
        t0, _ = timed(pre + [prog, *zero], self.cwd, self.repeat)
        return (t - t0 if t > t0 else None), out


def expected(name: str, n: int) -> bytes:
    """What the guest must print for `n` (forks, or MiB through the pipe): natively and
    under vsnap alike."""
    if name.startswith("forks"):
        mib = 64 if name == "forks64" else 0
        pages = mib << 8  # the guest wrote page number & 255 into each page
        return f"forks {n}, {mib} MiB touched, sum {sum(k & 255 for k in range(pages))}\n" \
            .encode()
    chunk = 4096 if name == "pipe4k" else 65536
    return (f"read {n << 20} bytes in chunks of up to {chunk}, sum of every 512th byte "
            f"{(n << 20) // 512}\n").encode()  # each of those bytes is 1


def check(name: str, out: bytes, n: int, where: str) -> None:
    if out != expected(name, n):
        raise SystemExit(f"{name}: {where} printed {out!r}, not {expected(name, n)!r}")


def main(quick: bool = False) -> dict:
    """Measure and print; returns {name: (native, vsnap)} in the units printed."""
    t_start = time.perf_counter()
    sizes = QUICK if quick else SIZES
    forkloop = build(os.path.join(HERE, "forkloop.c"))
    pipethru = build(os.path.join(HERE, "pipethru.c"))
    res = {}
    with tempfile.TemporaryDirectory(prefix="vsnap-procs-") as cwd:
        run = Runner(1 if quick else REPEAT, cwd)
        for name, unit in (("forks", "forks/s"), ("forks64", "ms a fork")):
            pair = []
            for i, under in enumerate((False, True)):
                n = sizes[name][i]
                mib = ["64"] if name == "forks64" else []
                t, out = run.work(forkloop, under, [str(n), *mib], ["0", *mib])
                check(name, out, n, "vsnap" if under else "native")
                pair.append(None if t is None else n / t if name == "forks" else t / n * 1e3)
            res[name] = tuple(pair)
        for name, chunk, how in (("pipe64k", 65536, []), ("pipe4k", 4096, []),
                                 ("unix64k", 65536, ["unix"])):
            pair = []
            for i, under in enumerate((False, True)):
                mib = sizes[name][i]
                t, out = run.work(pipethru, under, [str(mib), str(chunk), *how],
                                  ["0", str(chunk), *how])
                check(name, out, mib, "vsnap" if under else "native")
                pair.append(None if t is None else mib / t)
            res[name] = tuple(pair)
    print("processes: whole guest runs, the same binary natively and under `vsnap run`"
          f" (best of {1 if quick else REPEAT}"
          f"{'; --quick: sizes too small to mean anything' if quick else ''})")
    print(f"{'':34}{'native':>14}{'vsnap':>14}{'native/vsnap':>14}")
    rows = (("forks", "fork + _exit + waitpid", "{:>10,.0f} /s ", False),
            ("forks64", "  the same after touching 64 MiB", "{:>10,.2f} ms ", True),
            ("pipe64k", "pipe, 64 KiB writes and reads", "{:>8,.0f} MiB/s ", False),
            ("pipe4k", "pipe, 4 KiB writes and reads", "{:>8,.1f} MiB/s ", False),
            ("unix64k", "AF_UNIX stream, 64 KiB", "{:>8,.0f} MiB/s ", False))
    for name, what, cell, cost in rows:
        n, v = res[name]
        ratio = "-" if n is None or v is None else f"{(v / n if cost else n / v):,.0f}x"
        print(f"{what:34}" + "".join(cell.format(x) if x is not None else f"{'-':>14}"
                                     for x in (n, v)) + f"{ratio:>12}")
    print(f"(forks: {sizes['forks'][0]:,} native, {sizes['forks'][1]:,} under vsnap; 64 MiB: "
          f"{sizes['forks64'][0]} and {sizes['forks64'][1]} forks; pipes: "
          f"{sizes['pipe64k'][0]} and {sizes['pipe64k'][1]} MiB in 64 KiB chunks, "
          f"{sizes['pipe4k'][0]} and {sizes['pipe4k'][1]} MiB in 4 KiB, the socket as the "
          f"64 KiB pipe; each minus a run "
          f"that does none; benchmark took {time.perf_counter() - t_start:.1f} s)")
    return res


if __name__ == "__main__":
    main("--quick" in sys.argv[1:])
