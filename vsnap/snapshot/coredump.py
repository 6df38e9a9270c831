"""An ELF core file: what Linux writes when a process dumps core, so that `gdb PROGRAM core`
shows the guest's registers, memory and backtrace. It is written from a CoreRecord
(corerecord.py: what a core holds), made from a live process as it dies (crashdump.py) or from
a saved image (of_image here, for `vsnap core IMAGE`).

A core file is an ELF file of type ET_CORE with no sections, only program headers:

    ELF header            "this is an x86-64 core"
    program headers       one PT_NOTE, then one PT_LOAD per memory region (VMA)
    notes                 records, each: namesz, descsz, type, "CORE\\0", desc (4-byte aligned)
      NT_PRSTATUS  (1)      struct elf_prstatus: signal, pids, and the general registers in
                            the order of struct user_regs_struct (what ptrace shows)
      NT_PRPSINFO  (3)      struct elf_prpsinfo: state, uid/gid, pids, name and arguments
      NT_FPREGSET  (2)      the 512-byte FXSAVE area: x87 and SSE registers, MXCSR
      NT_AUXV      (6)      the auxiliary vector execve gave the process (from its stack)
      NT_FILE              which regions map which file at which offset
    memory                the bytes of each region, at the PT_LOAD's p_offset

Linux leaves read-only file mappings out of a core (p_filesz 0) because the debugger can read
them from the file; here every region is written in full, text included, so a core is complete
on its own. vsnap's images leave text out for the same reason: it is re-read from the program.
"""
from __future__ import annotations

import hashlib
import os
import struct

from ..loader import (AT_ENTRY, AT_NULL, AT_PAGESZ, AT_PHDR, AT_PHENT, AT_PHNUM, Program,
                      _phdr_address, read_program)
from ..corerecord import CoreRecord, Region
from ..memory import PAGE, page_down, page_up
from .codec import ImageError
from .image import Image

NT_PRSTATUS, NT_FPREGSET, NT_PRPSINFO, NT_AUXV, NT_FILE = 1, 2, 3, 6, 0x46494C45
ET_CORE, EM_X86_64, PT_LOAD, PT_NOTE = 4, 62, 1, 4
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")   # Elf64_Ehdr, 64 bytes
PHDR = struct.Struct("<IIQQQQQQ")            # Elf64_Phdr, 56 bytes
# struct elf_prstatus: elf_siginfo (3 ints), pr_cursig (short), pr_sigpend, pr_sighold,
# pr_pid, pr_ppid, pr_pgrp, pr_sid, 4 timevals (8 longs), pr_reg (27 u64), pr_fpvalid
PRSTATUS = struct.Struct("<3ih2xQQ4i8q27Qi4x")
PRPSINFO = struct.Struct("<bcbb4xQII4i16s80s")  # struct elf_prpsinfo
# struct user_regs_struct, the order of pr_reg (and of PTRACE_GETREGS)
USER_REGS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
             "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "rflags", "rsp", "ss", "fs_base",
             "gs_base", "ds", "es", "fs", "gs")
# not in an image: no system call is in progress (orig_rax -1), user-mode selectors of Linux
SELECTORS = {"orig_rax": (1 << 64) - 1, "cs": 0x33, "ss": 0x2B, "ds": 0, "es": 0, "fs": 0,
             "gs": 0}
assert PRSTATUS.size == 336 and PRPSINFO.size == 136


def write_core(src: Image | CoreRecord, path: str, signal: int = 11) -> None:
    """Write `src` (an image, or a record of a live process) as an ELF core file at `path`
    (atomically: a crash leaves no half core)."""
    data = core_bytes(src, signal)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def of_image(img: Image) -> CoreRecord:
    """What a core holds, from a saved image: text from the program file (checked to be the
    one saved), the rest from the image's page runs."""
    prog = _program(img)
    p = img.kernel["process"]
    s = img.kernel["signals"]  # a SignalState (older images: a dict with the blocked "mask")
    pending, blocked = (0, s["mask"]) if isinstance(s, dict) else (s.pending_mask, s.blocked)
    regions = [Region(v["start"], v["end"], v["prot"], v["kind"], region_bytes(img, v, prog))
               for v in img.vmas]
    return CoreRecord(regions, img.registers, p["pid"], p["ppid"], p["pgid"], p["sid"],
                      p["uid"], p["gid"], pending, blocked,
                      p["exe"] or img.program["guest_path"] or img.program["path"], prog,
                      img.program["path"])


def core_bytes(src: Image | CoreRecord, signal: int = 11) -> bytes:
    """The core file of `src`, as if the guest had been killed by `signal` where it stopped."""
    rec = of_image(src) if isinstance(src, Image) else src
    stack = next((r for r in rec.regions if r.kind == "stack"), None)
    auxv, argv = _auxv_and_argv(rec.program, stack)
    notes = b"".join([
        _note(NT_PRSTATUS, _prstatus(rec, signal)),
        _note(NT_PRPSINFO, _prpsinfo(rec, argv)),
        _note(NT_FPREGSET, fxsave(rec.registers)),
        _note(NT_AUXV, b"".join(struct.pack("<QQ", k, v) for k, v in auxv)),
        _note(NT_FILE, _nt_file(rec)),
    ])
    nph = 1 + len(rec.regions)
    note_at = EHDR.size + nph * PHDR.size
    at = page_up(note_at + len(notes))
    phdrs = [PHDR.pack(PT_NOTE, 0, note_at, 0, 0, len(notes), 0, 4)]
    for r in rec.regions:
        flags = (4 if r.prot & 1 else 0) | (2 if r.prot & 2 else 0) | (1 if r.prot & 4 else 0)
        size = r.end - r.start
        phdrs.append(PHDR.pack(PT_LOAD, flags, at, r.start, 0, size, size, PAGE))
        at += size
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, v1, SysV
    head = EHDR.pack(ident, ET_CORE, EM_X86_64, 1, 0, EHDR.size, 0, 0, EHDR.size,
                     PHDR.size, nph, 64, 0, 0)
    out = bytearray(head + b"".join(phdrs) + notes)
    out += bytes(page_up(len(out)) - len(out))
    for r in rec.regions:
        out += r.data
    return bytes(out)


def _program(img: Image) -> Program:
    path = img.program["path"]
    try:
        prog = read_program(path)
    except Exception as e:
        raise ImageError(f"{img.where}: the program {path} cannot be read ({e}); a core "
                         f"file needs its text, which the image does not hold") from None
    if hashlib.sha256(prog.data).hexdigest() != img.program["sha256"]:
        raise ImageError(f"{img.where}: {path} is not the program that was saved (its "
                         f"SHA-256 differs); its text would not match the image")
    return prog


def region_bytes(img: Image, v: dict, prog: Program) -> bytes:
    """Every byte of the VMA `v` as the guest saw it: text from the program file, other
    regions from the image's page runs (pages the image left out were all zero)."""
    if v["source"] == "program":
        return prog.image_bytes(v["start"], v["end"])
    return img.saved_bytes(v, v["start"], v["end"])


def _note(kind: int, desc: bytes) -> bytes:
    name = b"CORE\0"
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name), len(desc), kind) + pad(name) + pad(desc)


def _prstatus(rec: CoreRecord, signal: int) -> bytes:
    regs = [rec.registers[n] if n in rec.registers else SELECTORS[n] for n in USER_REGS]
    return PRSTATUS.pack(signal, 0, 0, signal, rec.pending, rec.blocked, rec.pid, rec.ppid,
                         rec.pgid, rec.sid, *[0] * 8, *regs, 1)


def _prpsinfo(rec: CoreRecord, argv: list[bytes]) -> bytes:
    exe = os.fsencode(rec.exe)
    name = os.path.basename(argv[0] if argv else exe)
    args = b" ".join(argv) if argv else exe
    return PRPSINFO.pack(0, b"R", 0, 0, 0, rec.uid & 0xFFFFFFFF, rec.gid & 0xFFFFFFFF,
                         rec.pid, rec.ppid, rec.pgid, rec.sid, name[:15], args[:79])


def fxsave(r: dict) -> bytes:
    """The FXSAVE area (NT_FPREGSET): the x87 stack in ST(i) order, SSE registers, MXCSR."""
    top = (r["fpsw"] >> 11) & 7
    # abridged tag: one bit per physical register, set unless its 2-bit tag says empty (11)
    ftw = sum(1 << i for i in range(8) if (r["fptag"] >> (2 * i)) & 3 != 3)
    head = struct.pack("<HHBxHQQII", r["fpcw"], r["fpsw"], ftw, 0, 0, 0, r["mxcsr"], 0xFFFF)
    st = b"".join(r[f"fp{(top + i) & 7}"].to_bytes(16, "little") for i in range(8))
    xmm = b"".join(r[f"xmm{i}"].to_bytes(16, "little") for i in range(16))
    return head + st + xmm + bytes(96)


def _auxv_and_argv(prog: Program, stack) -> tuple[list, list[bytes]]:
    """The auxv and argv execve left on the stack, found by the auxv's first three entries
    (AT_PHDR, AT_PHENT, AT_PHNUM, as vsnap's loader and Linux write them). If they were
    overwritten, the essential entries are rebuilt from the program and no argv is known."""
    phdr = _phdr_address(prog)
    if stack is not None:
        data = stack.data
        words = struct.unpack(f"<{len(data) // 8}Q", data)
        key = struct.pack("<6Q", AT_PHDR, phdr, AT_PHENT, 56, AT_PHNUM, prog.phnum)
        at = data.find(key)
        while at >= 0 and at % 8:
            at = data.find(key, at + 1)
        if at >= 0:
            i, auxv = at // 8, []
            for j in range(i, len(words) - 1, 2):
                auxv.append((words[j], words[j + 1]))
                if words[j] == AT_NULL:
                    return auxv, _argv(words, i, stack.start, data)
    return [(AT_PHDR, phdr), (AT_PHENT, 56), (AT_PHNUM, prog.phnum), (AT_PAGESZ, PAGE),
            (AT_ENTRY, prog.base + prog.entry), (AT_NULL, 0)], []


def _argv(words, i: int, base: int, data: bytes) -> list[bytes]:
    """Walk back from the auxv at word i: envp's NULL, envp, argv's NULL, argv, argc."""
    j = i - 2  # words[i - 1] is envp's NULL
    while j > 0 and words[j]:
        j -= 1
    for argc in range(min(j, 4096)):  # words[j] is argv's NULL; argc precedes argv[0]
        if words[j - 1 - argc] == argc:
            out = []
            for ptr in words[j - argc:j]:
                if not base <= ptr < base + len(data):
                    return []
                s = data[ptr - base:]
                out.append(s[:s.find(b"\0")] if b"\0" in s else s)
            return out
    return []


def _nt_file(rec: CoreRecord) -> bytes:
    """NT_FILE: count, page size, (start, end, offset in pages) per file mapping, then the
    file names. The program's mappings name its host path, so gdb can match the file."""
    prog, maps = rec.program, []
    for r in rec.regions:
        if r.kind not in ("text", "data"):
            continue
        for vaddr, memsz, offset, filesz, _ in prog.segments:
            lo = page_down(prog.base + vaddr)
            if lo <= r.start < prog.base + vaddr + filesz:
                maps.append((r.start, r.end, (page_down(offset) + r.start - lo) // PAGE))
                break
    names = b"".join(os.fsencode(rec.program_path) + b"\0" for _ in maps)
    return struct.pack(f"<QQ{3 * len(maps)}Q", len(maps), PAGE,
                       *[x for m in maps for x in m]) + names
