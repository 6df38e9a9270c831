"""A file's bytes without its holes.

A sparse file (a 1 GiB hole between two writes) must not become a 1 GiB image, nor a fully
allocated file after a resume. Linux says where a file's data is (lseek SEEK_DATA and
SEEK_HOLE); everything else reads as zeros and takes no room. So an image holds only the data
extents of a file, read and written a chunk at a time (never the whole file in memory), and a
restore writes them back at their offsets and sets the size, leaving the holes as holes.

The content digest that checks a file by name follows the same rule: the SHA-256 of the list
of SHA-256s of the file's 1 MiB blocks, where a block that lies in a hole is known to be zeros
and is not read. It is what `split -b 1M --filter=sha256sum FILE | sha256sum` prints, and it
does not depend on how the file is laid out on disk (a copy without holes gives the same one).
"""
from __future__ import annotations

import functools
import hashlib
import os

from ..abi import errno as E
from ..vfs import host_errno_to_guest

BLOCK = 1 << 20      # the digest's block
CHUNK = 4 << 20      # how much is read or written at once


def data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """[(offset, length)] of the parts of the first `size` bytes of the file that hold data;
    the rest are holes. Moves `fd`'s host offset: give a descriptor of your own. Where the
    file system cannot say (no SEEK_DATA), the whole file is data."""
    if size <= 0:
        return []
    if not hasattr(os, "SEEK_DATA"):
        return [(0, size)]
    out: list[tuple[int, int]] = []
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as e:
                if host_errno_to_guest(e) == E.ENXIO:  # no data after pos: a hole to the end
                    break
                raise
            if start >= size:
                break
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            out.append((start, end - start))
            pos = end
    except OSError as e:
        if host_errno_to_guest(e) in (E.EINVAL, E.EOPNOTSUPP):
            return [(0, size)]
        raise
    return out


_FIEMAP = 0xC020660B              # FS_IOC_FIEMAP
_FIEMAP_EXTENT_LAST = 0x1
_FIEMAP_EXTENT_UNWRITTEN = 0x800
_FIEMAP_BATCH = 256
_FALLOC_FL_KEEP_SIZE = 0x01


def unwritten_extents(fd: int) -> list[tuple[int, int]]:
    """[(offset, length)] of the blocks fallocate reserved and nothing has written yet: they
    read as zeros and SEEK_DATA calls them holes, but they count in st_blocks (and may lie
    past the end of the file). From FIEMAP; [] where the host cannot say."""
    import fcntl
    import struct
    out: list[tuple[int, int]] = []
    start = 0
    while True:
        head = struct.pack("=QQIIII", start, (1 << 64) - 1 - start, 0, 0, _FIEMAP_BATCH, 0)
        buf = bytearray(head + bytes(56 * _FIEMAP_BATCH))
        try:
            fcntl.ioctl(fd, _FIEMAP, buf)
        except OSError:
            return []
        mapped = struct.unpack_from("=I", buf, 20)[0]
        last = None
        for i in range(mapped):
            logical, _, length = struct.unpack_from("=QQQ", buf, 32 + 56 * i)
            flags = struct.unpack_from("=I", buf, 32 + 56 * i + 40)[0]
            if flags & _FIEMAP_EXTENT_UNWRITTEN:
                if out and out[-1][0] + out[-1][1] == logical:
                    out[-1] = (out[-1][0], out[-1][1] + length)
                else:
                    out.append((logical, length))
            last = (logical + length, flags)
        if last is None or last[1] & _FIEMAP_EXTENT_LAST or mapped < _FIEMAP_BATCH:
            return out
        start = last[0]


def _host_fallocate():
    import ctypes
    try:
        fn = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int
    return fn


_FALLOCATE = _host_fallocate()


def reserve(fd: int, extents) -> None:
    """fallocate(FALLOC_FL_KEEP_SIZE) each extent: blocks reserved again, the size unchanged,
    the bytes already written left alone. Where the host cannot, the blocks stay holes."""
    for offset, length in extents:
        if _FALLOCATE is None or _FALLOCATE(fd, _FALLOC_FL_KEEP_SIZE, offset, length) != 0:
            return


def read_ranges(fd: int, ranges, limit: int = CHUNK):
    """The bytes of `ranges` ((offset, length) pairs) of the file, in chunks of at most
    `limit` bytes. OSError if the file ends early (it changed under us)."""
    for offset, length in ranges:
        pos, end = offset, offset + length
        while pos < end:
            data = os.pread(fd, min(limit, end - pos), pos)
            if not data:
                raise OSError("the file became shorter while it was saved")
            yield data
            pos += len(data)


class FileRanges:
    """A part of an image whose bytes are ranges of an open host file (a file's data extents,
    end to end). The image writer and the hasher read it a chunk at a time, each with pread,
    so they may run side by side on two threads. It owns `fd`: close() it after the write."""

    def __init__(self, fd: int, ranges: list[tuple[int, int]]):
        self.fd = fd
        self.ranges = ranges
        self.size = sum(n for _, n in ranges)

    def chunks(self, limit: int = CHUNK):
        return read_ranges(self.fd, self.ranges, limit)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def write_extents(fd: int, blob, extents, size: int) -> None:
    """Make the file at `fd` hold `extents` (file offset, length), whose bytes are `blob` end to
    end, and be `size` bytes long: what is between the extents stays a hole."""
    view = memoryview(blob).cast("B")
    at = 0
    for offset, length in extents:
        done = 0
        while done < length:
            n = os.pwrite(fd, view[at + done:at + min(length, done + CHUNK)], offset + done)
            if n <= 0:
                raise OSError("a write to the host file wrote nothing")
            done += n
        at += length
    os.ftruncate(fd, size)


@functools.lru_cache(maxsize=4)
def _zero_line(n: int) -> bytes:
    return f"{hashlib.sha256(bytes(n)).hexdigest()}  -\n".encode()


def content_digest(fd: int, size: int, extents=None) -> str:
    """The digest described above, of the first `size` bytes of the file at `fd` (a
    descriptor of your own, readable). Only data is read: a hole is zeros without asking.
    (Reading an unwritten extent, made by fallocate, would also put it in the host's page
    cache, and ext4's SEEK_DATA then calls it data: the guest would see that a checkpoint
    happened.)"""
    if extents is None:
        extents = data_extents(fd, size)
    h = hashlib.sha256()
    i = 0
    for start in range(0, size, BLOCK):
        end = min(start + BLOCK, size)
        while i < len(extents) and extents[i][0] + extents[i][1] <= start:
            i += 1
        if i == len(extents) or extents[i][0] >= end:
            h.update(_zero_line(end - start))  # the whole block is a hole
            continue
        block, at, j = hashlib.sha256(), start, i
        while j < len(extents) and extents[j][0] < end:
            lo, hi = max(extents[j][0], start), min(extents[j][0] + extents[j][1], end)
            block.update(_ZEROS[:lo - at])
            for chunk in read_ranges(fd, [(lo, hi - lo)]):
                block.update(chunk)
            at, j = hi, j + 1
        block.update(_ZEROS[:end - at])
        h.update(f"{block.hexdigest()}  -\n".encode())
    return h.hexdigest()


_ZEROS = bytes(BLOCK)
