"""The guest's address space: a sorted list of VMAs, mirrored into a backend (Unicorn).

AddressSpace is a plain kernel object: it decides where things go and keeps the books (kind,
name, permissions of every page range) so that /proc/self/maps, pictures and checkpoints can
describe memory in the guest's terms. The backend only maps, unmaps, protects and copies bytes;
guestram.UnicornMemory is the real one, and tests can give a dictionary-backed fake.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .abi import errno as E
from .errors import SyscallError

PAGE = 0x1000
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4

# Where things go when ASLR is off, as on Linux (setarch -R): mmap grows down from just
# below the stack; a static-pie program is loaded at 0x555555554000.
STACK_TOP = 0x7FFF_FFFF_F000
STACK_SIZE = 8 << 20      # RLIMIT_STACK's default: how far the stack may grow
STACK_EXPAND = 128 << 10  # mapped below the arguments at exec (Linux's setup_arg_pages)
MMAP_TOP = 0x7FFF_F7FF_F000
MMAP_BOTTOM = 0x1000_0000
PIE_BASE = 0x5555_5555_4000


def page_down(x: int) -> int:
    return x & ~(PAGE - 1)


def page_up(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


@dataclass(frozen=True)
class Vma:
    start: int
    end: int
    prot: int
    kind: str    # text, data, bss, heap, stack, mmap
    name: str = ""  # what /proc/self/maps shows in the last column

    @property
    def size(self) -> int:
        return self.end - self.start

    def perms(self) -> str:
        return "".join(c if self.prot & b else "-"
                       for c, b in (("r", PROT_READ), ("w", PROT_WRITE), ("x", PROT_EXEC))) + "p"


class AddressSpace:
    """VMAs (page-aligned, non-overlapping, sorted) plus the brk and mmap cursors."""

    def __init__(self, backend, limit: int = 1 << 30):
        self.backend = backend
        self.limit = limit          # memory budget in bytes over all mappings
        self.vmas: list[Vma] = []
        self.brk_start = self.brk = 0
        # called with (start, end) when executable memory is mapped, unmapped, reprotected or
        # written from outside the guest: the engine's translated code and the instruction
        # counter's per-block counts for it then go (cpu.py code_changed)
        self.on_code_change = None

    def _code(self, start: int, end: int) -> None:
        if self.on_code_change is not None and any(
                v.prot & PROT_EXEC and v.start < end and start < v.end for v in self.vmas):
            self.on_code_change(start, end)

    # bookkeeping ---------------------------------------------------------------------------
    @property
    def mapped(self) -> int:
        return sum(v.size for v in self.vmas)

    def find(self, addr: int) -> Vma | None:
        for v in self.vmas:
            if v.start <= addr < v.end:
                return v
        return None

    def is_free(self, start: int, end: int) -> bool:
        return all(v.end <= start or v.start >= end for v in self.vmas)

    def _check_budget(self, extra: int) -> None:
        if self.mapped + extra > self.limit:
            raise MemoryBudgetExceeded(self.limit, extra)

    # changes -------------------------------------------------------------------------------
    def map(self, start: int, length: int, prot: int, kind: str, name: str = "") -> Vma:
        """Map [start, start+length) fresh and zeroed, replacing whatever was there."""
        start, end = page_down(start), page_up(start + length)
        if start < PAGE or end > STACK_TOP + PAGE or end <= start:
            raise SyscallError(E.ENOMEM, f"cannot map {start:#x}-{end:#x}")
        self._check_budget(end - start - self._overlap(start, end))
        self.unmap(start, end - start)
        self.backend.map(start, end - start, prot)
        if prot & PROT_EXEC and self.on_code_change is not None:
            self.on_code_change(start, end)
        vma = Vma(start, end, prot, kind, name)
        self.vmas.append(vma)
        self.vmas.sort(key=lambda v: v.start)
        return vma

    def _overlap(self, start: int, end: int) -> int:
        return sum(max(0, min(end, v.end) - max(start, v.start)) for v in self.vmas)

    def _split(self, start: int, end: int):
        """Cut VMAs at start and end; yield indexes of those inside [start, end)."""
        out = []
        for v in self.vmas:
            if v.end <= start or v.start >= end:
                out.append(v)
                continue
            if v.start < start:
                out.append(replace(v, end=start))
                v = replace(v, start=start)
            if v.end > end:
                out.append(replace(v, start=end))
                v = replace(v, end=end)
            out.append(v)
        self.vmas = sorted(out, key=lambda v: v.start)
        return [i for i, v in enumerate(self.vmas) if start <= v.start and v.end <= end]

    def unmap(self, start: int, length: int) -> None:
        end = page_up(start + length)
        self._code(start, end)
        for i in reversed(self._split(start, end)):
            v = self.vmas.pop(i)
            self.backend.unmap(v.start, v.size)

    def relabel(self, start: int, end: int, kind: str) -> None:
        """Change the kind of the VMAs in [start, end) (a patched text page becomes "text*":
        it can no longer be re-read from the program file)."""
        for i in self._split(start, end):
            self.vmas[i] = replace(self.vmas[i], kind=kind)

    def protect(self, start: int, length: int, prot: int) -> None:
        end = page_up(start + length)
        self._code(start, end)
        covered = 0
        inside = self._split(start, end)
        for i in inside:
            v = self.vmas[i]
            covered += v.size
            # text made writable may change: it can no longer be re-read from the program
            kind = "text*" if v.kind == "text" and prot & PROT_WRITE else v.kind
            self.vmas[i] = replace(v, prot=prot, kind=kind)
            self.backend.protect(v.start, v.size, prot)
        if covered != end - start:
            raise SyscallError(E.ENOMEM, "mprotect of unmapped memory")

    def find_free(self, length: int, top: int = MMAP_TOP, bottom: int = MMAP_BOTTOM) -> int:
        """Highest free, page-aligned gap of `length` bytes below `top` (Linux's top-down mmap)."""
        length = page_up(length)
        end = top
        for v in sorted(self.vmas, key=lambda v: -v.start):
            if v.start >= end:
                end = min(end, v.start)
                continue
            if v.end <= end - length:
                return end - length
            end = min(end, v.start)
        if end - length >= bottom:
            return end - length
        raise SyscallError(E.ENOMEM, f"no room for {length} bytes")

    # brk -----------------------------------------------------------------------------------
    def set_brk_start(self, addr: int) -> None:
        self.brk_start = self.brk = addr

    def set_brk(self, new: int) -> int:
        """Move the program break; return the new break, or the old one if it cannot move."""
        if new < self.brk_start:
            return self.brk
        old_top, new_top = page_up(self.brk), page_up(new)
        if new_top > old_top:
            if not self.is_free(old_top, new_top):
                return self.brk
            try:
                self.map(old_top, new_top - old_top, PROT_READ | PROT_WRITE, "heap", "[heap]")
            except SyscallError:
                return self.brk
            self._merge_heap()
        elif new_top < old_top:
            self.unmap(new_top, old_top - new_top)
        self.brk = new
        return new

    def grow_stack(self, new_start: int) -> None:
        """Map [new_start, the stack's lowest page) as more stack: it grows down, as far as
        kernel/limits.grow_stack allows. One VMA, as /proc/self/maps shows it on Linux."""
        stack = min((v for v in self.vmas if v.kind == "stack"), key=lambda v: v.start)
        self.map(new_start, stack.start - new_start, stack.prot, "stack", stack.name)
        self.vmas = sorted([v for v in self.vmas if v.start not in (new_start, stack.start)]
                           + [replace(stack, start=new_start)], key=lambda v: v.start)

    def _merge_heap(self) -> None:
        merged: list[Vma] = []
        for v in self.vmas:
            if merged and v.kind == "heap" and merged[-1].kind == "heap" \
                    and merged[-1].end == v.start and merged[-1].prot == v.prot:
                merged[-1] = replace(merged[-1], end=v.end)
            else:
                merged.append(v)
        self.vmas = merged

    # bytes ---------------------------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        return self.backend.read(addr, size)

    def write(self, addr: int, data: bytes) -> None:
        self.backend.write(addr, bytes(data))
        self._code(addr, addr + len(data))

    def read_bulk(self, addr: int, size: int):
        """Many pages at once (checkpoints): the backend's fast path when it has one."""
        fast = getattr(self.backend, "read_bulk", None)
        return fast(addr, size) if fast else bytearray(self.backend.read(addr, size))

    def ram_view(self, addr: int, size: int):
        """A writable view of guest memory itself (restore fills it), or None where the
        backend keeps none."""
        view = getattr(self.backend, "view", None)
        self._code(addr, addr + size)
        return view(addr, size) if view else None

    def write_bulk(self, addr: int, data) -> None:
        fast = getattr(self.backend, "write_bulk", None)
        self._code(addr, addr + len(data))
        if fast:
            fast(addr, data)
        else:
            self.backend.write(addr, bytes(data))

    def maps_text(self) -> str:
        """The guest's memory map in /proc/self/maps format."""
        lines = []
        for v in self.vmas:
            line = f"{v.start:08x}-{v.end:08x} {v.perms()} 00000000 00:00 0"
            lines.append(f"{line:<73}{v.name}".rstrip() if v.name else line)
        return "\n".join(lines) + "\n"


class MemoryBudgetExceeded(Exception):
    def __init__(self, limit: int, wanted: int):
        super().__init__(f"memory budget of {limit >> 20} MiB exceeded "
                         f"(asked for {wanted} more bytes)")
        self.limit, self.wanted = limit, wanted
