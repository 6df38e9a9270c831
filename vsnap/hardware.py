"""A process's hardware: a new Unicorn engine (Cpu) and an empty address space on it, wired
to each other. The first process gets one from Machine, an execve a fresh one (the old
program's engine and memory go: exec replaces the whole image); fork copies one
(cpufork.py)."""
from __future__ import annotations

from .cpu import Cpu
from .cpufork import code_cacheable
from .guestram import UnicornMemory
from .knownblocks import KnownBlocks
from .memory import AddressSpace


def new_hardware(max_memory: int) -> tuple[Cpu, AddressSpace]:
    """An engine at ring 3 with vsnap's hooks, and no memory mapped yet."""
    cpu = Cpu()
    mem = AddressSpace(UnicornMemory(cpu.uc, cpu.pages), limit=max_memory)
    cpu.code_cacheable = code_cacheable(mem)
    cpu.use_known_blocks(KnownBlocks(mem))
    mem.on_code_change = cpu.code_changed
    return cpu, mem
