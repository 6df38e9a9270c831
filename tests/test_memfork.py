"""fork of the hardware (vsnap/cpufork.py, vsnap/memfork.py): a running guest's engine and
memory copied into a new engine, the same state, private from then on, except MAP_SHARED
anonymous memory, which stays shared, and file pages, whose copy-on-write is per process."""
from __future__ import annotations

import ctypes
import os

import pytest

from vsnap.build import build
from vsnap.cpu import REGISTERS, Cpu
from vsnap.cpufork import fork_cpu, fork_hardware, return_from_syscall
from vsnap.kernel.core import Capture
from vsnap.machine import Machine
from vsnap.memfork import ArenaPool, release_memory
from vsnap.memory import PAGE, PROT_EXEC, PROT_READ, PROT_WRITE

from conftest import GUESTS

RW, RX = PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC
STOP = 3_000_000   # inside forkfill's first fill of 2 MiB (its loops make no system call)
STEP = 250_000


@pytest.fixture(scope="module")
def forkfill():
    return build(str(GUESTS / "forkfill.c"))


@pytest.fixture
def parent(forkfill, tmp_path):
    cap = Capture()
    m = Machine(forkfill, ["2"], root=str(tmp_path), console=cap.console)
    assert m.advance(STOP) is None
    yield m
    m.close()


def context_bytes(cpu) -> bytes:
    """The CPU state in the engine's saved context (uc_context's data: after its header,
    whose fields say which engine and memory snapshot it came from)."""
    ctx = cpu.uc.context_save()
    raw = ctypes.string_at(ctx.context, ctx.size)
    return raw[ctx.size - int.from_bytes(raw[:8], "little"):]


def memory_of(mem) -> dict:
    """Every VMA's bytes, by start."""
    return {v.start: bytes(mem.read_bulk(v.start, v.size)) for v in mem.vmas}


def heap(mem):
    return next(v for v in mem.vmas if v.kind == "heap" or v.size >= 2 << 20)


def test_the_child_has_the_parents_registers_memory_and_books(parent):
    child, mem = fork_hardware(parent.cpu, parent.mem)
    regs = parent.cpu.snapshot_registers()
    assert child.snapshot_registers() == regs  # every named register: xmm, x87, fs base...
    assert set(regs) == set(REGISTERS) and regs["fs_base"] and regs["mxcsr"]
    # and the state vsnap has no name for: the engines' whole saved contexts are equal
    assert context_bytes(child) == context_bytes(parent.cpu)
    assert mem.maps_text() == parent.mem.maps_text()
    assert memory_of(mem) == memory_of(parent.mem)
    assert (mem.brk_start, mem.brk) == (parent.mem.brk_start, parent.mem.brk)
    assert mem.backend.pages.runs == parent.mem.backend.pages.runs  # the CPU's permissions
    assert mem.touched() == parent.mem.touched() > 2 << 20  # the budget counts the same
    assert child.instructions == parent.instructions == STOP
    assert child.ring3 and mem.backend is not parent.mem.backend


def test_writes_are_private_both_ways(parent):
    _, mem = fork_hardware(parent.cpu, parent.mem)
    h = heap(parent.mem)
    before = bytes(parent.mem.read(h.start, PAGE))
    mem.write(h.start, b"child" * 10)
    assert bytes(parent.mem.read(h.start, PAGE)) == before
    parent.mem.write(h.start + PAGE, b"parent" * 10)
    assert bytes(mem.read(h.start + PAGE, 60)) != b"parent" * 10
    assert bytes(mem.read(h.start, 50)) == b"child" * 10
    mem.unmap(h.start, h.size)  # gone in the child only
    assert parent.mem.read(h.start + PAGE, 60) == b"parent" * 10


def test_the_child_engine_runs_the_guest_on_as_the_parent_does(parent):
    """Parent and child each run STEP more instructions of the guest (a fill loop with
    floating point, no system call) from the fork: the same registers and memory at the end,
    and what the parent did meanwhile never reached the child's memory."""
    child, mem = fork_hardware(parent.cpu, parent.mem)
    at_fork = memory_of(parent.mem)
    assert parent.advance(STOP + STEP) is None
    assert memory_of(parent.mem) != at_fork  # the parent went on filling
    assert memory_of(mem) == at_fork         # which the child did not see
    child.run(stop_at=STOP + STEP)
    assert child.instructions == STOP + STEP
    assert child.snapshot_registers() == parent.cpu.snapshot_registers()
    assert memory_of(mem) == memory_of(parent.mem)


@pytest.mark.parametrize("flavour", ["musl-pie", "glibc", "glibc-pie"])
def test_other_builds_run_on_in_the_child_too(builds, flavour, tmp_path):
    """glibc (its SSE string routines, gcc's vectorised loops) and static-pie builds: the
    child, run on from the fork, ends where the parent does, registers and memory."""
    prog = builds.get("forkfill", flavour)
    m = Machine(prog, ["16"], root=str(tmp_path), console=Capture().console)
    try:
        assert m.advance(STOP) is None
        child, mem = fork_hardware(m.cpu, m.mem)
        assert child.snapshot_registers() == m.cpu.snapshot_registers()
        child.run(stop_at=STOP + STEP)
        assert m.advance(STOP + STEP) is None
        assert child.snapshot_registers() == m.cpu.snapshot_registers()
        assert memory_of(mem) == memory_of(m.mem)
    finally:
        m.close()


def test_a_child_forked_inside_a_system_call_returns_from_it(forkfill, tmp_path):
    """As the kernel's fork will: fork from the syscall hook (here just after the kernel
    served malloc's mmap), the child returns from the call with the result it is given and
    runs on; given the parent's result, it is the parent's double."""
    import unicorn as U
    from unicorn import x86_const as X
    m = Machine(forkfill, ["2"], root=str(tmp_path), console=Capture().console)
    forked = []

    def after_kernel(uc, _ud):  # hooks run in the order added: the kernel's came first
        big = any(v.size >= 2 << 20 and v.kind == "mmap" for v in m.mem.vmas)
        if big and not forked:
            child, mem = fork_hardware(m.cpu, m.mem)
            return_from_syscall(child, m.cpu.read("rax"))  # the parent's own result
            forked.append((child, mem, m.cpu.read("rip")))

    m.cpu.uc.hook_add(U.UC_HOOK_INSN, after_kernel, None, 1, 0, X.UC_X86_INS_SYSCALL)
    assert m.advance(STOP) is None
    child, mem, at = forked[0]
    assert child.read("rip") == at + 2 and child.read("rcx") == at + 2
    child.run(stop_at=STOP)
    assert child.snapshot_registers() == m.cpu.snapshot_registers()
    assert memory_of(mem) == memory_of(m.mem)
    m.close()


def test_a_child_of_a_child(parent):
    child, mem = fork_hardware(parent.cpu, parent.mem)
    child.run(stop_at=STOP + STEP)
    grandchild, gmem = fork_hardware(child, mem)
    grandchild.run(stop_at=STOP + 2 * STEP)
    assert parent.advance(STOP + 2 * STEP) is None
    assert grandchild.snapshot_registers() == parent.cpu.snapshot_registers()
    assert memory_of(gmem) == memory_of(parent.mem)
    assert child.instructions == STOP + STEP  # the middle one stayed where it was


def _store(cpu: Cpu, mem, code_at: int, addr: int, value: int) -> None:
    """Run one guest instruction, `mov %rax, (%rdi)`, on this engine."""
    if mem.find(code_at) is None:
        mem.map(code_at, PAGE, RW, "mmap")
        mem.write(code_at, bytes.fromhex("488907") + b"\x90" * 16)
        mem.protect(code_at, PAGE, RX)
    saved = cpu.snapshot_registers()
    cpu.write_many({"rip": code_at, "rdi": addr, "rax": value})
    cpu.run(stop_at=cpu.instructions + 1)
    assert cpu.read("rip") == code_at + 3
    cpu.restore_registers(saved)


def test_shared_anonymous_memory_stays_shared(parent):
    pm = parent.mem
    start = pm.find_free(4 * PAGE)
    pm.map(start, 4 * PAGE, RW, "mmap", "/dev/zero (deleted)", shared=True)
    pm.write(start, b"before fork")
    child, mem = fork_hardware(parent.cpu, pm)
    assert mem.read(start, 11) == b"before fork"
    assert mem.find(start).shared and mem.maps_text() == pm.maps_text()
    code = pm.find_free(PAGE, top=start)
    # stores by each engine itself, as well as by the kernel, reach the other at once
    _store(child, mem, code, start + PAGE, 0x1122334455667788)
    assert pm.read(start + PAGE, 8) == (0x1122334455667788).to_bytes(8, "little")
    _store(parent.cpu, pm, code, start + 2 * PAGE, 42)
    assert mem.read(start + 2 * PAGE, 8) == (42).to_bytes(8, "little")
    pm.write(start + 3 * PAGE, b"from the parent")
    assert mem.read(start + 3 * PAGE, 15) == b"from the parent"
    # the parent's private memory is still private: the code page was mapped by each alone
    assert mem.find(code) is not None and pm.find(code) is not None
    # unmapped in one, the other keeps the pages; mapped afresh there, it reads zeros
    pm.unmap(start, 4 * PAGE)
    assert mem.read(start, 11) == b"before fork"
    pm.map(start, 4 * PAGE, RW, "mmap")
    assert pm.read(start, PAGE) == bytes(PAGE)
    mem.write(start, b"child only")
    assert pm.read(start, 10) == bytes(10)
    # MADV_DONTNEED keeps shared memory's bytes (Linux: they are the shmem file's)
    mem.discard(start, start + PAGE)
    assert mem.read(start, 10) == b"child only"
    mem.unmap(start, 4 * PAGE)
    assert mem.backend.shared_ranges() == []


def test_shared_memory_moved_by_mremap_stays_shared(parent):
    pm = parent.mem
    start = pm.find_free(2 * PAGE)
    pm.map(start, 2 * PAGE, RW, "mmap", shared=True)
    _, mem = fork_hardware(parent.cpu, pm)
    to = pm.find_free(8 * PAGE, top=start)
    pm.move(start, 2 * PAGE, to, 8 * PAGE)  # mremap(MREMAP_MAYMOVE) to a bigger place
    pm.write(to + PAGE, b"moved")
    assert mem.read(start + PAGE, 5) == b"moved"
    mem.write(start, b"child")
    assert pm.read(to, 5) == b"child"


def test_shared_memory_made_writable_later_is_allowed(parent):
    pm = parent.mem
    start = pm.find_free(PAGE)
    pm.map(start, PAGE, PROT_READ, "mmap", shared=True)
    pm.protect(start, PAGE, RW)  # refused only for shared FILE mappings
    assert pm.find(start).prot == RW


def test_file_mappings_get_their_own_copy_on_write(parent, tmp_path):
    path = tmp_path / "data"
    path.write_bytes(b"A" * PAGE + b"B" * PAGE + b"C" * PAGE)
    pm = parent.mem
    fd = os.open(path, os.O_RDWR)
    try:
        f = pm.mapped_file(fd, "/data", str(path))
        start = pm.find_free(3 * PAGE)
        pm.map(start, 3 * PAGE, RW, "mmap", "/data", file=f, shared=False)
    finally:
        os.close(fd)
    pm.write(start, b"a")  # the parent's own page 0
    child, mem = fork_hardware(parent.cpu, pm)
    cf = mem.find(start).file
    assert cf is not f and cf.key == f.key and cf.fd != f.fd and cf.pages == 3
    assert mem.private == pm.private == {start}
    # the child writes page 1 with its engine: its own page, the parent's stays the file's
    code = pm.find_free(PAGE, top=start)
    _store(child, mem, code, start + PAGE, 0x62)
    assert mem.private == {start, start + PAGE} and pm.private == {start}
    # the file changes: each process sees it in the pages it still shares, and only those
    with open(path, "r+b") as w:
        w.write(b"X" * 3 * PAGE)
    pm.file_changed(f.key)
    mem.file_changed(cf.key)
    assert pm.read(start, 2) == b"aA" and mem.read(start, 2) == b"aA"
    assert pm.read(start + PAGE, 2) == b"XX"
    assert mem.read(start + PAGE, 9) == b"b" + bytes(7) + b"B"  # its 8-byte store, then B
    assert pm.read(start + 2 * PAGE, 1) == mem.read(start + 2 * PAGE, 1) == b"X"
    # the child's last unmap closes its descriptor, not the parent's
    mem.unmap(start, 3 * PAGE)
    assert cf.fd is None and f.fd is not None and pm.read(start + PAGE, 1) == b"X"


def test_fork_cpu_copies_the_fpu_and_sse_state(parent):
    regs = {"xmm3": (0x0123456789ABCDEF << 64) | 0xFEDCBA9876543210, "mxcsr": 0x1F80 | 0x6000,
            "fpcw": 0x27F, "fs_base": 0x7000_1234_5000, "gs_base": 0x4242_0000}
    parent.cpu.restore_registers(regs)
    child = fork_cpu(parent.cpu)
    got = child.snapshot_registers()
    assert {r: got[r] for r in regs} == regs
    assert got == parent.cpu.snapshot_registers()


def test_recycled_arenas_hold_nothing_of_the_process_that_had_them(parent):
    """A fork into arenas a dead child left (memfork.ArenaPool): the pages the new child
    does not get from its parent read as zeros and do not count as touched."""
    pool = ArenaPool()
    pm = parent.mem
    start = pm.find_free(64 * PAGE)
    pm.map(start, 64 * PAGE, RW, "mmap")  # mapped, untouched in the parent
    first, mem = fork_hardware(parent.cpu, pm, pool)
    mem.write_bulk(start, b"\xAA" * 64 * PAGE)  # the first child touches all of it
    h = heap(mem)
    mem.write_bulk(h.start, b"\xBB" * PAGE)
    assert mem.touched() == pm.touched() + 64 * PAGE
    release_memory(mem, pool)
    assert pool.kept >= pm.touched() and not mem.backend._arenas
    second, mem2 = fork_hardware(parent.cpu, pm, pool)
    assert pool.kept == 0  # its arenas went to the second child
    assert mem2.read(start, 64 * PAGE) == bytes(64 * PAGE)
    assert memory_of(mem2) == memory_of(pm)
    assert mem2.touched() == pm.touched()
    second.run(stop_at=STOP + STEP)  # and the engine runs on them
    assert parent.advance(STOP + STEP) is None
    assert memory_of(mem2) == memory_of(pm)


def test_the_fork_benchmark_harness_runs(forkfill, monkeypatch):
    """benchmarks/fork.py's parts (numbers belong to `make bench`): the native fork loop, a
    guest that touched 1 MiB forked into fresh and recycled arenas, the alternatives."""
    import importlib.util
    from conftest import NATIVE_OK, REPO
    spec = importlib.util.spec_from_file_location("bench_fork", REPO / "benchmarks" / "fork.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "REPEAT", 1)
    m = bench.guest(forkfill, 1, str(REPO / "benchmarks"))
    try:
        parts = bench.fork_costs(m)
    finally:
        m.close()
    assert set(parts) == {"fork", "engine", "memory", "release", "recycled"}
    assert all(len(v) == 1 and v[0] > 0 for v in parts.values())
    bench.alternatives(1)
    if NATIVE_OK:
        assert bench.native(build(str(REPO / "benchmarks" / "forkrate.c")), 1) > 0


# --- a state machine: processes that map, write, share, fork and go, against a model -----

from hypothesis import settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (RuleBasedStateMachine, invariant, precondition,  # noqa: E402
                                 rule)

from vsnap.guestram import ARENA, UnicornMemory  # noqa: E402
from vsnap.memfork import fork_memory  # noqa: E402
from vsnap.memory import AddressSpace  # noqa: E402

WINDOW = ARENA - 4 * PAGE   # 8 pages across the boundary of two arenas
NPAGES = 8


class ForkMachine(RuleBasedStateMachine):
    """Model: each process maps page -> ("own", bytes) or ("shm", id, index); shm id ->
    list of page contents. A fork copies the map (own bytes copied, shm entries the same)."""

    def __init__(self):
        super().__init__()
        self.pool = ArenaPool()
        self.procs = []   # (cpu, mem, model)
        self.shm: dict[int, list[bytes]] = {}
        self._new()

    def _new(self):
        cpu = Cpu()
        self.procs.append((cpu, AddressSpace(UnicornMemory(cpu.uc, cpu.pages)), {}))

    span = st.tuples(st.integers(0, NPAGES - 1), st.integers(1, 4))
    who = st.integers(0, 7)

    def _pick(self, who):
        return self.procs[who % len(self.procs)]

    @rule(who=who, span=span, shared=st.booleans())
    def map(self, who, span, shared):
        _, mem, model = self._pick(who)
        first, n = span[0], min(span[1], NPAGES - span[0])
        mem.map(WINDOW + first * PAGE, n * PAGE, RW, "mmap", shared=shared)
        sid = len(self.shm)
        if shared:
            self.shm[sid] = [bytes(PAGE)] * n
        for k in range(n):
            model[first + k] = ("shm", sid, k) if shared else ("own", bytes(PAGE))

    @rule(who=who, span=span)
    def unmap(self, who, span):
        _, mem, model = self._pick(who)
        first, n = span[0], min(span[1], NPAGES - span[0])
        mem.unmap(WINDOW + first * PAGE, n * PAGE)
        for k in range(first, first + n):
            model.pop(k, None)

    @rule(who=who, page=st.integers(0, NPAGES - 1), byte=st.integers(1, 255),
          at=st.integers(0, PAGE - 16))
    def write(self, who, page, byte, at):
        _, mem, model = self._pick(who)
        if page not in model:
            return
        mem.write(WINDOW + page * PAGE + at, bytes([byte]) * 16)
        entry = model[page]
        old = entry[1] if entry[0] == "own" else self.shm[entry[1]][entry[2]]
        new = old[:at] + bytes([byte]) * 16 + old[at + 16:]
        if entry[0] == "own":
            model[page] = ("own", new)
        else:
            self.shm[entry[1]][entry[2]] = new

    @precondition(lambda self: len(self.procs) < 4)
    @rule(who=who)
    def fork(self, who):
        cpu, mem, model = self._pick(who)
        child = fork_cpu(cpu)
        self.procs.append((child, fork_memory(mem, child, self.pool), dict(model)))

    @precondition(lambda self: len(self.procs) > 1)
    @rule(who=who)
    def exit(self, who):
        i = who % len(self.procs)
        _, mem, _ = self.procs.pop(i)
        release_memory(mem, self.pool)

    @invariant()
    def every_process_sees_its_model(self):
        for _, mem, model in self.procs:
            for page in range(NPAGES):
                addr = WINDOW + page * PAGE
                entry = model.get(page)
                if entry is None:
                    assert mem.find(addr) is None
                    continue
                want = entry[1] if entry[0] == "own" else self.shm[entry[1]][entry[2]]
                assert mem.read(addr, PAGE) == want, (page, entry[0])

    def teardown(self):
        for _, mem, _ in self.procs:
            release_memory(mem, None)


ForkMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25,
                                         deadline=None)
test_fork_state_machine = ForkMachine.TestCase


@pytest.mark.parametrize("flavour", ["musl", "glibc"])
def test_shared_anonymous_memory_keeps_its_bytes_as_on_linux(builds, flavour, tmp_path):
    from conftest import run_api, run_native
    prog = builds.get("shared_anon", flavour)
    native = run_native(prog, cwd=tmp_path)
    assert native.status == 0 and b"'hello shared'" in native.stdout
    assert run_api(prog, root=tmp_path)[0] == native
