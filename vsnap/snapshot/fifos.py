"""Named pipes in an image: which FIFO (by name, checked to be a FIFO still), and the bytes
waiting in it, which exist nowhere else (a pipe's buffer dies with its last descriptor).

Saving must not disturb the guest that goes on: the bytes are read out through a descriptor
of our own and written straight back, in order, and the FIFO's times are put back. Restore
reopens each description with its access mode (through a keeper descriptor that holds both
ends meanwhile, so that no open waits or fails for want of the other end) and puts the bytes
back once per FIFO.
"""
from __future__ import annotations

import os
import stat as S

FIFO_TYPE = oct(S.S_IFIFO)


def fifo_record(f, seen: set) -> dict:
    """The image fields of one FIFO description; the bytes only with the first description
    of each FIFO (`seen` remembers which FIFOs have theirs)."""
    from .named import still_named
    st = still_named(f, "the guest has open the FIFO")
    rec = {"identity": {"type": FIFO_TYPE}}
    if f.data not in seen:
        seen.add(f.data)
        rec["buffered"] = _peek(f.host_path, st).hex()
    return rec


def _peek(host_path: str, st: os.stat_result) -> bytes:
    """Everything waiting in the FIFO, left where it was."""
    reader = os.open(host_path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        writer = os.open(host_path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            data = bytearray()
            while True:
                try:
                    chunk = os.read(reader, 1 << 16)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                data += chunk
            view = memoryview(data)
            while view:
                view = view[os.write(writer, view):]
        finally:
            os.close(writer)
    finally:
        os.close(reader)
    os.utime(host_path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    return bytes(data)


def reopen_fifo(host_path: str, flags: int, buffered: bytes | None) -> tuple[int, bytes]:
    """(host descriptor, which FIFO) for a saved description with guest `flags`."""
    st = os.stat(host_path, follow_symlinks=False)
    keeper = os.open(host_path, os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        host = {0: os.O_RDONLY, 1: os.O_WRONLY}.get(flags & 3, os.O_RDWR)
        fd = os.open(host_path, host | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        if buffered:
            view = memoryview(buffered)
            while view:
                view = view[os.write(keeper, view):]
    finally:
        os.close(keeper)
    os.utime(host_path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    return fd, f"{st.st_dev}:{st.st_ino}".encode()
