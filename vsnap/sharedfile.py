"""MAP_SHARED mappings of a file open for writing: the host file's own pages in guest RAM.

sharedmem.py maps a memfd over an arena's pages so that engines share them; a shared file
mapping is the same with the host file in the memfd's place: its stretch of the file is
mapped with mmap(MAP_SHARED | MAP_FIXED) over the arena's pages. The guest's stores are then
stores into the host's page cache of the file: read()/pread() of it (by vsnap for any guest
process, or by the host) see them at once, and a write() to the file is in the mapping at
once, with no copy, no hook and no write-back, as on Linux. A forked child maps the same
SharedFile (memfork.py), so parent and child keep sharing the file's pages.

Pages wholly past the end of the file must never be touched by the host (the host would get
SIGBUS): the books give them no permission (filemap._apply), so the guest gets SIGBUS
instead, and the kernel's own reads and writes of them are EFAULT (AddressSpace.read/write).
"""
from __future__ import annotations

import mmap
import os

from .sharedmem import _MAP_NORESERVE, PAGE, SharedMemory, _mmap_fixed


class SharedFile(SharedMemory):
    """A host file (its descriptor `fd`, reopened) mapped shared into one or more engines,
    for reading and writing when `writable`, else for reading only (a MAP_SHARED mapping of a
    file the guest opened read-only: it can never be written, so the host's is read-only too).
    It lives while some engine maps a page of it, as SharedMemory does."""

    def __init__(self, fd: int, writable: bool = True):
        # a descriptor of its own, open for writing when it must be (mmap MAP_SHARED with
        # PROT_WRITE needs it): the MappedFile's may be read-only (made for a private mapping)
        # (O_NOATIME: mapping it must not stamp the host's clock on the file, as open_noatime)
        self.prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        path = f"/proc/self/fd/{fd}"
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC
        try:
            self.fd = os.open(path, flags | getattr(os, "O_NOATIME", 0))
        except PermissionError:  # EPERM: the host user does not own it
            self.fd = os.open(path, flags)
        self.size = os.fstat(self.fd).st_size
        self.pages = 0

    def attach(self, host: int, offset: int, size: int) -> None:
        _mmap_fixed(host, size, mmap.MAP_SHARED | _MAP_NORESERVE, self.fd, offset, self.prot)
        self.pages += size // PAGE

    def __del__(self):
        # an engine dropped without detaching (a machine closed after its run): the host
        # pages went with its arenas; the descriptor goes with the last engine that held it
        self.close()
