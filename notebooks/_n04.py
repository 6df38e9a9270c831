"""Notebook 04's helpers: the core file's layout (read with pyelftools, drawn to scale) and
the copyover loop's timeline (crash -> checkpoint -> repair -> resume), as pictures.

Kept out of the notebook so its cells stay short and so tests/test_notebook_04.py can check
them against a real core file.
"""
from __future__ import annotations

import _lab

import struct
from dataclasses import dataclass

import capstone

from elftools.elf.elffile import ELFFile

# The colours of the parts of a core file, in the order they come in the file.
COLOURS = {"ELF header": "tab:red", "program headers": "tab:orange", "notes": "tab:green",
           "padding": "0.85", "PT_LOAD": "tab:blue"}


@dataclass(frozen=True)
class Piece:
    """One stretch of a core file: what it is, where it starts, how many bytes it has."""
    what: str          # "ELF header", "program headers", "notes", "padding" or "PT_LOAD"
    offset: int
    size: int
    vaddr: int | None = None   # PT_LOAD: the guest address of its first byte
    flags: str = ""            # PT_LOAD: "R", "W", "X" as readelf shows them


def core_layout(path) -> list[Piece]:
    """The file's bytes from first to last, as pyelftools reads the ELF header: the header,
    the program header table, the PT_NOTE segment, each PT_LOAD segment's bytes, and any
    bytes between them (padding to a page boundary). The sizes add up to the file's size."""
    pieces = []
    with open(path, "rb") as f:
        elf = ELFFile(f)
        h = elf.header
        pieces.append(Piece("ELF header", 0, h.e_ehsize))
        pieces.append(Piece("program headers", h.e_phoff, h.e_phnum * h.e_phentsize))
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_NOTE":
                pieces.append(Piece("notes", seg["p_offset"], seg["p_filesz"]))
            elif seg["p_type"] == "PT_LOAD":
                flags = "".join(c if seg["p_flags"] & b else "-"
                                for c, b in (("R", 4), ("W", 2), ("X", 1)))
                pieces.append(Piece("PT_LOAD", seg["p_offset"], seg["p_filesz"],
                                    seg["p_vaddr"], flags))
        f.seek(0, 2)
        end = f.tell()
    pieces.sort(key=lambda p: p.offset)
    out, at = [], 0
    for p in pieces:
        if p.offset > at:
            out.append(Piece("padding", at, p.offset - at))
        out.append(p)
        at = max(at, p.offset + p.size)
    if end > at:
        out.append(Piece("padding", at, end - at))
    return out


def note_names(path) -> list[tuple[str, int]]:
    """The notes in the core's PT_NOTE segment: (type, bytes of description), in file order."""
    with open(path, "rb") as f:
        return [(n["n_type"], n["n_descsz"]) for seg in ELFFile(f).iter_segments()
                if seg["p_type"] == "PT_NOTE" for n in seg.iter_notes()]


def draw_core_layout(pieces, ax, title=""):
    """The core file as one bar, each piece as long as its bytes; the small pieces at the
    start (headers and notes) are drawn again, magnified, on a second bar below."""
    total = sum(p.size for p in pieces)
    head = [p for p in pieces if p.what != "PT_LOAD" and p.offset < 2 * 4096]
    head_end = max(p.offset + p.size for p in head)
    for y, shown, scale in ((1, pieces, total), (0, head, head_end)):
        for p in shown:
            ax.barh(y, p.size / scale, left=p.offset / scale, height=0.6,
                    color=COLOURS[p.what], edgecolor="white", linewidth=0.5)
            if p.what == "PT_LOAD" and p.size / scale > 0.06:
                ax.text((p.offset + p.size / 2) / scale, y, f"{p.vaddr:#x}\n{p.flags}",
                        ha="center", va="center", fontsize=7, color="white")
            elif y == 0 and p.size / scale > 0.04:
                ax.text((p.offset + p.size / 2) / scale, y, f"{p.what}\n{p.size:,} B",
                        ha="center", va="center", fontsize=8)
    ax.set_yticks([1, 0], [f"whole file\n{total:,} bytes", f"first {head_end:,}\nbytes"])
    ax.set_xticks([])
    ax.set_xlim(0, 1)
    handles = [ax.barh(0, 0, color=c, label=w) for w, c in COLOURS.items()]
    ax.legend(handles=handles, loc="upper center", ncol=5, fontsize=8, frameon=False,
              bbox_to_anchor=(0.5, -0.05))
    ax.set_title(title, fontsize=10)


@dataclass(frozen=True)
class Phase:
    """One stretch of the copyover loop's timeline: which process, what happened, and the
    bytes of mud.log at its start and end (the log is the game's progress)."""
    process: int
    what: str          # "run", "crash", "checkpoint", "repair", "exit"
    start: int
    end: int
    label: str = ""


def timeline(crashes, log_sizes, final_status):
    """The loop of section 5 as phases. `crashes[i]`: (rip, image name) of the i-th crash,
    `log_sizes[i]`: the size of mud.log when process i stopped (crash or exit)."""
    phases, at = [], 0
    for i, size in enumerate(log_sizes):
        phases.append(Phase(i + 1, "run", at, size, f"process {i + 1}"))
        if i < len(crashes):
            rip, image = crashes[i]
            phases.append(Phase(i + 1, "crash", size, size, f"SIGSEGV\nrip {rip:#x}"))
            phases.append(Phase(i + 1, "checkpoint", size, size, image))
            phases.append(Phase(i + 2, "repair", size, size, "here := tavern"))
        else:
            phases.append(Phase(i + 1, "exit", size, size, f"exit {final_status}"))
        at = size
    return phases


def draw_timeline(phases, ax):
    """Each process a bar along mud.log's bytes; crash, checkpoint and repair as markers."""
    marks = {"crash": ("X", "tab:red", -0.35), "checkpoint": ("s", "tab:green", -0.65),
             "repair": ("^", "tab:purple", -0.95), "exit": ("o", "black", -0.35)}
    gap = max(p.end for p in phases) * 0.012   # labels beside their markers
    for p in phases:
        if p.what == "run":
            ax.barh(0, p.end - p.start, left=p.start, height=0.35, color=f"C{p.process - 1}",
                    alpha=0.7)
            ax.text((p.start + p.end) / 2, 0, p.label, ha="center", va="center", fontsize=8)
        else:
            marker, colour, dy = marks[p.what]
            ax.plot(p.start, dy, marker=marker, color=colour, ms=9, ls="")
            ax.text(p.start + gap, dy, f"{p.what}: {p.label}".replace("\n", " "), ha="left",
                    va="center", fontsize=7)
    ax.set_ylim(-1.2, 0.4)
    ax.set_yticks([])
    ax.set_xlabel("bytes of mud.log written (the game's progress)")
    ax.set_title("crash -> checkpoint -> repair -> resume, until the game ends", fontsize=10)


def as_int32(value: int) -> int:
    """The 32-bit signed int a C `int` load leaves in eax, from a 64-bit register value."""
    return struct.unpack("<i", struct.pack("<I", value & 0xFFFFFFFF))[0]


# --- the notebook's small tools (moved here so that its cells stay short) ---

# -O0: one C statement, a few instructions; -fno-omit-frame-pointer: rbp chains the frames;
# -fno-sanitize=undefined: zig cc's UBSan at -O0 would abort() before the real fault.
FLAGS = ("-O0", "-fno-omit-frame-pointer", "-fno-sanitize=undefined")


def guest(root, name, source, *flags):
    """Write `source` to ROOT/NAME.c and build ROOT/NAME; return the program's path."""
    import os

    from vsnap.build import build
    root.mkdir(exist_ok=True)
    (root / f"{name}.c").write_text(source)
    # Build from inside `root`, by relative names, so that the debugging information names the
    # source "NAME.c" rather than this notebook's temporary path (builds are cached by content,
    # so a cached program may come from an earlier run's sandbox, long deleted).
    here = os.getcwd()
    os.chdir(root)
    try:
        build(f"{name}.c", name, extra_flags=FLAGS + flags)
    finally:
        os.chdir(here)
    return root / name


vsnap_cli = _lab.vsnap_cli  # the labs' one runner of the command line


def capture():
    """A Console that collects the guest's stdout and stderr in two bytearrays."""
    import vsnap
    out, err = bytearray(), bytearray()
    return vsnap.Console(read=lambda n: b"", write_out=out.extend, write_err=err.extend), out, err


def table(headers, rows):
    """An HTML table in the notebook; cells are shown as code."""
    from html import escape

    from IPython.display import HTML, display
    head = "".join(f"<th style='text-align:left'>{escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'><code>{escape(str(c))}</code>"
                                    "</td>" for c in row) + "</tr>" for row in rows)
    display(HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"))


def symbol(program, name):
    """The address of a global variable or function, from the program's symbol table, and
    its size."""
    from vsnap.loader import read_program
    with open(program, "rb") as f:
        sym = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)[0]
    return read_program(str(program)).base + sym["st_value"], sym["st_size"]


CS = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
CS.detail = True              # operands too, not only text: which register, which offset


def memory_operand(code, address):
    """The first instruction in `code`, and its memory operand as (base register,
    displacement)."""
    from capstone.x86 import X86_OP_MEM
    insn = next(CS.disasm(code, address, 1))
    mem = next((op.mem for op in insn.operands if op.type == X86_OP_MEM), None)
    return insn, (insn.reg_name(mem.base), mem.disp) if mem is not None else (None, 0)
