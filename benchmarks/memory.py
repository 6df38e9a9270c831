"""vsnap benchmarks, memory-heavy guests: vsnap next to native, QEMU user mode and raw Unicorn.

    .venv/bin/python benchmarks/memory.py        (or: make bench)

1. memhash: benchmarks/memhash.c (a string-keyed hash table over some 40 MiB, no system calls
   in its loops) natively, under QEMU's user-mode emulator (qemu-x86_64-static, when
   installed), in a bare Unicorn engine as it comes (run.py's harness: its own TLB fill, a
   syscall hook only), in the same engine with vsnap's TLB fill (vsnap/tlb.py), and under vsnap
   (which counts every instruction: the guest's clock follows the count).
2. bash: a bash-static arithmetic loop (200 Collatz sequences), natively, under QEMU and under
   vsnap, each minus its own start-up (the same shell running `:`). Goal:
   vsnap within 2x of QEMU. Skipped when /bin/bash-static is not installed (Debian: apt-get
   install bash-static). No raw-Unicorn row: bash needs a kernel, which run.py's harness is not.

Times are CPU seconds (user + system: a shared machine's load moves them less than wall time),
each the median of REPEAT runs, interleaved, in one run of this script; the outputs of every
runner must agree.
"""
from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import unicorn as U

import vsnap
from vsnap.build import build
from vsnap.tlb import install as install_tlb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import RawUnicorn, can_run_native, captured_console, print_rows  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMHASH_N = 1_000_000
REPEAT = 5
BASH = "/bin/bash-static"
COLLATZ = ("for ((n=1;n<=200;n++)); do x=$n; while ((x!=1)); do if ((x%2)); then "
           "((x=3*x+1)); else ((x/=2)); fi; done; done; echo done")


def qemu() -> str | None:
    return shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str]) -> tuple[float, bytes]:
    """CPU seconds (user + system) of a child process, and its output."""
    t0 = children_cpu()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
    dt = children_cpu() - t0
    if p.returncode != 0:
        raise SystemExit(f"benchmark: {cmd} failed: {p.stdout[-500:]!r}")
    return dt, p.stdout


def under_vsnap(path: str, args: list[str], root: str) -> tuple[float, bytes]:
    """CPU seconds of Machine.run() (no interpreter start-up, no loading), and the output."""
    out = bytearray()
    m = vsnap.Machine(path, args, root=root, console=captured_console(out), log=[])
    t0 = time.process_time()
    result = m.run()
    dt = time.process_time() - t0
    if result.status != 0:
        raise SystemExit(f"benchmark: {path} {args} failed under vsnap: {result} "
                         f"{bytes(out)[-500:]!r}")
    return dt, bytes(out)


def raw_unicorn(path: str, args: list[str], vsnap_tlb: bool) -> tuple[float, bytes]:
    raw = RawUnicorn(path, args)
    if vsnap_tlb:
        raw.tlb = install_tlb(raw.uc, raw.mem.backend.pages)
    t0 = time.process_time()
    raw.run()
    return time.process_time() - t0, bytes(raw.out)


def median(runners: dict, outputs: set) -> dict:
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(REPEAT):
        for name, run in runners.items():
            dt, out = run()
            times[name].append(dt)
            outputs.add((name, out))
    return {name: statistics.median(t) for name, t in times.items()}


def bench_memhash(root: str, native_ok: bool, rows: list) -> None:
    prog = build(os.path.join(ROOT, "benchmarks", "memhash.c"))
    args = [str(MEMHASH_N)]
    runners = {}
    if native_ok:
        runners["native (CPU)"] = lambda: timed([prog, *args])
    if qemu():
        runners["QEMU user mode (CPU)"] = lambda: timed([qemu(), prog, *args])
    runners["raw Unicorn, its own TLB fill"] = lambda: raw_unicorn(prog, args, False)
    runners["raw Unicorn, vsnap's TLB fill"] = lambda: raw_unicorn(prog, args, True)
    runners["vsnap Machine.run()"] = lambda: under_vsnap(prog, args, root)
    outputs: set = set()
    times = median(runners, outputs)
    if len({out for _, out in outputs}) != 1:
        raise SystemExit(f"benchmark: memhash printed different outputs: {outputs}")
    vs = times["vsnap Machine.run()"]
    rows.append(("4 memhash", f"N={MEMHASH_N:,}: string keys in a 40 MiB hash table", "", ""))
    for name, dt in times.items():
        rows.append((f"  {name}", f"{dt:.3f} CPU s", "", ""))
    rows.append(("  vsnap / raw Unicorn as it comes",
                 f"{vs / times['raw Unicorn, its own TLB fill']:.2f}x time", "", ""))
    if "QEMU user mode (CPU)" in times:
        ratio = vs / times["QEMU user mode (CPU)"]
        rows.append(("  vsnap / QEMU user mode", f"{ratio:.2f}x time", "<= 2x",
                     "PASS" if ratio <= 2 else "MISS"))
    if "native (CPU)" in times:
        rows.append(("  vsnap / native", f"{vs / times['native (CPU)']:.1f}x time", "", ""))


def bench_bash(root: str, rows: list) -> None:
    if not os.path.exists(BASH):
        rows.append(("5 bash Collatz loop", f"skipped: no {BASH} (apt-get install bash-static)",
                     "", ""))
        return
    loop, nop = ["-c", COLLATZ], ["-c", ":"]
    runners = {"native (CPU)": lambda: timed([BASH, *loop]),
               "  start-up": lambda: timed([BASH, *nop])}
    if qemu():
        runners["QEMU user mode (CPU)"] = lambda: timed([qemu(), BASH, *loop])
        runners["QEMU  start-up"] = lambda: timed([qemu(), BASH, *nop])
    runners["vsnap Machine.run()"] = lambda: under_vsnap(BASH, loop, root)
    runners["vsnap  start-up"] = lambda: under_vsnap(BASH, nop, root)
    outputs: set = set()
    times = median(runners, outputs)
    loops = {out for name, out in outputs if "start-up" not in name}
    if loops != {b"done\n"}:
        raise SystemExit(f"benchmark: the bash loop printed {loops}")
    beyond = {"native": times["native (CPU)"] - times["  start-up"],
              "vsnap": times["vsnap Machine.run()"] - times["vsnap  start-up"]}
    if qemu():
        beyond["QEMU"] = times["QEMU user mode (CPU)"] - times["QEMU  start-up"]
    rows.append(("5 bash Collatz loop", "bash-static, 200 sequences, beyond start-up", "", ""))
    for name, dt in beyond.items():
        rows.append((f"  {name}", f"{dt:.3f} CPU s", "", ""))
    if "QEMU" in beyond:
        ratio = beyond["vsnap"] / beyond["QEMU"]
        rows.append(("  vsnap / QEMU user mode", f"{ratio:.2f}x time", "<= 2x",
                     "PASS" if ratio <= 2 else "MISS"))


def main() -> int:
    t0 = time.perf_counter()
    print("building guest programs (cached after the first time) ...", flush=True)
    native_ok = can_run_native(build(os.path.join(ROOT, "programs", "hello.c")))
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="vsnap-bench-") as root:
        bench_memhash(root, native_ok, rows)
        bench_bash(root, rows)
    print(f"\nvsnap {vsnap.__version__}, unicorn {U.__version__}, QEMU: {qemu() or 'not installed'}")
    print_rows(rows, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
