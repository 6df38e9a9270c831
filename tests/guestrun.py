"""Running guests inside tests: build once, run in a fresh root, capture everything a user
could compare (stdout, stderr, status, files left behind, final registers)."""
from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from vsnap import Console, Machine
from vsnap.build import build

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "programs" / "data" / "sample.txt"

# every good program in programs/, with arguments that keep the run short
PROGRAMS = {
    "hello": [],
    "counter": ["3", "counter.log"],
    "wordfreq": ["sample.txt", "5"],
    "primes": ["20000", "1"],
    "malloc_stress": [],
    "rewrite": ["records.dat"],
    "listdir": ["."],
    "syscalls": ["300"],
    "compute": ["200000"],
    "signals": [],
}


@functools.lru_cache(maxsize=None)
def program(name: str) -> str:
    return build(str(REPO / "programs" / f"{name}.c"))


def fresh_root(base: Path, label: str) -> Path:
    root = base / label
    root.mkdir()
    shutil.copy2(SAMPLE, root / "sample.txt")  # copy2: the same mtime in every root
    return root


def files(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", st.st_mode)
            else:
                out[rel] = ("file", st.st_mode, st.st_mtime_ns, p.read_bytes())
    return out


@dataclass
class Outcome:
    stdout: bytes
    stderr: bytes
    status: int
    files: dict
    registers: dict


class Capture:
    def __init__(self):
        self.out, self.err = bytearray(), bytearray()
        self.console = Console(read=lambda n: b"", write_out=self.out.extend,
                               write_err=self.err.extend)


def start(name: str, root: Path, cap: Capture) -> Machine:
    return Machine(program(name), PROGRAMS[name], root=str(root), cwd=str(root),
                   console=cap.console)


def finish(m: Machine, cap: Capture, root: Path) -> Outcome:
    result = m.result or m.run()
    return Outcome(bytes(cap.out), bytes(cap.err), result.status, files(root),
                   m.cpu.snapshot_registers())


@functools.lru_cache(maxsize=None)
def length(name: str, base: str) -> int:
    """Instructions in a whole run of `name` (counted exactly, once per test session)."""
    root = fresh_root(Path(base), f"length-{name}")
    cap = Capture()
    return start(name, root, cap).run(count=True).instructions


def syscall_states(name: str, base: Path) -> list[tuple[int, int, int]]:
    """(instruction count, pending mask, blocked mask) right after each system call of a run:
    where a checkpoint lands inside a handler, or with a signal waiting."""
    root = fresh_root(base, f"states-{name}-{os.getpid()}-{len(list(base.iterdir()))}")
    cap = Capture()
    m = start(name, root, cap)
    states = []
    dispatch = m.kernel.dispatch

    def spy():
        dispatch()
        sig = m.kernel.signals
        states.append((m.cpu.instructions, sig.pending_mask, sig.blocked))

    m.cpu.uc.hook_del(m.cpu._syscall_hook)
    m.cpu.on_syscall(spy)
    m.run(count=True)
    return states
