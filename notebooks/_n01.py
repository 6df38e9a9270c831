"""Helpers of notebook 01, "a process in an emulator".

What the notebook needs and a student need not read: making a guest with its output captured,
reading the initial stack out of a loaded guest's memory (and drawing it), the strace table
(vsnap's --strace beside the host's strace), the exercises' answer keys (worked out from the
variant's parameters, as an instructor would, never by running), and the instruction-count
panel behind the slider: `panel(program, k)` is a plain function, so CI can call it for
several k without a browser, and `render(p)` turns its data into the HTML the slider shows.
"""
from __future__ import annotations

import html
import io
import json
import os
import pathlib
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field

import vsnap
import vsnap.loader as loader
from vsnap.cpu import GPRS
from vsnap.machine import DEFAULT_ENV
from vsnap.memory import PAGE
from vsnap.snapshot import image_bytes
from vsnap.trace import disassemble

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

from _lab import Exercise, variant  # noqa: F401  (the exercises are the labs' own)

REPO = pathlib.Path(__file__).resolve().parent
while not (REPO / "pyproject.toml").exists():
    if REPO == REPO.parent:
        raise RuntimeError("notebooks/_n01.py must stay inside the vsnap repository")
    REPO = REPO.parent
PROGRAMS = REPO / "programs"

AT_NAMES = {v: k for k, v in vars(loader).items() if k.startswith("AT_") and isinstance(v, int)}
AT_POINTERS = ("AT_RANDOM", "AT_PLATFORM", "AT_EXECFN")   # auxv values that point at strings


def make_machine(path, args=(), *, root, env=None, tty=(False, False, False)):
    """A fresh guest process for the program at `path` (sandbox `root`); its stdout and
    stderr are captured in two bytearrays."""
    out, err = bytearray(), bytearray()
    console = vsnap.Console(read=lambda n: b"", write_out=out.extend, write_err=err.extend,
                            tty=tuple(tty))
    m = vsnap.Machine(str(path), list(args), root=str(root), cwd=str(root), console=console,
                      env=env)
    return m, out, err


# ------------------------------------------------------------------------------------------
# the initial stack, read from the guest's memory

@dataclass
class Slot:
    """One 8-byte word (an auxv entry: two words) of the initial stack."""
    addr: int
    label: str            # "argc", "argv[0]", "NULL", "envp[1]", "AT_PAGESZ", ...
    value: int
    target: int | None = None    # the address it points at, if it points into the stack


@dataclass
class Blob:
    """Bytes in the strings area that a slot points at."""
    addr: int
    size: int
    label: str
    text: str


@dataclass
class Stack:
    rsp: int
    top: int              # the end of the stack VMA: the top of the user address space
    slots: list = field(default_factory=list)
    blobs: list = field(default_factory=list)

    def slot(self, label: str) -> Slot:
        return next(s for s in self.slots if s.label == label)

    def argv(self) -> list[str]:
        return [self.blob_at(s.value).text for s in self.slots if s.label.startswith("argv[")]

    def blob_at(self, addr: int) -> Blob:
        return next(b for b in self.blobs if b.addr == addr)


def initial_stack(m) -> Stack:
    """Walk the stack of machine `m` at its first instruction, word by word from rsp, as the C
    library's start-up code does: argc, argv[], NULL, envp[], NULL, auxv pairs up to AT_NULL;
    and read the strings those words point at."""
    def word(a):
        return struct.unpack("<Q", m.mem.read(a, 8))[0]

    def cstr(a):
        return m.process.read_cstr(a).decode()

    stack_vma = next(v for v in m.mem.vmas if v.kind == "stack")
    st = Stack(rsp=m.cpu.read("rsp"), top=stack_vma.end)
    a = st.rsp
    argc = word(a)
    st.slots.append(Slot(a, "argc", argc))
    a += 8
    for group in ("argv", "envp"):
        i = 0
        while word(a):
            p = word(a)
            st.slots.append(Slot(a, f"{group}[{i}]", p, p))
            st.blobs.append(Blob(p, len(cstr(p)) + 1, f"{group}[{i}]", cstr(p)))
            a, i = a + 8, i + 1
        st.slots.append(Slot(a, f"NULL (end of {group})", 0))
        a += 8
    while True:
        key, value = word(a), word(a + 8)
        name = AT_NAMES.get(key, str(key))
        target = value if name in AT_POINTERS else None
        st.slots.append(Slot(a, name, value, target))
        if name == "AT_RANDOM":
            st.blobs.append(Blob(value, 16, name, m.mem.read(value, 16).hex()))
        elif target is not None:
            st.blobs.append(Blob(value, len(cstr(value)) + 1, name, cstr(value)))
        a += 16
        if key == 0:
            break
    st.blobs.sort(key=lambda b: b.addr)
    return st


def print_stack(st: Stack) -> None:
    """The stack as a table: offset from rsp, what the word is, its value (and what it
    points at)."""
    for s in st.slots:
        pointed = ""
        if s.target is not None:
            pointed = f" -> {st.blob_at(s.target).text!r}"
        value = f"{s.value:#x}" if s.target is not None or s.value > 0xffff else str(s.value)
        print(f"rsp+{s.addr - st.rsp:#05x}  {s.label:<20} {value}{pointed}")
    print(f"\nstrings area: {st.blobs[0].addr:#x} up to the top of the stack at {st.top:#x}"
          f" ({st.top - st.blobs[0].addr} bytes)")


def draw_stack(st: Stack, title: str = "the initial stack"):
    """The stack as a picture: the words from rsp (bottom) up to AT_NULL on the left, the
    strings area on the right, an arrow from every pointer to what it points at. Drawn from
    `st`, which initial_stack read out of the guest; returns the figure."""
    colors = {"argc": "#f28e2b", "argv": "#e15759", "NULL": "#dddddd", "envp": "#59a14f",
              "AT_": "#4e79a7"}

    def color(label):
        return next((c for k, c in colors.items() if label.startswith(k)), "#bbbbbb")

    n = len(st.slots)
    fig, ax = plt.subplots(figsize=(11, 0.32 * max(n, len(st.blobs)) + 1.2))
    y_of = {}
    for i, s in enumerate(st.slots):     # rsp at the bottom, addresses growing upward
        ax.add_patch(plt.Rectangle((0, i), 3.6, 0.9, fc=color(s.label), ec="black", lw=0.5,
                                   alpha=0.6))
        value = f"{s.value:#x}" if s.target is not None or s.value > 0xffff else str(s.value)
        ax.text(0.08, i + 0.45, f"rsp+{s.addr - st.rsp:#05x}", va="center", fontsize=7,
                family="monospace")
        ax.text(1.0, i + 0.45, f"{s.label}  {value}", va="center", fontsize=7.5,
                family="monospace")
        y_of[s.addr] = i
    step = n / max(len(st.blobs), 1)
    blob_y = {}
    for j, b in enumerate(st.blobs):     # the strings, lowest address at the bottom
        y = j * step
        ax.add_patch(plt.Rectangle((6, y), 5, 0.9, fc=color(b.label), ec="black", lw=0.5,
                                   alpha=0.35))
        text = b.text if len(b.text) <= 34 else b.text[:31] + "..."
        ax.text(6.08, y + 0.45, f"{b.addr:#x} {text!r}", va="center", fontsize=7,
                family="monospace")
        blob_y[b.addr] = y
    for i, s in enumerate(st.slots):
        if s.target is not None:
            ax.annotate("", xy=(6, blob_y[s.target] + 0.45), xytext=(3.6, i + 0.45),
                        arrowprops=dict(arrowstyle="->", lw=0.7, color="dimgray"))
    ax.annotate("rsp", xy=(0, 0.45), xytext=(-0.9, 0.45), va="center", fontweight="bold",
                arrowprops=dict(arrowstyle="->", lw=1))
    ax.text(1.8, n + 0.3, "words (8 bytes; an auxv entry is two)", ha="center", fontsize=8)
    ax.text(8.5, n + 0.3, f"strings area, up to the top {st.top:#x}", ha="center", fontsize=8)
    ax.set_xlim(-1, 11.2)
    ax.set_ylim(-0.3, n + 1)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    return fig


def argv1_below_top(args, env=DEFAULT_ENV, execfn="/hello") -> int:
    """Exercise 1's key, worked out from the layout Linux (and vsnap's loader) uses: from the
    top down, 8 zero bytes, the AT_EXECFN string, the environment strings, then the argument
    strings; each string with its NUL, the last one pushed first, so argv[1]'s string starts
    below all of argv[1:] and above argv[0]."""
    size = lambda s: len(s.encode()) + 1  # noqa: E731
    return 8 + size(execfn) + sum(map(size, env)) + sum(map(size, args))


# ------------------------------------------------------------------------------------------
# stepping: which registers an instruction changes

def registers(m) -> dict:
    return dict(zip(GPRS, m.cpu.read_many(GPRS)))


def changed(before: dict, after: dict) -> set:
    """The general registers whose value differs (rip always does; rflags left out too: the
    flags are a register of their own)."""
    return {r for r in GPRS if r not in ("rip", "rflags") and before[r] != after[r]}


def instruction_at(m) -> str:
    rip = m.cpu.read("rip")
    return disassemble(m.mem.read(rip, 16), rip, 1)[0][2]


# Exercise 2's key: the first 15 instructions of musl's _start and _start_c (crt1), read off the
# listing and worked out by hand. At exec every general register but rsp is 0 (Linux's
# start_thread clears them), rsp is 16-byte aligned at argc, argc is 1.
START_KEY = {
    1: ("xor rbp, rbp", set()),                  # rbp was already 0
    2: ("mov rdi, rsp", {"rdi"}),
    3: ("lea rsi, [rip", set()),                 # &_DYNAMIC, 0 in a static program; rsi was 0
    4: ("and rsp, 0xfffffffffffffff0", set()),   # already aligned
    5: ("call", {"rsp"}),                        # pushes the return address
    6: ("push rbp", {"rsp"}),
    7: ("mov rbp, rsp", {"rbp"}),
    8: ("mov esi, dword ptr [rdi]", {"rsi"}),    # argc: 1
    9: ("lea rdx, [rdi + 8]", {"rdx"}),          # argv
    10: ("mov edi,", {"rdi"}),                   # main's address
    11: ("mov ecx,", {"rcx"}),
    12: ("mov r8d,", {"r8"}),
    13: ("xor r9d, r9d", set()),                 # r9 was 0
    14: ("pop rbp", {"rbp", "rsp"}),
    15: ("jmp", set()),
}


def step_changes(path, k: int, *, root) -> tuple[str, set]:
    """Run a fresh guest to instruction k-1, then one more: the instruction executed as the
    k-th and the registers it changed."""
    m, _, _ = make_machine(path, root=root)
    m.advance(k - 1)
    before, text = registers(m), instruction_at(m)
    m.advance(k)
    return text, changed(before, registers(m))


# ------------------------------------------------------------------------------------------
# system calls, and the exercises' little program

# maps.c: a program that grows the heap with brk, maps a page and prints /proc/self/maps
MAPS_C = r"""
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
    char *start = (char *)syscall(SYS_brk, 0);                     /* the current break */
    char *end = (char *)syscall(SYS_brk, start + 3 * 4096 + 100);  /* grow the heap */
    end[-1] = 'x';                                                 /* the new memory works */
    char *page = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    page[0] = 'y';
    printf("the heap grew from %p to %p\n", (void *)start, (void *)end);

    FILE *maps = fopen("/proc/self/maps", "r");
    char line[256];
    while (fgets(line, sizeof line, maps))
        fputs(line, stdout);
    return 0;
}
"""

LINES_C = r"""
#include <stdio.h>
#include <stdlib.h>

/* lines N STATUS: print N short lines, then exit with STATUS */
int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1;
    for (int i = 1; i <= n; i++)
        printf("line %d\n", i);
    return argc > 2 ? atoi(argv[2]) : 0;
}
"""


def syscalls_key(lines: int, tty: bool) -> int:
    """Exercise 3's key: arch_prctl, set_tid_address, the ioctl(TIOCGWINSZ) at the first
    flush, the writes, exit_group. stdout starts line buffered; a terminal keeps it so (one
    writev per line), anything else makes it fully buffered after the first line, so the
    other lines (well under musl's 1 KiB buffer) leave in one writev at exit."""
    writes = lines if tty else 1 + (lines > 1)
    return 3 + writes + 1


def status_key(value: int) -> int:
    """Exercise 4's key: main's return value goes to exit_group, and the parent sees only its
    low 8 bits (WEXITSTATUS): a negative value wraps around too."""
    return value % 256


def run_counted(path, args, *, root, tty=False):
    """Run a guest to its end: (its RunResult, the strace lines, stdout)."""
    m, out, _ = make_machine(path, args, root=root, tty=(False, tty, False))
    calls = []
    m.system.strace = calls.append
    return m.run(), calls, bytes(out)


# ------------------------------------------------------------------------------------------
# strace: vsnap's beside the host's

CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(.*)$")


def split_args(text: str) -> list[str]:
    """The top-level comma-separated arguments of an strace line (brackets and strings kept
    whole)."""
    out, depth, cur, quote = [], 0, "", False
    for i, ch in enumerate(text):
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quote = not quote
        elif not quote and ch in "[{(":
            depth += 1
        elif not quote and ch in "]})":
            depth -= 1
        if ch == "," and depth == 0 and not quote:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return out + ([cur.strip()] if cur.strip() else [])


def parse_strace(lines) -> list[tuple[str, list[str], str]]:
    """(name, arguments, result) of each system call line; execve and the +++ line left out
    (vsnap's --strace starts after exec)."""
    calls = []
    for line in lines:
        hit = CALL.match(line.strip())
        if hit and hit.group(1) != "execve":
            calls.append((hit.group(1), split_args(hit.group(2)), hit.group(3).strip()))
    return calls


def vsnap_strace(path, root) -> list[str]:
    """`vsnap run --strace PROGRAM`: its trace goes to stderr."""
    p = subprocess.run([sys.executable, "-m", "vsnap", "run", "--root", str(root), "--strace",
                        str(path)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    return [ln for ln in p.stderr.splitlines() if CALL.match(ln.strip())]


def native_strace(path) -> list[str] | None:
    """The host's `strace PROGRAM` (its stdout to /dev/null), or None without strace or where
    it cannot trace (no ptrace in a container)."""
    if shutil.which("strace") is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "trace")
        p = subprocess.run(["strace", "-o", log, str(path)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=60)
        if p.returncode != 0 or not os.path.exists(log):
            return None
        with open(log) as f:
            return f.read().splitlines()


def compare(ours, theirs) -> list[dict]:
    """Row by row: the call, vsnap's and the host's arguments and result, and what differs."""
    rows = []
    for i in range(max(len(ours), len(theirs or []))):
        a = ours[i] if i < len(ours) else None
        b = theirs[i] if theirs is not None and i < len(theirs) else None
        differs = []
        if a and b:
            if a[0] != b[0]:
                differs.append("the call")
            differs += [f"arg {j + 1}" for j in range(max(len(a[1]), len(b[1])))
                        if (a[1] + [""] * 9)[j] != (b[1] + [""] * 9)[j]]
            if a[2] != b[2]:
                differs.append("result")
        rows.append({"call": (a or b)[0], "vsnap": a, "native": b, "differs": differs})
    return rows


def print_comparison(rows) -> None:
    def cell(c):
        return "-" if c is None else f"{c[0]}({', '.join(c[1])}) = {c[2]}"
    for r in rows:
        print(f"vsnap:  {cell(r['vsnap'])}")
        if r["native"] is not None:
            print(f"native: {cell(r['native'])}")
            print(f"        differs in: {', '.join(r['differs']) or 'nothing'}")
        print()


# ------------------------------------------------------------------------------------------
# the panel behind the slider

@dataclass
class Panel:
    k: int
    ended: bool                   # the guest ended before instruction k
    registers: dict               # at k
    changed: set                  # by the k-th instruction
    next_instruction: str
    vmas: list                    # (start, end, kind, perms, name)
    stack_pages: list             # addresses of the stack pages an image stores (not all zero)
    parts: dict                   # image part -> bytes it would hold
    image_size: int               # the whole image file (compressed)


def panel(path, k: int, *, root, args=()) -> Panel:
    """The guest `path` after exactly k instructions: its registers (and which the k-th
    instruction changed), its memory map, and what an image taken there would store. Each
    call starts a fresh guest and advances it: a pure function of (program, k)."""
    m, _, _ = make_machine(path, args, root=root)
    end = m.advance(max(k - 1, 0))
    before = registers(m)
    if end is None and k > 0:
        end = m.advance(k)
    regs = registers(m)
    vmas = [(v.start, v.end, v.kind, v.perms(), v.name) for v in m.mem.vmas]
    if end is not None:
        return Panel(k, True, regs, set(), "", vmas, [], {}, 0)
    data = image_bytes(m)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        parts = {i.filename: i.file_size for i in z.infolist()}
        memory = json.loads(z.read("memory.json"))
    stack = next(v for v in memory["vmas"] if v["kind"] == "stack")
    pages = [int(stack["start"], 16) + (first + i) * PAGE
             for first, count, *_ in stack["pages"] for i in range(count)]
    return Panel(k, False, regs, changed(before, regs) if k > 0 else set(),
                 instruction_at(m), vmas, pages, parts, len(data))


def syscall_instants(path, *, root, args=()) -> list[tuple[int, str]]:
    """(k, strace line) of each system call of a run: k counts the syscall instruction, so
    panel(path, k) shows the guest just after the call."""
    m, _, _ = make_machine(path, args, root=root)
    instants = []
    m.system.strace = lambda line: instants.append((m.instructions, line))
    m.run()
    return instants


# Exercise 5's key, read off maps.c: the system call (by its number in the run) after which
# the program writes, before its next call, into how many pages that were all zero. An image
# stores only pages that are not all zero, and the heap's pages go into memory/data.bin with
# .data and .bss (snapshot/checkpoint.py's PART_OF_KIND), an anonymous mmap's into
# memory/mappings.bin.
IMAGE_KEY = {
    2: ("brk(NULL)", "memory/data.bin", 0),          # nothing written before brk(grow)
    3: ("brk(0x", "memory/data.bin", 1),             # end[-1] = 'x': the last new heap page
    4: ("mmap(NULL, 8192", "memory/mappings.bin", 1),  # page[0] = 'y': one of its two pages
}


def render(p: Panel) -> str:
    """The panel as HTML: registers (the changed ones lit), the memory map, the stack pages
    and the image's parts."""
    if p.ended:
        return f"<pre>the guest ended before instruction {p.k}</pre>"
    lit = "background:#ffd54f;font-weight:bold"
    regs = "".join(
        f"<span style='{lit if r in p.changed else ''}'>{r:>6} {v:#018x}</span>"
        + ("<br>" if i % 3 == 2 else "  ") for i, (r, v) in enumerate(p.registers.items()))
    vmas = "<br>".join(f"{s:#014x}-{e:#014x} {perms} {kind:<5} {html.escape(name)}"
                       for s, e, kind, perms, name in p.vmas)
    pages = ", ".join(f"{a:#x}" for a in p.stack_pages)
    parts = "<br>".join(f"{name:<22} {size:>9,} bytes" for name, size in p.parts.items())
    return (f"<pre style='font-size:11px'><b>after {p.k:,} instructions</b>; next: "
            f"{html.escape(p.next_instruction)}<br><br>{regs}<br><b>memory map</b><br>{vmas}"
            f"<br><br><b>stack pages an image stores</b> ({len(p.stack_pages)}): {pages}<br>"
            f"<br><b>an image here</b> ({p.image_size:,} bytes zipped)<br>{parts}</pre>")


def slider(path, *, root, last: int, value: int = 1):
    """An ipywidgets slider over k in [0, last] showing render(panel(path, k)); the widget,
    or None where ipywidgets is not installed (then show render(panel(...)) yourself)."""
    try:
        import ipywidgets as w
    except ImportError:
        return None
    from IPython.display import HTML, display
    out = w.Output()
    k = w.IntSlider(value=value, min=0, max=last, description="k",
                    continuous_update=False, layout=w.Layout(width="90%"))

    def show(change=None):
        out.clear_output(wait=True)
        with out:
            display(HTML(render(panel(path, k.value, root=root))))
    k.observe(show, names="value")
    show()
    return w.VBox([k, out])


# ------------------------------------------------------------------------------------------
# the memory map, as a table and to scale

def human(n):
    """1536 -> '1.5 KiB'"""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 100 else f"{n:.3g} {unit}"
        n /= 1024

def show_vmas(vmas):
    print(f"{'start':>14} {'end':>14} {'size':>9} perms kind   name")
    for v in vmas:
        print(f"{v.start:#14x} {v.end:#14x} {human(v.size):>9} {v.perms()}  {v.kind:<6} "
              f"{os.path.basename(v.name) if v.name.startswith('/') else v.name}")


COLORS = {"text": "#e15759", "data": "#4e79a7", "bss": "#b07aa1", "heap": "#59a14f",
          "stack": "#f28e2b", "mmap": "#76b7b2"}
WIDE = 0.14   # a region this share of its line wide or more gets its label inside

def clusters(vmas, max_gap=64 << 20):
    # Group the VMAs that lie within max_gap bytes of each other.
    groups = [[vmas[0]]]
    for v in vmas[1:]:
        if v.start - groups[-1][-1].end > max_gap:
            groups.append([v])
        else:
            groups[-1].append(v)
    return groups

def labels(group, span):
    # Runs of thin neighbouring VMAs of one kind and permissions share a label:
    # [start, end, kind, perms, how many VMAs]
    out = []
    for v in group:
        thin = v.size / span < WIDE
        last = out[-1] if out else None
        if thin and last and last[5] and last[1] == v.start and last[2:4] == [v.kind, v.perms()]:
            last[1] = v.end
            last[4] += 1
        else:
            out.append([v.start, v.end, v.kind, v.perms(), 1, thin])
    return out

def boundary_ticks(group, lo, hi, span):
    # x ticks at region boundaries, at least a tenth of the line apart
    ticks = []
    for x in sorted({v.start for v in group} | {v.end for v in group}):
        if not ticks or x - ticks[-1] >= 0.1 * span:
            ticks.append(x)
    if ticks[-1] != hi:
        ticks[-1] = hi if hi - ticks[-2] >= 0.1 * span else ticks[-1]
    return [t - lo for t in ticks]

def draw_memory_map(vmas, title, marks=None):
    # One line per cluster, to scale within the line; highest addresses at the top.
    groups = clusters(vmas)[::-1]
    fig, axes = plt.subplots(len(groups), 1, figsize=(11, 1.9 * len(groups) + 0.4),
                             squeeze=False)
    axes = axes[:, 0]
    for ax, group in zip(axes, groups):
        lo, hi = group[0].start, group[-1].end
        span = hi - lo
        for v in group:
            ax.broken_barh([(v.start - lo, v.size)], (0, 1), facecolors=COLORS[v.kind],
                           edgecolors="black", linewidth=0.6)
        above = []
        for start, end, kind, perms, n, _ in labels(group, span):
            text = f"{kind} {perms[:3]}\n{human(end - start)}" + (f", {n} VMAs" if n > 1 else "")
            if (end - start) / span >= WIDE:
                ax.text((start + end) / 2 - lo, 0.5, text, ha="center", va="center", fontsize=8)
            else:
                above.append(((start + end) / 2 - lo, text))
        x_min = float("-inf")   # labels of thin regions go above the bar, kept apart
        for x, text in above:
            x_text = max(x, x_min)
            x_min = x_text + 0.13 * span
            ax.annotate(text, xy=(x, 1), xytext=(x_text, 1.55), ha="center", va="bottom",
                        fontsize=7.5, arrowprops=dict(arrowstyle="-", lw=0.6))
        for name, value in (marks or {}).items():
            if lo <= value < hi:
                ax.annotate(name, xy=(value - lo, 0), xytext=(value - lo, -0.55), ha="center",
                            va="top", fontsize=8, color="black", fontweight="bold",
                            arrowprops=dict(arrowstyle="->", lw=1))
        ax.set_xlim(0, span)
        ax.set_ylim(-0.9 if marks else 0, 2.6 if above else 1.2)
        ax.set_yticks([])
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.spines["bottom"].set_position(("data", 0))
        ax.set_xticks(boundary_ticks(group, lo, hi, span))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _, lo=lo: f"{int(lo + x):#x}"))
        ax.tick_params(axis="x", labelsize=7.5)
        ax.set_title(f"{lo:#x} - {hi:#x}   ({human(span)})", fontsize=9, loc="left")
    fig.subplots_adjust(hspace=1.1, top=1 - 0.55 / fig.get_figheight())
    for upper, lower, g_up, g_low in zip(axes, axes[1:], groups, groups[1:]):
        gap = g_up[0].start - g_low[-1].end
        y = (upper.get_position().y0 + lower.get_position().y1) / 2
        fig.text(0.5, y, f"...  {human(gap)} not mapped  ...", ha="center", va="center",
                 fontsize=9, style="italic", color="dimgray")
    mapped = sum(v.size for v in vmas)
    fig.suptitle(f"{title}: {human(mapped)} in {len(vmas)} VMAs", fontsize=11)
    return fig
