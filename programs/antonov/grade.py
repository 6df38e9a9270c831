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
import shutil
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # the repository's vsnap, run from anywhere

from vsnap.build import build, cache_dir  # noqa: E402
from vsnap.errors import VsnapError  # noqa: E402
from vsnap.kernel import Capture  # noqa: E402
from vsnap.machine import Machine  # noqa: E402
from vsnap.testing import Guest, fresh_root, run_to_end, snapshot_files  # noqa: E402

# The save file, as antonov.c's structs lay it out (the given part of the assignment).
HEADER = struct.Struct("<8s 4Q 2Q 2Q 2Q 2Q 2q")
HEADER_FIELDS = ("magic etext edata end ehdr stack_lo stack_hi data_lo data_hi heap_lo heap_hi "
                 "jmpbuf_size nfds pid tid").split()
FD_RECORD = struct.Struct("<4i q 2Q 3q 256s")
FD_FIELDS = "fd kind flags fdflags offset dev ino size mtime_sec mtime_nsec name".split()
KIND = {"file": 1, "dir": 2}
KIND_NAME = {1: "disk file", 2: "directory", 3: "tty", 4: "character device", 5: "pipe",
             6: "socket", 7: "other"}
O_ACCMODE, O_APPEND = 3, 0o2000
NR_RT_SIGRETURN = 15
SIGUSR1_BIT = 1 << (10 - 1)
# the library's own bookkeeping: filled during the save, so it differs from the instant the
# handler started, and is allowed to
PRIVATE = ("antonov_fds", "antonov_hdr", "antonov_jb", "antonov_save_fd")
FRAME_REGS = "r8 r9 r10 r11 r12 r13 r14 r15 rdi rsi rbp rbx rdx rax rcx rsp rip".split()

WORKOUT_IN = bytes((b"abcdefghij klmnop\n"[(i * 7919 + i // 3) % 18]) for i in range(2000))


@dataclass
class Program:
    name: str
    steps: int
    points: tuple            # the save points (steps) graded by default
    files: dict = field(default_factory=dict)

    def args(self, k=None):
        return ("-n", str(self.steps)) + (("-c", str(k)) if k is not None else ())

    @property
    def save(self):
        return f"{self.name}.save"


PROGRAMS = {
    "workout": Program("workout", 5, (1, 3, 5), {"workout.in": WORKOUT_IN}),
    "demo": Program("demo", 5, (2, 5)),
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
            (d / n).write_bytes(text)
    out = {}
    for n in names:
        try:
            out[n] = build(str(d / f"{n}.c"))
        except VsnapError as e:
            raise CompileError(str(e)) from None
    return out


class Symbols:
    def __init__(self, path: str):
        from elftools.elf.elffile import ELFFile
        with open(path, "rb") as f:
            elf = ELFFile(f)
            self.by_name, self.objects, self.funcs = {}, [], []
            for s in elf.get_section_by_name(".symtab").iter_symbols():
                kind = s["st_info"]["type"]
                self.by_name.setdefault(s.name, s["st_value"])
                if s["st_value"] and kind == "STT_OBJECT":
                    self.objects.append((s["st_value"], max(s["st_size"], 1), s.name))
                elif s["st_value"] and kind == "STT_FUNC":
                    self.funcs.append((s["st_value"], s.name))
            self.funcs.sort()
            lo = relro_end = 0
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_LOAD" and seg["p_flags"] & 2 and not lo:
                    lo = seg["p_vaddr"]
                if seg["p_type"] == "PT_GNU_RELRO":
                    relro_end = seg["p_vaddr"] + seg["p_memsz"]
            self.data_lo = relro_end if lo < relro_end <= self.by_name["end"] else lo

    def object_at(self, addr):
        return next((n for a, size, n in self.objects if a <= addr < a + size), None)

    def function_at(self, addr):
        below = [(a, n) for a, n in self.funcs if a <= addr]
        return f"{below[-1][1]}+{addr - below[-1][0]:#x}" if below else f"{addr:#x}"


# ------------------------------------------------------------------------------------------
# running under vsnap, watching the system calls

@dataclass
class Run:
    out: bytes
    err: bytes
    status: int
    message: str | None
    rip: int
    handler_at: int | None = None   # instructions when the save handler started
    at_return: dict | None = None   # the state where the restored handler returned


def state(m: Machine, ranges, in_syscall=False) -> dict:
    """What the grader compares: registers, memory ranges, the brk, the open files."""
    regs = {r: m.cpu.read(r) for r in FRAME_REGS}
    if in_syscall:  # in the syscall hook rip is 2 short: the CPU adds the instruction's length
        regs["rip"] += 2
    mem = {}
    for lo, hi in ranges:
        try:
            mem[lo] = m.mem.read(lo, hi - lo)
        except Exception:
            mem[lo] = None
    fds = {}
    for fd, e in m.process.fds.fds.items():
        f = e.file
        fds[fd] = (f.kind, f.path, f.flags, f.offset, e.cloexec)
    return {"regs": regs, "mem": mem, "brk": m.mem.brk, "fds": fds}


def run(prog: str, args, root: Path, handler: int, *, watch_return=None, budget=None) -> Run:
    """One run in `root`; notes when `handler` starts (after a system call: the signal is
    delivered on its way out), and with watch_return=ranges, the state after the first
    rt_sigreturn."""
    cap = Capture()
    m = Machine(prog, args, root=str(root), cwd=str(root), console=cap.console)
    seen = {"handler": None, "return": None}
    dispatch = m.process.dispatch

    sigs = m.process.signals

    def spy():
        nr, n = m.cpu.read("rax"), m.cpu.instructions
        waiting = sigs.pending_mask & SIGUSR1_BIT
        dispatch()
        # SIGUSR1 was pending and this call's way out delivered it (the kernel blocks it
        # while its handler runs): the handler's first instruction comes right after n
        if (seen["handler"] is None and waiting and not sigs.pending_mask & SIGUSR1_BIT
                and sigs.blocked & SIGUSR1_BIT):
            seen["handler"] = n
        if watch_return is not None and nr == NR_RT_SIGRETURN and seen["return"] is None:
            seen["return"] = state(m, watch_return, in_syscall=True)

    m.cpu.on_syscall(spy)
    try:
        result = m.run(max_instructions=budget)
        status, message = result.status, result.message
    except VsnapError as e:
        status, message = 1, str(e)
    rip = m.cpu.read("rip")
    m.close()
    return Run(bytes(cap.out), bytes(cap.err), status, message, rip, seen["handler"],
               seen["return"])


def oracle(prog: str, guest: Guest, args, at: int, handler: int, base: Path,
           ranges_of) -> dict:
    """vsnap's own image of the process at instruction `at` (the handler's first), restored
    into a fresh machine and read there."""
    from vsnap.snapshot import image_bytes
    from vsnap.snapshot.restore import restore_bytes
    cap = Capture()
    root = fresh_root(guest, base)
    m = Machine(prog, args, root=str(root), cwd=str(root), console=cap.console)
    if m.advance(at) is not None or m.cpu.read("rip") != handler:
        raise RuntimeError(f"the oracle run is not at the handler at instruction {at}")
    data = image_bytes(m)
    m.close()
    o, _ = restore_bytes(data, console=Capture().console, where="the oracle image")
    rsp = o.cpu.read("rsp")
    top = max(v.end for v in o.mem.vmas if v.kind == "stack")
    frame = o.mem.read(rsp + 48, 8 * len(FRAME_REGS))
    st = state(o, ranges_of(rsp, top, o.mem.brk))
    st.update(rsp=rsp, top=top, frame=dict(zip(FRAME_REGS, struct.unpack(
        f"<{len(FRAME_REGS)}Q", frame))))
    o.close()
    return st


# ------------------------------------------------------------------------------------------
# the checks, in the order of the recipe: each returns lines "STEP: what: hint"

def parse_save(data: bytes):
    if len(data) < HEADER.size:
        return None
    h = dict(zip(HEADER_FIELDS, HEADER.unpack_from(data)))
    if h["magic"] != b"ANTONOV1" or h["nfds"] > 64:
        return None
    at = HEADER.size
    fds = []
    for _ in range(h["nfds"]):
        if at + FD_RECORD.size > len(data):
            return None
        r = dict(zip(FD_FIELDS, FD_RECORD.unpack_from(data, at)))
        r["name"] = r["name"].split(b"\0")[0].decode(errors="replace")
        fds.append(r)
        at += FD_RECORD.size
    parts = {}
    for name, size in (("stack", h["stack_hi"] - h["stack_lo"]),
                       ("data", h["data_hi"] - h["data_lo"]),
                       ("heap", h["heap_hi"] - h["heap_lo"]), ("jmp_buf", h["jmpbuf_size"])):
        if size < 0 or size > 1 << 30:
            return None
        parts[name] = data[at:at + size]
        at += size
    return h, fds, parts


def first_diff(a: bytes, b: bytes, skip=()):
    """The first offset where a and b differ, outside the [lo, hi) ranges in `skip`."""
    n = min(len(a), len(b))
    i = 0
    while i < n:
        if a[i] != b[i]:
            hole = next(((lo, hi) for lo, hi in skip if lo <= i < hi), None)
            if hole is None:
                return i
            i = hole[1]
            continue
        i += 1
    return None if len(a) == len(b) else n


def private_ranges(sym: Symbols, base: int):
    return [(a - base, a - base + size) for a, size, n in sym.objects if n in PRIVATE]


def guest_path(name: str) -> str:
    """A name as the program gave it to antonov_open, as vsnap names it (cwd is /)."""
    return os.path.normpath(os.path.join("/", name)) if name else ""


def check_save(save: bytes, o: dict, sym: Symbols) -> list:
    parsed = parse_save(save)
    if parsed is None:
        return ["save (steps 2-3): the save file does not start with an antonov_header "
                "(magic ANTONOV1) and its fd records: write the header, then nfds records"]
    h, records, parts = parsed
    out = []
    # steps 1 and 3: one record per open descriptor, with its type, offset, flags and name
    by_fd = {r["fd"]: r for r in records}
    for fd, (kind, path, flags, offset, _) in sorted(o["fds"].items()):
        r = by_fd.get(fd)
        name = os.path.basename(path) or path
        if r is None:
            out.append(f"save (step 1): fd {fd} ({name}) is open but the save file has no "
                       "record of it: fstat every fd from 0 to 63 and keep the open ones")
            continue
        if kind in KIND and r["kind"] != KIND[kind]:
            out.append(f"save (step 1): fd {fd} ({name}) is recorded as a "
                       f"{KIND_NAME.get(r['kind'], r['kind'])}, vsnap's image has a "
                       f"{KIND_NAME[KIND[kind]]}: take the type from fstat's st_mode")
        if kind == "file" and r["offset"] != offset:
            out.append(f"save (step 1): fd {fd} ({name})'s record says offset {r['offset']}, "
                       f"vsnap's image has {offset}: read it with lseek(fd, 0, SEEK_CUR)")
        if kind in KIND and (r["flags"] & (O_ACCMODE | O_APPEND)) != (flags & (O_ACCMODE |
                                                                                O_APPEND)):
            out.append(f"save (step 1): fd {fd} ({name})'s record has flags {r['flags']:#o}, "
                       f"vsnap's image has {flags:#o}: read them with fcntl(fd, F_GETFL)")
        if kind in KIND and guest_path(r["name"]) != path:
            out.append(f"save (step 3): fd {fd}'s record is named {r['name']!r}, it is {name}: "
                       "copy the name antonov_open remembered (antonov_names[fd])")
    for fd in sorted(set(by_fd) - set(o["fds"])):
        out.append(f"save (step 1): the save file has a record for fd {fd}, which is not open "
                   "(fstat fails with EBADF for it): skip it")
    # step 4: the stack, from below the handler's frames to the top
    if h["stack_hi"] != o["top"]:
        out.append(f"save (step 4): the saved stack ends at {h['stack_hi']:#x}, the top of the "
                   f"stack is {o['top']:#x}: save up to stack_top()")
    if h["stack_lo"] > o["rsp"]:
        out.append(f"save (step 4): the saved stack starts at {h['stack_lo']:#x}, above the "
                   f"signal frame at {o['rsp']:#x}: start below the current stack pointer "
                   "(stack_pointer() - RED_ZONE), so the handler's frames and the frame are in")
    else:
        lo = o["rsp"] - h["stack_lo"]
        mine, theirs = parts["stack"][lo:], o["mem"][o["rsp"]]
        i = first_diff(mine, theirs[:len(mine)])
        if i is not None:
            out.append(f"save (step 4): the saved stack differs from vsnap's image at "
                       f"{o['rsp'] + i:#x}: write the bytes of [stack_lo, stack_hi) as they are")
    # step 5: the data segment and the heap
    end = sym.by_name["end"]
    if h["data_lo"] != sym.data_lo or h["data_hi"] != end:
        what = ("edata, so the bss is left out" if h["data_hi"] == sym.by_name.get("edata")
                else f"{h['data_hi']:#x}")
        out.append(f"save (step 5): the saved data segment is [{h['data_lo']:#x}, "
                   f"{h['data_hi']:#x}), the writable data is [{sym.data_lo:#x}, {end:#x}): "
                   f"it ends at {what}; save from data_start() to end")
    else:
        i = first_diff(parts["data"], o["mem"][sym.data_lo], private_ranges(sym, sym.data_lo))
        if i is not None:
            a = sym.data_lo + i
            out.append(f"save (step 5): the saved data segment differs from vsnap's image at "
                       f"{a:#x} ({sym.object_at(a) or 'no symbol'}): write [data_start(), end)")
    if h["heap_lo"] != end or h["heap_hi"] != o["brk"]:
        out.append(f"save (step 5): the saved heap is [{h['heap_lo']:#x}, {h['heap_hi']:#x}), "
                   f"vsnap's image has [end, brk) = [{end:#x}, {o['brk']:#x}): save from end to "
                   "sbrk(0) (the brk system call with 0)")
    else:
        i = first_diff(parts["heap"], o["mem"][end])
        if i is not None:
            out.append(f"save (step 5): the saved heap differs from vsnap's image at "
                       f"{end + i:#x}: write [end, sbrk(0)) as it is")
    # step 6: the jmp_buf, after sigsetjmp returned 0
    jb = parts["jmp_buf"]
    if len(jb) < 64 or not any(jb):
        out.append("save (step 6): the jmp_buf at the end of the save file is all zeros: write "
                   "antonov_jb after sigsetjmp has filled it (antonov_finish_save), last")
    else:
        sp, pc = struct.unpack_from("<QQ", jb, 48)
        if not h["stack_lo"] <= sp < o["rsp"] and sym.by_name.get("__sigsetjmp") is not None:
            out.append(f"save (step 6): the jmp_buf's stack pointer {sp:#x} is outside the saved "
                       f"stack, which starts at {h['stack_lo']:#x}: the frame of the setjmp "
                       "is not in the file; save the stack from below the stack pointer")
    return out


def check_return(got: dict, o: dict, sym: Symbols) -> list:
    """The restored process, where its handler returned, against vsnap's image."""
    out = []
    for fd, (kind, path, flags, offset, cloexec) in sorted(o["fds"].items()):
        if kind not in KIND:
            continue
        name = os.path.basename(path) or path
        g = got["fds"].get(fd)
        if g is None or g[1] != path:
            out.append(f"reload (step 7): fd {fd} is not {name} after the restore: reopen each "
                       f"named file and dup2 it to its old number")
            continue
        if kind == "file" and g[3] != offset:
            out.append(f"reload (step 7): fd {fd} ({name})'s offset is {g[3]}, the saved one "
                       f"was {offset}: restore offsets with lseek")
        if (g[2] & O_APPEND) != (flags & O_APPEND):
            out.append(f"reload (step 7): fd {fd} ({name}) {'lost' if flags & O_APPEND else 'gained'}"
                       f" O_APPEND: reopen with the saved flags (F_GETFL) minus "
                       f"O_CREAT|O_TRUNC|O_EXCL")
        elif (g[2] & O_ACCMODE) != (flags & O_ACCMODE):
            out.append(f"reload (step 7): fd {fd} ({name}) has access mode {g[2] & 3}, it had "
                       f"{flags & 3}: reopen with the saved flags")
    for r in FRAME_REGS:
        if got["regs"][r] != o["frame"][r]:
            out.append(f"reload (steps c-e): after the handler returned, {r} is "
                       f"{got['regs'][r]:#x}, the interrupted code had {o['frame'][r]:#x} "
                       "(vsnap's image): the signal frame did not come back with the stack")
            break
    if got["brk"] != o["brk"]:
        out.append(f"reload (step d): the break is {got['brk']:#x}, it was {o['brk']:#x}")
    end = sym.by_name["end"]
    for lo, what, skip, step in ((o["rsp"], "stack", (), "c"),
                                 (sym.data_lo, "data segment", private_ranges(sym, sym.data_lo),
                                  "d"), (end, "heap", (), "d")):
        mine, theirs = got["mem"].get(lo), o["mem"][lo]
        i = None if mine is None else first_diff(mine, theirs, skip)
        if mine is None or i is not None:
            a = lo + (i or 0)
            out.append(f"reload (step {step}): the {what} differs from vsnap's image at {a:#x} "
                       f"({sym.object_at(a) or 'no symbol'}): read it back, in the order it "
                       "was saved, with the read system call")
    return out


def files_of(root: Path, skip) -> dict:
    return {k: v[-1] if v[0] == "file" else v[0] for k, v in snapshot_files(root).items()
            if k not in skip}


def grade_point(prog: str, p: Program, k: int, sym: Symbols, ref, base: Path) -> list:
    guest = Guest(prog, p.args(k), p.files)
    handler = sym.by_name["antonov_handler"]
    root = fresh_root(guest, base)
    first = run(prog, guest.args, root, handler, budget=ref["budget"])
    save = root / p.save
    where = f"{p.name} -c {k}"
    if first.handler_at is None:
        return [f"{where}: the signal handler never ran (is antonov_init still as given?)"]
    if not save.exists():
        tail = first.err.decode(errors="replace").strip().splitlines()[-1:] or ["nothing"]
        return [f"{where}: save (steps 1-6): the program went on after the signal and left no "
                f"{p.save} (its last word on stderr: {tail[0]!r}): write antonov_save and "
                "antonov_finish_save"]
    if first.status != 0:
        return [f"{where}: save (step 6): the saving run ended with status {first.status}, not "
                "0: after the jmp_buf, fsync, close, rename the file and exit_group(0)"]

    def ranges_of(rsp, top, brk):
        end = sym.by_name["end"]
        return [(rsp, top), (sym.data_lo, end), (end, brk)]

    o = oracle(prog, Guest(prog, guest.args, p.files), guest.args, first.handler_at, handler, base,
               ranges_of)
    out = [f"{where}: {line}" for line in check_save(save.read_bytes(), o, sym)]
    second = run(prog, guest.args, root, handler, watch_return=ranges_of(o["rsp"], o["top"],
                                                                          o["brk"]),
                 budget=ref["budget"])
    if second.at_return is None:
        how = (second.message or f"exit status {second.status}")
        err = second.err.decode(errors="replace").strip().splitlines()
        said = f"; it said {err[-1]!r}" if err else ""
        out.append(f"{where}: reload (steps b-e): the restored process never returned from the "
                   f"signal handler: {how} at {sym.function_at(second.rip)}{said}")
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


def grade(source: Path, names=("workout", "demo"), all_points=False, base=None) -> list:
    """Every failure, one line each; [] when the library passes."""
    from vsnap.scratch import scratch
    progs = build_all(source, names)
    failures = []
    with scratch("vsnap-grade-") as tmp:
        b = Path(base or tmp)
        for n in names:
            p, prog = PROGRAMS[n], progs[n]
            sym = Symbols(prog)
            one = run_to_end(Guest(prog, p.args(), p.files), b)
            ref = {"stdout": one.stdout, "status": one.status, "budget": 50_000_000,
                   "files": {k: v[-1] if v[0] == "file" else v[0]
                             for k, v in one.files.items()}}
            points = range(1, p.steps + 1) if all_points else p.points
            seen = set()
            for k in points:
                for line in grade_point(prog, p, k, sym, ref, b):
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
                    help="save at every step, not only a few")
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
        failures = grade(src, names, a.all_points)
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
