"""Reading an x86-64 program's ELF header and program headers, as execve does.

execve reads two tables of a static program: the ELF header (64 bytes) and the program
headers it points to (56 bytes each); Linux never looks at section headers to run a program,
and neither does this module. Importing pyelftools for these 120-odd bytes cost about 25 ms,
a sixth of a `vsnap run hello`, so the loader reads them here with `struct` and asks
pyelftools only about files this module does not take (big-endian, another machine, an odd
table size...), where pyelftools' names for what the file is make the loader's refusal say it
(see loader.parse_program).

Layouts: the System V ABI's "ELF Header" and "Program Header" chapters, <elf.h>'s Elf64_Ehdr
and Elf64_Phdr.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

# Elf64_Ehdr: e_ident[16], e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags,
# e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
# Elf64_Phdr: p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
PHDR = struct.Struct("<IIQQQQQQ")
assert EHDR.size == 64 and PHDR.size == 56

ELFCLASS64, ELFDATA2LSB, EM_X86_64 = 2, 1, 62
ET_NAMES = {2: "ET_EXEC", 3: "ET_DYN"}
PT_NAMES = {1: "PT_LOAD", 3: "PT_INTERP"}   # the two kinds the loader acts on
PN_XNUM = 0xFFFF   # "more program headers than fit": the count is in section header 0


class Phdr(NamedTuple):
    p_type: str           # "PT_LOAD", "PT_INTERP", or "" for a kind the loader ignores
    p_offset: int
    p_vaddr: int
    p_filesz: int
    p_memsz: int
    p_flags: int


class Headers(NamedTuple):
    e_machine: str
    e_type: str
    e_entry: int
    e_phoff: int
    e_phnum: int
    phdrs: list


def read_headers(data: bytes) -> Headers | None:
    """The headers of a little-endian ELF64 x86-64 executable or shared object whose program
    header table lies inside `data`; None for any other file (the caller asks pyelftools)."""
    if len(data) < EHDR.size or data[:4] != b"\x7fELF":
        return None
    (ident, e_type, e_machine, _version, e_entry, e_phoff, _shoff, _flags, _ehsize,
     e_phentsize, e_phnum, _shentsize, _shnum, _shstrndx) = EHDR.unpack_from(data)
    if (ident[4] != ELFCLASS64 or ident[5] != ELFDATA2LSB or e_machine != EM_X86_64
            or e_type not in ET_NAMES or e_phnum == PN_XNUM or e_phentsize != PHDR.size
            or e_phoff + e_phnum * PHDR.size > len(data)):
        return None
    phdrs = []
    for i in range(e_phnum):
        p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, _align = \
            PHDR.unpack_from(data, e_phoff + i * PHDR.size)
        phdrs.append(Phdr(PT_NAMES.get(p_type, ""), p_offset, p_vaddr, p_filesz, p_memsz,
                          p_flags))
    return Headers("EM_X86_64", ET_NAMES[e_type], e_entry, e_phoff, e_phnum, phdrs)


def read_headers_pyelftools(data: bytes) -> Headers:
    """The same from pyelftools, for any ELF file it can read; raises what pyelftools raises
    (ELFError, struct.error, ValueError) on a damaged one. Machine, type and segment kinds are
    pyelftools' names ("EM_AARCH64", "ET_REL")."""
    import io

    from elftools.elf.elffile import ELFFile
    elf = ELFFile(io.BytesIO(data))
    phdrs = [Phdr(p.p_type if p.p_type in PT_NAMES.values() else "", p.p_offset, p.p_vaddr,
                  p.p_filesz, p.p_memsz, p.p_flags)
             for p in (seg.header for seg in elf.iter_segments())]
    return Headers(elf["e_machine"], elf["e_type"], elf["e_entry"], elf["e_phoff"],
                   elf["e_phnum"], phdrs)
