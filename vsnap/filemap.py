"""Files that mappings share pages with, and which page of a file mapping is whose.

A MAP_PRIVATE file mapping shares each page with the file until the process writes to it
(copy-on-write), as Linux does: a write() to the file shows in the pages the process has not
written. A MAP_SHARED mapping shares every page for good: it is the host file's own pages
(Vma.direct, sharedfile.py), which the host keeps up to date. For a private one, vsnap has no
page cache of its own, so "shares" means: the page holds the file's bytes, and whenever the
guest changes the file through vsnap (kernel/fsutil.touch tells AddressSpace.file_changed),
the shared pages of every mapping of that inode are read again. A shared page is kept without
write permission in the CPU even when the mapping has PROT_WRITE; on the first write
Unicorn's TLB-fill hook (cpu.py) asks write_fault, which makes the page the process's own,
and the write goes ahead.
A write by the kernel (a read() into the mapping) does the same through AddressSpace.write.

Pages wholly beyond the end of the file have no permission at all in the CPU: touching them
is SIGBUS, as on Linux (Machine asks AddressSpace.beyond_eof when a fault comes).
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING

from .abi import errno as E
from .errors import SyscallError

if TYPE_CHECKING:
    from .memory import Vma

PAGE = 0x1000
PROT_WRITE, PROT_EXEC = 2, 4


def _page_down(x: int) -> int:
    return x & ~(PAGE - 1)


def _page_up(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


class MappedFile:
    """A file some mappings share pages with. It holds a host descriptor of its own (a dup of
    the guest's), so the mapping keeps the file after the guest closes its descriptor or
    removes the name, as a Linux mapping keeps its file."""

    def __init__(self, host_fd: int, path: str, host_path: str | None):
        st = os.fstat(host_fd)
        self.key = (st.st_dev, st.st_ino)   # the inode: every mapping of it shares its pages
        self.fd = os.dup(host_fd)
        os.set_inheritable(self.fd, False)
        self.path = path                    # the guest's name for it (/proc/self/maps)
        self.host_path = host_path
        self.size = st.st_size              # as of the last change vsnap saw
        self.pages = 0                      # mapped pages that refer to it: closed at 0

    def stat_size(self) -> int:
        self.size = os.fstat(self.fd).st_size
        return self.size

    def read(self, offset: int, size: int) -> bytes:
        """`size` bytes from `offset`, zeros past the end of the file (the tail of the last
        page reads as zeros, as on Linux)."""
        data = os.pread(self.fd, size, offset) if offset < self.size else b""
        return data + bytes(size - len(data))

    def eof_page_offset(self) -> int:
        """The file offset of the first page wholly beyond the end of the file."""
        return (self.size + PAGE - 1) & ~(PAGE - 1)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def forked(self) -> "MappedFile":
        """The same file for a forked address space: its own host descriptor (a dup) and
        its own page count; the same inode, names and size."""
        f = MappedFile.__new__(MappedFile)
        f.key, f.path, f.host_path, f.size, f.pages = (self.key, self.path, self.host_path,
                                                       self.size, 0)
        f.fd = os.dup(self.fd)
        os.set_inheritable(f.fd, False)
        return f


class FileMappings:
    """AddressSpace's part for file mappings (memory.py keeps the VMAs; this keeps which of
    their pages are the process's own, `self.private`, and the files, `self.files`)."""

    def _forget_pages(self, start: int, end: int) -> None:
        """Private-page marks in [start, end) go (the pages are unmapped or dropped)."""
        if (end - start) // PAGE < len(self.private):
            self.private.difference_update(range(start, end, PAGE))
        else:
            self.private -= {p for p in self.private if start <= p < end}

    def mapped_file(self, host_fd: int, path: str, host_path: str | None) -> MappedFile:
        """The MappedFile for the inode behind `host_fd`: the one already mapped, or new."""
        st = os.fstat(host_fd)
        return self.files.get((st.st_dev, st.st_ino)) or MappedFile(host_fd, path, host_path)

    def _eof(self, v: Vma) -> int:
        """The address in `v` where its file's pages end (v.start .. v.end)."""
        return min(v.end, max(v.start, v.start + v.file.eof_page_offset() - v.offset))

    def _own_in(self, lo: int, hi: int) -> list[int]:
        """The pages in [lo, hi) that are the process's own copies, sorted."""
        if (hi - lo) // PAGE < len(self.private):
            return [p for p in range(lo, hi, PAGE) if p in self.private]
        return sorted(p for p in self.private if lo <= p < hi)

    def _apply(self, v: Vma, lo: int, hi: int) -> None:
        """Give the CPU the permissions of [lo, hi) of `v`: a file mapping's shared pages
        lose write permission, its pages past the end of the file lose all."""
        if v.file is None:
            self.backend.protect(lo, hi - lo, v.prot)
            return
        eof = min(hi, max(lo, self._eof(v)))
        # a direct mapping's pages are the file's own: writing them is writing the file
        at, shared = lo, v.prot if v.direct else v.prot & ~PROT_WRITE
        for page in ([] if v.shared else self._own_in(lo, eof)):
            if page > at:
                self.backend.protect(at, page - at, shared)
            self.backend.protect(page, PAGE, v.prot)
            at = page + PAGE
        if eof > at:
            self.backend.protect(at, eof - at, shared)
        if hi > eof:
            self.backend.protect(eof, hi - eof, 0)

    def _refresh(self, v: Vma, lo: int, hi: int) -> None:
        """Read the file again into the pages of [lo, hi) of `v` it shares, and give every
        page there its permission."""
        eof = min(hi, max(lo, self._eof(v)))
        at = eof if v.direct else lo  # (the host keeps a direct mapping up to date)
        for page in ([] if v.shared else self._own_in(lo, eof)):
            if page > at:
                self._load(v, at, page)
            at = page + PAGE
        if eof > at:
            self._load(v, at, eof)
        self._apply(v, lo, hi)
        forget = getattr(self.backend, "forget_code", None)
        if v.prot & PROT_EXEC and eof > lo and forget:
            forget(lo, eof)  # code the CPU translated from the old bytes (once executable)

    def _load(self, v: Vma, lo: int, hi: int) -> None:
        self.write_bulk(lo, v.file.read(v.offset + lo - v.start, hi - lo))

    def file_changed(self, key: tuple[int, int], offset: int = 0,
                     length: int | None = None) -> None:
        """The guest changed bytes [offset, offset+length) of the file with host identity
        `key` (length None: anything, its size included). Every mapping of it shows the new
        bytes in the pages it still shares; pages now wholly past the end of the file are
        dropped (even the process's own copies, as Linux's truncate does) and fault with
        SIGBUS; pages the file grew into come back."""
        f = self.files.get(key)
        if f is None:
            return
        old_eof = f.eof_page_offset()
        f.stat_size()
        new_eof = f.eof_page_offset()
        lo_off = _page_down(offset)
        hi_off = None if length is None else _page_up(offset + length)
        if old_eof != new_eof:  # the pages between the two ends change state
            lo_off = min(lo_off, old_eof, new_eof)
            hi_off = None if hi_off is None else max(hi_off, old_eof, new_eof)
        for v in [v for v in self.vmas if v.file is f]:
            lo = max(v.start, v.start + lo_off - v.offset)
            hi = v.end if hi_off is None else min(v.end, v.start + hi_off - v.offset)
            if lo >= hi:
                continue
            if new_eof < old_eof:
                self._forget_pages(max(lo, v.start + new_eof - v.offset), hi)
            self._refresh(v, lo, hi)

    def write_fault(self, addr: int, size: int) -> bool:
        """A write to [addr, addr+size) faulted. Where it hit pages a private writable file
        mapping still shares with the file, they become the process's own (their bytes
        stay, the write permission comes) and True says: run the instruction again."""
        done = False
        for page in range(_page_down(addr), _page_up(addr + max(size, 1)), PAGE):
            v = self.find(page)
            if (v is not None and v.file is not None and not v.shared and v.prot & PROT_WRITE
                    and page not in self.private and page < self._eof(v)):
                self.private.add(page)
                self.backend.protect(page, PAGE, v.prot)
                done = True
        return done

    def beyond_eof(self, addr: int) -> bool:
        """Is `addr` in a page of a file mapping wholly past the end of its file?"""
        v = self.find(addr)
        return v is not None and v.file is not None and addr >= self._eof(v)

    def discard(self, start: int, end: int) -> None:
        """MADV_DONTNEED: private anonymous pages read back as zeros, the pages a private
        file mapping wrote are dropped and show the file again."""
        for i in self._split(start, end):
            v = self.vmas[i]
            if v.file is not None:
                if not v.shared:
                    self._forget_pages(v.start, v.end)
                    self._refresh(v, v.start, v.end)
            elif v.prot & PROT_WRITE and not v.shared:  # shared memory keeps its bytes
                self.write_bulk(v.start, bytes(v.size))

    def move(self, old: int, size: int, new: int, new_size: int) -> None:
        """mremap's move: [old, old+size) (in one VMA) goes to `new`, `new_size` long, with
        its bytes, its file and its own pages; `old` is unmapped."""
        v = self.find(old)
        self.map(new, new_size, v.prot, v.kind, v.name, file=v.file,
                 offset=v.offset + old - v.start, shared=v.shared, direct=v.direct)
        keep = min(size, new_size)
        mine = [p for p in range(old, old + keep, PAGE) if p in self.private]
        if v.file is None:
            if not (v.shared and hasattr(self.backend, "move_shared")
                    and self.backend.move_shared(old, new, keep)):
                self.write_bulk(new, self.read_bulk(old, keep))  # (shared memory stays so)
        else:
            w = self.find(new)
            for p in mine:
                self.private.add(p - old + new)
                self.write_bulk(p - old + new, self.read_bulk(p, PAGE))
            self._apply(w, w.start, w.end)
        self.unmap(old, size)

    def own_pages(self, v: Vma) -> list[int]:
        """The pages of file VMA `v` that are the process's own (no longer the file's)."""
        if v.shared:
            return []
        if v.size // PAGE < len(self.private):
            return [p for p in range(v.start, v.end, PAGE) if p in self.private]
        return sorted(p for p in self.private if v.start <= p < v.end)

    def attach_file(self, start: int, end: int, file: MappedFile, offset: int, shared: bool,
                    own: list[int], direct: str = "") -> None:
        """Restore: the VMA [start, end), its own pages `own` already in place, shares
        `file` from `offset` again: the other pages are read from the file (or, `direct`,
        are the file's own pages again)."""
        [i] = self._split(start, end)
        v = self.vmas[i] = replace(self.vmas[i], file=file, offset=offset, shared=shared,
                                   direct=direct)
        self.files.setdefault(file.key, file)
        file.pages += v.size // PAGE
        self.private.update(own)
        if direct:
            self._share_file(v)
        self._refresh(v, start, end)

    def _share_file(self, v: Vma) -> None:
        """The pages of direct VMA `v` become the host file's own (sharedfile.py)."""
        from .sharedfile import SharedFile
        shm = SharedFile(v.file.fd, writable=v.direct == "rw")
        try:
            self.backend.share(v.start, v.size, shm, v.offset)
        finally:
            if shm.pages == 0:
                shm.close()

    def check_eof(self, addr: int, size: int, write: bool = False) -> None:
        """The kernel must not touch a direct mapping's pages past the end of its file (the
        host would get SIGBUS), nor write to one without PROT_WRITE (the host's mapping of a
        file open read-only is read-only: SIGSEGV): EFAULT, as Linux gives for them."""
        end = addr + max(size, 1)
        i, j = self._range(addr, end)
        for v in self.vmas[i:j]:
            if v.direct and min(end, v.end) > self._eof(v):
                raise SyscallError(E.EFAULT, f"{v.name}: past the end of the file")
            if v.direct and write and not v.prot & PROT_WRITE:
                raise SyscallError(E.EFAULT, f"{v.name}: mapped without PROT_WRITE")

    def direct_files(self, start: int, end: int) -> set:
        """The host identities of the files direct VMAs in [start, end) map."""
        i, j = self._range(start, end)
        return {v.file.key for v in self.vmas[i:j] if v.direct}

    def sync(self, start: int, end: int) -> None:
        """msync(MS_SYNC): the files of the direct mappings in [start, end) reach the disk
        (their bytes are already the file's: read() sees them without it)."""
        i, j = self._range(start, end)
        done = set()
        for v in self.vmas[i:j]:
            if v.direct and v.file.key not in done:
                done.add(v.file.key)
                os.fdatasync(v.file.fd)

