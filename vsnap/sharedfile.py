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

import os

from .sharedmem import SharedMemory


class SharedFile(SharedMemory):
    """A host file (its descriptor `fd`, reopened for reading and writing) mapped shared into
    one or more engines. It lives while some engine maps a page of it, as SharedMemory does."""

    def __init__(self, fd: int):
        # a descriptor of its own, open for writing (mmap MAP_SHARED with PROT_WRITE needs
        # it): the MappedFile's may be read-only (it may have been made for a private mapping)
        # (O_NOATIME: mapping it must not stamp the host's clock on the file, as open_noatime)
        path, flags = f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC
        try:
            self.fd = os.open(path, flags | getattr(os, "O_NOATIME", 0))
        except PermissionError:  # EPERM: the host user does not own it
            self.fd = os.open(path, flags)
        self.size = os.fstat(self.fd).st_size
        self.pages = 0
