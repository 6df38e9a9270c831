"""eventfd and eventfd2: a counter as a file (the counter itself: vsnap/eventcount.py).

read(2) gives 8 bytes (asked for fewer: EINVAL): the counter (then 0), or 1 in EFD_SEMAPHORE
mode; it waits while the counter is 0 (EAGAIN with O_NONBLOCK). write(2) adds an 8-byte value
(any other size: EINVAL, as since Linux 6.7); 2**64 - 1 is EINVAL, and it waits while the sum
would reach 2**64 - 1. A wait parks
the process (errors.Blocked) until another process reads or writes; a signal ends it with
EINTR, or restarts it with SA_RESTART (read and write are restartable). Since Linux 6.x the
read goes through read_iter, so readv may spread the 8 bytes over several buffers; the write
does not, so writev of buffers shorter than 8 bytes is EINVAL on the first.

The description lives on the anonymous inode (kernel/anoninode.py); fork and dup share it,
as every description. Its counter is saved in a checkpoint image (snapshot/anonimage.py).
"""
from __future__ import annotations

import struct

from ..abi import consts as C
from ..abi import errno as E
from ..errors import Blocked, SyscallError
from ..eventcount import MAX, EventCounter
from ..fdtable import OpenFile
from .anoninode import AnonOps
from .registry import syscall

EFD_SEMAPHORE = 1
EFD_FLAGS = C.O_CLOEXEC | C.O_NONBLOCK | EFD_SEMAPHORE


class EventfdOps(AnonOps):
    name = "eventfd"
    write_per_buffer = True  # writev: one write per buffer (eventfd has no write_iter)

    def __init__(self, counter: EventCounter, system):
        self.counter, self.system = counter, system

    def release(self, f) -> None:
        self.system.eventfd_ids.discard(self.counter.ident)

    def read(self, p, f, count: int) -> bytes:
        if count < 8:
            raise SyscallError(E.EINVAL, "an eventfd reads 8 bytes")
        c = self.counter
        if not c.readable():
            if f.flags & C.O_NONBLOCK:
                raise SyscallError(E.EAGAIN, "the eventfd counter is 0")
            raise Blocked("read on an eventfd", c.readable)
        return struct.pack("<Q", c.take())

    def write(self, p, f, data: bytes) -> int:
        if len(data) != 8:  # exactly 8 since Linux 6.7 (before: at least 8)
            raise SyscallError(E.EINVAL, "an eventfd takes 8 bytes")
        (value,) = struct.unpack("<Q", data[:8])
        if value == MAX:
            raise SyscallError(E.EINVAL, "0xffffffffffffffff cannot be added to an eventfd")
        c = self.counter
        if not c.writable(value):
            if f.flags & C.O_NONBLOCK:
                raise SyscallError(E.EAGAIN, "the eventfd counter would overflow")
            raise Blocked("write on an eventfd", lambda: c.writable(value))
        c.add(value)
        return 8

    def poll(self, p, f) -> int:
        return self.counter.poll()

    def wait_queues(self, f) -> list:
        return [self.counter.wait]

    def fdinfo(self, p, f) -> str:
        c = self.counter
        return (f"eventfd-count: {c.count:16x}\neventfd-id: {c.ident}\n"
                f"eventfd-semaphore: {int(c.semaphore)}\n")


def new_ident(system) -> int:
    """The lowest eventfd-id no live eventfd has (Linux's ida_alloc)."""
    n = 0
    while n in system.eventfd_ids:
        n += 1
    system.eventfd_ids.add(n)
    return n


def eventfd_file(p, counter: EventCounter, flags: int) -> OpenFile:
    """The description of an eventfd: read-write, O_NONBLOCK from the flags."""
    return OpenFile("eventfd", "anon_inode:[eventfd]", C.O_RDWR | (flags & C.O_NONBLOCK),
                    ops=EventfdOps(counter, p.sys))


@syscall("eventfd2", "int hex")
def sys_eventfd2(p, initval, flags):
    """int eventfd(unsigned int initval, int flags);"""
    flags &= 0xFFFFFFFF
    if flags & ~EFD_FLAGS:
        raise SyscallError(E.EINVAL, f"eventfd flags {flags & ~EFD_FLAGS:#x}")
    fd = p.fds.lowest_free()  # EMFILE before anything is made
    counter = EventCounter(initval & 0xFFFFFFFF, bool(flags & EFD_SEMAPHORE), new_ident(p.sys))
    return p.fds.install(eventfd_file(p, counter, flags), cloexec=bool(flags & C.O_CLOEXEC),
                         start=fd)


@syscall("eventfd", "int")
def sys_eventfd(p, initval):
    """int eventfd(unsigned int initval);  (the first call: no flags)"""
    return sys_eventfd2(p, initval, 0)
