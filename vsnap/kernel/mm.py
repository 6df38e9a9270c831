"""Memory system calls: brk, mmap, munmap, mprotect, mremap, msync, madvise. The books are
kept by memory.AddressSpace (file mappings share pages with their file: filemap.py, and
MAP_SHARED ones are the host file's pages: sharedfile.py); these handlers check arguments and
choose addresses as Linux would."""
from __future__ import annotations

from ..abi import consts as C
from ..abi import errno as E
from ..errors import SyscallError
from ..memory import PAGE, page_up
from . import mapmtime
from .fsutil import host_errors, s32, s64
from .limits import check_brk, check_expand, check_protect
from .registry import syscall


@syscall("brk", "ptr")
def sys_brk(p, addr):
    """int brk(void *addr);  (the system call returns the new break, or the old on failure)"""
    if addr == 0:
        return p.mem.brk
    if addr >= p.mem.brk_start and not check_brk(p, addr):
        return p.mem.brk  # over RLIMIT_DATA or RLIMIT_AS: the break stays
    return p.mem.set_brk(addr)


@syscall("mmap", "ptr size prot mflags fd hex")
def sys_mmap(p, addr, length, prot, flags, fd, offset):
    """void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset);"""
    flags, prot = s32(flags), s32(prot)
    if length == 0 or addr & (PAGE - 1) or offset & (PAGE - 1) or length > 1 << 46:
        raise SyscallError(E.EINVAL, "mmap arguments")
    if flags & (C.MAP_SHARED | C.MAP_PRIVATE) == 0:
        raise SyscallError(E.EINVAL, "neither MAP_SHARED nor MAP_PRIVATE")
    mf, name, shared, direct = None, "", bool(flags & C.MAP_SHARED), ""
    if not flags & C.MAP_ANONYMOUS:
        f = p.fds.get(s32(fd))
        if f.kind == "dev" and f.stream == "zero":  # /dev/zero: anonymous memory, as Linux
            flags |= C.MAP_ANONYMOUS
            name = "/dev/zero (deleted)" if flags & C.MAP_SHARED else ""
    if not flags & C.MAP_ANONYMOUS:
        if f.kind not in ("file", "exe"):
            raise SyscallError(E.ENODEV if f.kind != "dir" else E.EACCES, f.path)
        acc = f.flags & C.O_ACCMODE
        if acc == C.O_WRONLY or shared and prot & C.PROT_WRITE and acc != C.O_RDWR:
            raise SyscallError(E.EACCES, f"{f.path} is not open for that access")
        # MAP_SHARED maps the host file's own pages (sharedfile.py): stores reach the file,
        # if it is open for writing ("rw"; else "r": it may never become writable)
        direct = ("rw" if acc == C.O_RDWR else "r") if shared else ""
        if s64(offset) < 0:
            raise SyscallError(E.EINVAL, "negative offset")
        with host_errors():
            mf = p.mem.mapped_file(f.host_fd, f.path, f.host_path)
        name = f.path
    else:
        # MAP_SHARED anonymous memory stays shared with the children forked later
        name = name or "/dev/zero (deleted)" if shared else name
    length = page_up(length)
    if flags & (C.MAP_FIXED | C.MAP_FIXED_NOREPLACE):
        if flags & C.MAP_FIXED_NOREPLACE and not p.mem.is_free(addr, addr + length):
            raise SyscallError(E.EEXIST, f"{addr:#x} is in use")
        start = addr
    elif addr and p.mem.is_free(addr, addr + length) and addr + length <= 0x7FFF_F7FF_F000:
        start = addr  # a hint that fits is honoured, as Linux does
    else:
        start = p.mem.find_free(length)
    check_expand(p, length, prot, "mmap", start)
    try:
        with host_errors():
            p.mem.map(start, length, prot & 7, "mmap", name, file=mf, offset=offset,
                      shared=shared, growsdown=bool(flags & C.MAP_GROWSDOWN), direct=direct)
    finally:
        if mf is not None and mf.pages == 0:
            mf.close()  # not mapped after all
    if direct == "rw":
        mapmtime.note(p, mf)
    return start


@syscall("munmap", "ptr size")
def sys_munmap(p, addr, length):
    """int munmap(void *addr, size_t length);"""
    if addr & (PAGE - 1) or length == 0:
        raise SyscallError(E.EINVAL, "munmap arguments")
    stored = p.mem.direct_files(addr, page_up(addr + length)) if p.mem.files else set()
    p.mem.unmap(addr, length)
    _show_stores(p, stored)
    mapmtime.settle(p.sys)  # a file mapped shared for writing no longer mapped
    return 0


def _show_stores(p, keys) -> None:
    """Private mappings of the files `keys` (in every process) show in the pages they still
    share with the file the stores that direct mappings made (Linux shows them at once;
    vsnap, which sees no store, at msync and munmap of the direct mapping)."""
    for key in keys:
        for q in p.sys.processes.values():
            mem = getattr(q, "mem", None)
            if mem is not None and key in mem.files and not getattr(mem, "closed", False):
                with host_errors():
                    mem.file_changed(key, 0, None)


@syscall("mprotect", "ptr size prot")
def sys_mprotect(p, addr, length, prot):
    """int mprotect(void *addr, size_t len, int prot);"""
    if addr & (PAGE - 1):
        raise SyscallError(E.EINVAL, "unaligned address")
    if length:
        check_protect(p, addr, page_up(length), prot)
        p.mem.protect(addr, length, prot & 7)
    return 0


@syscall("mremap", "ptr size size hex ptr")
def sys_mremap(p, old, old_size, new_size, flags, new_addr):
    """void *mremap(void *old_address, size_t old_size, size_t new_size, int flags, ...);"""
    if old & (PAGE - 1) or new_size == 0 or flags & C.MREMAP_FIXED:
        raise SyscallError(E.EINVAL, "mremap arguments")
    vma = p.mem.find(old)
    if vma is None:
        raise SyscallError(E.EFAULT, f"{old:#x} is not mapped")
    old_size, new_size = page_up(old_size), page_up(new_size)
    if new_size <= old_size:
        if new_size < old_size:
            p.mem.unmap(old + new_size, old_size - new_size)
        return old
    check_expand(p, new_size - old_size, vma.prot, vma.kind)
    if p.mem.is_free(old + old_size, old + new_size):
        with host_errors():
            p.mem.map(old + old_size, new_size - old_size, vma.prot, vma.kind, vma.name,
                      file=vma.file, offset=vma.offset + old + old_size - vma.start,
                      shared=vma.shared, direct=vma.direct)
        return old
    if not flags & C.MREMAP_MAYMOVE:
        raise SyscallError(E.ENOMEM, "cannot grow in place")
    start = p.mem.find_free(new_size)
    with host_errors():
        p.mem.move(old, old_size, start, new_size)
    return start


MS_ASYNC, MS_INVALIDATE, MS_SYNC = 1, 2, 4


@syscall("msync", "ptr size hex")
def sys_msync(p, addr, length, flags):
    """int msync(void *addr, size_t length, int flags);"""
    if addr & (PAGE - 1) or flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC) \
            or flags & MS_ASYNC and flags & MS_SYNC:
        raise SyscallError(E.EINVAL, "msync arguments")
    end = page_up(addr + length)
    if end < addr:
        raise SyscallError(E.ENOMEM, "msync range wraps")
    if p.mem._overlap(addr, end) != end - addr:
        raise SyscallError(E.ENOMEM, "msync of unmapped memory")
    # a direct mapping's stores are in the file already (read() sees them): MS_SYNC only
    # takes them to the disk; MS_ASYNC and MS_INVALIDATE have nothing left to do, as on Linux
    if flags & MS_SYNC:
        with host_errors():
            p.mem.sync(addr, end)
    stored = p.mem.direct_files(addr, end)
    if flags & (MS_SYNC | MS_ASYNC):  # POSIX: the mtime has moved by now (mapmtime.py)
        for key in stored:
            mapmtime.stamp(p, key, p.sys.clock.realtime_ns)
    _show_stores(p, stored)
    return 0


@syscall("madvise", "ptr size int")
def sys_madvise(p, addr, length, advice):
    """int madvise(void *addr, size_t length, int advice);"""
    if advice == 4:  # MADV_DONTNEED: zeros, or the file's bytes again
        with host_errors():
            p.mem.discard(addr, page_up(addr + length))
    return 0
