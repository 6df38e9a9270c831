"""An epoll instance, as Linux's fs/eventpoll.c keeps it: the interest list and the ready list.

The interest list holds one Item per (open file description, fd number) the guest added:
the key is both, so an fd closed while its description stays open elsewhere (a dup, a
child's copy) stays registered under the old number, and EPOLL_CTL_DEL with the new number
says ENOENT (the classic epoll surprise). The item goes when its description is released
(no fd table holds it any more): Linux's eventpoll_release; here found lazily, at the next
use of the set (`alive`).

The ready list is ordered, as Linux's rdllist: an item joins its end when the file it
watches wakes it (waitq.py) with a key among its events, or at EPOLL_CTL_ADD/MOD when the
file is ready then. A harvest (epoll_wait) takes the list, polls each item in order, reports
those with events, and puts back the level-triggered ones at the end; an edge-triggered
item (EPOLLET) leaves it until the next wake; a one-shot item (EPOLLONESHOT) is disabled
until EPOLL_CTL_MOD. Items on files with no wait queue (the terminal, a FIFO) are treated
as woken before each look, which is exact for level-triggered items; an edge-triggered one
on them is reported at each epoll_wait while ready (README: where vsnap differs).

The set knows nothing of processes: the readiness of an item's file is asked of the
callable the kernel layer passes (kernel/epoll.py), which also says which wait queues
a file has.
"""
from __future__ import annotations

import itertools

from .waitq import WaitQueue

EPOLLIN, EPOLLPRI, EPOLLOUT, EPOLLERR, EPOLLHUP = 0x1, 0x2, 0x4, 0x8, 0x10
EPOLLRDNORM, EPOLLRDBAND, EPOLLWRNORM, EPOLLWRBAND = 0x40, 0x80, 0x100, 0x200
EPOLLMSG, EPOLLRDHUP = 0x400, 0x2000
EPOLLEXCLUSIVE, EPOLLWAKEUP, EPOLLONESHOT, EPOLLET = 1 << 28, 1 << 29, 1 << 30, 1 << 31
PRIVATE = EPOLLEXCLUSIVE | EPOLLWAKEUP | EPOLLONESHOT | EPOLLET  # EP_PRIVATE_BITS
MAX_NESTS = 4           # EP_MAX_NESTS: epolls inside epolls, at most this many levels
_ORDER = itertools.count()  # items by when they were made: the order of a wait queue


class Item:
    """One registration: the description watched, the fd it was added under, the events
    asked (with EPOLLERR and EPOLLHUP, which Linux always adds), the data given back."""

    __slots__ = ("ep", "file", "fd", "events", "data", "queues", "sub", "order")

    def __init__(self, ep, file, fd: int, events: int, data: int, queues, sub):
        self.ep, self.file, self.fd, self.events, self.data = ep, file, fd, events, data
        self.queues = list(queues)  # the wait queues it listens on (none: polled each time)
        self.sub = sub              # the EpollSet it watches, when it watches an epoll
        self.order = next(_ORDER)   # when it was made (images keep the ranks: anonimage.py)

    def woken(self, key: int) -> None:
        self.ep.woken(self, key)

    @property
    def alive(self) -> bool:
        return self.file.refs > 0   # an fd table still holds its description


class EpollSet:
    def __init__(self):
        self.items: dict[tuple[int, int], Item] = {}  # (id(description), fd) -> Item
        self.ready: list[Item] = []
        self.poll_wait = WaitQueue()  # epolls watching this one (nested epoll)

    # -- the interest list ---------------------------------------------------------------------

    def purge(self) -> None:
        """Drop the items whose description was released (eventpoll_release)."""
        for item in [i for i in self.items.values() if not i.alive]:
            self.remove(item)

    def find(self, file, fd: int) -> Item | None:
        return self.items.get((id(file), fd))

    def insert(self, file, fd: int, events: int, data: int, queues, sub, readiness) -> Item:
        item = Item(self, file, fd, events, data, queues, sub)
        self.items[(id(file), fd)] = item
        for q in item.queues:
            q.add(item.woken)
        if readiness(item) & events:
            self._queue(item)
        return item

    def modify(self, item: Item, events: int, data: int, readiness) -> None:
        item.events, item.data = events, data
        if readiness(item) & events:
            self._queue(item)

    def remove(self, item: Item) -> None:
        for q in item.queues:
            q.remove(item.woken)
        item.queues = []
        self.items.pop((id(item.file), item.fd), None)
        if item in self.ready:
            self.ready.remove(item)

    def release(self) -> None:
        """The epoll's own description went: every item goes."""
        for item in list(self.items.values()):
            self.remove(item)

    # -- wakes -----------------------------------------------------------------------------------

    def woken(self, item: Item, key: int) -> None:
        """ep_poll_callback: the watched file woke its queue with `key`."""
        if self.items.get((id(item.file), item.fd)) is not item:
            return  # no longer on the interest list (EPOLL_CTL_DEL)
        if not item.alive:
            self.remove(item)
            return
        if not item.events & ~PRIVATE:
            return  # a one-shot item that fired: disabled until EPOLL_CTL_MOD
        if key and not key & item.events:
            return
        if item not in self.ready:
            self.ready.append(item)
        self.poll_wait.wake(EPOLLIN)  # every wake goes on up to the epolls watching this one

    def _queue(self, item: Item) -> None:
        """ep_insert/ep_modify with the file ready: onto the list, if not on it already."""
        if item not in self.ready:
            self.ready.append(item)
            self.poll_wait.wake(EPOLLIN)

    def _polled(self) -> list[Item]:
        """Items on files without a wait queue, not on the list: as if woken now."""
        return [i for i in self.items.values() if not i.queues and i.events & ~PRIVATE
                and i not in self.ready and i.alive]

    # -- looking and harvesting ------------------------------------------------------------------

    def would_report(self, readiness) -> bool:
        """Would a harvest report anything now? (Changes nothing: the scheduler asks it.)"""
        return any(i.alive and readiness(i) & i.events for i in self.ready + self._polled())

    def harvest(self, maxevents: int, readiness, put) -> int:
        """ep_send_events: report up to `maxevents` ready items through put(n, revents,
        data) -> False on a fault (that item stays first on the list). Returns the count."""
        self.purge()
        self.ready += self._polled()
        txlist, self.ready = self.ready, []
        relist, n, i = [], 0, 0
        while i < len(txlist) and n < maxevents:
            item = txlist[i]
            revents = readiness(item) & item.events
            if revents and not put(n, revents, item.data):
                break
            i += 1
            if not revents:
                continue
            n += 1
            if item.events & EPOLLONESHOT:
                item.events &= PRIVATE
            elif not item.events & EPOLLET:
                relist.append(item)
        # what was not looked at goes back first, then anything woken meanwhile, then the
        # level-triggered items reported now (ep_done_scan)
        self.ready = txlist[i:] + self.ready + relist
        return n

    # -- nesting ---------------------------------------------------------------------------------

    def children(self) -> list["EpollSet"]:
        return [i.sub for i in self.items.values() if i.sub is not None and i.alive]

    def parents(self) -> list["EpollSet"]:
        return [fn.__self__.ep for fn in self.poll_wait.entries if fn.__self__.alive]

    def reaches(self, other: "EpollSet") -> bool:
        return any(c is other or c.reaches(other) for c in self.children())

    def depth_down(self) -> int:
        return max((1 + c.depth_down() for c in self.children()), default=0)

    def depth_up(self) -> int:
        return max((1 + q.depth_up() for q in self.parents()), default=0)

    def would_loop(self, target: "EpollSet") -> bool:
        """Adding `target` here makes a cycle, or more than MAX_NESTS levels (ELOOP)."""
        return target.reaches(self) or self.depth_up() + 1 + target.depth_down() > MAX_NESTS
