"""What a core file holds, and nothing more: one process's memory regions with their bytes,
its registers (general, x87/SSE), its identity, its signal masks, and the program it runs (for
the auxv's fallback and the file mappings). No descriptors, no pipes, no sockets, no other
process: Linux's core of a process that holds a socket or shares memory with a vfork child is
as good as any other, so vsnap's must be too.

A record is made from a live process at the instruction it dies at (of_process: crashdump.py)
or from a saved image (snapshot/coredump.py: of_image, for `vsnap core IMAGE`); the core file
is written from the record alone (snapshot/coredump.py: core_bytes).
"""
from __future__ import annotations

from dataclasses import dataclass

from .loader import Program


@dataclass(frozen=True)
class Region:
    """One VMA as a PT_LOAD: its bounds, PROT_* bits, kind (text, stack, ...) and bytes."""

    start: int
    end: int
    prot: int
    kind: str
    data: bytes


@dataclass(frozen=True)
class CoreRecord:
    regions: list[Region]
    registers: dict[str, int]   # by name, as Cpu.snapshot_registers gives them
    pid: int
    ppid: int
    pgid: int
    sid: int
    uid: int
    gid: int
    pending: int                # the pending and blocked signal sets (pr_sigpend, pr_sighold)
    blocked: int
    exe: str                    # the program's name when argv is not on the stack any more
    program: Program            # the file it runs: auxv fallback, NT_FILE's mappings
    program_path: str           # its host path, named in NT_FILE so gdb matches the file


def of_process(p) -> CoreRecord:
    """The record of a live process, read where it stands: its engine's registers and every
    byte of its address space as its CPU sees them (a vfork child's is its parent's memory,
    as on Linux)."""
    t = p.task
    regions = [Region(v.start, v.end, v.prot, v.kind, bytes(p.mem.read_bulk(v.start, v.size)))
               for v in p.mem.vmas]
    return CoreRecord(regions, p.cpu.snapshot_registers(), t.pid, t.ppid, t.pgid, t.sid,
                      t.uid, t.gid, p.signals.pending_mask, p.signals.blocked,
                      t.exe or p.exe_guest or p.exe_host, p.program, p.exe_host)
