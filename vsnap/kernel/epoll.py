"""epoll_create, epoll_create1, epoll_ctl, epoll_wait, epoll_pwait, epoll_pwait2.

The interest and ready lists are vsnap/epollset.py's; this module checks arguments as
Linux's do_epoll_ctl and do_epoll_wait do, in their order, and moves the bytes.

How a kind of file takes part (pipes, eventfd, epoll itself, sockets):
  * ops.poll(p, f) -> mask: what poll(2) and epoll see now (kernel/poll.py `readiness`);
    a description whose ops have it can be polled and added to an epoll (others: EPERM,
    as Linux's files without a poll method, except the terminal and FIFOs);
  * ops.wait_queues(f) -> [WaitQueue, ...]: the queues (vsnap/waitq.py) an epoll item on
    this description listens on, one per direction Linux keeps (a pipe end: its side's);
    the object calls queue.wake(key) wherever Linux wakes its waiters, with key POLLIN
    for input arriving, POLLOUT for room made, 0 for anything (a hangup), even when it was
    ready already: that is what edge-triggered items (EPOLLET) report. A kind with poll but
    no wait_queues is looked at each time (exact when level-triggered only).
A process that waits needs none of this: epoll_wait parks (errors.Blocked) with a ready()
that asks the set again, as poll does.

Where vsnap differs: EPOLLWAKEUP is dropped, as for a process without CAP_BLOCK_SUSPEND
(the guest never has it); EPOLLEXCLUSIVE is checked as Linux checks it, and then every
epoll watching the file is woken (Linux wakes one or more of those waiting: epoll_ctl(2)).
"""
from __future__ import annotations

import struct

from ..abi import consts as C
from ..abi import errno as E
from ..epollset import (EPOLLERR, EPOLLET, EPOLLEXCLUSIVE, EPOLLHUP, EPOLLIN, EPOLLOUT,
                        EPOLLRDNORM, EPOLLWAKEUP, EpollSet)
from ..errors import SyscallError
from ..fdtable import OpenFile
from .anoninode import AnonOps
from .fsutil import s32
from .poll import (INPUT_EVENTS, _set_mask, _timespec, _with_mask, deadline, readiness,
                   wait_ready)
from .registry import syscall

EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD = 1, 2, 3
EVENT_SIZE = 12                               # struct epoll_event is packed on x86-64
EP_MAX_EVENTS = 0x7FFFFFFF // EVENT_SIZE      # INT_MAX / sizeof(struct epoll_event)
EXCLUSIVE_OK = EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLWAKEUP | EPOLLET | EPOLLEXCLUSIVE
USER_TOP = 0x7FFFFFFFF000                     # TASK_SIZE: access_ok's limit


class EpollOps(AnonOps):
    name = "eventpoll"
    bad_ioctl = E.EINVAL  # ep_eventpoll_ioctl

    def __init__(self, ep: EpollSet):
        self.ep = ep

    def release(self, f) -> None:
        self.ep.release()

    def read(self, p, f, count: int) -> bytes:
        raise SyscallError(E.EINVAL, "an epoll descriptor cannot be read")

    def write(self, p, f, data: bytes) -> int:
        raise SyscallError(E.EINVAL, "an epoll descriptor cannot be written")

    def poll(self, p, f) -> int:
        """Readable while an epoll_wait would report something (nested epoll)."""
        return EPOLLIN | EPOLLRDNORM if self.ep.would_report(_item_mask(p)) else 0

    def wait_queues(self, f) -> list:
        return [self.ep.poll_wait]

    def fdinfo(self, p, f) -> str:
        from .fsutil import stat_of_file
        self.ep.purge()
        lines = []
        for item in self.ep.items.values():
            st = stat_of_file(p, item.file)
            lines.append(f"tfd: {item.fd:8d} events: {item.events:8x} data: {item.data:16x}"
                         f"  pos:{item.file.offset} ino:{st['ino']:x} sdev:{st['dev']:x}\n")
        return "".join(lines)


def _item_mask(p):
    """readiness(item) for EpollSet: what poll(2) would see of the item's description."""
    return lambda item: readiness(p, item.file)


def _epoll_of(f: OpenFile) -> EpollSet | None:
    return f.ops.ep if isinstance(f.ops, EpollOps) else None


def pollable(f: OpenFile) -> bool:
    """file_can_poll: the description has a poll method (the terminal and FIFOs do)."""
    return getattr(f.ops, "poll", None) is not None or f.kind in ("console", "fifo")


# epoll_create ----------------------------------------------------------------------------------
@syscall("epoll_create1", "oflags")
def sys_epoll_create1(p, flags):
    """int epoll_create1(int flags);"""
    flags &= 0xFFFFFFFF
    if flags & ~C.O_CLOEXEC:
        raise SyscallError(E.EINVAL, f"epoll_create1 flags {flags:#x}")
    f = OpenFile("epoll", "anon_inode:[eventpoll]", C.O_RDWR, ops=EpollOps(EpollSet()))
    return p.fds.install(f, cloexec=bool(flags & C.O_CLOEXEC))


@syscall("epoll_create", "int")
def sys_epoll_create(p, size):
    """int epoll_create(int size);"""
    if s32(size) <= 0:
        raise SyscallError(E.EINVAL, f"size {s32(size)}")
    return sys_epoll_create1(p, 0)


# epoll_ctl -------------------------------------------------------------------------------------
@syscall("epoll_ctl", "fd int fd ptr")
def sys_epoll_ctl(p, epfd, op, fd, event):
    """int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event);"""
    op, fd = s32(op), s32(fd)
    events = data = 0
    if op != EPOLL_CTL_DEL:
        events, data = struct.unpack("<IQ", p.read(event, EVENT_SIZE))
    epf = p.fds.get(s32(epfd))
    tf = p.fds.get(fd)
    if not pollable(tf):
        raise SyscallError(E.EPERM, f"fd {fd} ({tf.kind}) cannot be polled")
    events &= ~EPOLLWAKEUP  # (needs CAP_BLOCK_SUSPEND, which the guest never has)
    ep = _epoll_of(epf)
    if epf is tf or ep is None:
        raise SyscallError(E.EINVAL, "not an epoll descriptor, or the epoll itself")
    sub = _epoll_of(tf)
    if op != EPOLL_CTL_DEL and events & EPOLLEXCLUSIVE:
        if op == EPOLL_CTL_MOD or (op == EPOLL_CTL_ADD and (
                sub is not None or events & ~EXCLUSIVE_OK)):
            raise SyscallError(E.EINVAL, "EPOLLEXCLUSIVE: only with EPOLL_CTL_ADD, on a "
                                         "file that is no epoll, with IN, OUT, ET")
    ep.purge()
    if op == EPOLL_CTL_ADD and sub is not None and ep.would_loop(sub):
        raise SyscallError(E.ELOOP, "an epoll inside itself, or nested too deep")
    item = ep.find(tf, fd)
    mask = _item_mask(p)
    if op == EPOLL_CTL_ADD:
        if item is not None:
            raise SyscallError(E.EEXIST, f"fd {fd} is registered already")
        queues = getattr(tf.ops, "wait_queues", lambda f: [])(tf)
        ep.insert(tf, fd, events | EPOLLERR | EPOLLHUP, data, queues, sub, mask)
        return 0
    if op == EPOLL_CTL_DEL:
        if item is None:
            raise SyscallError(E.ENOENT, f"fd {fd} is not registered")
        ep.remove(item)
        return 0
    if op == EPOLL_CTL_MOD:
        if item is None:
            raise SyscallError(E.ENOENT, f"fd {fd} is not registered")
        if item.events & EPOLLEXCLUSIVE:
            raise SyscallError(E.EINVAL, "an EPOLLEXCLUSIVE item cannot be modified")
        ep.modify(item, events | EPOLLERR | EPOLLHUP, data, mask)
        return 0
    raise SyscallError(E.EINVAL, f"epoll_ctl op {op}")


# epoll_wait ------------------------------------------------------------------------------------
def _do_wait(p, epfd: int, events: int, maxevents: int, end: int | None) -> int:
    maxevents = s32(maxevents)
    if not 0 < maxevents <= EP_MAX_EVENTS:
        raise SyscallError(E.EINVAL, f"maxevents {maxevents}")
    if events + maxevents * EVENT_SIZE > USER_TOP:
        raise SyscallError(E.EFAULT, "events outside user memory")
    ep = _epoll_of(p.fds.get(s32(epfd)))
    if ep is None:
        raise SyscallError(E.EINVAL, f"fd {s32(epfd)} is not an epoll descriptor")
    mask = _item_mask(p)
    ep.purge()
    wants_input = [(i.file, bool(i.events & INPUT_EVENTS)) for i in ep.items.values()]
    wait_ready(p, lambda: int(ep.would_report(mask)), wants_input, end, "epoll_wait")

    fault = []

    def put(n: int, revents: int, data: int) -> bool:
        try:
            p.write(events + n * EVENT_SIZE, struct.pack("<IQ", revents, data))
        except SyscallError as e:
            fault.append(e)
            return False
        return True

    n = ep.harvest(maxevents, mask, put)
    if n == 0 and fault:  # the events reported before a fault are returned; none: EFAULT
        raise fault[0]
    return n


def _ms(timeout: int) -> int | None:
    ms = s32(timeout)
    return None if ms < 0 else ms * 10**6


@syscall("epoll_wait", "fd ptr int int")
def sys_epoll_wait(p, epfd, events, maxevents, timeout):
    """int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout);"""
    return _do_wait(p, epfd, events, maxevents, deadline(p, _ms(timeout)))


@syscall("epoll_pwait", "fd ptr int int ptr size")
def sys_epoll_pwait(p, epfd, events, maxevents, timeout, sigmask, sigsetsize):
    """int epoll_pwait(int epfd, struct epoll_event *events, int maxevents, int timeout,
    const sigset_t *sigmask);  (the raw call adds size_t sigsetsize)"""
    end = deadline(p, _ms(timeout))
    old = _set_mask(p, sigmask, sigsetsize)
    return _with_mask(p, old, lambda: _do_wait(p, epfd, events, maxevents, end))


@syscall("epoll_pwait2", "fd ptr int ptr ptr size")
def sys_epoll_pwait2(p, epfd, events, maxevents, timeout, sigmask, sigsetsize):
    """int epoll_pwait2(int epfd, struct epoll_event *events, int maxevents,
    const struct timespec *timeout, const sigset_t *sigmask);  (raw: + size_t sigsetsize)"""
    end = deadline(p, _timespec(p, timeout) if timeout else None)
    old = _set_mask(p, sigmask, sigsetsize)
    return _with_mask(p, old, lambda: _do_wait(p, epfd, events, maxevents, end))

