"""An eventfd's counter, as Linux's fs/eventfd.c keeps it: a plain kernel object.

The counter is an unsigned 64-bit number. A read takes it whole and leaves 0 (or, in
semaphore mode, takes 1); it waits while the counter is 0. A write adds a value below
2**64 - 1, and waits while the sum would reach 2**64 - 1 (the largest value a counter can
hold is 2**64 - 2; Linux's own eventfd_signal may overflow it to 2**64 - 1, which poll shows
as POLLERR; no system call can). Each read wakes the watchers of the wait queue with
POLLOUT, each write (even of 0) with POLLIN, as Linux does (waitq.py, kernel/epoll.py).

`ident` is what /proc/self/fdinfo shows as eventfd-id: the lowest number no other live
eventfd of the system has (Linux's ida), saved with the counter.
"""
from __future__ import annotations

from .waitq import WaitQueue

MAX = (1 << 64) - 1          # ULLONG_MAX: never written, shown as POLLERR
POLLIN, POLLOUT, POLLERR = 0x1, 0x4, 0x8
SAVED_KEYS = {"count", "semaphore", "ident"}


class EventCounter:
    def __init__(self, count: int = 0, semaphore: bool = False, ident: int = 0):
        self.count, self.semaphore, self.ident = count, semaphore, ident
        self.wait = WaitQueue()

    def readable(self) -> bool:
        """A read would not wait."""
        return self.count > 0

    def writable(self, value: int) -> bool:
        """A write of `value` would not wait."""
        return MAX - self.count > value

    def take(self) -> int:
        """What a read returns (the caller checked readable())."""
        value = 1 if self.semaphore else self.count
        self.count -= value
        self.wait.wake(POLLOUT)
        return value

    def add(self, value: int) -> None:
        """A write (the caller checked writable(value))."""
        self.count += value
        self.wait.wake(POLLIN)

    def poll(self) -> int:
        """eventfd_poll: POLLIN while above 0, POLLOUT while a write of 1 would not wait,
        POLLERR at the overflow value."""
        mask = POLLIN if self.count > 0 else 0
        if self.count == MAX:
            mask |= POLLERR
        if MAX - 1 > self.count:
            mask |= POLLOUT
        return mask

    # -- checkpoint images -------------------------------------------------------------------

    def saved(self) -> dict:
        return {"count": self.count, "semaphore": self.semaphore, "ident": self.ident}

    @classmethod
    def load(cls, d) -> "EventCounter":
        """From saved(); ValueError with one clear line for anything Linux cannot hold."""
        if not isinstance(d, dict) or set(d) != SAVED_KEYS:
            raise ValueError(f"eventfd record must have exactly the keys {sorted(SAVED_KEYS)}")
        count, sem, ident = d["count"], d["semaphore"], d["ident"]
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX:
            raise ValueError(f"eventfd count must be an unsigned 64-bit number, not {count!r}")
        if not isinstance(sem, bool):
            raise ValueError(f"eventfd semaphore must be true or false, not {sem!r}")
        if not isinstance(ident, int) or isinstance(ident, bool) or not 0 <= ident < 1 << 31:
            raise ValueError(f"eventfd ident must be a non-negative int, not {ident!r}")
        return cls(count, sem, ident)
