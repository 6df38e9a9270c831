"""A wait queue, as Linux's wait_queue_head_t serves epoll: the things watching an object are
told, in order, each time the object has news ("a wake"), with a key saying which way
(POLLIN for bytes arriving, POLLOUT for room made, 0 for anything, a hangup say).

A parked process needs no entry here: the scheduler re-checks its ready() condition. What
needs a wake is epoll's edge-triggered mode, which reports "something happened" rather than
"is ready": Linux reports an EPOLLET item again on every wake of the file it watches (every
write to a pipe, even one that was readable already), and queues items in the order the
wakes came. So each object that epoll can watch keeps one WaitQueue per direction Linux
keeps one (a pipe: readers' and writers'; an eventfd: one), hands them to epoll through its
ops (`wait_queues(f)`), and calls wake(key) at the points Linux does (kernel/epoll.py).

The entries are callables fn(key); they are kernel state that is rebuilt, not saved: a
restore registers each epoll item again (snapshot/anonimage.py).
"""
from __future__ import annotations


class WaitQueue:
    __slots__ = ("entries",)

    def __init__(self):
        self.entries: list = []

    def add(self, fn) -> None:
        self.entries.append(fn)

    def remove(self, fn) -> None:
        for i, e in enumerate(self.entries):
            if e == fn:  # a bound method is made anew at each access: equal, never the same
                del self.entries[i]
                return

    def wake(self, key: int = 0) -> None:
        """Tell every watcher, in the order they came (key 0: whatever they wait for)."""
        for fn in list(self.entries):
            fn(key)
