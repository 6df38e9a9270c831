"""Copies between descriptors inside the kernel: sendfile and copy_file_range.

Both are the guest's read and write with no buffer of its own, so they are built on the same
read_file and write_file as read(2) and write(2), a chunk at a time: offsets, O_APPEND, the
console and the virtual clock on mtime behave exactly as there.
"""
from __future__ import annotations

import os
import struct

from ..abi import consts as C
from ..abi import errno as E
from ..errors import SyscallError
from ..fdtable import OpenFile
from .files import read_file, write_file
from .fsutil import s32
from .registry import syscall

CHUNK = 1 << 20
MAX_RW_COUNT = 0x7FFFF000  # Linux moves at most this much in one call


def _copy(p, src: OpenFile, dst: OpenFile, count: int, src_pos: int | None,
          dst_pos: int | None) -> int:
    """Move up to `count` bytes; a position of None means the description's own offset. Stops
    at the end of the source; an error after some bytes moved reports what moved, as Linux."""
    done = 0
    while done < count:
        try:
            data = read_file(p, src, min(CHUNK, count - done),
                             None if src_pos is None else src_pos + done)
            if not data:
                break
            n = write_file(p, dst, data, None if dst_pos is None else dst_pos + done)
        except SyscallError:
            if done:
                break
            raise
        if src_pos is None and n < len(data):  # give back what was read but not written
            src.offset -= len(data) - n
        done += n
        if n < len(data):
            break
    return done


def _read_offset(p, ptr: int) -> int | None:
    if ptr == 0:
        return None
    pos = struct.unpack("<q", p.read(ptr, 8))[0]
    if pos < 0:
        raise SyscallError(E.EINVAL, "negative offset")
    return pos


@syscall("sendfile", "fd fd ptr size")
def sys_sendfile(p, out_fd, in_fd, offset_ptr, count):
    """ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count);"""
    src, dst = p.fds.get(s32(in_fd)), p.fds.get(s32(out_fd))
    if src.flags & C.O_ACCMODE == C.O_WRONLY or dst.flags & C.O_ACCMODE == C.O_RDONLY:
        raise SyscallError(E.EBADF, "in_fd not readable or out_fd not writable")
    pos = _read_offset(p, offset_ptr)
    # Linux reads through the page cache: only regular files (and /proc's) can be the source
    if src.kind not in ("file", "proc"):
        raise SyscallError(E.EINVAL, f"{src.path or src.stream}: sendfile reads regular files")
    if dst.kind == "file" and dst.flags & C.O_APPEND:
        raise SyscallError(E.EINVAL, f"{dst.path} is open with O_APPEND")
    n = _copy(p, src, dst, min(count, MAX_RW_COUNT), pos, None)
    if pos is not None:
        p.write(offset_ptr, struct.pack("<q", pos + n))
    return n


@syscall("copy_file_range", "fd ptr fd ptr size hex")
def sys_copy_file_range(p, fd_in, off_in, fd_out, off_out, length, flags):
    """ssize_t copy_file_range(int fd_in, off_t *off_in, int fd_out, off_t *off_out,
    size_t len, unsigned int flags);"""
    if flags & 0xFFFFFFFF:
        raise SyscallError(E.EINVAL, "flags must be 0")
    src, dst = p.fds.get(s32(fd_in)), p.fds.get(s32(fd_out))
    pin, pout = _read_offset(p, off_in), _read_offset(p, off_out)
    for f in (src, dst):
        if f.kind == "dir":
            raise SyscallError(E.EISDIR, f.path)
        if f.kind != "file":
            raise SyscallError(E.EINVAL, f"{f.path or f.stream}: not a regular file")
    if src.flags & C.O_ACCMODE == C.O_WRONLY or dst.flags & C.O_ACCMODE == C.O_RDONLY \
            or dst.flags & C.O_APPEND:
        raise SyscallError(E.EBADF, "fd_in not readable, or fd_out not writable or O_APPEND")
    start_in = src.offset if pin is None else pin
    start_out = dst.offset if pout is None else pout
    length = min(length, MAX_RW_COUNT)
    same = os.fstat(src.host_fd)[1:3] == os.fstat(dst.host_fd)[1:3]  # (ino, dev)
    if same and start_in < start_out + length and start_out < start_in + length:
        raise SyscallError(E.EINVAL, "overlapping ranges of one file")
    n = _copy(p, src, dst, length, pin, pout)
    if pin is not None:
        p.write(off_in, struct.pack("<q", pin + n))
    if pout is not None:
        p.write(off_out, struct.pack("<q", pout + n))
    return n
