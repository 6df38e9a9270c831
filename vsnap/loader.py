"""The ELF loader: what execve does for a static program.

Static (ET_EXEC) and static-pie (ET_DYN without PT_INTERP) x86-64 programs are accepted;
anything else is refused with one line that says what the file is and what vsnap runs.
Loading maps each PT_LOAD segment, zeroes bss, puts the program break after the last segment,
and builds Linux's initial stack: argc, argv, envp, auxv, and the strings they point to.
There is no vDSO: libc falls back to real time syscalls, which the kernel serves from the
virtual clock.
"""
from __future__ import annotations

import hashlib
import os
import struct
import time
from dataclasses import dataclass
from functools import cached_property

from .elfhead import read_headers, read_headers_pyelftools
from .errors import BadProgram
from .memory import (PAGE, PIE_BASE, PROT_EXEC, PROT_READ, PROT_WRITE, STACK_EXPAND,
                     STACK_SIZE, STACK_TOP,
                     AddressSpace, page_down, page_up)

ACCEPTS = "vsnap runs static x86-64 Linux ELF programs (static or static-pie)"

# auxv keys (linux/auxvec.h)
AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN = 23, 25, 26, 31
GUEST_UID = GUEST_GID = 1000


@dataclass
class Program:
    """A checked ELF file, ready to load."""

    path: str
    data: bytes
    entry: int
    pie: bool
    phoff: int
    phnum: int
    segments: list  # (vaddr, memsz, offset, filesz, flags) of each PT_LOAD

    @property
    def base(self) -> int:
        return PIE_BASE if self.pie else 0

    @cached_property
    def sha256(self) -> str:
        """The SHA-256 of the file's bytes as read (hex): what an image records."""
        return hashlib.sha256(self.data).hexdigest()

    def rdtsc_candidates(self) -> list[int]:
        """Addresses of the bytes 0f 31 (rdtsc) in executable segments."""
        out = []
        for vaddr, _, offset, filesz, flags in self.segments:
            if flags & 1:
                chunk = self.data[offset:offset + filesz]
                at = chunk.find(b"\x0f\x31")
                while at >= 0:
                    out.append(self.base + vaddr + at)
                    at = chunk.find(b"\x0f\x31", at + 1)
        return out

    def image_bytes(self, start: int, end: int) -> bytes:
        """What [start, end) holds right after loading: segment bytes, zeros elsewhere."""
        out = bytearray(end - start)
        for vaddr, _, offset, filesz, _ in self.segments:
            lo, hi = max(start, self.base + vaddr), min(end, self.base + vaddr + filesz)
            if lo < hi:
                src = offset + lo - (self.base + vaddr)
                out[lo - start:hi - start] = self.data[src:src + hi - lo]
        return bytes(out)


_PROGRAMS: dict[tuple, Program] = {}
_DIGESTS: dict[tuple, str] = {}
RACY_NS = 2_000_000_000


def file_identity(path: str) -> tuple | None:
    """What says that a file is still the one read before: the path given, its device,
    inode, size, modification and change times. The change time moves on every write,
    rename or chmod and cannot be set back. None for a file changed within the last two
    seconds (the kernel stamps files from a clock that ticks every few milliseconds, some file
    systems by the second, so a second change in the same tick would look like none: git's
    "racily clean" files) and for one that cannot be stat'ed: such a file is read again each
    time."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_NS:
        return None
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _remember(cache: dict, key, value) -> None:
    if len(cache) > 64:
        cache.clear()
    cache[key] = value


def read_program(path: str) -> Program:
    """Open and check an ELF file; raise BadProgram with the reason if vsnap cannot run it.
    Parsed programs are kept by file_identity: tests start thousands of machines."""
    key = file_identity(path)
    if key is not None and key in _PROGRAMS:
        return _PROGRAMS[key]
    prog = _read_program(path)
    if key is not None:
        _remember(_PROGRAMS, key, prog)
    return prog


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's bytes (hex), kept by file_identity: a restore checks that the
    program is the one saved, and vsnap check restores hundreds of times. OSError if it
    cannot be read."""
    key = file_identity(path)
    if key is not None and key in _DIGESTS:
        return _DIGESTS[key]
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if key is not None:
        _remember(_DIGESTS, key, digest)
    return digest


def _read_program(path: str) -> Program:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise BadProgram(f"{path}: is a directory; {ACCEPTS}") from None
    except OSError as e:
        raise BadProgram(f"{path}: cannot read it ({e.strerror}); {ACCEPTS}") from None
    return parse_program(path, data)


def parse_program(path: str, data: bytes) -> Program:
    if not data:
        raise BadProgram(f"{path}: an empty file; {ACCEPTS}")
    if data[:4] != b"\x7fELF":
        what = "a script" if data[:2] == b"#!" else "not an ELF file"
        raise BadProgram(f"{path}: {what}; {ACCEPTS}")
    if len(data) < 64:
        raise BadProgram(f"{path}: truncated ELF file ({len(data)} bytes); {ACCEPTS}")
    if data[4] != 2:
        raise BadProgram(f"{path}: a 32-bit ELF file; {ACCEPTS}")
    heads = read_headers(data)
    if heads is None:  # not a plain x86-64 program: pyelftools names what it is
        from elftools.common.exceptions import ELFError
        try:
            heads = read_headers_pyelftools(data)
        except (ELFError, struct.error, ValueError) as e:
            raise BadProgram(f"{path}: truncated or damaged ELF file ({e}); {ACCEPTS}") \
                from None
    machine, etype, phdrs = heads.e_machine, heads.e_type, heads.phdrs
    if machine != "EM_X86_64":
        raise BadProgram(f"{path}: an ELF file for {machine}, not x86-64; {ACCEPTS}")
    if etype not in ("ET_EXEC", "ET_DYN"):
        raise BadProgram(f"{path}: an ELF {etype} file, not a program; {ACCEPTS}")
    if any(p.p_type == "PT_INTERP" for p in phdrs):
        raise BadProgram(f"{path}: a dynamically linked program (it needs a dynamic loader); "
                         f"{ACCEPTS}: rebuild it with -static")
    segments = [(p.p_vaddr, p.p_memsz, p.p_offset, p.p_filesz, p.p_flags)
                for p in phdrs if p.p_type == "PT_LOAD"]
    if not segments:
        raise BadProgram(f"{path}: an ELF file with nothing to load; {ACCEPTS}")
    for vaddr, memsz, offset, filesz, _ in segments:
        if offset + filesz > len(data):
            raise BadProgram(f"{path}: truncated ELF file (a segment ends at byte "
                             f"{offset + filesz}, the file has {len(data)}); {ACCEPTS}")
        if filesz > memsz:
            raise BadProgram(f"{path}: damaged ELF file (segment larger in file than in "
                             f"memory); {ACCEPTS}")
    return Program(path, data, heads.e_entry, etype == "ET_DYN", heads.e_phoff,
                   heads.e_phnum, segments)


def _prot(flags: int) -> int:
    return ((PROT_READ if flags & 4 else 0) | (PROT_WRITE if flags & 2 else 0)
            | (PROT_EXEC if flags & 1 else 0))


def load_segments(prog: Program, mem: AddressSpace, name: str = "") -> None:
    """Map the PT_LOAD segments and set the program break. `name` is what /proc/self/maps
    shows for them: the program's path as the guest sees it."""
    base = prog.base
    pages: dict[int, int] = {}   # page -> union of protections (segments may share a page)
    kinds: dict[int, str] = {}
    for vaddr, memsz, _, filesz, flags in prog.segments:
        for page in range(page_down(base + vaddr), page_up(base + vaddr + memsz), PAGE):
            pages[page] = pages.get(page, 0) | _prot(flags)
            kind = "text" if flags & 1 else ("data" if page < base + vaddr + filesz else "bss")
            kinds.setdefault(page, kind)
    # map runs of pages with the same protection and kind, writable first so we can fill them
    for start, end, prot, kind in _runs(pages, kinds):
        mem.map(start, end - start, prot | PROT_WRITE, kind, name if kind != "bss" else "")
    for vaddr, memsz, offset, filesz, flags in prog.segments:
        mem.write(base + vaddr, prog.data[offset:offset + filesz])
    for start, end, prot, kind in _runs(pages, kinds):
        if not prot & PROT_WRITE:
            mem.protect(start, end - start, prot)
    end = max(base + v + m for v, m, *_ in prog.segments)
    mem.set_brk_start(page_up(end))


def _runs(pages, kinds):
    run = None
    for page in sorted(pages):
        key = (pages[page], kinds[page])
        if run and run[1] == page and (run[2], run[3]) == key:
            run[1] = page + PAGE
        else:
            if run:
                yield tuple(run)
            run = [page, page + PAGE, *key]
    if run:
        yield tuple(run)


def build_stack(prog: Program, mem: AddressSpace, argv: list[str], envp: list[str],
                random16: bytes, hwcap: int, execfn: str, stack_limit: int = STACK_SIZE,
                layout=None) -> int:
    """Map the stack and lay out argc/argv/envp/auxv as Linux does; return the initial rsp.
    As on Linux the stack starts as the arguments plus 128 KiB, within RLIMIT_STACK
    (`stack_limit`), and grows down on faults below it (kernel/limits.grow_stack).
    `layout` (a process.ExecLayout), if given, is filled with where the strings and the auxv
    went, for /proc/self."""
    sp = STACK_TOP
    blobs = []

    def push_bytes(b: bytes) -> int:
        nonlocal sp
        sp -= len(b)
        blobs.append((sp, b))
        return sp

    push_bytes(b"\0" * 8)  # end marker, as Linux leaves
    execfn_p = push_bytes(execfn.encode() + b"\0")
    env_p = [push_bytes(e.encode() + b"\0") for e in reversed(envp)][::-1]
    arg_p = [push_bytes(a.encode() + b"\0") for a in reversed(argv)][::-1]
    platform_p = push_bytes(b"x86_64\0")
    random_p = push_bytes(random16)
    sp &= ~0xF
    base = prog.base
    phdr = _phdr_address(prog)
    auxv = [(AT_PHDR, phdr), (AT_PHENT, 56), (AT_PHNUM, prog.phnum), (AT_PAGESZ, PAGE),
            (AT_BASE, 0), (AT_FLAGS, 0), (AT_ENTRY, base + prog.entry), (AT_UID, GUEST_UID),
            (AT_EUID, GUEST_UID), (AT_GID, GUEST_GID), (AT_EGID, GUEST_GID),
            (AT_SECURE, 0), (AT_RANDOM, random_p), (AT_HWCAP, hwcap), (AT_HWCAP2, 0),
            (AT_CLKTCK, 100), (AT_PLATFORM, platform_p), (AT_EXECFN, execfn_p), (AT_NULL, 0)]
    words = [len(argv), *arg_p, 0, *env_p, 0]
    for k, v in auxv:
        words += [k, v]
    if len(words) % 2:
        sp -= 8  # keep rsp 16-byte aligned at argc, as the ABI requires
    sp -= 8 * len(words)
    blobs.append((sp, struct.pack(f"<{len(words)}Q", *words)))
    args = page_up(STACK_TOP - sp)
    size = max(args, min(args + STACK_EXPAND, page_down(stack_limit)))
    mem.map(STACK_TOP - size, size, PROT_READ | PROT_WRITE, "stack", "[stack]")
    for addr, b in blobs:
        mem.write(addr, b)
    if layout is not None:
        _record(layout, prog, sp, auxv, arg_p, env_p, argv, envp, execfn)
    return sp


def _record(layout, prog: Program, sp, auxv, arg_p, env_p, argv, envp, execfn) -> None:
    """Linux's mm fields for this exec (fs/binfmt_elf.c: start_code is the lowest executable
    PT_LOAD, end_code the end of the executable ones in the file, start_data the highest
    PT_LOAD, end_data the end of the file-backed part of any)."""
    args_end = arg_p[-1] + len(argv[-1].encode()) + 1 if argv else 0
    layout.arg_start, layout.arg_end = (arg_p[0], args_end) if argv else (0, 0)
    if envp:
        layout.env_start, layout.env_end = env_p[0], env_p[-1] + len(envp[-1].encode()) + 1
    else:
        layout.env_start = layout.env_end = args_end
    layout.start_stack = sp
    base = prog.base
    layout.start_code = base + min((v for v, _, _, _, fl in prog.segments if fl & 1),
                                   default=0)
    layout.start_data = base + max(v for v, *_ in prog.segments)
    layout.end_code = base + max((v + fs for v, _, _, fs, fl in prog.segments if fl & 1),
                                 default=0)
    layout.end_data = base + max(v + fs for v, _, _, fs, _ in prog.segments)
    layout.auxv = [[k, v] for k, v in auxv]
    layout.comm = os.path.basename(execfn)[:15]


def _phdr_address(prog: Program) -> int:
    """Where the program headers are in memory: inside the segment that maps e_phoff."""
    for vaddr, memsz, offset, filesz, _ in prog.segments:
        if offset <= prog.phoff < offset + filesz:
            return prog.base + vaddr + (prog.phoff - offset)
    return 0
