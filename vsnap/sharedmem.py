"""Shared anonymous memory (MAP_SHARED | MAP_ANONYMOUS): the same host pages in several engines.

Guest RAM is private host memory in arenas (guestram.py): guest address g of an engine lives at
its arena's host address + (g - base), and Unicorn reads and writes that host memory directly.
So two engines can share pages only if both arenas have the SAME host pages at those places.
A SharedMemory is a memfd (an anonymous shmem file, as Linux itself backs MAP_SHARED anonymous
memory); `attach` maps a stretch of it over the arena's pages with mmap(MAP_SHARED | MAP_FIXED),
in every engine that shares it: a store by one engine is then in the other's memory at once,
with no copy and no hook. `detach` puts fresh private zero pages back (an unmapped page must
read as zeros when mapped again, as guestram's MADV_DONTNEED gives elsewhere; on a shared
mapping MADV_DONTNEED would leave the file's bytes).

Where it differs from Linux: mremap that grows such a mapping in place gives the new pages
a SharedMemory of their own, zeros; Linux keeps one shmem object of the old size, and the
pages past its end raise SIGBUS (checked natively: tests/guests/shared_anon.c's note).
Python's mmap module cannot map at a given address, so this calls libc's mmap through ctypes.
"""
from __future__ import annotations

import ctypes
import mmap
import os

PAGE = 0x1000
_MAP_FIXED = 0x10
_MAP_NORESERVE = 0x4000
_MADV_NOHUGEPAGE = 15
_PROT_RW = mmap.PROT_READ | mmap.PROT_WRITE

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_MAP_FAILED = ctypes.c_void_p(-1).value


def _mmap_fixed(host: int, size: int, flags: int, fd: int, offset: int,
                prot: int = _PROT_RW) -> None:
    got = _libc.mmap(host, size, prot, flags | _MAP_FIXED, fd, offset)
    if got == _MAP_FAILED or got != host:
        err = ctypes.get_errno()
        raise OSError(err, f"mmap at {host:#x}: {os.strerror(err)}")


class SharedMemory:
    """The shmem object behind one MAP_SHARED anonymous mapping: `size` bytes, zeros at first.
    It lives while some engine maps a page of it (`pages`, counted over every engine): the
    host descriptor is closed at 0, and the pages go when the last mapping does."""

    def __init__(self, size: int):
        self.size = size
        self.fd: int | None = os.memfd_create("vsnap-shared", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, size)
        except OSError:
            os.close(self.fd)
            raise
        self.pages = 0

    def attach(self, host: int, offset: int, size: int) -> None:
        """Map [offset, offset+size) of it at host address `host` (an arena's page)."""
        _mmap_fixed(host, size, mmap.MAP_SHARED | _MAP_NORESERVE, self.fd, offset)
        self.pages += size // PAGE

    def detach(self, host: int, size: int) -> None:
        """Host pages [host, host+size) become fresh private zero pages of the arena again."""
        _mmap_fixed(host, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0)
        _libc.madvise(host, size, _MADV_NOHUGEPAGE)  # as Arena asks for its pages
        self.pages -= size // PAGE
        if self.pages <= 0:
            self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
