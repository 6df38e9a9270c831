"""Helpers of notebooks 03a and 03b (03b has more in notebooks/_n03b.py), "the trick inside the guest" (programs/antonov/).

What the notebooks need and a student need not read: building the demo, starting it in a
sandbox, cutting functions out of the C source, parsing the save file that antonov.c writes,
finding the signal frame in its stack, the tables and the pictures, and the measurements the
exercises check (notebooks/_lab.py). Everything is a function, so tests/test_notebook_03.py
can call it. Importing this module builds the demo (cached) and reads its symbols.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import pathlib
import re
import shutil
import struct
import tempfile
import textwrap
from html import escape

import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle
from elftools.elf.elffile import ELFFile
from IPython.display import HTML

import vsnap
from vsnap.build import build

REPO = pathlib.Path(__file__).resolve().parent.parent
HERE = REPO / "programs" / "antonov"

# Every run gets its own sandbox directory (the guest's "/") inside this temporary folder.
SANDBOX = pathlib.Path(tempfile.mkdtemp(prefix="vsnap-notebook-"))
atexit.register(shutil.rmtree, SANDBOX, ignore_errors=True)   # removed when the kernel stops

# demo.c #includes antonov.c, so the build cache (keyed by demo.c's text) would not see an
# edit to the library: a harmless -D flag made from the library's hash changes the key.
_digest = hashlib.sha256(b"".join((HERE / n).read_bytes() for n in ("antonov.c", "antonov.h")))
DEMO = build(str(HERE / "demo.c"), extra_flags=(f"-DANTONOV_LIB={_digest.hexdigest()[:16]}",))
MAX_STEPS = 200                        # demo.c's MAX_STEPS: its heap word is MAX_STEPS + 1 bytes
SIGUSR1 = 10

# The program's symbols (it is static and built with -g), to put names on addresses.
with open(DEMO, "rb") as _f:
    _elf = ELFFile(_f)
    SECTIONS = {s.name: (s["sh_addr"], s["sh_size"]) for s in _elf.iter_sections()
                if s["sh_flags"] & 2}
    SYMBOLS = [(s.name, s["st_value"], s["st_size"], s["st_info"]["type"])
               for s in _elf.get_section_by_name(".symtab").iter_symbols()
               if s["st_value"] and s["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT")]
SYM = {name: addr for name, addr, _, _ in SYMBOLS}
TEXT = (SECTIONS[".text"][0], SECTIONS[".text"][0] + SECTIONS[".text"][1])


# ---- small helpers -----------------------------------------------------------------------

def human(n):
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 100 else f"{n:.3g} {unit}"
        n /= 1024


def _cell(c):
    return c.data if isinstance(c, HTML) else f"<code>{escape(str(c))}</code>"


def table(headers, rows):
    """An HTML table (there is no pandas here); HTML() cells go in as they are."""
    style = "text-align:left; vertical-align:top"
    head = "".join(f"<th style='{style}'>{escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td style='{style}'>{_cell(c)}</td>" for c in row)
                   + "</tr>" for row in rows)
    return HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def capture():
    """A Console that collects the guest's stdout and stderr in two bytearrays."""
    out, err = bytearray(), bytearray()
    return vsnap.Console(read=lambda n: b"", write_out=out.extend, write_err=err.extend), out, err


def new_root(name, program=None):
    """A fresh sandbox with the demo in it: the guest sees it as /demo."""
    root = SANDBOX / name
    root.mkdir()
    shutil.copyfile(program or DEMO, root / "demo")
    os.chmod(root / "demo", 0o755)
    return root


def start(root, args):
    """A new process `demo ARGS...` in the sandbox `root`: (machine, stdout, stderr)."""
    console, out, err = capture()
    m = vsnap.Machine(str(root / "demo"), args, root=str(root), cwd=str(root), console=console)
    return m, out, err


def function_at(addr):
    """'main+0x12b' for an address in the text (assembly functions have no size: the nearest
    function below), else None."""
    if not TEXT[0] <= addr < TEXT[1]:
        return None
    name, at = max(((n, a) for n, a, _, kind in SYMBOLS if kind == "STT_FUNC" and a <= addr),
                   key=lambda na: na[1])
    return f"{name}+{addr - at:#x}"


def object_at(addr):
    """The global variable at addr, or None."""
    return next((n for n, a, size, kind in SYMBOLS
                 if kind == "STT_OBJECT" and a <= addr < a + max(size, 1)), None)


def explain(value, h):
    """What a register value points at: a function, a variable, or a place in the stack."""
    f, o = function_at(value), object_at(value)
    if f or o:
        return f or o
    if h["stack_lo"] <= value < h["stack_hi"]:
        return f"stack, {h['stack_hi'] - value} bytes below the top"
    return ""


# ---- runs ------------------------------------------------------------------------------------

def run_demo(name, args, trace=False):
    """Run `demo ARGS` to its end in a new sandbox `name`: a dict with the root, the result,
    stdout and stderr, and with trace=True the system calls as (instructions so far, line)."""
    root = new_root(name)
    m, out, err = start(root, args)
    strace = []
    if trace:
        m.system.strace = lambda line: strace.append((m.cpu.instructions, line))
    result = m.run()
    return {"root": root, "result": result, "out": bytes(out), "err": bytes(err),
            "strace": strace, "machine": m}


def save_and_restore(name, n, k, change=None):
    """demo -n N -c K, then the same command again in the same sandbox (the restore), with
    `change(save_bytes) -> save_bytes` applied to the save file between the two runs.
    Returns (stdout of both runs joined, exit status of the second, the journal)."""
    args = ["-n", str(n), "-c", str(k)]
    first = run_demo(name, args)
    save = first["root"] / "demo.save"
    if change is not None:
        save.write_bytes(change(save.read_bytes()))
    m, out, err = start(first["root"], args)
    result = m.run()
    return first["out"] + bytes(out), result.status, (first["root"] / "demo.journal").read_bytes()


# ---- the C source --------------------------------------------------------------------------

SOURCES = {name: (HERE / name).read_text() for name in ("antonov.c", "demo.c")}


def blank_comments_and_strings(text):
    """The same text with comments and the insides of string and character literals replaced
    by spaces (newlines kept), so that offsets and line numbers stay the same."""
    out, i, n = list(text), 0, len(text)
    while i < n:
        if text.startswith("/*", i):
            a = i
            i = b = text.index("*/", i + 2) + 2
        elif text.startswith("//", i):
            a = i
            i = b = text.find("\n", i) if "\n" in text[i:] else n
        elif text[i] in "\"'":
            quote, a, b = text[i], i + 1, i + 1
            while text[b] != quote:
                b += 2 if text[b] == "\\" else 1
            i = b + 1                        # the quotes themselves stay
        else:
            i += 1
            continue
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "
    return "".join(out)


def c_function(file, name):
    """(first line number, lines) of the definition of `name` in one of the source files:
    the line where `NAME(` starts a definition at the left margin, to the matching brace."""
    text = SOURCES[file]
    code = blank_comments_and_strings(text)
    for m in re.finditer(rf"^[A-Za-z_].*\b{name}\s*\(", code, re.M):
        brace, semi = code.find("{", m.end()), code.find(";", m.end())
        if brace < 0 or 0 <= semi < brace:
            continue                          # a declaration or a call, not the definition
        depth, i = 0, brace
        while True:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            if depth == 0:
                break
            i += 1
        first = text.count("\n", 0, m.start()) + 1
        stop = text.find("\n", i)
        return first, text[m.start():stop if stop >= 0 else len(text)].split("\n")
    raise LookupError(f"no definition of {name} in {file}")


def c_part(file, name, start, end):
    """The lines of function `name` from the first that contains `start` to the next that
    contains `end` (name=None: the whole file)."""
    if name is None:
        first, lines = 1, SOURCES[file].split("\n")
    else:
        first, lines = c_function(file, name)
    a = next(i for i, line in enumerate(lines) if start in line)
    b = next(i for i in range(a, len(lines)) if end in lines[i])
    return first + a, lines[a:b + 1]


def show(file, name, start=None, end=None):
    """Print a function (or a part of it, or of the file with name=None) with its place."""
    first, lines = c_function(file, name) if start is None else c_part(file, name, start, end)
    print(f"{file}:{first}")
    print("\n".join(lines))


# ---- the recipe, step by step ---------------------------------------------------------------

# The recipe, in the seed's words, and the code for each step:
# (step, [seed lines], note, [(file, function, first-line text, last-line text), ...])
# A snippet with start=None is the whole function; function=None means file level.
HANDLER_STEPS = [
    ("0", ["Write a signal handler for SIGKILL:"],
     "SIGKILL cannot be caught (sigaction fails with EINVAL, on v6 too): the library uses "
     "SIGUSR1, so `kill -USR1 PID`, or raise(), asks for a save.",
     [("antonov.c", "antonov_init", "struct sigaction sa;", "return sigaction")]),
    ("1", ["- scan through file descriptors (with fstat) and detect opened ones and their types "
           "(TTY, disk file, directory) and offsets from the beginning;"],
     "fstat on fds 0 to 63; a character device that answers TCGETS is a tty; the offset from "
     "lseek(fd, 0, SEEK_CUR). Raw system calls: the signal may come in the middle of a printf.",
     [("antonov.c", "antonov_scan_fds", None, None)]),
    ("2", ["- open a save-file"],
     "Under a temporary name; renamed when complete, so a half-written file is never found.",
     [("antonov.c", "antonov_save", "long fd = sys3(NR_open", "/* step 2 */")]),
    ("3", ["- store open files status information into the file",
           "You have to keep names of opened files (use your own version of _open and _create syscalls)."],
     "The kernel keeps no names: antonov_open remembers them, per fd, in the data segment.",
     [("antonov.c", "antonov_save", "if ((r = write_all((int)fd, h, sizeof *h))", "the descriptors"),
      ("antonov.c", "antonov_open", None, None)]),
    ("4", ["- save the stack (from the top of stack, depends on your system/machine) to this file "
           "by write syscall"],
     "From 256 bytes below the current stack pointer (deeper than where setjmp will be) up to "
     "the top, found from AT_EXECFN, the program's name that Linux puts at the very top.",
     [("antonov.c", "antonov_save", "h->stack_lo =", "h->stack_hi ="),
      ("antonov.c", "antonov_save", "(void *)h->stack_lo", "/* step 4 */"),
      ("antonov.c", "stack_top", None, None)]),
    ("5", ["- save the data segment (from _etext ptr to _end ptr or from address 0 to _end - if "
           "you use a separate mode).", "Some systems require more detailed investigation of "
           "segments layout."],
     "Read-only data (and glibc's RELRO) now lies between etext and the writable data: the "
     "program headers say where that starts. Then the brk heap, from end to sbrk(0).",
     [("antonov.c", "antonov_save", "h->data_lo =", "h->heap_hi ="),
      ("antonov.c", "antonov_save", "(void *)h->data_lo", "the heap"),
      ("antonov.c", "data_start", None, None)]),
    ("6", ["- make setjmp C-library routine with the given jmp_buf", "IF it returns 0 THEN",
           "save jmp_buf into the file", "_exit(0)", "FI"],
     "sigsetjmp(jb, 1) also keeps the signal mask. The jmp_buf goes last, after the data "
     "segment: the copy of antonov_jb in the data segment was taken before setjmp filled it.",
     [("antonov.c", "antonov_handler", "if (sigsetjmp", "antonov_finish_save();"),
      ("antonov.c", "antonov_finish_save", None, None)]),
    ("7", ["- read file descriptors information from the save-file and perform appropriate "
           "setup (open files, seek, etc)"],
     "In the new process, after siglongjmp: reopen each named file without O_CREAT/O_TRUNC, "
     "dup2 it to its old number, seek. Inherited ones (0, 1, 2) are whatever the new run got.",
     [("antonov.c", "antonov_reopen_files", None, None)]),
    ("8", ["- perform a program re-initialization actions (it may be redrawing screen, etc)"],
     "musl caches its thread id, now the old process's: fix it. Then the program's callback: "
     "the demo redraws its status box on stderr.",
     [("antonov.c", "antonov_after_restore", None, None), ("demo.c", "redraw", None, None)]),
    ("9", ["- return"],
     "rt_sigreturn loads every register of the interrupted code from the signal frame, which "
     "came back with the stack; raise() returns in main.",
     [("antonov.c", "antonov_handler", "antonov_after_restore();", "/* step 9 */")]),
]
MAIN_STEPS = [
    ("a", ["Write a special branch into _main:", "- if there is no save file, run as usually"],
     "main calls antonov_restart first thing. Before the point of no return it checks all it "
     "can: the same etext, edata, end and top of stack, the files unchanged, the right size.",
     [("demo.c", "main", "if (antonov_restart() < 0)", "return 2;"),
      ("antonov.c", "antonov_restart", "long fd = sys3(NR_open", "/* a */")]),
    ("b", ["- otherwise call an assembly routine, which goes the following way:",
           "- expands the stack by touching the stack's lower memory cell (or calls a "
           "stack-expanding routine on some systems)"],
     "Linux grows the stack on these faults (so does vsnap, up to RLIMIT_STACK). Then a few lines of "
     "assembly move the stack pointer below the saved stack, out of the way of what is read in.",
     [("antonov.c", "antonov_restart", "uintptr_t sp = stack_pointer();", "/* b */"),
      ("antonov.c", None, "__asm__(\".text\\n\"", ".size antonov_switch_stack")]),
    ("c", ["- reads the stack segment in (using read system call, NOT read C-library routine)"],
     "The C library's own memory is being replaced under it: only the `syscall` instruction, "
     "and only data on the new stack (`p`, a copy of the plan).",
     [("antonov.c", "antonov_reload", "struct plan p = *pp;", "/* c */"),
      ("antonov.c", "sys3", None, None)]),
    ("d", ["- reads the data segment"], "Then the heap, then the jmp_buf, into antonov_jb.",
     [("antonov.c", "antonov_reload", "/* d */", "antonov_jb, sizeof antonov_jb")]),
    ("e", ["- restores the stack ptr & instruction pointer from the saved jmp_buf"],
     "siglongjmp: the registers of the old handler at its setjmp; setjmp returns 1, in the old "
     "process's handler, on the old process's stack.",
     [("antonov.c", "antonov_reload", "sys3(NR_close, p.fd", "/* e */")]),
]


def _words(s):
    return " ".join(s.split())


def seed_text():
    """The seed's text (seeds/ lives next to the repository), or None where it is absent."""
    files = sorted((REPO.parent / "shared" / "seeds").glob("002_*.txt"))
    return _words(files[0].read_text()) if files else None


def check_quotes():
    """Assert that every quote in the recipe tables is in seeds/002 (when the file is here)."""
    seed = seed_text()
    for _, quote, _, _ in HANDLER_STEPS + MAIN_STEPS:
        for line in quote:
            assert seed is None or _words(line) in seed, line
    return seed is not None


def _snippet_html(file, func, start, end):
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import CLexer
    first, lines = c_function(file, func) if start is None else c_part(file, func, start, end)
    body = textwrap.dedent("\n".join(lines))
    formatter = HtmlFormatter(noclasses=True, style="friendly", linenos="inline",
                              linenostart=first)
    where = f"{file}:{first}" + (f" ({func})" if func else "")
    return (f"<div style='font-size:85%; color:#555'>{escape(where)}</div>"
            + f"<div style='font-size:85%'>{highlight(body, CLexer(), formatter)}</div>")


def recipe_table(steps):
    """The seed's words on the left, the code that does each step on the right."""
    rows = []
    for step, quote, note, snippets in steps:
        left = ("<div style='font-family:serif; font-size:110%'>"
                + "<br>".join(escape(q) for q in quote) + "</div>"
                + "<p style='font-size:85%; color:#444'><b>here:</b> "
                + re.sub(r"`([^`]*)`", r"<code>\1</code>", escape(note)) + "</p>")
        rows.append((step, HTML(left), HTML("".join(_snippet_html(*s) for s in snippets))))
    return table(["#", "the seed (1990)", "the code (antonov.c, demo.c)"], rows)


# ---- the system call trace of a save ----------------------------------------------------------

def _save_fd(strace):
    return next(int(line.rsplit("= ", 1)[1]) for _, line in strace
                if line.startswith('open("demo.save.tmp"'))


def tkill_index(strace):
    return next(i for i, (_, line) in enumerate(strace) if line.startswith("tkill("))


def _note(i, line, i_tkill, save_fd, writes):
    # which step of the recipe a system call of the save belongs to
    if i - i_tkill in (-1, 0, 1):
        return {-1: "raise(SIGUSR1): block the signals",
                0: "raise: send SIGUSR1 to itself (it stays pending, blocked)",
                1: "raise: unblock -> the kernel delivers SIGUSR1 now: the handler runs"}[i - i_tkill]
    if line.startswith(("fstat(", "lseek(", "fcntl(")):
        return "step 1: scan the descriptors"
    if line.startswith(("brk(NULL)", "getpid", "gettid")):
        return "the header: sbrk(0), pid, tid"
    if line.startswith("open("):
        return "step 2: open a save-file"
    if i in writes:
        return ("step 3: the header", "step 3: the fd records", "step 4: the stack",
                "step 5: the data segment", "step 5: the heap",
                "step 6: the jmp_buf, last")[writes.index(i)]
    if line.startswith("rt_sigprocmask(2, NULL"):
        return "step 6: sigsetjmp(jb, 1) asks the kernel for the signal mask"
    if line.startswith(("fsync", "close", "rename")):
        return "complete: fsync, close, rename to demo.save"
    if line.startswith("exit_group"):
        return "_exit(0)"
    if line.startswith("write(2,"):
        return "on stderr: -v's description, or the last word"
    return ""


SAVE_WRITES = ("header", "fd records", "stack", "data segment", "heap", "jmp_buf")


def save_writes(strace):
    """{part: instructions when its write() to the save file returned}, in file order."""
    fd = _save_fd(strace)
    counts = [n for n, line in strace if line.startswith(f"write({fd},")]
    return dict(zip(SAVE_WRITES, counts))


def strace_lines(strace):
    """The trace from raise() on, one line per call (a run of EBADF fstats folded into one),
    with the instruction count and the step of the recipe each call belongs to."""
    i_tkill, save_fd = tkill_index(strace), _save_fd(strace)
    writes = [i for i, (_, line) in enumerate(strace) if line.startswith(f"write({save_fd},")]
    lines, i = [], i_tkill - 1
    while i < len(strace):
        n, line = strace[i]
        j = i
        while j + 1 < len(strace) and strace[j + 1][1].endswith("EBADF") and line.endswith("EBADF"):
            j += 1
        if j > i:
            first, last = (int(re.match(r"fstat\((\d+)", strace[k][1]).group(1)) for k in (i, j))
            line = f"fstat({first}) ... fstat({last}) = -1 EBADF   ({j - i + 1} calls: not open)"
        lines.append(f"{n:>7,}  {line[:78]:<80} {_note(i, strace[i][1], i_tkill, save_fd, writes)}")
        i = j + 1
    return "instructions  system call" + " " * 70 + "recipe\n" + "\n".join(lines)


# ---- the save file ---------------------------------------------------------------------------

# antonov.c's structs in Python's struct notation (little-endian; every field is aligned)
HEADER = struct.Struct("<8s 4Q 2Q 2Q 2Q 2Q 2q")
HEADER_FIELDS = ("magic etext edata end ehdr stack_lo stack_hi data_lo data_hi heap_lo heap_hi "
                 "jmpbuf_size nfds pid tid").split()
FD_RECORD = struct.Struct("<4i q 2Q 3q 256s")
FD_FIELDS = "fd kind flags fdflags offset dev ino size mtime_sec mtime_nsec name".split()
KINDS = {1: "disk file", 2: "directory", 3: "tty", 4: "character device", 5: "pipe",
         6: "socket", 7: "other"}                                  # antonov.c's kind_name[]
PLAIN = ("jmpbuf_size", "nfds", "pid", "tid")                      # shown in decimal
MEANING = {
    "magic": "what file this is", "etext": "end of the code (linker symbol)",
    "edata": "end of the initialised data", "end": "end of the bss",
    "ehdr": "where the ELF header is mapped (__ehdr_start)",
    "stack_lo": "saved stack from here (sp - 256)...", "stack_hi": "...to the top of the stack",
    "data_lo": "data segment from here (writable PT_LOAD)...", "data_hi": "...to end",
    "heap_lo": "heap from end...", "heap_hi": "...to the break, sbrk(0)",
    "jmpbuf_size": "sizeof(sigjmp_buf)", "nfds": "descriptor records that follow",
    "pid": "the process that saved", "tid": "its thread id (musl caches it)",
}


def parse_save(data):
    """The save file as a dict: header fields, fd records, and the parts by name, each as
    (file offset, end offset) in `parts` and as bytes in `raw`."""
    h = dict(zip(HEADER_FIELDS, HEADER.unpack_from(data)))
    assert h["magic"] == b"ANTONOV1", h["magic"]
    at = HEADER.size
    fds = []
    for _ in range(h["nfds"]):
        r = dict(zip(FD_FIELDS, FD_RECORD.unpack_from(data, at)))
        r["name"] = r["name"].split(b"\0")[0].decode()
        fds.append(r)
        at += FD_RECORD.size
    parts = {"header": (0, HEADER.size), "fd records": (HEADER.size, at)}
    for name, size in (("stack", h["stack_hi"] - h["stack_lo"]),
                       ("data segment", h["data_hi"] - h["data_lo"]),
                       ("heap", h["heap_hi"] - h["heap_lo"]), ("jmp_buf", h["jmpbuf_size"])):
        parts[name] = (at, at + size)
        at += size
    assert at == len(data), f"the file is {len(data)} bytes, the header promises {at}"
    raw = {name: data[a:b] for name, (a, b) in parts.items()}
    return {"header": h, "fds": fds, "parts": parts, "raw": raw}


def header_table(h):
    return table(["field", "value", "meaning"],
                 [(k, v if isinstance(v, bytes) or k in PLAIN else f"{v:#x}", MEANING[k])
                  for k, v in h.items()])


def parts_table(guest):
    h = guest["header"]
    came = {"stack": f"[{h['stack_lo']:#x}, {h['stack_hi']:#x})",
            "data segment": f"[{h['data_lo']:#x}, {h['data_hi']:#x})",
            "heap": f"[{h['heap_lo']:#x}, {h['heap_hi']:#x})",
            "jmp_buf": f"antonov_jb at {SYM['antonov_jb']:#x}, after sigsetjmp"}
    return table(["part", "file offset", "bytes", "came from"],
                 [(name, f"{a:,}", f"{b - a:,}", came.get(name, ""))
                  for name, (a, b) in guest["parts"].items()])


def oflags(v):
    access = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR"}[v & 3]
    extra = [n for n, bit in (("O_APPEND", 0o2000), ("O_NONBLOCK", 0o4000),
                              ("O_LARGEFILE", 0o100000)) if v & bit]
    return "|".join([access] + extra)


def fds_table(guest):
    return table(["fd", "kind", "name", "flags (F_GETFL)", "offset", "dev, ino", "size", "mtime"],
                 [(r["fd"], KINDS[r["kind"]], r["name"] or "(inherited: name unknown)",
                   oflags(r["flags"]), r["offset"] if r["offset"] >= 0 else "- (not seekable)",
                   f"{r['dev']}, {r['ino']}", r["size"], f"{r['mtime_sec']}.{r['mtime_nsec']:09d}")
                  for r in guest["fds"]])


# ---- the save file as a bar, every part as wide as its bytes -------------------------------

BAR_COLORS = {"header": "#9c755f", "fd records": "#edc948", "stack": "#f28e2b",
              "data segment": "#4e79a7", "heap": "#59a14f", "jmp_buf": "#e15759"}


def bar_segments(save_bytes):
    """The bar's data: (part, file offset, bytes) for every part of the file, read from the
    file's own header (parse_save), in file order."""
    return [(name, a, b - a) for name, (a, b) in parse_save(save_bytes)["parts"].items()]


def draw_save_bar(save_bytes, title="demo.save"):
    """One horizontal bar, each part as wide as its bytes, labelled with its size."""
    segs = bar_segments(save_bytes)
    total = sum(n for _, _, n in segs)
    fig, ax = plt.subplots(figsize=(13, 1.9))
    for k, (name, at, n) in enumerate(segs):
        ax.add_patch(Rectangle((at, 0), n, 1, facecolor=BAR_COLORS[name], edgecolor="white", lw=0.5))
        label = f"{name}\n{n:,} B"
        if n > 0.06 * total:
            ax.text(at + n / 2, 0.5, label, ha="center", va="center", fontsize=8)
        else:                              # too thin for its label: put it above, staggered
            ax.annotate(label, (at + n / 2, 1), xytext=(at + n / 2, 1.25 + 0.55 * (k % 2)),
                        ha="center", fontsize=7, arrowprops=dict(arrowstyle="-", lw=0.5))
    # inside the data segment: where .data ends and .bss begins (edata), from the header
    h = parse_save(save_bytes)["header"]
    at = dict((name, a) for name, a, _ in segs)["data segment"] + h["edata"] - h["data_lo"]
    ax.plot([at, at], [0, 1], color="white", lw=1, ls="--")
    ax.text(at, 0.1, " .bss from here (edata): zeros, mostly", ha="left", fontsize=7, color="white")
    ax.set_xlim(0, total)
    ax.set_ylim(0, 2.4)
    ax.set_yticks([])
    ticks = [0]
    for t in [a for _, a, _ in segs[1:]] + [total]:   # the part boundaries, unless too close
        if t - ticks[-1] > 0.03 * total:
            ticks.append(t)
        elif t == total:
            ticks[-1] = t
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:,}" for t in ticks], fontsize=7)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"{title}: {total:,} bytes, every part as wide as its bytes (file offsets below)",
                 fontsize=9)
    plt.tight_layout()
    plt.show()
    return segs


# ---- the jmp_buf and the signal frame ----------------------------------------------------------

JB_SLOTS = [("rbx", "= the jmp_buf's own address: sigsetjmp moved jb into rbx"),
            ("rbp", "callee-saved"), ("r12", "callee-saved"), ("r13", "callee-saved"),
            ("r14", "callee-saved"), ("r15", "callee-saved"),
            ("rsp", "the stack pointer inside sigsetjmp"),
            ("rip", "where longjmp lands: in sigsetjmp, after its call to setjmp"),
            ("__fl", "sigsetjmp's return address: back into the handler"),
            ("__ss[0]", "the signal mask at the setjmp"),
            ("__ss[1]", "the handler's own rbx, kept here by sigsetjmp")]


def jmpbuf_words(guest):
    return struct.unpack("<25Q", guest["raw"]["jmp_buf"])


def jmpbuf_table(jb, h):
    rows = [(name, f"{8 * i}", f"{jb[i]:#018x}", explain(jb[i], h), why)
            for i, (name, why) in enumerate(JB_SLOTS)]
    rows.append(("__ss[2..15]", "88", "all zero" if not any(jb[11:]) else "...", "", "unused"))
    return table(["slot", "offset", "value", "points at", "why"], rows)


SIGCONTEXT = "r8 r9 r10 r11 r12 r13 r14 r15 rdi rsi rbp rbx rdx rax rcx rsp rip rflags".split()
GPRS = "rax rbx rcx rdx rsi rdi rbp rsp r8 r9 r10 r11 r12 r13 r14 r15".split()


def find_signal_frame(stack, lo):
    """The rt_sigframe in a saved stack: a word that is __restore_rt, followed by registers
    whose rsp points higher up into this same stack (the interrupted code's stack)."""
    want = SYM["__restore_rt"].to_bytes(8, "little")
    at = next(i for i in range(0, len(stack) - 440, 8) if stack[i:i + 8] == want
              and lo + i < struct.unpack_from("<Q", stack, i + 48 + 15 * 8)[0] < lo + len(stack))
    regs = dict(zip(SIGCONTEXT, struct.unpack_from("<18Q", stack, at + 48)))
    fpstate = struct.unpack_from("<Q", stack, at + 48 + 184)[0]
    sigmask = struct.unpack_from("<Q", stack, at + 304)[0]
    signo, _errno, code, _, pid, uid = struct.unpack_from("<iiiiiI", stack, at + 312)
    return {"address": lo + at, "regs": regs, "sigmask": sigmask, "fpstate": fpstate,
            "siginfo": dict(signo=signo, code=code, pid=pid, uid=uid)}


def frame_table(frame, h):
    r = frame["regs"]
    return table(["register", "value", "points at"],
                 [(n, f"{r[n]:#018x}", explain(r[n], h)) for n in SIGCONTEXT])


# ---- what the exercises measure ------------------------------------------------------------

def journal_lines(k):
    """The journal's first k lines, as demo.c's loop writes them (its arithmetic, in Python)."""
    counter, lines = 1990, []
    for step in range(1, k + 1):
        counter = (counter * 7919 + step) % 1000003
        lines.append(f"step {step} counter {counter}\n")
    return lines


def save_at(k, n=6, name=None):
    """demo -n N -c K in a fresh sandbox: the parsed save file it leaves, and its bytes."""
    run = run_demo(name or f"save-at-{k}-{len(list(SANDBOX.iterdir()))}", ["-n", str(n), "-c", str(k)])
    data = (run["root"] / "demo.save").read_bytes()
    return parse_save(data), data


def setjmp_registers(args, near=0):
    """Which registers setjmp stores, measured: stop the demo at setjmp's first instruction
    (inside the handler's sigsetjmp), put a different marker value in every general register
    but rdi (the jmp_buf's address) and rsp, let setjmp run to its return, and see which
    markers are in the jmp_buf; rsp and rip count if the jmp_buf holds the caller's stack
    pointer (rsp + 8 after the return) and the return address ([rsp]). A throwaway machine:
    the markers would break the rest of the run. `near`: an instruction count before setjmp
    (the trace's), to go there at full speed before stepping one instruction at a time."""
    m, _, _ = start(new_root(f"setjmp-{len(list(SANDBOX.iterdir()))}"), args)
    assert m.advance(near) is None, "the demo ended before setjmp"
    while m.cpu.read("rip") != SYM["setjmp"]:
        assert m.advance(m.instructions + 1) is None, "the demo ended before setjmp"
    rdi, rsp = m.cpu.read("rdi"), m.cpu.read("rsp")
    ret = int.from_bytes(m.mem.read(rsp, 8), "little")
    markers = {r: 0x5EED0000_0000 + 0x100 * i for i, r in enumerate(GPRS) if r not in ("rdi", "rsp")}
    m.cpu.write_many(markers)
    while m.cpu.read("rip") != ret:
        assert m.advance(m.instructions + 1) is None
    words = set(struct.unpack("<8Q", m.mem.read(rdi, 64)))
    kept = {r for r, v in markers.items() if v in words}
    kept |= {"rsp"} if rsp + 8 in words else set()
    kept |= {"rip"} if ret in words else set()
    m.close()
    return kept
