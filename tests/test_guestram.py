"""Guest RAM under Unicorn: the views a checkpoint reads are the memory the guest sees."""

import unicorn as U
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from vsnap.guestram import UnicornMemory, touched_pages
from vsnap.memory import PAGE, AddressSpace

BASE = 0x10000
PAGES = 12


def fresh():
    uc = U.Uc(U.UC_ARCH_X86, U.UC_MODE_64)
    return uc, AddressSpace(UnicornMemory(uc))


class GuestRamMachine(RuleBasedStateMachine):
    """Map, unmap and write pages in a small window; read_bulk of any mapped run of pages
    must always equal what Unicorn itself reads there (the checkpoint's source of truth)."""

    def __init__(self):
        super().__init__()
        self.uc, self.mem = fresh()
        self.model: dict[int, bytes] = {}  # page -> contents

    span = st.tuples(st.integers(0, PAGES - 1), st.integers(1, 4))

    @rule(span=span)
    def map(self, span):
        first, n = span[0], min(span[1], PAGES - span[0])
        self.mem.map(BASE + first * PAGE, n * PAGE, 3, "mmap")
        for p in range(first, first + n):
            self.model[p] = bytes(PAGE)

    @rule(span=span)
    def unmap(self, span):
        first, n = span[0], min(span[1], PAGES - span[0])
        self.mem.unmap(BASE + first * PAGE, n * PAGE)
        for p in range(first, first + n):
            self.model.pop(p, None)

    @rule(page=st.integers(0, PAGES - 1), byte=st.integers(1, 255))
    def write(self, page, byte):
        if page in self.model:
            self.mem.write(BASE + page * PAGE, bytes([byte]) * 64)
            self.model[page] = bytes([byte]) * 64 + self.model[page][64:]

    @rule(span=span, prot=st.sampled_from([0, 1, 3, 5]))
    def protect(self, span, prot):
        first, n = span[0], min(span[1], PAGES - span[0])
        if all(p in self.model for p in range(first, first + n)):
            self.mem.protect(BASE + first * PAGE, n * PAGE, prot)

    @invariant()
    def unicorn_has_few_regions_with_the_right_permissions(self):
        """Unicorn's regions are the backend's books, and as few as can be: maximal runs of
        one permission (Unicorn slows down steeply with many regions)."""
        regions = [(lo, hi + 1, perms) for lo, hi, perms in self.uc.mem_regions()]
        books = self.mem.backend._regions
        assert [(lo, hi) for lo, hi, _ in regions] == [(lo, hi) for lo, hi, _ in books]
        for (_, _, perms), (_, _, prot) in zip(regions, books):
            assert perms == self.mem.backend._perm[prot]
        for a, b in zip(books, books[1:]):
            assert not (a[1] == b[0] and a[2] == b[2]), "two regions could be one"
        pages = {p: v.prot for v in self.mem.vmas for p in range(v.start, v.end, PAGE)}
        assert pages == {p: prot for lo, hi, prot in books for p in range(lo, hi, PAGE)}

    @invariant()
    def views_are_the_guest_memory(self):
        for v in self.mem.vmas:
            got = bytes(self.mem.read_bulk(v.start, v.size))
            assert got == bytes(self.uc.mem_read(v.start, v.size))
            first = (v.start - BASE) // PAGE
            assert got == b"".join(self.model[p] for p in range(first, first + v.size // PAGE))

    @invariant()
    def pages_never_touched_are_zero(self):
        """What lets a checkpoint skip them without reading them."""
        for v in self.mem.vmas:
            touched = touched_pages(self.mem.ram_view(v.start, v.size))
            assert touched is not None  # Linux: /proc/self/pagemap
            for i, t in enumerate(touched):
                page = (v.start - BASE) // PAGE + i
                assert t or self.model[page] == bytes(PAGE)


TestGuestRam = GuestRamMachine.TestCase
TestGuestRam.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_a_page_mapped_again_is_read_from_its_new_mapping():
    # the case the machine above found: a stale chunk used to shadow the new mapping
    uc, mem = fresh()
    mem.map(BASE, 3 * PAGE, 3, "mmap")
    mem.unmap(BASE + PAGE, PAGE)
    mem.map(BASE + PAGE, PAGE, 3, "mmap")
    mem.write(BASE + PAGE, b"new")
    assert bytes(mem.read_bulk(BASE + PAGE, 3))[:3] == b"new"


def test_memory_across_an_arena_boundary():
    """Guest memory is backed in 1 GiB arenas; a mapping across the boundary is two regions,
    and its bytes are whole."""
    from vsnap.guestram import ARENA
    uc, mem = fresh()
    start = ARENA - 2 * PAGE
    mem.map(start, 4 * PAGE, 3, "mmap")
    data = bytes(range(256)) * 32  # two pages, one each side
    mem.write_bulk(start + PAGE, data)
    assert bytes(mem.read_bulk(start + PAGE, len(data))) == data
    assert bytes(uc.mem_read(start + PAGE, len(data))) == data
    assert mem.backend.regions() == 2
    mem.unmap(start, 4 * PAGE)
    assert mem.backend.regions() == 0 and not list(uc.mem_regions())


def test_thousands_of_neighbouring_mappings_stay_one_region():
    uc, mem = fresh()
    for _ in range(3000):
        mem.map(mem.find_free(PAGE), PAGE, 3, "mmap")
    assert len(mem.vmas) == 3000 and mem.backend.regions() == 1
