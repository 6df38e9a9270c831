"""vsnap/locks.py without a CPU: the lock books against a byte-by-byte model (hypothesis
stateful tests), and a few cases Linux's own code makes particular."""
from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from vsnap.locks import (F_RDLCK, F_UNLCK, F_WRLCK, OFFSET_MAX, PROCESS, LockBook, RecordLock,
                         WouldBlock)

KEY = ("dev", 1)
OWNERS = (PROCESS, "ofd-a", "ofd-b")
CELLS = 12          # offsets 0..10, and cell 11 for "everything past 10" (OFFSET_MAX ends)
TYPES = st.sampled_from([F_RDLCK, F_WRLCK, F_UNLCK])


def ranges():
    return st.integers(0, 10).flatmap(lambda s: st.tuples(
        st.just(s), st.one_of(st.integers(s, 10), st.just(OFFSET_MAX))))


def cells(start: int, end: int) -> range:
    return range(start, CELLS if end == OFFSET_MAX else end + 1)


def conflict(a: int | None, b: int | None) -> bool:
    return a is not None and b is not None and F_WRLCK in (a, b)


class RecordModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.book = LockBook()
        self.model = {o: [None] * CELLS for o in OWNERS}

    def _conflicts(self, owner, type_, start, end) -> bool:
        return any(conflict(self.model[o][c], type_) for o in OWNERS if o != owner
                   for c in cells(start, end))

    @rule(owner=st.sampled_from(OWNERS), type_=TYPES, r=ranges())
    def set(self, owner, type_, r):
        start, end = r
        expect_block = type_ != F_UNLCK and self._conflicts(owner, type_, start, end)
        try:
            self.book.set(KEY, owner, type_, start, end, ofd=owner is not PROCESS)
        except WouldBlock as e:
            assert expect_block
            fl = e.lock
            assert fl.owner != owner and fl.start <= end and start <= fl.end
            assert F_WRLCK in (fl.type, type_)
            return
        assert not expect_block
        for c in cells(start, end):
            self.model[owner][c] = None if type_ == F_UNLCK else type_

    @rule(owner=st.sampled_from(OWNERS), type_=st.sampled_from([F_RDLCK, F_WRLCK]), r=ranges())
    def test(self, owner, type_, r):
        start, end = r
        fl = self.book.test(KEY, owner, type_, start, end)
        assert (fl is not None) == self._conflicts(owner, type_, start, end)
        if fl is not None:
            first = next(x for x in self.book.records_of(KEY)
                         if x.owner != owner and x.start <= end and start <= x.end
                         and F_WRLCK in (x.type, type_))
            assert fl is first  # the first conflicting lock in list order, as Linux reports

    @rule(owner=st.sampled_from(OWNERS))
    def close(self, owner):
        if owner is PROCESS:
            self.book.drop_records(KEY, PROCESS)
        else:
            self.book.drop_owner(owner)
        self.model[owner] = [None] * CELLS

    @invariant()
    def books_match_the_model(self):
        locks = self.book.records_of(KEY)
        seen = []
        for fl in locks:  # each owner's locks are one run in the list
            if not seen or seen[-1] != fl.owner:
                assert fl.owner not in seen, "an owner's locks are not contiguous"
                seen.append(fl.owner)
        for o in OWNERS:
            mine = [fl for fl in locks if fl.owner == o]
            for a, b in zip(mine, mine[1:]):
                assert a.end < b.start, "overlapping or unsorted locks of one owner"
                assert not (a.type == b.type and a.end + 1 == b.start), "unmerged neighbours"
            got = [None] * CELLS
            for fl in mine:
                assert fl.type in (F_RDLCK, F_WRLCK) and fl.start <= fl.end
                assert fl.end == OFFSET_MAX or fl.end <= 10
                assert fl.ofd == (o is not PROCESS)
                for c in cells(fl.start, fl.end):
                    got[c] = fl.type
            assert got == self.model[o]


class FlockModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.book = LockBook()
        self.held: dict[str, int] = {}

    @rule(owner=st.sampled_from(("a", "b", "c")), type_=TYPES)
    def flock(self, owner, type_):
        if self.held.get(owner) == type_:
            self.book.flock(KEY, owner, type_)
            return
        self.held.pop(owner, None)  # a change drops the old lock first (not atomic)
        blocked = type_ != F_UNLCK and any(conflict(t, type_) for t in self.held.values())
        try:
            self.book.flock(KEY, owner, type_)
        except WouldBlock:
            assert blocked
            return
        assert not blocked
        if type_ != F_UNLCK:
            self.held[owner] = type_

    @rule(owner=st.sampled_from(("a", "b", "c")))
    def close(self, owner):
        self.book.drop_owner(owner)
        self.held.pop(owner, None)

    @invariant()
    def same(self):
        for o in ("a", "b", "c"):
            assert self.book.flock_of(KEY, o) == self.held.get(o, F_UNLCK)
        assert (KEY in self.book.flocks) == bool(self.held)


TestRecordLocks = RecordModel.TestCase
TestRecordLocks.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestFlock = FlockModel.TestCase
TestFlock.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)


def test_unlock_in_the_middle_splits_and_keeps_list_order():
    book = LockBook()
    book.set(KEY, PROCESS, F_WRLCK, 0, 99)
    book.set(KEY, PROCESS, F_UNLCK, 40, 49)
    assert [(fl.start, fl.end) for fl in book.records_of(KEY)] == [(0, 39), (50, 99)]
    book.set(KEY, PROCESS, F_RDLCK, 45, 46)
    assert [(fl.type, fl.start, fl.end) for fl in book.records_of(KEY)] == [
        (F_WRLCK, 0, 39), (F_RDLCK, 45, 46), (F_WRLCK, 50, 99)]
    book.set(KEY, PROCESS, F_WRLCK, 40, 49)
    assert book.records_of(KEY) == [RecordLock(PROCESS, F_WRLCK, 0, 99)]


def test_a_lock_to_the_end_merges_without_overflow():
    book = LockBook()
    book.set(KEY, "d", F_RDLCK, 10, OFFSET_MAX, ofd=True)
    book.set(KEY, "d", F_RDLCK, 0, 9, ofd=True)
    assert book.records_of(KEY) == [RecordLock("d", F_RDLCK, 0, OFFSET_MAX, True)]


def test_leases_break_to_their_target_and_time_out():
    book = LockBook()
    book.set_lease(KEY, "r", F_WRLCK)
    assert book.conflicting_leases(KEY, want_write=False)
    told = book.start_break(KEY, want_write=False, deadline_ns=100)
    assert [le.owner for le in told] == ["r"] and book.lease_of(KEY, "r").target == F_RDLCK
    assert book.start_break(KEY, want_write=False, deadline_ns=200) == []  # told once
    book.expire(KEY, 99)
    assert book.lease_of(KEY, "r").type == F_WRLCK
    book.expire(KEY, 100)
    assert book.lease_of(KEY, "r").type == F_RDLCK and book.lease_of(KEY, "r").breaking is None
    assert not book.conflicting_leases(KEY, want_write=False)
    book.start_break(KEY, want_write=True, deadline_ns=300)
    with pytest.raises(WouldBlock):
        book.set_lease(KEY, "other", F_RDLCK)  # no new lease while one is being broken
    book.expire(KEY, 300)
    assert book.lease_of(KEY, "r") is None and book.empty()
    with pytest.raises(LookupError):
        book.set_lease(KEY, "r", F_UNLCK)
