"""What a user sees of a running guest: strace-style lines and capstone disassembly."""
from __future__ import annotations

import functools

from .abi import consts as C
from .abi import errno as E
from .errors import SyscallError



@functools.lru_cache(maxsize=None)
def _capstone():
    """The disassembler, made at first use: importing capstone costs 20 ms, a fifth of
    `vsnap run hello`, and most runs never disassemble."""
    import capstone
    return capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)

_OFLAGS = [("O_WRONLY", C.O_WRONLY), ("O_RDWR", C.O_RDWR), ("O_CREAT", C.O_CREAT),
           ("O_EXCL", C.O_EXCL), ("O_NOCTTY", C.O_NOCTTY), ("O_TRUNC", C.O_TRUNC),
           ("O_APPEND", C.O_APPEND), ("O_NONBLOCK", C.O_NONBLOCK),
           ("O_DIRECTORY", C.O_DIRECTORY), ("O_NOFOLLOW", C.O_NOFOLLOW),
           ("O_CLOEXEC", C.O_CLOEXEC), ("O_LARGEFILE", C.O_LARGEFILE), ("O_PATH", C.O_PATH),
           ("O_TMPFILE", C.O_TMPFILE & ~C.O_DIRECTORY)]  # strace names the bit O_TMPFILE too


def disassemble_one(code: bytes, address: int) -> str:
    """'mov dword ptr [rax], 1' for the first instruction of `code`, or '(bad)'."""
    for insn in _capstone().disasm(code, address, 1):
        return f"{insn.mnemonic} {insn.op_str}".strip()
    return "(bad)"


def disassemble(code: bytes, address: int, count: int):
    """(address, bytes hex, text) of up to `count` instructions."""
    return [(i.address, i.bytes.hex(), f"{i.mnemonic} {i.op_str}".strip())
            for i in _capstone().disasm(code, address, count)]


def instruction_count(code: bytes, address: int) -> int:
    return sum(1 for _ in _capstone().disasm_lite(code, address))


_PROT = [("PROT_READ", C.PROT_READ), ("PROT_WRITE", C.PROT_WRITE), ("PROT_EXEC", C.PROT_EXEC)]
_MAP = [("MAP_SHARED", C.MAP_SHARED), ("MAP_PRIVATE", C.MAP_PRIVATE), ("MAP_FIXED", C.MAP_FIXED),
        ("MAP_ANONYMOUS", C.MAP_ANONYMOUS), ("MAP_NORESERVE", C.MAP_NORESERVE),
        ("MAP_POPULATE", C.MAP_POPULATE), ("MAP_STACK", C.MAP_STACK),
        ("MAP_FIXED_NOREPLACE", C.MAP_FIXED_NOREPLACE)]
_CONSTANTS = {
    "archprctl": {C.ARCH_SET_FS: "ARCH_SET_FS", C.ARCH_GET_FS: "ARCH_GET_FS",
                  C.ARCH_SET_GS: "ARCH_SET_GS", C.ARCH_GET_GS: "ARCH_GET_GS"},
    "ioctl": {C.TCGETS: "TCGETS", C.TCSETS: "TCSETS", C.TCSETSW: "TCSETSW",
              C.TCSETSF: "TCSETSF", C.TIOCGWINSZ: "TIOCGWINSZ", C.TIOCSWINSZ: "TIOCSWINSZ",
              C.TIOCGPGRP: "TIOCGPGRP", C.FIONREAD: "FIONREAD"},
    "fcntl": {C.F_DUPFD: "F_DUPFD", C.F_GETFD: "F_GETFD", C.F_SETFD: "F_SETFD",
              C.F_GETFL: "F_GETFL", C.F_SETFL: "F_SETFL", C.F_GETLK: "F_GETLK",
              C.F_SETLK: "F_SETLK", C.F_SETLKW: "F_SETLKW", C.F_DUPFD_CLOEXEC: "F_DUPFD_CLOEXEC"},
    "whence": {C.SEEK_SET: "SEEK_SET", C.SEEK_CUR: "SEEK_CUR", C.SEEK_END: "SEEK_END"},
}


def _bits(v: int, table, zero: str) -> str:
    names = [n for n, bit in table if v & bit]
    rest = v & ~sum(bit for _, bit in table)
    if rest:
        names.append(f"{rest:#x}")
    return "|".join(names) or zero


def _oflags(v: int) -> str:
    names = [n for n, bit in _OFLAGS if v & bit and n not in ("O_WRONLY", "O_RDWR")]
    acc = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR"}.get(v & 3, "O_ACCMODE")
    return "|".join([acc] + names)


def _string(p, addr: int, limit: int = 48) -> str:
    try:
        raw = p.read_cstr(addr)
    except SyscallError:
        return f"{addr:#x}"
    return _quote(raw, limit)


def _quote(raw: bytes, limit: int) -> str:
    text = raw[:limit].decode("latin-1").encode("unicode_escape").decode().replace('"', '\\"')
    return f'"{text}"' + ("..." if len(raw) > limit else "")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def format_arg(p, kind: str, value: int, nxt: int | None) -> str:
    if kind in ("fd", "int"):
        v = value & 0xFFFFFFFF
        v = v - (1 << 32) if v >> 31 else v
        return "AT_FDCWD" if kind == "fd" and v == C.AT_FDCWD else str(v)
    if kind == "path" or kind == "str":
        return _string(p, value)
    if kind == "buf":  # the first 32 bytes of a buffer whose length is the next argument
        try:
            return _quote(p.read(value, min(nxt or 0, 32)), 32) + \
                ("..." if (nxt or 0) > 32 else "")
        except SyscallError:
            return f"{value:#x}"
    if kind == "oflags":
        return _oflags(value)
    if kind == "prot":
        return _bits(value, _PROT, "PROT_NONE")
    if kind == "mflags":
        return _bits(value, _MAP, "0")
    if kind in _CONSTANTS:
        return _CONSTANTS[kind].get(value & 0xFFFFFFFF, f"{value:#x}")
    if kind == "mode":
        return f"0{value & 0o7777:o}"
    if kind == "size":
        return str(_signed(value))
    if kind == "ptr":
        return "NULL" if value == 0 else f"{value:#x}"
    return f"{value:#x}"


def format_call(p, entry, args) -> str:
    parts = [format_arg(p, kind, v, args[i + 1] if i + 1 < len(args) else None)
             for i, (kind, v) in enumerate(zip(entry.kinds, args))]
    return f"{entry.name}({', '.join(parts)})"


def format_result(p, entry, args, result: int) -> str:
    if result < 0 and -result < 4096:
        return f"-1 {E.name(-result)}"
    if entry.name in ("mmap", "brk", "mremap"):
        return f"{result:#x}"
    return str(result)
