"""Kernel objects without a CPU: the address space and the fd table, as hypothesis state
machines checked against simple models (a page dictionary, a dict of fds)."""
import os

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vsnap.abi import errno as E
from vsnap.errors import SyscallError
from vsnap.fdtable import MAX_FDS, FdTable, OpenFile
from vsnap.filemap import MappedFile
from vsnap.memory import PAGE, AddressSpace

BASE = 0x10_0000
PAGES = 32  # a small window so that operations collide often


class FakeBackend:
    """Pages as a dict: what Unicorn would hold, checked for consistency on every call."""

    def __init__(self):
        self.pages: dict[int, list] = {}   # page -> [prot, bytearray]

    def map(self, start, size, prot):
        for p in range(start, start + size, PAGE):
            assert p not in self.pages, f"double map of {p:#x}"
            self.pages[p] = [prot, bytearray(PAGE)]

    def unmap(self, start, size):
        for p in range(start, start + size, PAGE):
            del self.pages[p]

    def protect(self, start, size, prot):
        for p in range(start, start + size, PAGE):
            self.pages[p][0] = prot

    def read(self, addr, size):
        out = bytearray()
        for a in range(addr, addr + size):
            out.append(self.pages[a & ~(PAGE - 1)][1][a % PAGE])
        return bytes(out)

    def write(self, addr, data):
        for i, b in enumerate(data):
            self.pages[(addr + i) & ~(PAGE - 1)][1][(addr + i) % PAGE] = b


page_index = st.integers(0, PAGES - 1)
length = st.integers(1, 8)
prot = st.integers(0, 7)


class AddressSpaceMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.backend = FakeBackend()
        self.mem = AddressSpace(self.backend, limit=24 * PAGE, reserve=24 * PAGE)
        self.model: dict[int, int] = {}  # page -> prot

    @rule(i=page_index, n=length, p=prot)
    def map(self, i, n, p):
        start = BASE + i * PAGE
        new = set(range(start, start + n * PAGE, PAGE))
        growth = len(new - set(self.model))
        try:
            self.mem.map(start, n * PAGE, p, "mmap")
        except SyscallError as e:  # past the reservation ceiling
            assert e.errno == E.ENOMEM and len(self.model) + growth > 24
            return
        for page in new:
            self.model[page] = p

    @rule(i=page_index, n=length)
    def unmap(self, i, n):
        start = BASE + i * PAGE
        self.mem.unmap(start, n * PAGE)
        for page in range(start, start + n * PAGE, PAGE):
            self.model.pop(page, None)

    @rule(i=page_index, n=length, p=prot)
    def protect(self, i, n, p):
        start = BASE + i * PAGE
        pages = range(start, start + n * PAGE, PAGE)
        try:
            self.mem.protect(start, n * PAGE, p)
        except SyscallError as e:
            assert e.errno == E.ENOMEM and not all(pg in self.model for pg in pages)
        for page in pages:  # Linux changes the mapped part even when a hole makes it fail
            if page in self.model:
                self.model[page] = p

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def write_then_read(self, data):
        page = data.draw(st.sampled_from(sorted(self.model)))
        payload = data.draw(st.binary(min_size=1, max_size=64))
        self.mem.write(page + 100, payload)
        assert self.mem.read(page + 100, len(payload)) == payload

    @rule(n=length)
    def find_free_is_free(self, n):
        top = BASE + PAGES * PAGE
        try:
            addr = self.mem.find_free(n * PAGE, top=top, bottom=BASE)
        except SyscallError:
            assert not any(self.mem.is_free(a, a + n * PAGE)
                           for a in range(BASE, top - n * PAGE + 1, PAGE))
            return
        assert BASE <= addr and addr + n * PAGE <= top
        assert self.mem.is_free(addr, addr + n * PAGE)
        # top-down: no free gap of that size lies above it
        assert not any(self.mem.is_free(a, a + n * PAGE)
                       for a in range(addr + PAGE, top - n * PAGE + 1, PAGE))

    @invariant()
    def vmas_match_model_and_backend(self):
        vmas = self.mem.vmas
        for a, b in zip(vmas, vmas[1:]):
            assert a.end <= b.start, "VMAs overlap or are unsorted"
        pages = {p: v.prot for v in vmas for p in range(v.start, v.end, PAGE)}
        assert pages == self.model
        assert {p: v[0] for p, v in self.backend.pages.items()} == self.model
        assert self.mem.mapped == len(self.model) * PAGE


TestAddressSpace = AddressSpaceMachine.TestCase
TestAddressSpace.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


class FileMappingMachine(RuleBasedStateMachine):
    """File mappings against a page model: a page of a private mapping follows the file
    until written (then it is the process's own), a shared one always follows it; pages wholly
    past the end of the file have no access; truncation drops even own pages there."""

    def __init__(self):
        super().__init__()
        import tempfile
        self.backend = FakeBackend()
        self.mem = AddressSpace(self.backend)
        self.fd, self.path = tempfile.mkstemp()
        os.write(self.fd, bytes(range(256)) * 16 * 6)  # six pages
        self.key = MappedFile(self.fd, "/f", self.path).key
        self.opened: list[MappedFile] = []
        # page -> [prot, shared, file offset, own bytes or None]; anonymous: offset None
        self.model: dict[int, list] = {}

    def teardown(self):
        for v in list(self.mem.vmas):
            self.mem.unmap(v.start, v.size)
        assert not self.mem.files
        assert all(f.fd is None for f in self.opened)  # the last unmap closed each
        os.close(self.fd)
        os.unlink(self.path)

    def _file_bytes(self, offset: int) -> bytes:
        data = os.pread(self.fd, PAGE, offset)
        return data + bytes(PAGE - len(data))

    def _size(self) -> int:
        return os.fstat(self.fd).st_size

    @rule(i=page_index, n=length, p=st.sampled_from([1, 3, 5, 7]), shared=st.booleans(),
          first=st.integers(0, 7))
    def map_file(self, i, n, p, shared, first):
        if shared:
            p &= ~2  # shared writable mappings are refused (kernel/mm.py)
        start = BASE + i * PAGE
        f = self.mem.mapped_file(self.fd, "/f", self.path)  # the one mapped, or new
        self.opened.append(f)
        self.mem.map(start, n * PAGE, p, "mmap", "/f", file=f, offset=first * PAGE,
                     shared=shared)
        for k in range(n):
            self.model[start + k * PAGE] = [p, shared, (first + k) * PAGE, None]

    @rule(i=page_index, n=length)
    def map_anon(self, i, n):
        start = BASE + i * PAGE
        self.mem.map(start, n * PAGE, 3, "mmap")
        for k in range(n):
            self.model[start + k * PAGE] = [3, False, None, bytes(PAGE)]

    @rule(i=page_index, n=length)
    def unmap(self, i, n):
        start = BASE + i * PAGE
        self.mem.unmap(start, n * PAGE)
        for k in range(n):
            self.model.pop(start + k * PAGE, None)

    @rule(i=page_index, n=length, p=st.sampled_from([0, 1, 3]))
    def protect(self, i, n, p):
        pages = [BASE + (i + k) * PAGE for k in range(n)]
        if not all(pg in self.model for pg in pages) or (
                p & 2 and any(self.model[pg][1] for pg in pages)):
            return  # holes and shared writable: other tests
        self.mem.protect(pages[0], n * PAGE, p)
        for pg in pages:
            self.model[pg][0] = p

    @rule(offset=st.integers(0, 8 * PAGE), data=st.binary(min_size=1, max_size=300))
    def write_file(self, offset, data):
        os.pwrite(self.fd, data, offset)
        self.mem.file_changed(self.key, offset, len(data))

    @rule(size=st.integers(0, 8 * PAGE))
    def truncate_file(self, size):
        os.ftruncate(self.fd, size)
        self.mem.file_changed(self.key)
        eof = (size + PAGE - 1) // PAGE * PAGE
        for page in self.model.values():
            if page[2] is not None and page[2] >= eof:
                page[3] = None  # Linux drops even the process's own pages there

    @precondition(lambda self: self.model)
    @rule(data=st.data(), byte=st.integers(1, 255))
    def cpu_writes(self, data, byte):
        """What a store does: on a page without write permission, the fault handler
        (write_fault) may make it the process's own; else the store faults."""
        page = data.draw(st.sampled_from(sorted(self.model)))
        prot, shared, offset, own = self.model[page]
        if not self.backend.pages[page][0] & 2:
            handled = self.mem.write_fault(page + 7, 1)
            may = (prot & 2 and not shared and offset is not None and own is None
                   and offset < self._size())
            assert handled == bool(may)
            if not handled:
                return
            self.model[page][3] = self._file_bytes(offset)
        self.backend.write(page + 7, bytes([byte]))
        own = self.model[page][3]
        self.model[page][3] = own[:7] + bytes([byte]) + own[8:]

    @invariant()
    def pages_match_the_model(self):
        size = self._size()
        assert set(self.backend.pages) == set(self.model)
        for page, (prot, shared, offset, own) in self.model.items():
            got_prot, got = self.backend.pages[page]
            if offset is None or own is not None:
                want_prot, want = prot, own
            elif offset >= size:
                want_prot, want = 0, None  # past the end of the file: SIGBUS
            else:
                want_prot, want = prot & ~2, self._file_bytes(offset)
            assert got_prot == want_prot, f"page {page:#x}"
            if want is not None:
                assert bytes(got) == want, f"page {page:#x}"
        assert self.mem.mapped == len(self.model) * PAGE


TestFileMappings = FileMappingMachine.TestCase
TestFileMappings.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_brk_grows_and_shrinks_the_heap():
    mem = AddressSpace(FakeBackend())
    mem.set_brk_start(BASE)
    assert mem.set_brk(BASE + 10) == BASE + 10
    assert mem.find(BASE).kind == "heap"
    assert mem.set_brk(BASE + 3 * PAGE + 1) == BASE + 3 * PAGE + 1
    assert [v.kind for v in mem.vmas] == ["heap"] and mem.vmas[0].size == 4 * PAGE
    assert mem.set_brk(BASE + PAGE) == BASE + PAGE
    assert mem.vmas[0].size == PAGE
    assert mem.set_brk(BASE - 1) == BASE + PAGE  # below the start: refused, old break back


def test_maps_text_looks_like_proc_maps():
    mem = AddressSpace(FakeBackend())
    mem.map(BASE, PAGE, 5, "text", "/prog")
    line = mem.maps_text().splitlines()[0]
    assert line.startswith(f"{BASE:08x}-{BASE + PAGE:08x} r-xp 00000000 00:00 0")
    assert line.endswith(" /prog")


class FdTableMachine(RuleBasedStateMachine):
    """Against a model: fd -> description id. Descriptions close when the last fd goes."""

    def __init__(self):
        super().__init__()
        self.table = FdTable()
        self.model: dict[int, int] = {}
        self.files: dict[int, OpenFile] = {}
        self.closed: set[int] = set()
        self.next_id = 0

    def _new_file(self):
        r, w = os.pipe()  # a real host fd, so that closing it can be observed
        os.close(w)
        f = OpenFile("file", f"/f{self.next_id}", 0, host_fd=r)
        self.files[self.next_id] = f
        self.next_id += 1
        return f, self.next_id - 1

    @rule()
    def open(self):
        if len(self.model) >= 20:
            return
        f, ident = self._new_file()
        fd = self.table.install(f)
        assert fd == min(set(range(MAX_FDS)) - set(self.model))
        self.model[fd] = ident

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def dup(self, data):
        fd = data.draw(st.sampled_from(sorted(self.model)))
        new = self.table.install(self.table.get(fd))
        self.model[new] = self.model[fd]

    @precondition(lambda self: self.model)
    @rule(data=st.data(), newfd=st.integers(0, 30))
    def dup2(self, data, newfd):
        fd = data.draw(st.sampled_from(sorted(self.model)))
        f = self.table.get(fd)
        if fd != newfd:
            ident = self.model[fd]
            self.table.place(newfd, f)
            self._forget(newfd)
            self.model[newfd] = ident

    @rule(fd=st.integers(-1, 30))
    def close(self, fd):
        if fd in self.model:
            self.table.close(fd)
            self._forget(fd)
        else:
            try:
                self.table.close(fd)
                raise AssertionError("closing a free fd must fail")
            except SyscallError as e:
                assert e.errno == E.EBADF

    def _forget(self, fd):
        ident = self.model.pop(fd, None)
        if ident is not None and ident not in self.model.values():
            self.closed.add(ident)

    @invariant()
    def table_matches_model(self):
        assert set(self.table.fds) == set(self.model)
        for fd, ident in self.model.items():
            assert self.table.get(fd) is self.files[ident]
        for ident in self.closed:
            assert self.files[ident].host_fd is None, "a description outlived its last fd"
        for ident in set(self.model.values()):
            assert self.files[ident].host_fd is not None

    def teardown(self):
        self.table.close_all()


TestFdTable = FdTableMachine.TestCase
TestFdTable.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
