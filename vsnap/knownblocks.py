"""Block counts that outlive a machine: what one engine learned about a program's text, handed
to the next engine that runs the same bytes at the same addresses.

The block counter (counter.py) asks Python once for every block its table does not hold: a
call into Python, a read of the block's bytes, a decode. A fresh machine starts with an
empty table, and `vsnap check` or a property test makes hundreds of fresh machines of one
program (two per example: the run to k and the resumed one), so most of their misses ask
again what the last machine already knew. Here they are kept, per run of read-only text, and
a new counter starts with them in its table.

Why that is as exact as asking: an entry (address, size, n) is kept for a text run
[start, end) only together with the run's bytes B, and n is the count of B's own bytes
[address, address + size). A counter is given the entries of a run only when the machine's
memory there is byte for byte B and no byte of it is writable, which is what makes the
counter keep a block it was asked about; after that, any change to executable memory empties
the table (counter.py code_changed), the seeded entries with it, and the next miss asks here
again. Only text the loader mapped from the program (kind "text", no file mapping behind it)
is considered.
"""
from __future__ import annotations

import ctypes
import struct
from collections import OrderedDict

from .memory import PROT_EXEC, PROT_WRITE

_ENTRY = struct.Struct("<QII")   # struct entry in counter.py's C source
_KEEP_RUNS = 64                  # text runs remembered, least recently used dropped first
_KEEP_BLOCKS = 1 << 14           # blocks remembered per run (the table holds 65,536)


class _Run:
    """What is known about one text run with given bytes."""

    __slots__ = ("data", "blocks", "_packed")

    def __init__(self, data: bytes):
        self.data = data
        self.blocks: dict[tuple[int, int], int] = {}
        self._packed = None

    def packed(self):
        """The entries as the C table's struct entry array, and their number."""
        if self._packed is None:
            raw = b"".join(_ENTRY.pack(a, s, n) for (a, s), n in self.blocks.items())
            self._packed = (ctypes.create_string_buffer(raw, len(raw) or 1), len(self.blocks))
        return self._packed


_RUNS: OrderedDict[tuple[int, int], list[_Run]] = OrderedDict()


def forget_all() -> None:
    """Drop everything remembered (tests)."""
    _RUNS.clear()


class KnownBlocks:
    """One machine's view of the shared store: `seed()` gives the counter what is known for
    the text as it is now; `learned()` adds a block the counter had to count itself."""

    def __init__(self, mem):
        self._mem = mem
        self._active: list[tuple[int, int, _Run]] = []  # the runs validated at the last seed

    def _text_runs(self):
        """Maximal runs [start, end) of loader-mapped, executable, non-writable text."""
        runs: list[list[int]] = []
        for v in self._mem.vmas:
            if v.kind != "text" or v.file is not None or not v.prot & PROT_EXEC \
                    or v.prot & PROT_WRITE:
                continue
            if runs and runs[-1][1] == v.start:
                runs[-1][1] = v.end
            else:
                runs.append([v.start, v.end])
        return runs

    def seed(self) -> list:
        """[(buffer, count)] of packed entries valid for memory as it is now (the counter
        puts them in its freshly emptied table)."""
        self._active = []
        out = []
        for start, end in self._text_runs():
            data = self._mem.read(start, end - start)
            key = (start, end)
            same = _RUNS.get(key)
            run = next((r for r in same if r.data == data), None) if same else None
            if run is None:
                run = _Run(bytes(data))
                same = _RUNS.setdefault(key, [])
                same.insert(0, run)
                del same[4:]  # a few programs may share an address range
            _RUNS.move_to_end(key)
            while len(_RUNS) > _KEEP_RUNS:
                _RUNS.popitem(last=False)
            self._active.append((start, end, run))
            if run.blocks:
                out.append(run.packed())
        return out

    def learned(self, address: int, size: int, n: int, code: bytes) -> None:
        """The counter counted the block [address, address + size) itself (n instructions,
        these bytes): remember it if it lies in a validated run that still holds them."""
        for start, end, run in self._active:
            if start <= address and address + size <= end:
                if (address, size) not in run.blocks and len(run.blocks) < _KEEP_BLOCKS \
                        and run.data[address - start:address - start + size] == code:
                    run.blocks[(address, size)] = n
                    run._packed = None
                return

    def invalidate(self) -> None:
        """Executable memory changed: nothing learned from now on belongs to the old runs
        until the next seed checks them again."""
        self._active = []
