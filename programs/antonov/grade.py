"""The libckpt assignment's grader: does your antonov.c save a process and bring it back?

    python programs/antonov/grade.py [DIR_OR_FILE] [--program demo|workout]... [--all-points]

DIR_OR_FILE is your antonov.c, or the directory that holds it (default: programs/antonov/
student/). The grader builds it with demo.c and workout.c (from programs/antonov/: they
`#include "antonov.c"`, and get yours), and for each program and each save point K:

  1. runs the program under vsnap, asking the library to save itself in step K (-c K), and
     notes the instant its signal handler starts;
  2. runs it again in a fresh sandbox to that same instant and takes vsnap's own image of
     the process there: the oracle (registers, memory, open files, offsets, flags);
  3. reads your save file and checks each step against the oracle: the fd records (step 1
     and 3), the stack (4), the data segment and the heap (5), the jmp_buf (6);
  4. runs the program a second time, so that it restores itself, and stops it where the
     restored handler returns (rt_sigreturn): the registers, the memory and the open files
     there must be the oracle's (steps c, d, e and 7);
  5. compares the two runs joined with one uninterrupted run: stdout, exit status, files.

One line per failure, naming the step; exit status 0 when everything holds, 1 when not, 2
when your antonov.c does not compile (the compiler's message is shown).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent.parent)]  # its modules, the repository's vsnap

from libckpt_checks import check_return, check_save, first_diff  # noqa: E402
from libckpt_run import Symbols, oracle, run  # noqa: E402
from vsnap.build import build, cache_dir  # noqa: E402
from vsnap.errors import VsnapError  # noqa: E402
from vsnap.kernel import Capture  # noqa: E402
from vsnap.machine import Machine  # noqa: E402
from vsnap.testing import Guest, fresh_root, snapshot_files  # noqa: E402

WORKOUT_IN = bytes((b"abcdefghij klmnop\n"[(i * 7919 + i // 3) % 18]) for i in range(2000))


@dataclass
class Program:
    name: str
    steps: int
    points: tuple            # the steps where it saves itself, graded by default
    kills: int               # and how many instants it is sent SIGUSR1 from outside
    files: dict = field(default_factory=dict)

    def args(self, k=None):
        return ("-n", str(self.steps)) + (("-c", str(k)) if k is not None else ())

    @property
    def save(self):
        return f"{self.name}.save"


PROGRAMS = {
    "workout": Program("workout", 5, (1, 3, 5), 4, {"workout.in": WORKOUT_IN}),
    "demo": Program("demo", 5, (2, 5), 3),
}


# ------------------------------------------------------------------------------------------
# building

class CompileError(Exception):
    pass


def build_all(source: Path, names) -> dict:
    """Your antonov.c with each test program: copied side by side into a build directory
    named by their contents (so `#include "antonov.c"` finds yours), built with zig cc."""
    texts = {"antonov.c": source.read_bytes(), "antonov.h": (HERE / "antonov.h").read_bytes()}
    for n in names:
        texts[f"{n}.c"] = (HERE / f"{n}.c").read_bytes()
    key = hashlib.sha256(b"".join(k.encode() + v for k, v in sorted(texts.items())))
    d = Path(cache_dir()).parent / "libckpt" / key.hexdigest()[:20]
    d.mkdir(parents=True, exist_ok=True)
    for n, text in texts.items():
        if not (d / n).exists() or (d / n).read_bytes() != text:
            part = d / f".{n}.{os.getpid()}"  # whole files only: graders may run in parallel
            part.write_bytes(text)
            os.replace(part, d / n)
    out = {}
    for n in names:
        try:
            out[n] = build(str(d / f"{n}.c"))
        except VsnapError as e:
            raise CompileError(str(e)) from None
    return out


def files_of(root: Path, skip) -> dict:
    return {k: v[-1] if v[0] == "file" else v[0] for k, v in snapshot_files(root).items()
            if k not in skip}


def last_word(err: bytes) -> str:
    """The library's last line on stderr, quoted, or ''."""
    lines = [x for x in err.decode(errors="replace").splitlines() if x.startswith("antonov:")]
    return f" (it said {lines[-1]!r})" if lines else ""


def grade_point(prog: str, p: Program, point, sym: Symbols, ref, base: Path) -> list:
    """point: ("step", K), the program raises SIGUSR1 in step K (-c K); or ("kill", N), the
    grader sends it SIGUSR1 from outside after N instructions."""
    how, k = point
    kick_at = k if how == "kill" else None
    guest = Guest(prog, p.args(None if kick_at is not None else k), p.files)
    handler = sym.by_name["antonov_handler"]
    root = fresh_root(guest, base)
    first = run(prog, guest.args, root, handler, budget=ref["budget"], kick_at=kick_at)
    save = root / p.save
    where = f"{p.name} -c {k}" if kick_at is None else f"{p.name}, kill -USR1 at instruction {k}"
    if first.handler_at is None:
        return [f"{where}: the signal handler never ran (is antonov_init still as given?)"]
    said = last_word(first.err)
    if not save.exists() and first.status == 0:
        return [f"{where}: save (steps 1-5): the program went on after the signal and left no "
                f"{p.save}{said}: write antonov_save (and antonov_scan_fds)"]
    if not save.exists() and first.message:
        return [f"{where}: save: the saving run stopped in {sym.function_at(first.rip)}: "
                f"{first.message}{said}"]
    if not save.exists():
        tmp = " (only its .tmp)" if (root / (p.save + ".tmp")).exists() else ""
        return [f"{where}: save (step 6): the saving run ended with status {first.status} and "
                f"left no {p.save}{tmp}{said}: in antonov_finish_save write the jmp_buf, fsync, "
                "close, rename the file and exit_group(0)"]
    if first.status != 0:
        return [f"{where}: save (step 6): the saving run ended with status {first.status}, not "
                f"0{said}: after the rename, exit_group(0)"]

    def ranges_of(rsp, top, brk):
        end = sym.by_name["end"]
        return [(rsp, top), (sym.data_lo, end), (end, brk)]

    o = oracle(prog, guest, guest.args, first.handler_at, handler, base, ranges_of, kick_at)
    out = [f"{where}: {line}" for line in check_save(save.read_bytes(), o, sym)]
    second = run(prog, guest.args, root, handler, watch_return=ranges_of(o["rsp"], o["top"],
                                                                          o["brk"]),
                 budget=ref["budget"])
    if second.at_return is None:
        how = second.message or (f"exit status {second.status}, at "
                                 f"{sym.function_at(second.rip)}")
        said = last_word(second.err)
        out.append(f"{where}: reload (steps b-e): the restored process never returned from the "
                   f"signal handler: {how}{said}")
        return out
    out += [f"{where}: {line}" for line in check_return(second.at_return, o, sym)]
    joined = first.out + second.out
    if second.status != ref["status"]:
        out.append(f"{where}: the promise: the restored run ended with status {second.status}, "
                   f"one run ends with {ref['status']}")
    elif joined != ref["stdout"]:
        i = first_diff(joined, ref["stdout"])
        out.append(f"{where}: the promise: the two runs' stdout joined differs from one run's at "
                   f"byte {i}: {joined[i:i + 40]!r} instead of {ref['stdout'][i:i + 40]!r}")
    got_files = files_of(root, {p.save, p.save + ".tmp"})
    if got_files != ref["files"]:
        bad = sorted(n for n in set(got_files) | set(ref["files"])
                     if got_files.get(n) != ref["files"].get(n))
        out.append(f"{where}: the promise: after the restore, {', '.join(bad)} differ(s) from "
                   "one run's")
    return out


def reference(prog: str, p: Program, base: Path) -> dict:
    """One uninterrupted run: its outcome, and where the handler is installed and the run
    ends (the span where a SIGUSR1 from outside is the library's to handle)."""
    cap = Capture()
    root = fresh_root(Guest(prog, p.args(), p.files), base)
    m = Machine(prog, p.args(), root=str(root), cwd=str(root), console=cap.console)
    dispatch, marks = m.process.dispatch, {}

    def spy():
        nr, signo, n = m.cpu.read("rax"), m.cpu.read("rdi"), m.cpu.instructions
        dispatch()
        if nr == 13 and signo == 10:  # rt_sigaction(SIGUSR1): antonov_init
            marks.setdefault("installed", n)

    m.cpu.on_syscall(spy)
    result = m.run()
    m.close()
    if result.status != 0 or "installed" not in marks:
        raise RuntimeError(f"{p.name} does not run to the end as given: {result}")
    files = {k: v[-1] if v[0] == "file" else v[0] for k, v in snapshot_files(root).items()}
    return {"stdout": bytes(cap.out), "status": result.status, "files": files,
            "budget": 20 * result.instructions, "installed": marks["installed"],
            "length": result.instructions}


def points_of(p: Program, ref: dict, all_points: bool) -> list:
    """The save points: steps where the program raises SIGUSR1, and instants spread evenly
    over the run (after antonov_init) where the grader sends it from outside."""
    steps = range(1, p.steps + 1) if all_points else p.points
    n = 40 if all_points else p.kills
    lo, hi = ref["installed"] + 1, ref["length"] - 1
    kills = sorted({lo + (hi - lo) * (2 * i + 1) // (2 * n) for i in range(n)})
    return [("step", k) for k in steps] + [("kill", k) for k in kills]


def grade(source: Path, names=("workout", "demo"), all_points=False, base=None,
          progress=None) -> list:
    """Every failure, one line each; [] when the library passes. With all_points, a failure
    that repeats at other points (the same words after the point) is listed once."""
    from vsnap.scratch import scratch
    progs = build_all(source, names)
    failures = []
    with scratch("vsnap-grade-") as tmp:
        b = Path(base or tmp)
        for n in names:
            p, prog = PROGRAMS[n], progs[n]
            sym = Symbols(prog)
            ref = reference(prog, p, b)
            seen = set()
            for point in points_of(p, ref, all_points):
                try:
                    lines = grade_point(prog, p, point, sym, ref, b)
                except Exception as e:  # a library broken in a way no check foresaw
                    lines = [f"{p.name} {point[0]} {point[1]}: the grader could not check this "
                             f"point: {type(e).__name__}: {e}"]
                if progress:
                    progress(f"{p.name} {point[0]} {point[1]}: {len(lines)} problem(s)")
                for line in lines:
                    generic = line.split(": ", 1)[1]
                    if generic not in seen or not all_points:
                        failures.append(line)
                    seen.add(generic)
    return failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="grade.py", description=__doc__.split("\n")[0])
    ap.add_argument("source", nargs="?", default=str(HERE / "student"),
                    help="your antonov.c, or its directory (default: programs/antonov/student)")
    ap.add_argument("--program", action="append", choices=sorted(PROGRAMS),
                    help="grade with this program only (repeatable; default: all)")
    ap.add_argument("--all-points", action="store_true",
                    help="save at every step and at 40 instants from outside, not only a few")
    ap.add_argument("-v", "--verbose", action="store_true", help="name each point as it goes")
    ap.add_argument("--build-only", action="store_true",
                    help="build the programs with your antonov.c, print their paths, stop")
    a = ap.parse_args(argv)
    src = Path(a.source)
    if src.is_dir():
        src = src / "antonov.c"
    if not src.is_file():
        print(f"grade.py: no such file: {src}; give your antonov.c or its directory",
              file=sys.stderr)
        return 2
    names = tuple(a.program or ("workout", "demo"))
    try:
        if a.build_only:
            built = build_all(src, names)
            for n, path in built.items():
                print(f"{n}: {path}")
            if "workout" in built:  # its input, for runs by hand
                there = Path(cache_dir()).parent / "libckpt" / "workout.in"
                there.write_bytes(WORKOUT_IN)
                print(f"workout's input: {there}")
            return 0
        failures = grade(src, names, a.all_points,
                         progress=(lambda s: print(s, file=sys.stderr)) if a.verbose else None)
    except CompileError as e:
        print(f"grade.py: {src} does not compile:\n{e}", file=sys.stderr)
        return 2
    for line in failures:
        print(line)
    if failures:
        print(f"FAIL: {len(failures)} problem(s); fix the first one first")
        return 1
    print(f"PASS: {src} saves and restores {', '.join(names)} at every point graded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
