"""Files that mappings share pages with, and which page of a file mapping is whose.

A MAP_PRIVATE file mapping shares each page with the file until the process writes to it
(copy-on-write), as Linux does: a write() to the file shows in the pages the process has not
written. A MAP_SHARED (read-only) mapping shares every page for good. vsnap has no page cache
of its own, so "shares" means: the page holds the file's bytes, and whenever the guest changes
the file through vsnap (kernel/fsutil.touch tells AddressSpace.file_changed), the shared pages
of every mapping of that inode are read again. A shared page is kept without write permission
in the CPU even when the mapping has PROT_WRITE; the first write faults, and the page becomes
the process's own (AddressSpace.write_fault) before the instruction runs again.

Pages wholly beyond the end of the file have no permission at all in the CPU: touching them
is SIGBUS, as on Linux (Machine asks AddressSpace.beyond_eof when a fault comes).
"""
from __future__ import annotations

import os

PAGE = 0x1000


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
