"""The file lock books: flock locks, POSIX and OFD record locks, and leases, for every file.

A plain kernel object (no CPU, no guest memory): the system calls in kernel/filelocks.py
decode arguments and call these. Files are named by a `key` (the kernel uses the host's
(dev, ino), so two descriptions of one file agree); owners are opaque: an open file
description for flock locks, OFD locks and leases, the process (kernel/core.Process) for
its POSIX locks.

The rules are Linux's (fs/locks.c):
- flock: one lock per description; two descriptions conflict when either lock is exclusive,
  even in one process. Changing a lock's type drops the old one first (not atomic).
- record locks: POSIX locks belong to the process and never conflict with its own; OFD locks
  belong to a description. Both kinds share one list per file, each owner's locks sorted by
  start, merged with neighbours of the same type and split by changes in the middle; a test
  reports the first conflicting lock in list order.
- leases: one per description; a breaking lease has a target type and a deadline.
"""
from __future__ import annotations

from dataclasses import dataclass

F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
OFFSET_MAX = (1 << 63) - 1
PROCESS = "process"  # (an image's name for a POSIX lock's owner: a process, by its pid)


class WouldBlock(Exception):
    """The request conflicts with `lock` (None for flock and leases)."""

    def __init__(self, lock=None):
        super().__init__("conflicting lock")
        self.lock = lock


@dataclass
class RecordLock:
    owner: object
    type: int
    start: int
    end: int          # inclusive; OFFSET_MAX: to the end of the file, however long
    ofd: bool = False


@dataclass
class Lease:
    owner: object
    type: int
    breaking: int | None = None   # the type it is being broken to (F_RDLCK or F_UNLCK)
    deadline_ns: int | None = None

    @property
    def target(self) -> int:
        return self.type if self.breaking is None else self.breaking


def _conflict(a: int, b: int) -> bool:
    return a == F_WRLCK or b == F_WRLCK


class LockBook:
    def __init__(self):
        self.flocks: dict[object, list[tuple[object, int]]] = {}
        self.records: dict[object, list[RecordLock]] = {}
        self.leases: dict[object, list[Lease]] = {}

    # flock ---------------------------------------------------------------------------------
    def flock(self, key, owner, type_: int) -> None:
        """Take (F_RDLCK shared, F_WRLCK exclusive) or drop (F_UNLCK) owner's flock lock;
        WouldBlock on a conflict (the old lock is gone by then, as on Linux)."""
        held = self.flocks.setdefault(key, [])
        for i, (o, t) in enumerate(held):
            if o is owner:
                if t == type_:
                    return
                del held[i]
                break
        if type_ != F_UNLCK:
            if any(o is not owner and _conflict(t, type_) for o, t in held):
                self._tidy(self.flocks, key)
                raise WouldBlock()
            held.append((owner, type_))
        self._tidy(self.flocks, key)

    def flock_free(self, key, owner, type_: int) -> bool:
        """Could owner take this flock lock now (no other owner's conflicts with it)?"""
        return not any(o is not owner and _conflict(t, type_)
                       for o, t in self.flocks.get(key, []))

    def flock_of(self, key, owner) -> int:
        return next((t for o, t in self.flocks.get(key, []) if o is owner), F_UNLCK)

    # record locks ---------------------------------------------------------------------------
    def test(self, key, owner, type_: int, start: int, end: int) -> RecordLock | None:
        """F_GETLK: the first lock of another owner that would conflict, or None."""
        for fl in self.records.get(key, []):
            if fl.owner is not owner and fl.start <= end and start <= fl.end \
                    and _conflict(fl.type, type_):
                return fl
        return None

    def set(self, key, owner, type_: int, start: int, end: int, ofd: bool = False) -> None:
        """F_SETLK: lock or unlock [start, end] for owner (posix_lock_inode's algorithm);
        WouldBlock with the first conflicting lock."""
        if type_ != F_UNLCK:
            conflict = self.test(key, owner, type_, start, end)
            if conflict is not None:
                raise WouldBlock(conflict)
        locks = self.records.setdefault(key, [])
        req = RecordLock(owner, type_, start, end, ofd)
        i = next((i for i, fl in enumerate(locks) if fl.owner is owner), len(locks))
        added, left, right = False, None, None
        while i < len(locks) and locks[i].owner is owner:
            fl = locks[i]
            if fl.type == req.type:
                if fl.end < req.start - 1:
                    i += 1
                    continue
                if fl.start - 1 > req.end:
                    break
                # adjacent or overlapping, same type: one lock from the lower start to the
                # higher end
                lo, hi = min(fl.start, req.start), max(fl.end, req.end)
                fl.start = req.start = lo
                fl.end = req.end = hi
                if added:
                    del locks[i]
                    continue
                req = fl
                added = True
            else:
                if fl.end < req.start:
                    i += 1
                    continue
                if fl.start > req.end:
                    break
                if req.type == F_UNLCK:
                    added = True
                if fl.start < req.start:
                    left = fl
                if fl.end > req.end:
                    right = fl
                    break
                if fl.start >= req.start:
                    # the request covers this lock entirely
                    if added:
                        del locks[i]
                        continue
                    locks[i] = req
                    added = True
            i += 1
        if not added:
            if req.type == F_UNLCK:
                self._tidy(self.records, key)
                return
            locks.insert(i, req)
            at = i
        else:
            at = next(j for j, fl in enumerate(locks) if fl is req) if req.type != F_UNLCK \
                else i
        if right is not None:
            if left is right:  # the request splits one lock in two
                left = RecordLock(right.owner, right.type, right.start, right.end, right.ofd)
                locks.insert(at, left)
            right.start = req.end + 1
        if left is not None:
            left.end = req.start - 1
        self._tidy(self.records, key)

    def records_of(self, key) -> list[RecordLock]:
        return list(self.records.get(key, []))

    def drop_records(self, key, owner) -> None:
        """Every record lock of owner on the file (a close, for POSIX locks)."""
        if key in self.records:
            self.records[key] = [fl for fl in self.records[key] if fl.owner is not owner]
            self._tidy(self.records, key)

    # leases ---------------------------------------------------------------------------------
    def lease_of(self, key, owner) -> Lease | None:
        return next((le for le in self.leases.get(key, []) if le.owner is owner), None)

    def others_leases(self, key, owner) -> list[Lease]:
        return [le for le in self.leases.get(key, []) if le.owner is not owner]

    def set_lease(self, key, owner, type_: int) -> None:
        """Add, change or (F_UNLCK) remove owner's lease (generic_add_lease and
        lease_modify); the open-count checks are the caller's. WouldBlock when another lease
        forbids it; LookupError when there is no lease to remove."""
        mine = self.lease_of(key, owner)
        if type_ == F_UNLCK:
            if mine is None:
                raise LookupError("no lease")
            self.leases[key].remove(mine)
            self._tidy(self.leases, key)
            return
        for le in self.others_leases(key, owner):
            if type_ == F_WRLCK or le.breaking == F_UNLCK:
                raise WouldBlock()
        if mine is None:
            self.leases.setdefault(key, []).append(Lease(owner, type_))
            return
        mine.type = type_
        if type_ == F_RDLCK and mine.breaking == F_RDLCK:
            mine.breaking = mine.deadline_ns = None  # the downgrade it was asked for

    def conflicting_leases(self, key, want_write: bool) -> list[Lease]:
        """The leases an open (for writing or not) must wait for (leases_conflict)."""
        return [le for le in self.leases.get(key, []) if want_write or le.type == F_WRLCK]

    def start_break(self, key, want_write: bool, deadline_ns: int) -> list[Lease]:
        """An open of the file: mark the leases it breaks (__break_lease); the ones newly
        marked are returned, so that their owners can be told (SIGIO)."""
        told = []
        for le in self.conflicting_leases(key, want_write):
            if want_write:
                if le.breaking == F_UNLCK:
                    continue
                le.breaking = F_UNLCK
            else:
                if le.breaking is not None:
                    continue
                le.breaking = F_RDLCK
            le.deadline_ns = deadline_ns
            told.append(le)
        return told

    def expire(self, key, now_ns: int) -> None:
        """Breaks whose time is up happen (time_out_leases)."""
        for le in list(self.leases.get(key, [])):
            if le.breaking is not None and le.deadline_ns is not None \
                    and now_ns >= le.deadline_ns:
                if le.breaking == F_UNLCK:
                    self.leases[key].remove(le)
                else:
                    le.type, le.breaking, le.deadline_ns = F_RDLCK, None, None
        self._tidy(self.leases, key)

    # a description goes away ----------------------------------------------------------------
    def drop_owner(self, owner) -> None:
        """The last descriptor of a description is closed: its flock lock, OFD locks and lease
        go with it."""
        for book in (self.flocks, self.records, self.leases):
            for key in list(book):
                book[key] = [x for x in book[key]
                             if (x[0] if isinstance(x, tuple) else x.owner) is not owner]
                self._tidy(book, key)

    def empty(self) -> bool:
        return not (self.flocks or self.records or self.leases)

    @staticmethod
    def _tidy(book: dict, key) -> None:
        if key in book and not book[key]:
            del book[key]
