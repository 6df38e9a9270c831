"""Testing the promise, as a library for anyone's pytest suite (and for vsnap's own):

    for every program P and every instruction k:  run(P) == resume(save(run(P, stop at k)))

    from vsnap.testing import Guest, assert_transparent, checkpoint_points, measure
    from hypothesis import given

    guest = Guest("build/myprog", ("arg",), files={"input.txt": b"..."})
    m = measure(guest)                       # its length, its system calls, its outcome

    @given(checkpoint_points(m))
    def test_my_program_survives_checkpoints(points):
        assert_transparent(guest, points, reference=m.outcome)

"Same" means: stdout and stderr bytes, exit status, the files left in the root (names, modes,
contents, modification times) and the final registers. Every run starts in a fresh copy of
the guest's root, so runs never see each other's files.
"""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

from .kernel import Capture
from .machine import Machine
from .scratch import scratch

REPO_PROGRAMS = Path(__file__).resolve().parent.parent / "programs"


@dataclass(frozen=True)
class Guest:
    """A program and everything it starts with: arguments, stdin, the files of its root."""

    program: str
    args: tuple = ()
    files: dict = field(default_factory=dict, hash=False)   # relative path -> bytes
    stdin: bytes = b""
    template: str | None = None   # a directory copied (with its times) into every fresh root

    def describe(self) -> str:
        return " ".join([self.program, *self.args])


@dataclass
class Outcome:
    stdout: bytes
    stderr: bytes
    status: int
    files: dict
    registers: dict


@dataclass
class Measured:
    length: int                   # instructions in the whole run
    syscalls: list                # instruction counts right after each system call
    outcome: Outcome
    # (instruction count, pending mask, blocked mask) after each system call: where signals
    # wait, and where handlers run (their signal blocked)
    signal_states: list = field(default_factory=list)

    @property
    def in_handlers(self) -> list:
        return [n for n, _, blocked in self.signal_states if blocked]


_counter = iter(range(1 << 62))


def fresh_root(guest: Guest, base: Path) -> Path:
    root = Path(base) / f"root-{os.getpid()}-{next(_counter)}"
    if guest.template:
        shutil.copytree(guest.template, root, symlinks=True)  # copy2: times are kept
    else:
        root.mkdir(parents=True)
    for rel, data in guest.files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.utime(p, ns=(1_600_000_000 * 10**9,) * 2)  # the same time in every root
    return root


def snapshot_files(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st_ = p.lstat()
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", st_.st_mode)
            elif not stat.S_ISREG(st_.st_mode):  # a FIFO or socket (mknod): never read it
                out[rel] = ("special", st_.st_mode, st_.st_mtime_ns)
            else:
                out[rel] = ("file", st_.st_mode, st_.st_mtime_ns, p.read_bytes())
    return out


def start(guest: Guest, root: Path, cap: Capture) -> Machine:
    return Machine(guest.program, guest.args, root=str(root), cwd=str(root),
                   console=cap.console)


def _finish(m: Machine, cap: Capture, root: Path, budget: int | None = None) -> Outcome:
    result = m.result or m.run(max_instructions=budget)
    return Outcome(bytes(cap.out), bytes(cap.err), result.status, snapshot_files(root),
                   m.cpu.snapshot_registers())


@contextlib.contextmanager
def _base(base):
    if base is not None:
        yield Path(base)
    else:
        with scratch("vsnap-test-") as d:  # removed in the background (scratch.py)
            yield d


def run_to_end(guest: Guest, base=None) -> Outcome:
    """One uninterrupted run in a fresh root."""
    with _base(base) as b:
        cap = Capture(guest.stdin)
        root = fresh_root(guest, b)
        return _finish(start(guest, root, cap), cap, root)


def measure(guest: Guest, base=None) -> Measured:
    """A counted run: its length in instructions, where its system calls are, its outcome."""
    with _base(base) as b:
        cap = Capture(guest.stdin)
        root = fresh_root(guest, b)
        m = start(guest, root, cap)
        positions, states = [], []
        dispatch, sig = m.process.dispatch, m.process

        def spy():
            n = m.cpu.instructions  # the block ending in `syscall` is already counted
            positions.append(n)
            dispatch()
            states.append((n, sig.signals.pending_mask, sig.signals.blocked))

        m.cpu.on_syscall(spy)  # in place of the kernel's own (one callback at a time)
        result = m.run(count=True)
        return Measured(result.instructions, positions, _finish(m, cap, root), states)


def run_with_checkpoints(guest: Guest, points, base=None, budget: int | None = None) -> Outcome:
    """Run to points[0], save, resume in a fresh machine, run to points[1], ... to the end.
    A point past the end of the run is simply never reached. `budget` bounds the last leg
    in instructions, so a bug that sends the resumed guest into a loop ends as a difference
    (exit status 152) instead of a hang."""
    from .snapshot import image_bytes
    from .snapshot.restore import restore_bytes
    with _base(base) as b:
        cap = Capture(guest.stdin)
        root = fresh_root(guest, b)
        m = start(guest, root, cap)
        for k in sorted(points):
            if m.advance(k) is not None:
                break
            # the image's bytes, not a file: the same encoder and checks, without the fsync
            # that makes a file survive a crash (tests/test_image.py covers files)
            data = image_bytes(m)
            m.close()   # the old process is gone; only the image goes on
            m, _ = restore_bytes(data, console=cap.console, where=f"checkpoint at {k}")
        return _finish(m, cap, root, budget)


def first_difference(a: Outcome, b: Outcome) -> str | None:
    """None when the outcomes agree; else one line naming the first thing that differs (the
    exit status first: a crash says more than the output it cut short)."""
    if a.status != b.status:
        return f"exit status differs: expected {a.status}, got {b.status}"
    for name in ("stdout", "stderr"):
        x, y = getattr(a, name), getattr(b, name)
        if x != y:
            i = next((i for i in range(min(len(x), len(y))) if x[i] != y[i]),
                     min(len(x), len(y)))
            return (f"{name} differs at byte {i}: expected {x[max(0, i - 20):i + 20]!r}, "
                    f"got {y[max(0, i - 20):i + 20]!r}")
    if a.files != b.files:
        for rel in sorted(set(a.files) | set(b.files)):
            x, y = a.files.get(rel), b.files.get(rel)
            if x != y:
                what = ("missing" if y is None else "unexpected" if x is None else
                        "content" if x[:1] == y[:1] == ("file",) and x[3] != y[3] else
                        "mode or time")
                return f"file {rel} differs ({what})"
    if a.registers != b.registers:
        name = next(n for n in a.registers if a.registers[n] != b.registers[n])
        return (f"final register {name} differs: expected {a.registers[name]:#x}, got "
                f"{b.registers[name]:#x}")
    return None


class NotTransparent(AssertionError):
    pass


def assert_transparent(guest: Guest, points, reference: Outcome | None = None,
                       base=None, budget: int | None = None) -> None:
    """Fail with the first difference if checkpoints at `points` change the outcome."""
    reference = reference or run_to_end(guest, base)
    got = run_with_checkpoints(guest, points, base, budget=budget)
    diff = first_difference(reference, got)
    if diff:
        raise NotTransparent(f"checkpoints at {list(points)}: {diff}")


def checkpoint_points(m: Measured, max_chain: int = 3):
    """Lists of checkpoint instruction counts, sorted: single points anywhere in the run,
    points just before, at and after system calls, and chains of up to `max_chain`."""
    last = max(0, m.length - 1)
    anywhere = st.integers(0, last)

    def near(positions):
        return st.sampled_from(positions).flatmap(
            lambda n: st.integers(max(0, n - 2), min(last, n + 2))) if positions else anywhere

    point = st.one_of(anywhere, near(m.syscalls), near(m.in_handlers))
    return st.lists(point, min_size=1, max_size=max_chain, unique=True).map(sorted)


def programs():
    """The guest programs in programs/, built, with arguments that keep their runs short."""
    from .build import build
    short = {"hello": (), "counter": ("3", "counter.log"), "wordfreq": ("sample.txt", "5"),
             "primes": ("20000", "1"), "rewrite": ("records.dat",), "listdir": (".",),
             "syscalls": ("300",), "compute": ("200000",), "signals": ()}
    sample = {"sample.txt": (REPO_PROGRAMS / "data" / "sample.txt").read_bytes()}
    return st.sampled_from(sorted(short)).map(
        lambda name: Guest(build(str(REPO_PROGRAMS / f"{name}.c")), short[name], sample))


@contextlib.contextmanager
def planted_bug(name: str | None):
    """Test-only: plant one of the deliberate checkpoint bugs (vsnap.snapshot.checkpoint.
    PLANTED_BUGS) while the block runs, to see that checking catches it."""
    import importlib
    ckpt = importlib.import_module("vsnap.snapshot.checkpoint")
    if name is not None and name not in ckpt.PLANTED_BUGS:
        raise ValueError(f"no planted bug {name!r}; one of {', '.join(ckpt.PLANTED_BUGS)}")
    old, ckpt.PLANTED_BUG = ckpt.PLANTED_BUG, name
    try:
        yield
    finally:
        ckpt.PLANTED_BUG = old


# generated workloads: scripts for programs/opvm.c ---------------------------------------------
_NAMES = ("a", "b", "d", "d/x", "d/y", "e")
_SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGHUP", "SIGWINCH", "SIGCHLD")


@functools.lru_cache(maxsize=None)
def _op():
    """One opvm operation (programs/opvm.md), over small domains so that they interact.
    Built once: a script draws it for every line, and hypothesis validates each new strategy
    object anew (built per line, it took most of the time of generating a workload)."""
    f = st.sampled_from([f"F{i}" for i in range(4)])
    m = st.sampled_from([f"M{i}" for i in range(4)])
    name = st.sampled_from(_NAMES)
    data = st.binary(min_size=0, max_size=24).map(lambda b: b.hex() or "-")
    small = st.integers(0, 64)
    size = st.one_of(st.integers(0, 5000), st.sampled_from([65536, 200_000, 1 << 20]))
    sig = st.sampled_from(_SIGNALS)
    ops = [
        st.tuples(st.just("open"), f, name, st.sampled_from(["r", "w", "a", "rw", "c", "x"])),
        st.tuples(st.just("close"), f), st.tuples(st.just("dup"), f, f),
        st.tuples(st.just("read"), f, small), st.tuples(st.just("write"), f, data),
        st.tuples(st.just("pread"), f, small, small),
        st.tuples(st.just("pwrite"), f, data, small),
        st.tuples(st.just("lseek"), f, st.integers(-8, 64), st.sampled_from(["set", "cur",
                                                                            "end"])),
        st.tuples(st.just("ftruncate"), f, small), st.tuples(st.just("fstat"), f),
        st.tuples(st.just("unlink"), name), st.tuples(st.just("mkdir"), name),
        st.tuples(st.just("rmdir"), name), st.tuples(st.just("rename"), name, name),
        st.tuples(st.just("listdir"), st.sampled_from(["d", "e"])),
        st.tuples(st.just("malloc"), m, size), st.tuples(st.just("realloc"), m,
                                                         size.map(lambda n: max(1, n))),
        st.tuples(st.just("free"), m), st.tuples(st.just("fill"), m, st.integers(0, 255)),
        st.tuples(st.just("touch"), m, st.sampled_from([1, 64, 4096])),
        st.tuples(st.just("sum"), m), st.tuples(st.just("brk"), st.sampled_from([0, 4096,
                                                                                 100_000])),
        st.tuples(st.just("compute"), st.integers(0, 20_000)),
        st.tuples(st.just("print"), data), st.tuples(st.just("err"), data),
        st.tuples(st.just("handle"), sig), st.tuples(st.just("ignore"), sig),
        st.tuples(st.just("block"), sig), st.tuples(st.just("unblock"), sig),
        st.tuples(st.just("raise"), sig), st.tuples(st.just("pending")),
    ]
    return st.one_of(ops).map(lambda t: " ".join(map(str, t)))


def opvm_program() -> str:
    from .build import build
    return build(str(REPO_PROGRAMS / "opvm.c"))


@st.composite
def _script(draw, max_ops: int) -> list:
    """A script that mostly makes sense: a small model of which slots hold a file or a block
    steers most operations to them (so they succeed and interact), while a few stay random
    (so errors are exercised too)."""
    files: set = set()
    blocks: set = set()
    lines = []
    for _ in range(draw(st.integers(1, max_ops))):
        line = draw(_op())
        words = line.split()
        op = words[0]
        if op in _FILE_OPS and draw(st.integers(0, 9)) < 8:
            if files:
                words[1] = draw(st.sampled_from(sorted(files)))
            else:  # nothing open yet: open (and create) something first
                words = ["open", words[1], draw(st.sampled_from(["a", "b", "e"])),
                         draw(st.sampled_from(["c", "w", "a"]))]
        elif op in _BLOCK_OPS and draw(st.integers(0, 9)) < 8:
            if blocks:
                words[1] = draw(st.sampled_from(sorted(blocks)))
            else:
                words = ["malloc", words[1], str(draw(st.integers(1, 70_000)))]
        op = words[0]
        if op == "open" and words[3] in ("c", "w", "a"):
            files.add(words[1])
        elif op == "close":
            files.discard(words[1])
        elif op == "malloc":
            blocks.add(words[1])
        elif op == "free":
            blocks.discard(words[1])
        lines.append(" ".join(words))
    return lines


_FILE_OPS = {"close", "dup", "read", "write", "pread", "pwrite", "lseek", "ftruncate", "fstat"}
_BLOCK_OPS = {"realloc", "free", "fill", "touch", "sum"}


def workloads(max_ops: int = 30):
    """Guests made of generated opvm scripts: thousands of different behaviours (files,
    descriptors, heap, brk, computation, signals) from one binary, shrinking to the fewest
    and simplest operations when something fails."""
    program = opvm_program()
    return _script(max_ops).map(
        lambda lines: Guest(program, ("script.txt",),
                            {"script.txt": ("\n".join(lines) + "\n").encode()}))


_PORTS = {"next": None}


def free_port() -> int:
    """A TCP port free on the host's 127.0.0.1 for a test's server, below Linux's ephemeral
    range (32768-60999): a port from bind(0) is an ephemeral one, which any client's connect
    may take as its source port before the server binds it. Spread by pid so that parallel
    test workers start apart, and never the same twice in one process."""
    import socket
    if _PORTS["next"] is None:
        _PORTS["next"] = (os.getpid() * 97) % 12000
    for _ in range(12000):
        port = 20000 + _PORTS["next"]
        _PORTS["next"] = (_PORTS["next"] + 1) % 12000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free TCP port in 20000-31999 on this host")
