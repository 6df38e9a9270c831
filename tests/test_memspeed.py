"""Guest stores on Unicorn's fast path (vsnap/tlb.py): no memory hook stays installed, data
pages are not executable in the TLB, and what that changed still holds: fault addresses and
codes as Linux gives them, write protection after mprotect, the promise across faults.

Speed itself is measured by `make bench` (benchmarks/memory.py), never here."""
from __future__ import annotations

import ctypes
import random

import pytest
import unicorn as U

import vsnap
from conftest import run_native
from vsnap import tlb
from vsnap.testing import Guest, assert_transparent, measure

MEM_HOOKS = (U.UC_HOOK_MEM_READ_UNMAPPED | U.UC_HOOK_MEM_WRITE_UNMAPPED
             | U.UC_HOOK_MEM_FETCH_UNMAPPED | U.UC_HOOK_MEM_READ_PROT
             | U.UC_HOOK_MEM_WRITE_PROT | U.UC_HOOK_MEM_FETCH_PROT | U.UC_HOOK_MEM_READ
             | U.UC_HOOK_MEM_WRITE | U.UC_HOOK_MEM_FETCH | U.UC_HOOK_MEM_READ_AFTER)


@pytest.mark.parametrize("flavour", ["musl", "glibc"])
def test_fault_addresses_and_codes_match_native(builds, flavour, tmp_path):
    """si_addr and si_code of a write to a read-only page, an 8-byte write to an unmapped
    one, a read of a PROT_NONE page, a write to a page made read-only after it was written,
    a call to an unmapped address; then stack growth and a store loop. (Before: the PROT_NONE
    read went through: Unicorn kept the page's TLB entry from the earlier fault.)"""
    prog = builds.get("faultaddr", flavour)
    native = run_native(prog, cwd=tmp_path)
    result, out, err = vsnap.run(prog, root=str(tmp_path))
    assert native.status == 0 and native.stdout.count(b"signal 11") == 5, native.stdout
    assert (out, err, result.status) == (native.stdout, native.stderr, native.status)


def test_no_memory_hook_stays_installed(builds, tmp_path, monkeypatch):
    """While any UC_HOOK_MEM_* hook covers a page, Unicorn keeps every store to it on the
    slow path (notdirty_write never marks the entry dirty): bash ran 3x slower for it.
    A guest that faults five times (each fault's address is found with a hook installed
    for that one instruction) ends with none."""
    live: dict[int, int] = {}
    add, delete = U.Uc.hook_add, U.Uc.hook_del

    def hook_add(self, htype, *a, **kw):
        handle = add(self, htype, *a, **kw)
        live[handle] = htype
        return handle

    def hook_del(self, handle):
        live.pop(handle, None)
        return delete(self, handle)

    monkeypatch.setattr(U.Uc, "hook_add", hook_add)
    monkeypatch.setattr(U.Uc, "hook_del", hook_del)
    out = bytearray()
    m = vsnap.Machine(builds.get("faultaddr"), root=str(tmp_path), console=vsnap.Console(
        read=lambda n: b"", write_out=out.extend, write_err=out.extend))
    assert not [t for t in live.values() if t & MEM_HOOKS]
    assert m.run().status == 0 and out.count(b"signal 11") == 5, bytes(out)
    assert not [t for t in live.values() if t & MEM_HOOKS]


def test_the_promise_holds_across_faults(builds, tmp_path):
    """Checkpoints at and around the faults (the system calls just before each) and in the
    store loop: each resumed run equals the uninterrupted one, instruction counts included
    (finding a fault's address runs the instruction again, uncounted)."""
    guest = Guest(builds.get("faultaddr"))
    m = measure(guest, base=tmp_path)
    points = [k + d for k in m.syscalls[-9:-3] for d in (-1, 0, 1)] + [m.length - 2]
    assert_transparent(guest, sorted(set(points)), reference=m.outcome, base=tmp_path)


def _layout(rng):
    """Random sorted runs (start, end, prot) set through PageBook, as mmap/mprotect would."""
    book = tlb.PageBook()
    for _ in range(rng.randrange(1, 40)):
        start = rng.randrange(0, 64) << 12
        end = start + (rng.randrange(1, 16) << 12)
        book.set(start, end, rng.choice([None, 0, 1, 3, 5, 7]))
    return book


def test_page_book_keeps_the_last_word_on_every_page():
    rng = random.Random(7)
    for _ in range(200):
        book, truth = tlb.PageBook(), {}
        for _ in range(rng.randrange(1, 30)):
            start = rng.randrange(0, 64) << 12
            end = start + (rng.randrange(1, 16) << 12)
            prot = rng.choice([None, 0, 1, 3, 5, 7])
            book.set(start, end, prot)
            for page in range(start, end, 4096):
                truth[page] = prot
        for page in range(0, 96 << 12, 4096):
            for addr in (page, page + 0xFFF):
                assert book.prot(addr) == truth.get(page), hex(addr)


def test_the_published_array_is_the_books():
    """The array the C hook reads is patched in place (a memmove of the tail) on each change:
    after any sequence of changes it holds exactly the runs, which stay maximal."""
    rng = random.Random(5)
    for _ in range(200):
        book = _layout(rng)
        flat = [x for r in book.runs for x in r]
        array = (ctypes.c_uint64 * max(1, len(flat))).from_address(book.c.runs)
        assert book.c.n == len(book.runs) and list(array)[:len(flat)] == flat
        assert all(a[1] < b[0] or a[2] != b[2] for a, b in zip(book.runs, book.runs[1:]))


def test_the_native_fill_gives_what_the_books_say():
    """The C hook (what Unicorn calls on a TLB miss): an access the books allow gets the
    page's exact permissions (no exec on a data page: the fast path for its stores); any other
    goes to the slow callback (Python: faults, copy-on-write, stack growth), or is refused
    without one; emu_start's end page gets a page of its own."""
    lib = tlb._load_native()
    if lib is None:
        pytest.skip(f"no C compiler for the native hook: {tlb._native_error}")

    class Entry(ctypes.Structure):
        _fields_ = [("paddr", ctypes.c_uint64), ("perms", ctypes.c_uint32)]

    slow_calls = []
    SLOW = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int,
                            ctypes.POINTER(Entry), ctypes.c_void_p)

    @SLOW
    def slow(_uc, addr, access, entry, _data):
        slow_calls.append((addr, access))
        entry.contents.paddr, entry.contents.perms = 0x1234000, 5
        return True

    lib.vsnap_tlb_fill.restype = ctypes.c_bool
    need = {U.UC_MEM_READ: 1, U.UC_MEM_WRITE: 2, U.UC_MEM_FETCH: 4}
    rng = random.Random(11)
    for round_ in range(100):
        book = _layout(rng)
        with_slow = round_ % 2 == 0
        book.c.slow = ctypes.cast(slow, ctypes.c_void_p) if with_slow else None
        for addr in range(0, 96 << 12, 0x800):
            for access in (U.UC_MEM_READ, U.UC_MEM_WRITE, U.UC_MEM_FETCH):
                e = Entry(0, 99)
                del slow_calls[:]
                ok = lib.vsnap_tlb_fill(None, ctypes.c_uint64(addr + 5), access,
                                        ctypes.byref(e), ctypes.byref(book.c))
                prot = book.prot(addr)
                if prot is not None and prot & need[access]:
                    assert ok and (e.paddr, e.perms) == (addr & ~0xFFF, prot), hex(addr)
                    assert not slow_calls
                elif with_slow:
                    assert ok and (e.paddr, e.perms) == (0x1234000, 5)
                    assert slow_calls == [(addr + 5, access)]
                else:
                    assert not ok and e.perms == 99, (hex(addr), prot, access)
    e = Entry(0, 0)
    assert lib.vsnap_tlb_fill(None, ctypes.c_uint64(2**64 - 1), U.UC_MEM_FETCH, ctypes.byref(e),
                              ctypes.byref(tlb.PageBook().c))
    assert (e.paddr, e.perms) == (tlb.END_PHYS, U.UC_PROT_ALL)


def test_python_decides_only_what_the_books_do_not_allow(tmp_path, monkeypatch):
    """memhash over some 40 MiB of tables misses the TLB on thousands of pages; the C hook
    answers all of them from the books, and Python's fill (Cpu._on_tlb_fill: faults,
    copy-on-write, stack growth) is asked only about the few its books do not allow. (Before:
    Python answered every miss.)"""
    from pathlib import Path

    from vsnap.build import build
    from vsnap.cpu import Cpu
    if tlb._load_native() is None:
        pytest.skip(f"no C compiler for the native hook: {tlb._native_error}")
    asked = []
    fill = Cpu._on_tlb_fill

    def counted(self, uc, address, *rest):
        asked.append(address)
        return fill(self, uc, address, *rest)

    monkeypatch.setattr(Cpu, "_on_tlb_fill", counted)
    prog = build(str(Path(__file__).resolve().parents[1] / "benchmarks" / "memhash.c"))
    out = bytearray()
    m = vsnap.Machine(prog, ["200000"], root=str(tmp_path), console=vsnap.Console(
        read=lambda n: b"", write_out=out.extend, write_err=out.extend))
    assert m.run().status == 0 and b"distinct keys of 200000" in out, bytes(out)
    assert m.mem.touched() > 4000 * 4096  # thousands of pages, each missed at least once
    assert len(asked) < 20, [hex(a) for a in asked[:40]]


def test_an_error_in_pythons_fill_is_raised_not_made_a_fault():
    """The C hook calls Python for an unmapped address (a MAP_GROWSDOWN mapping may grow
    there); should Python fail, the error comes out of Cpu.run as it is, not as a SIGSEGV of
    the guest (the binding drops a hook's exception when Unicorn then fails too)."""
    from vsnap.cpu import Cpu
    from vsnap.guestram import UnicornMemory
    from vsnap.memory import AddressSpace
    cpu = Cpu()
    mem = AddressSpace(UnicornMemory(cpu.uc, cpu.pages))
    cpu.page_prot = mem.backend.page_prot

    def broken(address):
        raise ZeroDivisionError(f"books at {address:#x}")

    cpu.on_unmapped = broken
    mem.map(0x400000, 0x1000, 5, "text")
    mem.write(0x400000, bytes.fromhex("c6042500000010" "01"))  # mov byte [0x10000000], 1
    cpu.write("rip", 0x400000)
    with pytest.raises(ZeroDivisionError, match="books at 0x10000000"):
        cpu.run()


def test_the_tlb_grows_to_the_working_set(tmp_path):
    """Unicorn's TLB starts at 256 entries and changes size only when flushed, which a guest
    without system calls never makes vsnap do: memhash over 6,000 pages missed it 261,660
    times at N=200,000 (41 misses a page). The C fill flushes it as it fills up, so Unicorn
    doubles it, and the misses fall to a few per page."""
    from pathlib import Path

    from vsnap.build import build
    if tlb._load_native() is None:
        pytest.skip(f"no C compiler for the native hook: {tlb._native_error}")
    prog = build(str(Path(__file__).resolve().parents[1] / "benchmarks" / "memhash.c"))
    out = bytearray()
    m = vsnap.Machine(prog, ["200000"], root=str(tmp_path), console=vsnap.Console(
        read=lambda n: b"", write_out=out.extend, write_err=out.extend))
    assert m.run().status == 0 and b"distinct keys of 200000" in out, bytes(out)
    pages = m.mem.touched() // 4096
    assert pages > 4000
    assert m.cpu.pages.c.misses < 5 * pages, (m.cpu.pages.c.misses, pages)
