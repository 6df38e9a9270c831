"""Guest RAM under Unicorn: the views a checkpoint reads are the memory the guest sees."""

import pytest
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
    def the_books_give_every_page_its_permission(self):
        """Unicorn's TLB asks page_prot; the books are maximal runs of one permission, and
        Unicorn's own regions are only the arenas (however many mappings there are)."""
        backend = self.mem.backend
        runs = backend._runs
        for a, b in zip(runs, runs[1:]):
            assert a[1] <= b[0] and not (a[1] == b[0] and a[2] == b[2]), "runs not maximal"
        pages = {p: v.prot for v in self.mem.vmas for p in range(v.start, v.end, PAGE)}
        assert pages == {p: prot for lo, hi, prot in runs for p in range(lo, hi, PAGE)}
        for p in range(BASE - PAGE, BASE + (PAGES + 1) * PAGE, PAGE):
            assert backend.page_prot(p + 5) == pages.get(p)
        assert len(list(self.uc.mem_regions())) == len(backend._arenas) <= 1

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
    """Guest memory is backed in 1 GiB arenas; a mapping across the boundary lies in two,
    and its bytes are whole."""
    from vsnap.guestram import ARENA
    uc, mem = fresh()
    start = ARENA - 2 * PAGE
    mem.map(start, 4 * PAGE, 3, "mmap")
    data = bytes(range(256)) * 32  # two pages, one each side
    mem.write_bulk(start + PAGE, data)
    assert bytes(mem.read_bulk(start + PAGE, len(data))) == data
    assert bytes(uc.mem_read(start + PAGE, len(data))) == data
    assert len(list(uc.mem_regions())) == 2
    mem.unmap(start, 4 * PAGE)
    assert not list(uc.mem_regions())


def test_thousands_of_mappings_are_one_unicorn_region():
    uc, mem = fresh()
    for i in range(3000):
        mem.map(mem.find_free(PAGE), PAGE, 3 if i % 2 else 1, "mmap")
    assert len(mem.vmas) == 3000 and mem.backend.runs() == 3000
    assert len(list(uc.mem_regions())) == 1


@pytest.mark.parametrize("c_hook", [True, False], ids=["C fill", "Python fill"])
def test_a_permission_taken_away_is_enforced_at_once(c_hook):
    """Unicorn kept a page's old permission while the page was in its TLB (a read of a page
    just made PROT_NONE succeeded): the TLB is flushed when a permission goes. Whether the
    books are the ones the Cpu's C hook reads or the memory's own (Python decides all)."""
    from vsnap.cpu import Cpu, CpuFault
    cpu = Cpu()
    mem = AddressSpace(UnicornMemory(cpu.uc, cpu.pages if c_hook else None))
    cpu.page_prot = mem.backend.page_prot
    code, data = 0x400000, 0x600000
    mem.map(code, PAGE, 5, "text")
    mem.map(data, PAGE, 3, "mmap")
    # mov al, [data]; syscall; mov al, [data]; syscall
    load = bytes.fromhex("8a0425") + data.to_bytes(4, "little")
    mem.write(code, load + b"\x0f\x05" + load + b"\x0f\x05")
    calls = []

    def on_syscall():
        calls.append(1)
        if len(calls) == 1:
            mem.protect(data, PAGE, 0)
        else:
            cpu.stop()

    cpu.on_syscall(on_syscall)
    cpu.write("rip", code)
    with pytest.raises(CpuFault) as fault:
        cpu.run()
    assert fault.value.signal == "SIGSEGV" and fault.value.address == data
    assert fault.value.code == 2 and fault.value.rip == code + len(load) + 2
