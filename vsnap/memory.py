"""The guest's address space: a sorted list of VMAs, mirrored into a backend (Unicorn).

AddressSpace is a plain kernel object: it decides where things go and keeps the books (kind,
name, permissions of every page range) so that /proc/self/maps, pictures and checkpoints can
describe memory in the guest's terms. The backend only maps, unmaps, protects and copies bytes;
guestram.UnicornMemory is the real one, and tests can give a dictionary-backed fake.

The books are logarithmic, as Linux's are (a tree there, a sorted list with bisect here): a
program with thousands of mappings pays O(log n) to find one, plus a memmove of the list to
insert or remove one. Free gaps are kept too, so a top-down search skips runs of adjacent
mappings. File mappings share their pages with the file until written: see filemap.py.
"""
from __future__ import annotations

import resource
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, replace
from operator import attrgetter

from .abi import errno as E
from .errors import SyscallError
from .filemap import FileMappings, MappedFile

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
LOWEST, HIGHEST = PAGE, STACK_TOP + PAGE   # the guest's half of the address space
MAX_MAP_COUNT = 65530                      # Linux's vm.max_map_count default
STACK_GUARD_GAP = 256 * PAGE               # Linux's stack_guard_gap: growth keeps this free
RESERVE_FACTOR = 64   # reservations may reach this many times the budget (touched pages count)

_start = attrgetter("start")


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
    file: MappedFile | None = None  # the file whose pages it shares (filemap.py)
    offset: int = 0                 # the file offset of `start`
    shared: bool = False            # MAP_SHARED: never the process's own copy
    growsdown: bool = False         # MAP_GROWSDOWN: an access just below extends it
    direct: str = ""                # MAP_SHARED of a file: the host file's own pages
                                    # (sharedfile.py), "rw" if open for writing, else "r"

    @property
    def size(self) -> int:
        return self.end - self.start

    def perms(self) -> str:
        return "".join(c if self.prot & b else "-"
                       for c, b in (("r", PROT_READ), ("w", PROT_WRITE), ("x", PROT_EXEC))) + \
            ("s" if self.shared else "p")

    def cut(self, start: int, end: int) -> "Vma":
        """The part [start, end) of this VMA (its file offset moves with its start)."""
        return replace(self, start=start, end=end, offset=self.offset + start - self.start)


class AddressSpace(FileMappings):
    """VMAs (page-aligned, non-overlapping, sorted) plus the brk and mmap cursors."""

    def __init__(self, backend, limit: int = 1 << 30, reserve: int | None = None):
        self.backend = backend
        self.limit = limit          # memory budget in bytes: touched pages (see touched())
        # reservations (mapped bytes) stop here: guest RAM costs the host address space only
        # until touched, but not without end
        self.reserve = RESERVE_FACTOR * limit if reserve is None else reserve
        self.vmas: list[Vma] = []
        self.mapped = 0             # bytes mapped: the sum of the VMAs' sizes
        self._gaps: list[tuple[int, int]] = [(LOWEST, HIGHEST)]  # free ranges, sorted
        self.private: set[int] = set()  # pages of MAP_PRIVATE file mappings written to
        self.files: dict[tuple[int, int], MappedFile] = {}  # host (st_dev, st_ino) -> file
        self.brk_start = self.brk = 0
        self.peak_touched = 0       # the most touched memory seen at a check
        self._rss_seen = self._touched_seen = 0  # at the last check
        # what the other processes have touched (sched.wire sets it): one budget for all
        self.others = None
        self._mask, self._mask_of = 0, -1  # check_touched's sampling period - 1, for mapped
        # called with (start, end) when executable memory is mapped, unmapped, reprotected or
        # written from outside the guest: the engine's translated code and the instruction
        # counter's per-block counts for it then go (cpu.py code_changed)
        self.on_code_change = None

    def _code(self, start: int, end: int) -> None:
        if self.on_code_change is None:
            return
        i, j = self._range(start, end)
        if any(v.prot & PROT_EXEC for v in self.vmas[i:j]):
            self.on_code_change(start, end)

    # bookkeeping ---------------------------------------------------------------------------
    def _range(self, start: int, end: int) -> tuple[int, int]:
        """Indexes [i, j) of the VMAs that overlap [start, end)."""
        i = bisect_right(self.vmas, start, key=_start) - 1
        if i < 0 or self.vmas[i].end <= start:
            i += 1
        return i, max(i, bisect_left(self.vmas, end, key=_start))

    def find(self, addr: int) -> Vma | None:
        i = bisect_right(self.vmas, addr, key=_start) - 1
        if i >= 0 and addr < self.vmas[i].end:
            return self.vmas[i]
        return None

    def is_free(self, start: int, end: int) -> bool:
        i, j = self._range(start, end)
        return i == j

    def _overlap(self, start: int, end: int) -> int:
        i, j = self._range(start, end)
        return sum(min(end, v.end) - max(start, v.start) for v in self.vmas[i:j])

    def _take_gap(self, start: int, end: int) -> None:
        """[start, end), free, becomes used."""
        i = bisect_right(self._gaps, (start, HIGHEST + 1)) - 1
        lo, hi = self._gaps[i]
        assert lo <= start and end <= hi, "mapping over a range that is not free"
        self._gaps[i:i + 1] = [g for g in ((lo, start), (end, hi)) if g[0] < g[1]]

    def _free_gap(self, start: int, end: int) -> None:
        """[start, end), used, becomes free (joined to the gaps beside it)."""
        i = bisect_left(self._gaps, (start, start))
        if i > 0 and self._gaps[i - 1][1] == start:
            i -= 1
            start = self._gaps[i][0]
            del self._gaps[i]
        if i < len(self._gaps) and self._gaps[i][0] == end:
            end = self._gaps[i][1]
            del self._gaps[i]
        self._gaps.insert(i, (start, end))

    # changes -------------------------------------------------------------------------------
    def map(self, start: int, length: int, prot: int, kind: str, name: str = "", *,
            file: MappedFile | None = None, offset: int = 0, shared: bool = False,
            growsdown: bool = False, direct: str = "") -> Vma:
        """Map [start, start+length) fresh, replacing whatever was there: zeroed, or with
        `file`'s pages from `offset` on, shared with the file until written (`direct`, "r"
        or "rw": the host file's pages themselves, for MAP_SHARED)."""
        start, end = page_down(start), page_up(start + length)
        if start < LOWEST or end > HIGHEST or end <= start:
            raise SyscallError(E.ENOMEM, f"cannot map {start:#x}-{end:#x}")
        if self.mapped + end - start - self._overlap(start, end) > self.reserve:
            raise SyscallError(E.ENOMEM, f"{(end - start) >> 10} KiB more would pass the "
                                         f"reservation ceiling of {self.reserve >> 20} MiB")
        if len(self.vmas) >= MAX_MAP_COUNT:
            raise SyscallError(E.ENOMEM, f"more than {MAX_MAP_COUNT} mappings")
        if file is not None:  # held first: the unmap below may drop its last other mapping
            file.pages += (end - start) // PAGE
        try:
            self.unmap(start, end - start)
        finally:
            if file is not None:
                file.pages -= (end - start) // PAGE
        vma = Vma(start, end, prot, kind, name, file, offset, shared, growsdown,
                  direct if file is not None else "")
        if file is not None:
            self.files.setdefault(file.key, file)
            file.pages += vma.size // PAGE
            self.backend.map(start, end - start, 0)
            if vma.direct:
                self._share_file(vma)
            self._refresh(vma, start, end)
        else:
            self.backend.map(start, end - start, prot)
            if shared and hasattr(self.backend, "share"):
                # MAP_SHARED anonymous: pages a forked child maps too (sharedmem.py)
                self.backend.share(start, end - start)
        self._take_gap(start, end)
        self.vmas.insert(bisect_left(self.vmas, start, key=_start), vma)
        self.mapped += vma.size
        if prot & PROT_EXEC and self.on_code_change is not None:
            self.on_code_change(start, end)
        return vma

    def _split(self, start: int, end: int) -> range:
        """Cut the VMAs at start and end; the indexes of those inside [start, end)."""
        i, j = self._range(start, end)
        if i == j:
            return range(i, i)
        first, last = self.vmas[i], self.vmas[j - 1]
        if first.start < start:
            self.vmas[i:i + 1] = [first.cut(first.start, start), first.cut(start, first.end)]
            i, j = i + 1, j + 1
            last = self.vmas[j - 1]
        if last.end > end:
            self.vmas[j - 1:j] = [last.cut(last.start, end), last.cut(end, last.end)]
        return range(i, j)

    def unmap(self, start: int, length: int) -> None:
        end = page_up(start + length)
        self._code(start, end)
        inside = self._split(start, end)
        gone = self.vmas[inside.start:inside.stop]
        del self.vmas[inside.start:inside.stop]
        for v in gone:
            self.backend.unmap(v.start, v.size)
            self._free_gap(v.start, v.end)
            self.mapped -= v.size
            if v.file is not None:
                self._forget_pages(v.start, v.end)
                v.file.pages -= v.size // PAGE
                if v.file.pages == 0:
                    del self.files[v.file.key]
                    v.file.close()

    def relabel(self, start: int, end: int, kind: str) -> None:
        """Change the kind of the VMAs in [start, end) (a patched text page becomes "text*":
        it can no longer be re-read from the program file)."""
        for i in self._split(start, end):
            self.vmas[i] = replace(self.vmas[i], kind=kind)

    def protect(self, start: int, length: int, prot: int) -> None:
        end = page_up(start + length)
        self._code(start, end)
        covered = 0
        for i in self._split(start, end):
            v = self.vmas[i]
            if v.shared and v.file is not None and v.direct != "rw" and prot & PROT_WRITE:
                # a file open read-only: as Linux, EACCES
                raise SyscallError(E.EACCES, f"the shared mapping of {v.name} cannot be "
                                             f"made writable: the file is not open for "
                                             f"writing")
            covered += v.size
            # text made writable may change: it can no longer be re-read from the program
            kind = "text*" if v.kind == "text" and prot & PROT_WRITE else v.kind
            self.vmas[i] = v = replace(v, prot=prot, kind=kind)
            self._apply(v, v.start, v.end)
        if covered != end - start:
            raise SyscallError(E.ENOMEM, "mprotect of unmapped memory")

    def find_free(self, length: int, top: int = MMAP_TOP, bottom: int = MMAP_BOTTOM) -> int:
        """Highest free, page-aligned gap of `length` bytes below `top` (Linux's top-down mmap).
        The walk visits only gaps too small to use, never the mappings between them."""
        length = page_up(length)
        for k in range(bisect_left(self._gaps, (top, top)) - 1, -1, -1):
            lo, hi = self._gaps[k]
            hi = min(hi, top)
            if hi <= bottom:
                break
            if hi - max(lo, bottom) >= length:
                return hi - length
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
            self._merge_heap(old_top)
        elif new_top < old_top:
            self.unmap(new_top, old_top - new_top)
        self.brk = new
        return new

    def grow_stack(self, new_start: int) -> None:
        """Map [new_start, the stack's lowest page) as more stack: it grows down, as far as
        kernel/limits.grow_stack allows. One VMA, as /proc/self/maps shows it on Linux."""
        stack = min((v for v in self.vmas if v.kind == "stack"), key=lambda v: v.start)
        self.map(new_start, stack.start - new_start, stack.prot, "stack", stack.name)
        i = bisect_left(self.vmas, new_start, key=_start)
        self.vmas[i:i + 2] = [replace(stack, start=new_start)]  # one VMA, as grow_down does

    def _merge_heap(self, at: int) -> None:
        """Join the heap VMA that starts at `at` to the heap VMA that ends there."""
        i = bisect_left(self.vmas, at, key=_start)
        if 0 < i < len(self.vmas):
            a, b = self.vmas[i - 1], self.vmas[i]
            if a.kind == b.kind == "heap" and a.end == b.start and a.prot == b.prot:
                self.vmas[i - 1:i + 1] = [replace(a, end=b.end)]

    def grow_down(self, addr: int) -> bool:
        """An access to unmapped `addr`: if a MAP_GROWSDOWN mapping lies above it, extend
        that mapping down to addr's page, as Linux's expand_stack does, unless that would
        come within STACK_GUARD_GAP of the mapping below. True if it grew."""
        i = bisect_right(self.vmas, addr, key=_start)
        if i == len(self.vmas) or not self.vmas[i].growsdown or addr < LOWEST:
            return False
        v, start = self.vmas[i], page_down(addr)
        if i > 0 and self.vmas[i - 1].end + STACK_GUARD_GAP > start:
            return False
        try:
            self.map(start, v.start - start, v.prot, v.kind, v.name, growsdown=True)
        except SyscallError:
            return False
        self.vmas[i:i + 2] = [replace(v, start=start)]  # one VMA, as Linux extends it
        return True

    # memory accounting ---------------------------------------------------------------------
    def touched(self) -> int | None:
        """Bytes of guest memory that have held data (None if the backend cannot say)."""
        fn = getattr(self.backend, "touched_bytes", None)
        return fn() if fn else None

    def check_touched(self, now: int | None = None) -> None:
        """Enforce the budget as Linux's overcommit does: on pages touched, not reserved;
        MemoryBudgetExceeded when over. A check reads /proc/self/pagemap (about 1.5 ns a
        mapped page, and a system call per Unicorn region), so with `now` (the system call
        count) it runs only when it may matter: while the reservations exceed the budget
        (only then can the touched pages), when the host's peak resident memory has grown
        by half the room left since the last check (the guest's touched pages are part of
        it), and every so many calls for the peak in --stats (about 0.25 us a call)."""
        others = self.others() if self.others is not None else 0
        limit = self.limit - others  # the budget covers every process together
        if now is not None:
            if self._mask_of != self.mapped:  # the layout changed: what a check costs
                scan = getattr(self.backend, "scan_pages", None)
                cost = 2 + (scan() if scan else self.mapped // PAGE) // 700  # us, roughly
                self._mask, self._mask_of = (1 << (cost * 4).bit_length()) - 1, self.mapped
            if now & self._mask:
                if self.mapped <= limit:
                    return
                if _peak_rss() - self._rss_seen < (limit - self._touched_seen) // 2:
                    return
        used = self.touched()
        if used is None:
            used = self.mapped  # the host cannot say: count what is mapped
        self.peak_touched = max(self.peak_touched, used)
        self._touched_seen = used
        if self.mapped > limit:  # (getrusage costs up to milliseconds at times)
            self._rss_seen = _peak_rss()
        if used > limit:
            raise MemoryBudgetExceeded(self.limit, used - limit, touched=True)

    def fork_books(self, backend) -> "AddressSpace":
        """A copy of these books over `backend`, which already holds a copy of the memory and
        of the page permissions (memfork.py): the same VMAs, gaps, brk, budget and
        private-page marks. File mappings get MappedFiles of their own: each address space
        counts its pages of a file and holds its own host descriptor for it."""
        child = AddressSpace(backend, self.limit, self.reserve)
        child.files = {key: f.forked() for key, f in self.files.items()}
        child.vmas = [v if v.file is None else replace(v, file=child.files[v.file.key])
                      for v in self.vmas]
        for v in child.vmas:
            if v.file is not None:
                v.file.pages += v.size // PAGE
        child.mapped, child._gaps = self.mapped, list(self._gaps)
        child.private = set(self.private)
        child.brk_start, child.brk = self.brk_start, self.brk
        child.peak_touched, child._touched_seen = self.peak_touched, self._touched_seen
        return child

    def close(self) -> None:
        """The guest is gone: let go of the host descriptors the mappings hold."""
        self.closed = True
        for f in self.files.values():
            f.close()
        close = getattr(self.backend, "close", None)
        if close:
            close()

    # bytes ---------------------------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        if self.files:
            self.check_eof(addr, size)
        return self.backend.read(addr, size)

    def write(self, addr: int, data: bytes) -> None:
        """The kernel writes to guest memory (a read() into a buffer...): pages a private
        file mapping shares become the process's own first, as a CPU write would make them."""
        if self.files:
            self.check_eof(addr, len(data), write=True)
            self.write_fault(addr, len(data))
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

    def maps_text(self, inode=None) -> str:
        """The guest's memory map in /proc/self/maps format (`inode`: the guest's inode
        number of a MappedFile, for file mappings)."""
        lines = []
        for v in self.vmas:
            offset = v.offset if v.file is not None else 0
            dev, ino = "00:00", 0
            if inode is not None and v.file is not None:
                dev, ino = "08:01", inode(v.file)  # the one mount's st_dev (procfs)
            line = f"{v.start:08x}-{v.end:08x} {v.perms()} {offset:08x} {dev} {ino}"
            lines.append(f"{line:<73}{v.name}".rstrip() if v.name else line)
        return "\n".join(lines) + "\n"


def _peak_rss() -> int:
    """The host process's peak resident memory in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class MemoryBudgetExceeded(Exception):
    def __init__(self, limit: int, wanted: int, touched: bool = False):
        what = (f"{wanted} bytes touched over it" if touched
                else f"asked for {wanted} more bytes")
        super().__init__(f"memory budget of {limit >> 20} MiB exceeded ({what})")
        self.limit, self.wanted = limit, wanted
