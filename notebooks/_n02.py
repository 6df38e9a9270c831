"""Helpers for notebooks 02a (Antonov's save file) and 02b (Antonov's restart).

Everything here reads a real guest: a Machine's fd table (vsnap.fdtable's FdTable and OpenFile
objects), an image loaded by vsnap.snapshot.load, and the program file's ELF symbols
(pyelftools) and code (capstone). The notebooks call these functions so that no code cell is
long; tests/test_notebook_02.py calls them too.
"""
from __future__ import annotations

import atexit
import os
import pathlib
import shutil
import stat as S
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from html import escape

import capstone
from elftools.elf.elffile import ELFFile

import vsnap
from vsnap.abi import consts as C
from vsnap.build import build
from vsnap.cpu import GPRS
from vsnap.memory import PAGE

# ------------------------------------------------------------------------------------------
# the sandbox, the programs, and runs

def repo_root() -> pathlib.Path:
    """The repository root: walk up from the current directory until pyproject.toml."""
    here = pathlib.Path.cwd().resolve()
    while not (here / "pyproject.toml").exists():
        if here == here.parent:
            raise RuntimeError("start this notebook from inside the vsnap repository")
        here = here.parent
    return here


REPO = repo_root()
PROGRAMS = REPO / "programs"
COUNTER_ARGS = ["6", "counter.log"]      # six ticks, appended to counter.log


def sandbox() -> pathlib.Path:
    """A temporary folder for every run's sandbox, removed when the kernel stops."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="vsnap-notebook-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def capture():
    """A Console that collects the guest's stdout and stderr in two bytearrays."""
    out, err = bytearray(), bytearray()
    return vsnap.Console(read=lambda n: b"", write_out=out.extend, write_err=err.extend), out, err


def new_root(parent: pathlib.Path, name: str, program: str = "counter") -> pathlib.Path:
    """A fresh sandbox `parent/name` with programs/PROGRAM.c built into it as /PROGRAM."""
    root = parent / name
    root.mkdir()
    build(str(PROGRAMS / f"{program}.c"), str(root / program))
    return root


def start(root: pathlib.Path, args=COUNTER_ARGS, program: str = "counter", env=None):
    """A new process `program ARGS` in the sandbox `root`, its output captured: (m, out, err)."""
    console, out, err = capture()
    m = vsnap.Machine(str(root / program), list(args), root=str(root), cwd=str(root),
                      console=console, env=env)
    return m, out, err


def syscall_moments(root, args, program: str, env=None) -> list[tuple[int, str]]:
    """One whole run, watched: (instructions executed when the call returned, strace line) for
    every system call. vsnap is deterministic, so a fresh run stopped at one of these counts
    is at exactly that moment."""
    m, _, _ = start(root, args, program, env)
    calls: list[tuple[int, str]] = []
    m.system.strace = lambda line: calls.append((m.instructions, line))
    m.run()
    return calls


def stopped_after(root, args, program: str, call: str, nth: int = 1, env=None):
    """A fresh machine stopped right after the nth system call whose strace line starts with
    `call`: (m, out, err)."""
    k = [n for n, line in syscall_moments(root, args, program, env) if line.startswith(call)][nth - 1]
    m, out, err = start(root, args, program, env)
    assert m.advance(k) is None, "the guest ended before that call"
    return m, out, err


def reset(root: pathlib.Path, *names: str) -> None:
    """Remove files a run left in `root`, so that the next run starts as the first did."""
    for name in names:
        (root / name).unlink(missing_ok=True)


def vsnap_cli(cwd, *args) -> subprocess.CompletedProcess:
    """`vsnap ARGS` at the shell, printed as a terminal shows it (file names shortened)."""
    p = subprocess.run([sys.executable, "-m", "vsnap", *map(str, args)], capture_output=True,
                       text=True, cwd=cwd)
    print(f"$ vsnap {' '.join(os.path.basename(str(a)) for a in args)}   (exit status {p.returncode})")
    print(p.stderr + p.stdout)      # (stderr only has warnings and refusals, said first)
    return p

# ------------------------------------------------------------------------------------------
# tables and numbers

def human(n) -> str:
    """1536 -> '1.5 KiB'"""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 100 else f"{n:.3g} {unit}"
        n /= 1024


def table(headers, rows):
    """An HTML table (there is no pandas here); cells are shown as text."""
    from IPython.display import HTML
    head = "".join(f"<th style='text-align:left'>{escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'><code>{escape(str(c))}</code></td>"
                                    for c in row) + "</tr>" for row in rows)
    return HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


FLAG_NAMES = [("O_CREAT", C.O_CREAT), ("O_EXCL", C.O_EXCL), ("O_TRUNC", C.O_TRUNC),
              ("O_APPEND", C.O_APPEND), ("O_NONBLOCK", C.O_NONBLOCK),
              ("O_LARGEFILE", C.O_LARGEFILE), ("O_DIRECTORY", C.O_DIRECTORY),
              ("O_CLOEXEC", C.O_CLOEXEC)]


def oflags(v: int) -> str:
    """0o102001 -> 'O_WRONLY|O_APPEND|O_LARGEFILE'"""
    access = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR"}[v & 3]
    return "|".join([access] + [name for name, bit in FLAG_NAMES if v & bit])


def identity(d: dict) -> str:
    """What restore will check of a saved file (its `identity` record), in words."""
    i = d.get("identity")
    if not i:
        return "-"
    return f"{i['size']} bytes, mtime {i['mtime_ns']}, sha256 {i['sha256'][:12]}..."


def fd_rows(img) -> list[tuple]:
    """fds.json as table rows: fd, type, name, flags, offset, what restore will check."""
    rows = []
    for e in img.fds:
        d = img.descriptions[e["description"]]
        rows.append((e["fd"], d["kind"], d["path"], oflags(d["flags"]), d["offset"], identity(d)))
    return rows


def live_fd_rows(m) -> list[tuple]:
    """A running machine's fd table as rows: fd, type, name, flags, offset, host descriptor."""
    return [(fd, e.file.kind, e.file.path, oflags(e.file.flags), e.file.offset,
             e.file.host_fd if e.file.host_fd is not None else "-")
            for fd, e in sorted(m.process.fds.fds.items())]

# ------------------------------------------------------------------------------------------
# fd -> open file description -> file, from a Machine's FdTable

@dataclass
class FdGraph:
    """The three levels of a process's open files, read from vsnap's objects.

    fds:          fd -> (index of its description, close-on-exec bit)
    descriptions: one per OpenFile object (dup shares one), in order of its lowest fd:
                  (label, offset, flags, index of its file)
    files:        one per file (host device and inode; each console stream its own):
                  (label, size or None, deleted)
    """
    fds: dict
    descriptions: list
    files: list


def fd_graph(m) -> FdGraph:
    table = m.process.fds
    descs = table.descriptions()            # each OpenFile once (the `is` of dup's sharing)
    files, keys, out_desc = [], [], []
    for f in descs:
        if f.host_fd is not None:
            st = os.fstat(f.host_fd)
            key = (st.st_dev, st.st_ino)
            label, size, gone = f.path, st.st_size, st.st_nlink == 0
        else:
            key, label, size, gone = ("stream", f.stream or f.path), f.path, None, False
        if key not in keys:
            keys.append(key)
            files.append((label, size, gone))
        out_desc.append((f.path, f.offset, f.flags, keys.index(key)))
    fds = {fd: (next(i for i, d in enumerate(descs) if d is e.file), e.cloexec)
           for fd, e in sorted(table.fds.items())}
    return FdGraph(fds, out_desc, files)


def draw_fd_graph(g: FdGraph, ax, title: str = "") -> None:
    """Three columns: fds, open file descriptions, files; an arrow for each reference."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    def box(x, y, w, text, colour):
        ax.add_patch(FancyBboxPatch((x, y - 0.35), w, 0.7, boxstyle="round,pad=0.05",
                                    facecolor=colour, edgecolor="#555555"))
        ax.text(x + w / 2, y, text, ha="center", va="center", fontsize=8)

    def arrow(x0, y0, x1, y1):
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="->", mutation_scale=10,
                                     lw=0.9, color="#333333"))

    n = max(len(g.fds), 1)
    fy = {fd: n - i for i, fd in enumerate(g.fds)}
    dy = {i: sum(fy[fd] for fd, (d, _) in g.fds.items() if d == i)
          / sum(1 for d, _ in g.fds.values() if d == i) for i in range(len(g.descriptions))}
    ly = {j: sum(dy[i] for i, d in enumerate(g.descriptions) if d[3] == j)
          / sum(1 for d in g.descriptions if d[3] == j) for j in range(len(g.files))}
    for fd, (d, cloexec) in g.fds.items():
        box(0, fy[fd], 1.2, f"fd {fd}" + ("  cloexec" if cloexec else ""),
            "#fde0c5" if cloexec else "#ffffff")
        arrow(1.3, fy[fd], 2.4, dy[d])
    for i, (path, offset, flags, f) in enumerate(g.descriptions):
        box(2.5, dy[i], 2.6, f"{path}  offset {offset}\n{oflags(flags)}", "#dbe9f6")
        arrow(5.2, dy[i], 6.3, ly[f])
    for j, (label, size, gone) in enumerate(g.files):
        text = label if size is None else f"{label}: {size} bytes" + ("\n(deleted: no name)" if gone else "")
        box(6.4, ly[j], 2.4, text, "#f4a6a6" if gone else "#e5f5e0")
    for x, head in ((0.6, "fd table\n(per process)"), (3.8, "open file descriptions\n(open() makes one; dup shares it)"),
                    (7.6, "files\n(inodes)")):
        ax.text(x, n + 1.0, head, ha="center", va="center", fontsize=9, fontweight="bold")
    ax.set_xlim(-0.2, 9.0)
    ax.set_ylim(0.3, n + 1.6)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)


def sharing(g: FdGraph) -> dict:
    """fd -> the set of fds on the same description (itself included)."""
    return {fd: {o for o, (e, _) in g.fds.items() if e == d} for fd, (d, _) in g.fds.items()}

# ------------------------------------------------------------------------------------------
# the program file: sections, symbols, code

class Program:
    """A static program's ELF: allocated sections, symbols, and its code bytes."""

    def __init__(self, path):
        self.path = str(path)
        with open(self.path, "rb") as f:
            elf = ELFFile(f)
            self.sections = {s.name: (s["sh_addr"], s["sh_size"]) for s in elf.iter_sections()
                             if s["sh_flags"] & 2}          # SHF_ALLOC: they occupy memory
            self.symbols, source = [], None
            for s in elf.get_section_by_name(".symtab").iter_symbols():
                if s["st_info"]["type"] == "STT_FILE":      # local symbols follow their file
                    source = s.name
                elif s["st_info"]["type"] in ("STT_OBJECT", "STT_FUNC") and s["st_value"]:
                    local = s["st_info"]["bind"] == "STB_LOCAL"
                    self.symbols.append((s.name, s["st_value"], s["st_size"],
                                         s["st_info"]["type"], source if local else "(global)"))
            self.loads = [(s["p_vaddr"], s["p_memsz"], s["p_offset"], s["p_filesz"])
                          for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        self.data = pathlib.Path(self.path).read_bytes()
        text = self.sections[".text"]
        self.etext, self.end = text[0] + text[1], sum(self.sections[".bss"])

    def address(self, name: str) -> int:
        return next(a for n, a, *_ in self.symbols if n == name)

    def function(self, addr: int):
        """(name, start, size) of the function around addr, or None."""
        return next(((n, a, s) for n, a, s, kind, _ in self.symbols
                     if kind == "STT_FUNC" and a <= addr < a + s), None)

    def function_at(self, addr: int) -> str | None:
        """'main+0x12b' for an address in the text, or None."""
        f = self.function(addr)
        return f"{f[0]}+{addr - f[1]:#x}" if f else None

    def code(self, addr: int, n: int) -> bytes:
        """n bytes of the program's memory image at addr, from the file."""
        for vaddr, memsz, offset, filesz in self.loads:
            if vaddr <= addr < vaddr + filesz:
                return self.data[offset + addr - vaddr:offset + addr - vaddr + n]
        return b""

    def is_return_address(self, value: int) -> bool:
        """True if `value` is in the text just after a call instruction: where a `ret` goes."""
        if not self.sections[".text"][0] < value <= self.etext:
            return False
        cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        for back in (5, 6, 2, 3, 7, 4):     # call rel32, call [rip+x], call reg/[reg+d]...
            insn = next(cs.disasm(self.code(value - back, back), value - back), None)
            if insn is not None and insn.size == back and insn.mnemonic == "call":
                return True
        return False

    def return_site(self, ret: int) -> str:
        """'main+0x2d': a return address named within the function of its call (a call that
        ends a function returns to the first byte of the next one)."""
        f = self.function(ret - 1) or self.nearest(ret - 1)
        return f"{f[0]}+{ret - f[1]:#x}" if f else f"{ret:#x}"

    def nearest(self, addr: int):
        """The function symbol at or below addr, for code whose symbol has no size (_start,
        written in assembly)."""
        below = [(a, n, s) for n, a, s, kind, _ in self.symbols if kind == "STT_FUNC" and a <= addr]
        return (max(below)[1], max(below)[0], 0) if below else None

    def caller_of(self, ret: int) -> str:
        """The function a return address goes back into (named from the call: ret - 1)."""
        f = self.function(ret - 1) or self.nearest(ret - 1)
        return f[0] if f else f"{ret:#x}"

# ------------------------------------------------------------------------------------------
# the image's memory

def page_set(v: dict) -> set:
    """Indices of the pages of VMA `v` that the image stores (all other pages are all zeros)."""
    return {first + i for first, count, _ in v["pages"] for i in range(count)}


def vma(img, kind: str) -> dict:
    return next(v for v in img.vmas if v["kind"] == kind)


def read_saved(img, addr: int, n: int) -> bytes:
    """n bytes at guest address addr, as the image holds them: find the VMA, then the page run
    that holds each page; a page in no run is all zeros."""
    out = bytearray()
    while len(out) < n:
        a = addr + len(out)
        v = next(v for v in img.vmas if v["start"] <= a < v["end"])
        if v["source"] != "image":
            raise ValueError(f"{a:#x} is in {v['kind']}: not in the image, re-read from the program")
        page, within = divmod(a - v["start"], PAGE)
        take = min(n - len(out), PAGE - within)
        chunk = bytes(take)
        for first, count, offset in v["pages"]:
            if first <= page < first + count:
                at = offset + (page - first) * PAGE + within
                chunk = img.blobs[v["part"]][at:at + take]
        out += chunk
    return bytes(out)


def word(img, addr: int) -> int:
    return int.from_bytes(read_saved(img, addr, 8), "little")


def region_rows(img, prog: Program) -> list[tuple]:
    """One row per region: range, perms, kind, size, sections in it, what the image keeps."""
    rows = []
    for v in img.vmas:
        n = (v["end"] - v["start"]) // PAGE
        kept = "re-read from the program" if v["source"] == "program" else \
            f"{len(page_set(v))} of {n} pages -> {v['part']}"
        perms = "".join(c if v["prot"] & b else "-" for c, b in (("r", 1), ("w", 2), ("x", 4)))
        rows.append((f"{v['start']:#x}-{v['end']:#x}", perms, v["kind"],
                     human(v["end"] - v["start"]), sections_in(prog, v) or v["name"], kept))
    return rows


def sections_in(prog: Program, v: dict) -> str:
    return " ".join(name for name, (addr, size) in sorted(prog.sections.items(), key=lambda kv: kv[1])
                    if size and v["start"] <= addr < v["end"])


def nonzero_pages(m, start: int, end: int) -> int:
    """How many pages of [start, end) in a running machine's memory are not all zeros."""
    return sum(1 for a in range(start, end, PAGE) if any(m.mem.read(a, PAGE)))

# ------------------------------------------------------------------------------------------
# the stack: frames from the saved rbp chain, and return addresses left below rsp

@dataclass
class Frame:
    function: str     # who owns the frame
    lo: int           # its lowest address (rsp for the innermost)
    hi: int           # just above its return address
    returns_to: str   # where its `ret` goes, 'function+off'


def frames(img, prog: Program) -> list[Frame]:
    """The call frames from rsp up, found by walking the saved rbp chain: at rbp a function
    with a frame pointer keeps its caller's rbp, at rbp+8 the return address into its caller.
    The innermost frame is the function around rip; the chain ends at a saved rbp of 0 (the
    start-up code clears rbp, as the x86-64 ABI asks)."""
    stack = vma(img, "stack")
    r = img.registers
    out, lo, rbp, owner = [], r["rsp"], r["rbp"], prog.function(r["rip"])[0]
    while rbp and stack["start"] <= rbp < stack["end"] - 16 and rbp >= lo:
        ret = word(img, rbp + 8)
        out.append(Frame(owner, lo, rbp + 16, prog.return_site(ret)))
        owner, lo, rbp = prog.caller_of(ret), rbp + 16, word(img, rbp)
    return out


def dead_returns(img, prog: Program) -> list[tuple[int, str]]:
    """(address, function) for every word below rsp, in the stored pages, that holds a return
    address: the remains of frames of calls that have already returned."""
    stack, rsp = vma(img, "stack"), img.registers["rsp"]
    found = []
    for p in sorted(page_set(stack)):
        base = stack["start"] + p * PAGE
        for a in range(base, min(base + PAGE, rsp & ~7), 8):
            w = word(img, a)
            if prog.is_return_address(w):
                found.append((a, prog.caller_of(w)))
    return found


AT_NAMES = None


def _at_names() -> dict:
    global AT_NAMES
    if AT_NAMES is None:
        import vsnap.loader as loader
        AT_NAMES = {v: k for k, v in vars(loader).items() if k.startswith("AT_") and isinstance(v, int)}
    return AT_NAMES


def initial_stack(img, argc: int) -> dict:
    """Where execve's part of the stack is: {'argc': addr, 'envp': addr, 'auxv': addr,
    'auxv_end': addr (after AT_NULL), 'top': end of the stack}. Found as argc followed by a
    pointer to argv[0]'s string (see notebook 1)."""
    stack = vma(img, "stack")
    lo, hi = img.registers["rsp"], stack["end"]
    a = next(a for a in range(lo & ~7, hi - 8 * (argc + 2), 8)
             if word(img, a) == argc and word(img, a + 8 * (argc + 1)) == 0
             and all(lo <= word(img, a + 8 * (i + 1)) < hi for i in range(argc)))
    out = {"argc": a, "envp": a + 8 * (argc + 2)}
    a = out["envp"]
    while word(img, a):
        a += 8
    out["auxv"] = a = a + 8
    while word(img, a):
        a += 16
    out["auxv_end"], out["top"] = a + 16, hi
    return out


def draw_stack(img, prog: Program, argc: int, ax_live, ax_dead) -> None:
    """Left: the stack from rsp to the top, to scale, one box per frame and per part of what
    execve left; right: the return addresses found below rsp, where they are."""
    from matplotlib.patches import Rectangle
    top, rsp = vma(img, "stack")["end"], img.registers["rsp"]
    init = initial_stack(img, argc)
    fr = frames(img, prog)
    parts = [(f.lo, f.hi, f"{f.function}'s frame\n(returns to {f.returns_to})", "#f28e2b") for f in fr]
    if fr and fr[-1].hi < init["argc"]:
        parts.append((fr[-1].hi, init["argc"], "start-up code's", "#fbd3a8"))
    parts += [(init["argc"], init["envp"], "argc, argv[]", "#9ecae1"),
              (init["envp"], init["auxv"], "envp[]", "#9ecae1"),
              (init["auxv"], init["auxv_end"], "auxv (key, value)", "#c6dbef"),
              (init["auxv_end"], top, "random bytes, argument and\nenvironment strings", "#deebf7")]
    for lo, hi, label, colour in parts:
        ax_live.add_patch(Rectangle((0, lo - top), 1, hi - lo, facecolor=colour, edgecolor="black", lw=0.6))
        ax_live.text(1.05, (lo + hi) / 2 - top, f"{label}  [{hi - lo} B]", va="center", fontsize=8)
    ax_live.annotate(f"rsp {rsp:#x}", xy=(0, rsp - top), xytext=(-0.25, rsp - top + 12), va="center",
                     ha="right", fontsize=8, arrowprops=dict(arrowstyle="->"))
    ax_live.set_xlim(-1.5, 3.4)
    ax_live.set_ylim(rsp - top - 24, 8)
    ax_live.set_xticks([])
    ax_live.set_ylabel("bytes below the top of the stack")
    ax_live.set_title(f"in use: rsp to the top ({top - rsp} bytes, to scale)", fontsize=10)
    dead = sorted(dead_returns(img, prog), reverse=True)     # nearest rsp first
    lowest = min((a for a, _ in dead), default=rsp - 64) - rsp
    for i, (a, name) in enumerate(dead):                      # labels spread evenly, each
        y = lowest * (i + 0.5) / len(dead)                    # joined to its word's place
        ax_dead.plot([0, 0.6], [a - rsp] * 2, color="#e15759", lw=1.2)
        ax_dead.plot([0.6, 1.1], [a - rsp, y], color="#999999", lw=0.5)
        ax_dead.text(1.15, y, f"{name}  (rsp - {rsp - a})", va="center", fontsize=7)
    ax_dead.axhline(0, color="black", lw=1)
    ax_dead.text(0.3, -lowest * 0.02, "rsp", ha="center", va="bottom", fontsize=8)
    ax_dead.set_xlim(-0.1, 3.2)
    ax_dead.set_ylim(lowest * 1.04, -lowest * 0.06)
    ax_dead.set_xticks([])
    ax_dead.set_ylabel("bytes from rsp")
    ax_dead.set_title(f"below rsp: {len(dead)} return addresses\nof calls that have returned", fontsize=10)


# ------------------------------------------------------------------------------------------
# counter.c's arithmetic, and the registers

def busy(work: list, rnd: int) -> int:
    """counter.c's busy(), in Python: 32-bit unsigned words, a 64-bit sum."""
    s = 0
    for k in range(100_000):
        w = (work[k % 1024] * 1103515245 + 12345 + rnd) & 0xFFFFFFFF
        work[k % 1024] = w
        s += w >> 16
    return s


def totals(rounds: int) -> list[int]:
    """`total` at the start and after each round of counter.c (it starts at 7)."""
    words, out = [0] * 1024, [7]
    for rnd in range(1, rounds + 1):
        out.append((out[-1] + busy(words, rnd)) & (2**64 - 1))
    return out


JMP_BUF = ("rbx", "rbp", "r12", "r13", "r14", "r15", "rsp", "rip")
CLOBBERED_BY_CALL = {"rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "rflags"}


def full_name(reg: str) -> str:
    """'ecx' -> 'rcx', 'r13d' -> 'r13', 'sil' -> 'rsi', 'rflags' -> 'rflags'"""
    if reg[0] == "r" and reg[1:2].isdigit():
        return reg.rstrip("dwb")
    for base in ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp"):
        if reg in (base, "e" + base, "r" + base, base[0] + "l", base[0] + "h", base + "l"):
            return "r" + base
    return reg


def disassembly(prog: Program, rip: int):
    """The function around rip, decoded with capstone (details on): (name, insns, index of
    the instruction at rip)."""
    name, start, size = prog.function(rip)
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    cs.detail = True
    insns = list(cs.disasm(prog.code(start, size), start))
    return name, insns, next(i for i, insn in enumerate(insns) if insn.address == rip)


def reads_of(insn) -> list[str]:
    return sorted({full_name(insn.reg_name(x)) for x in insn.regs_access()[0]})


def listing(insns, at: int, before: int = 12, after: int = 6) -> None:
    """Print the instructions around `at` (from a loop's top if `at` jumps back to it)."""
    first = at - before
    insn = insns[at]
    if insn.group(capstone.CS_GRP_JUMP) and insn.operands[0].type == capstone.x86.X86_OP_IMM:
        first = next((i for i, x in enumerate(insns) if x.address == insn.operands[0].imm), first)
    for i, x in enumerate(insns[max(0, min(first, at - before)):at + after], max(0, min(first, at - before))):
        mark = "=> " if i == at else "   "
        print(f"{mark}{x.address:#x}  {x.mnemonic:<6} {x.op_str:<34} reads {', '.join(reads_of(x))}")


def live_at(insns, start: int) -> set:
    """The registers read before they are written on some path from insns[start] (both ways
    at each conditional jump); a call counts as writing what the ABI lets it clobber."""
    index_of = {insn.address: i for i, insn in enumerate(insns)}
    live, seen, todo = set(), set(), [(start, frozenset())]
    while todo:
        i, written = todo.pop()
        if i is None or i >= len(insns) or (i, written) in seen:
            continue
        seen.add((i, written))
        insn = insns[i]
        reads, writes = insn.regs_access()
        live |= {full_name(insn.reg_name(x)) for x in reads} - written
        written = written | {full_name(insn.reg_name(x)) for x in writes}
        if insn.group(capstone.CS_GRP_CALL):
            written = written | CLOBBERED_BY_CALL
        if insn.group(capstone.CS_GRP_RET):
            continue
        if insn.group(capstone.CS_GRP_JUMP):
            op = insn.operands[0]
            if op.type == capstone.x86.X86_OP_IMM:
                todo.append((index_of.get(op.imm), written))
            if insn.mnemonic == "jmp":
                continue
        todo.append((i + 1, written))
    return live - {"rip"}

# ------------------------------------------------------------------------------------------
# restore experiments (02b)

def spoilers() -> dict:
    """Ways to change counter.log after the save, each a function of its path."""
    def copied_back(p):
        shutil.copy2(p, p.with_suffix(".copy"))      # same bytes, same mtime...
        p.unlink()
        os.rename(p.with_suffix(".copy"), p)         # ...but another inode
    return {
        "untouched": lambda p: None,
        "a line appended": lambda p: p.write_bytes(p.read_bytes() + b"tick 99\n"),
        "same size, other bytes": lambda p: p.write_bytes(p.read_bytes().replace(b"tick", b"TICK")),
        "only touched (new time)": lambda p: os.utime(p),
        "replaced by a copy (cp -p)": copied_back,
        "deleted": lambda p: p.unlink(),
    }


def try_restore(image, at_save: pathlib.Path, where: pathlib.Path, spoil, program="counter"):
    """Copy the sandbox as it was at the save to `where`, spoil its counter.log, and restore
    the image there: None if it restores, else restore's one-line reason."""
    from vsnap.snapshot import FileChanged, restore
    shutil.copytree(at_save, where)
    spoil(where / "counter.log")
    try:
        m, _ = restore(str(image), root=str(where), program=str(where / program),
                       console=capture()[0])
    except FileChanged as e:
        return str(e).split(": ", 2)[2]
    m.close()
    return None


def is_ghost(rec: dict) -> bool:
    return rec.get("name") is None and "ghost" in rec


def mode_of(path) -> str:
    return S.filemode(os.stat(path).st_mode)

# ------------------------------------------------------------------------------------------
# pictures of the image's pages

def draw_stack_pages(img, ax) -> None:
    """Every page of the stack VMA as a grid, read like text (the top of the stack first):
    stored pages coloured, the page with rsp framed."""
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch, Rectangle
    stack, rsp = vma(img, "stack"), img.registers["rsp"]
    npages, stored = (stack["end"] - stack["start"]) // PAGE, page_set(stack)
    cols = 16
    grid = np.zeros((-(-npages // cols), cols))
    for p in stored:
        q = npages - 1 - p
        grid[q // cols, q % cols] = 1
    ax.imshow(grid, cmap=ListedColormap(["#eeeeee", "#f28e2b"]), vmin=0, vmax=1,
              interpolation="nearest", aspect="auto")
    q = npages - 1 - (rsp - stack["start"]) // PAGE
    ax.add_patch(Rectangle((q % cols - 0.5, q // cols - 0.5), 1, 1, fill=False, lw=1.5))
    ax.annotate("the page with rsp", xy=(q % cols, q // cols), xytext=(q % cols + 4, q // cols + 1.2),
                arrowprops=dict(arrowstyle="->"), fontsize=9)
    below = [p for p in stored if p < (rsp - stack["start"]) // PAGE]
    if below:
        q = npages - 1 - max(below)
        ax.annotate("below rsp, and not all zeros", xy=(q % cols, q // cols),
                    xytext=(q % cols + 4, q // cols + 0.8), arrowprops=dict(arrowstyle="->"), fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([0, grid.shape[0] - 1])
    ax.set_yticklabels([f"{stack['end']:#x} (top)", f"{stack['start']:#x}"], fontsize=8)
    ax.set_title(f"the whole stack: {npages} pages of 4 KiB, {len(stored)} stored", fontsize=10)
    ax.legend(handles=[Patch(color="#f28e2b", label="stored in stack.bin"),
                       Patch(color="#eeeeee", label="all zeros: not stored")],
              loc="lower right", fontsize=8)


def draw_regions(img, prog: Program, ax, marks: dict) -> None:
    """One row per region below the stack, one cell per page (not to address scale): stored,
    all zeros, or text re-read from the program; `marks` (name -> address) annotated."""
    from matplotlib.patches import Patch, Rectangle
    lower = [v for v in img.vmas if v["kind"] != "stack"]
    H = 1.5   # rows are this far apart
    for i, v in enumerate(reversed(lower)):         # highest addresses at the top
        row, n = H * i, (v["end"] - v["start"]) // PAGE
        kept = page_set(v) if v["source"] == "image" else set()
        for p in range(n):
            colour = "#e15759" if v["source"] == "program" else "#4e79a7" if p in kept else "#eeeeee"
            ax.add_patch(Rectangle((p, row), 0.92, 0.7, facecolor=colour,
                                   hatch="//" if v["source"] == "program" else None,
                                   edgecolor="white" if v["source"] == "program" else "none"))
        ax.text(-0.4, row + 0.35, f"{v['start']:#x} {v['kind']} {sections_in(prog, v) or v['name'] or ''}",
                ha="right", va="center", fontsize=8)
        inside = [(name, a) for name, a in marks.items() if v["start"] <= a < v["end"]]
        for j, (name, a) in enumerate(inside):
            x = (a - v["start"]) / PAGE
            ax.annotate(f"{name} ({a:#x})", xy=(x, row + 0.7), xytext=(x + 1.3 + 4 * j, row + 1.05),
                        fontsize=8, arrowprops=dict(arrowstyle="->", lw=0.8))
    ax.set_xlim(-0.2, max((v["end"] - v["start"]) // PAGE for v in lower) + 4)
    ax.set_ylim(-0.2, H * len(lower))
    ax.axis("off")
    ax.legend(handles=[Patch(color="#4e79a7", label="stored in the image"),
                       Patch(color="#eeeeee", label="all zeros: not stored"),
                       Patch(facecolor="#e15759", hatch="//", label="text: re-read from the program")],
              loc="upper right", fontsize=8, ncol=3, bbox_to_anchor=(1, -0.02))
    ax.set_title("Antonov's data segment, and more: the regions below the stack (one cell = one 4 KiB page)",
                 fontsize=10)


def string_at(img, addr: int, limit: int = 40) -> str | None:
    """The printable NUL-terminated string at addr in the image, if there is one."""
    try:
        raw = read_saved(img, addr, limit)
    except (ValueError, StopIteration):
        return None
    s = raw.split(b"\0")[0]
    return s.decode() if s and b"\0" in raw and all(32 <= c < 127 for c in s) else None


def describe(img, addr: int, size: int) -> str:
    """A global variable's saved value in words; a pointer into the image is followed."""
    raw = read_saved(img, addr, size)
    if not any(raw):
        return "all zeros"
    value = int.from_bytes(raw[:8], "little")
    if size > 8:
        return f"first 8 bytes {raw[:8].hex(' ')}"
    if size != 8:
        return f"{value:#x}"
    for v in img.vmas:
        if v["start"] <= value < v["end"] and v["source"] == "image":
            s = string_at(img, value)
            return f"{value:#x} -> {v['kind']}" + (f" {s!r}" if s else "")
    return f"{value:#x} = {value:,}"


def globals_rows(img, prog: Program) -> list[tuple]:
    """Every variable in .data and .bss: names, source file, address, section, size, value."""
    by_address = {}
    for name, addr, size, kind, src in prog.symbols:
        if kind == "STT_OBJECT" and prog.sections[".data"][0] <= addr < prog.end:
            by_address.setdefault((addr, size, src), []).append(name)
    return [(" / ".join(names), src, f"{addr:#x}",
             ".data" if addr < prog.sections[".bss"][0] else ".bss", size, describe(img, addr, size))
            for (addr, size, src), names in sorted(by_address.items())]


def round_moments(root) -> list[int]:
    """counter's instruction count right after each `tick i` line is written, and after the
    close that follows the last: round i's busy loop runs between the ith and the next."""
    calls = syscall_moments(root, COUNTER_ARGS, "counter")
    return [n for n, line in calls if line.startswith(('write(3, "tick', "close(3)"))]


def in_round(root, r: int) -> int:
    """An instruction count in the middle of round r (its busy loop is most of it), found by
    a whole run in `root`; the counter.log that run wrote is removed again."""
    k = round_moments(root)
    reset(root, "counter.log")
    return (k[r - 1] + k[r]) // 2
