"""vsnap patch: change a register or some bytes of a saved guest, the way one would at a
debugger's prompt, and write the image again (with new hashes: a patched image is a new,
honest image, not a tampered one).

It restores the image into a machine (so every check restore makes applies: the same
program, unchanged files), changes it there, and checkpoints it again.
"""
from __future__ import annotations

from ..cpu import REGISTERS
from ..errors import SyscallError, UsageError
from .checkpoint import checkpoint
from .restore import restore


def parse_set(text: str) -> tuple[str, int]:
    name, _, value = text.partition("=")
    name = name.strip().lower()
    if name not in REGISTERS:
        raise UsageError(f"vsnap: --set {text}: no register {name!r}; try rax, rip, rsp, xmm0")
    try:
        return name, int(value, 0)
    except ValueError:
        raise UsageError(f"vsnap: --set {text}: {value!r} is not a number (0x10, 16)") from None


def parse_poke(text: str) -> tuple[int, bytes]:
    addr, _, data = text.partition("=")
    try:
        return int(addr, 0), bytes.fromhex(data.replace(" ", ""))
    except ValueError:
        raise UsageError(f"vsnap: --poke {text}: expected ADDR=HEXBYTES, like "
                         f"0x401000=9090") from None


def patch(path: str, out: str, sets: list[tuple[str, int]], pokes: list[tuple[int, bytes]],
          *, root: str | None = None) -> list[str]:
    """Apply the changes; return one line per change, for the user."""
    m, _ = restore(path, root=root)
    said = []
    for name, value in sets:
        old = m.cpu.read(name)
        m.cpu.write(name, value)
        said.append(f"{name}: {old:#x} -> {m.cpu.read(name):#x}")
    for addr, data in pokes:
        vma = m.mem.find(addr)
        if vma is None or m.mem.find(addr + len(data) - 1) is None:
            raise UsageError(f"vsnap: --poke {addr:#x}: not mapped in the saved guest; "
                             f"see vsnap inspect IMAGE mems")
        try:
            old = m.mem.read(addr, len(data))
            m.mem.write(addr, data)
        except SyscallError:
            raise UsageError(f"vsnap: --poke {addr:#x}: cannot write there") from None
        if vma.kind == "text":  # the page no longer matches the program file: save it
            m.mem.relabel(vma.start, vma.end, "text*")
        said.append(f"{addr:#x}: {old.hex()} -> {data.hex()}")
    checkpoint(m, out)
    m.close()
    return said
