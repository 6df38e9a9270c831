"""Memory system calls: brk, mmap, munmap, mprotect, mremap, madvise. The books are kept by
memory.AddressSpace; these handlers check arguments and choose addresses as Linux would."""
from __future__ import annotations

import os

from ..abi import consts as C
from ..abi import errno as E
from ..errors import SyscallError
from ..memory import PAGE, page_up
from .fsutil import host_errors, s32, s64
from .limits import check_brk, check_expand, check_protect
from .registry import syscall


@syscall("brk", "ptr")
def sys_brk(k, addr):
    """int brk(void *addr);  (the system call returns the new break, or the old on failure)"""
    if addr == 0:
        return k.mem.brk
    if addr >= k.mem.brk_start and not check_brk(k, addr):
        return k.mem.brk  # over RLIMIT_DATA or RLIMIT_AS: the break stays
    return k.mem.set_brk(addr)


@syscall("mmap", "ptr size prot mflags fd hex")
def sys_mmap(k, addr, length, prot, flags, fd, offset):
    """void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset);"""
    flags, prot = s32(flags), s32(prot)
    if length == 0 or addr & (PAGE - 1) or offset & (PAGE - 1) or length > 1 << 46:
        raise SyscallError(E.EINVAL, "mmap arguments")
    if flags & (C.MAP_SHARED | C.MAP_PRIVATE) == 0:
        raise SyscallError(E.EINVAL, "neither MAP_SHARED nor MAP_PRIVATE")
    data = b""
    name = ""
    if not flags & C.MAP_ANONYMOUS:
        f = k.fds.get(s32(fd))
        if f.kind == "dev" and f.stream == "zero":  # /dev/zero: anonymous memory, as Linux
            flags |= C.MAP_ANONYMOUS
            name = "/dev/zero (deleted)" if flags & C.MAP_SHARED else ""
    if not flags & C.MAP_ANONYMOUS:
        if f.kind not in ("file", "exe"):
            raise SyscallError(E.ENODEV if f.kind != "dir" else E.EACCES, f.path)
        if flags & C.MAP_SHARED and prot & C.PROT_WRITE:
            # one process and no page cache of our own: a shared writable file mapping would
            # silently lose its writes, so refuse it honestly
            raise SyscallError(E.ENODEV, f"shared writable mapping of {f.path}")
        with host_errors():
            data = os.pread(f.host_fd, length, s64(offset))
        name = f.path
    length = page_up(length)
    if flags & (C.MAP_FIXED | C.MAP_FIXED_NOREPLACE):
        if flags & C.MAP_FIXED_NOREPLACE and not k.mem.is_free(addr, addr + length):
            raise SyscallError(E.EEXIST, f"{addr:#x} is in use")
        start = addr
    elif addr and k.mem.is_free(addr, addr + length) and addr + length <= 0x7FFF_F7FF_F000:
        start = addr  # a hint that fits is honoured, as Linux does
    else:
        start = k.mem.find_free(length)
    check_expand(k, length, prot, "mmap", start)
    k.mem.map(start, length, prot & 7, "mmap", name)
    if data:
        k.mem.write(start, data)
    return start


@syscall("munmap", "ptr size")
def sys_munmap(k, addr, length):
    """int munmap(void *addr, size_t length);"""
    if addr & (PAGE - 1) or length == 0:
        raise SyscallError(E.EINVAL, "munmap arguments")
    k.mem.unmap(addr, length)
    return 0


@syscall("mprotect", "ptr size prot")
def sys_mprotect(k, addr, length, prot):
    """int mprotect(void *addr, size_t len, int prot);"""
    if addr & (PAGE - 1):
        raise SyscallError(E.EINVAL, "unaligned address")
    if length:
        check_protect(k, addr, page_up(length), prot)
        k.mem.protect(addr, length, prot & 7)
    return 0


@syscall("mremap", "ptr size size hex ptr")
def sys_mremap(k, old, old_size, new_size, flags, new_addr):
    """void *mremap(void *old_address, size_t old_size, size_t new_size, int flags, ...);"""
    if old & (PAGE - 1) or new_size == 0 or flags & C.MREMAP_FIXED:
        raise SyscallError(E.EINVAL, "mremap arguments")
    vma = k.mem.find(old)
    if vma is None:
        raise SyscallError(E.EFAULT, f"{old:#x} is not mapped")
    old_size, new_size = page_up(old_size), page_up(new_size)
    if new_size <= old_size:
        if new_size < old_size:
            k.mem.unmap(old + new_size, old_size - new_size)
        return old
    check_expand(k, new_size - old_size, vma.prot, vma.kind)
    if k.mem.is_free(old + old_size, old + new_size):
        k.mem.map(old + old_size, new_size - old_size, vma.prot, vma.kind, vma.name)
        return old
    if not flags & C.MREMAP_MAYMOVE:
        raise SyscallError(E.ENOMEM, "cannot grow in place")
    data = k.mem.read(old, old_size)
    start = k.mem.find_free(new_size)
    k.mem.map(start, new_size, vma.prot, vma.kind, vma.name)
    k.mem.write(start, data)
    k.mem.unmap(old, old_size)
    return start


@syscall("madvise", "ptr size int")
def sys_madvise(k, addr, length, advice):
    """int madvise(void *addr, size_t length, int advice);"""
    if advice == 4:  # MADV_DONTNEED: private anonymous pages read back as zeros
        for v in list(k.mem.vmas):
            lo, hi = max(v.start, addr), min(v.end, page_up(addr + length))
            if lo < hi and v.prot & C.PROT_WRITE:
                k.mem.write(lo, bytes(hi - lo))
    return 0
