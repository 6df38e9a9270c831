"""Thousands of mappings: benchmarks/vmas.c makes N one-page mmaps (every other one made
read-only, so that they are N separate VMAs on Linux too), reads them back and unmaps them one
by one, natively and under vsnap; prints the times and the ratio.

    .venv/bin/python benchmarks/vmas.py [N]        (N = 4096 by default)

Before the address space's books were logarithmic and Unicorn's regions were kept few, 4,096
such VMAs took 153 s under vsnap (about 37 ms a system call); Linux takes about 0.01 s.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import vsnap
from vsnap.build import build

HERE = os.path.dirname(os.path.abspath(__file__))


def main(n: int = 4096) -> dict:
    prog = build(os.path.join(HERE, "vmas.c"))
    out = {}
    for stride, what in ((2, "separate VMAs (every other page read-only)"),
                         (0, "neighbours of one permission (Linux merges them)")):
        args = (str(n), str(stride))
        t0 = time.perf_counter()
        native = subprocess.run([prog, *args], capture_output=True, check=True)
        native_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        result, stdout, _ = vsnap.run(prog, *args, root=HERE)
        vsnap_s = time.perf_counter() - t0
        if (stdout, result.status) != (native.stdout, 0):
            raise SystemExit(f"vsnap computed something else: {stdout!r} vs {native.stdout!r}")
        out[stride] = (native_s, vsnap_s)
        print(f"{n} one-page mmaps, {what}:")
        print(f"  native {native_s * 1e3:9.1f} ms")
        print(f"  vsnap  {vsnap_s * 1e3:9.1f} ms   ({vsnap_s / native_s:.0f}x native, "
              f"{vsnap_s / result.syscalls * 1e6:.0f} us a system call)")
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4096)
