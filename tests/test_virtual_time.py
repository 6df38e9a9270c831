"""Virtual time from instructions (clock.py): 1 ns per instruction, 1 us per system call, plus
the time slept. A timer fires at the instruction where its deadline falls, also in a loop that
makes no system call (tests/guests/spintimer.c), natively and under vsnap alike; the same
instruction in every run and after a checkpoint between two ticks."""
from __future__ import annotations

import pytest
from elftools.elf.elffile import ELFFile

import vsnap
from conftest import require_native, run_native
from vsnap.abi import consts as C
from vsnap.clock import NS_PER_INSTRUCTION, SYSCALL_NS, Clock
from vsnap.machine import Machine
from vsnap.snapshot import checkpoint, restore
from vsnap.testing import Guest, assert_transparent, run_to_end

FAST_MODES = ["real", "virtual", "prof", "posix"]


@pytest.mark.parametrize("flavour", ["musl", "glibc"])
@pytest.mark.parametrize("mode", FAST_MODES + ["alarm"])
def test_timers_fire_in_a_loop_without_system_calls(mode, flavour, builds, tmp_path):
    if mode == "alarm" and flavour == "glibc":
        pytest.skip("one alarm(1) run (a virtual second: 10^9 instructions) is enough")
    prog = builds.get("spintimer", flavour)
    result, out, err = vsnap.run(prog, mode, root=str(tmp_path), cwd=str(tmp_path))
    assert result.status == 0, (out, err)
    assert out == f"{mode}: {1 if mode == 'alarm' else 5} signal{'' if mode == 'alarm' else 's'} "\
        f"while spinning\n".encode()
    require_native()
    native = run_native(prog, [mode], cwd=tmp_path)
    assert (out, err, result.status) == (native.stdout, native.stderr, native.status)


def _symbol(path: str, name: str) -> int:
    with open(path, "rb") as f:
        sym = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)
    return sym[0]["st_value"]


@pytest.mark.parametrize("saved", [False, True], ids=["run", "saved-at-deadline"])
def test_a_timer_fires_at_the_instruction_where_its_deadline_falls(saved, builds, tmp_path):
    """ITIMER_REAL: the CPU stops at the instruction count where the monotonic clock reaches
    the deadline, and the next instruction is the handler's first."""
    prog = builds.get("spintimer", "musl")
    m = Machine(prog, ["real"], root=str(tmp_path), cwd=str(tmp_path), log=False)
    handler = _symbol(prog, "on_tick")
    m.advance(5_000_000)  # past the setitimer call, into the loop
    deadline = m.cpu.deadline
    assert deadline is not None and deadline > 5_000_000
    alarm = m.process.signals.alarm_deadline
    m.advance(deadline - 1)
    assert m.system.clock.monotonic_ns == alarm - NS_PER_INSTRUCTION
    assert not m.process.signals.pending
    m.advance(deadline)
    assert m.system.clock.monotonic_ns == alarm  # the deadline, to the nanosecond
    if saved:  # saved at the deadline itself, before the timer fires: it fires on resume
        checkpoint(m, str(tmp_path / "at-deadline.img"))
        m.close()
        m, _ = restore(str(tmp_path / "at-deadline.img"), root=str(tmp_path))
        assert m.system.clock.monotonic_ns == alarm and m.instructions == deadline
    m.advance(deadline + 1)  # the timer fired first: this instruction is the handler's
    assert m.process.signals.alarm_deadline == alarm + 20_000_000  # reloaded
    rip = m.cpu.read("rip")
    assert handler < rip <= handler + 16, (hex(handler), hex(rip))
    m.close()


@pytest.mark.parametrize("mode", ["real", "posix"])
def test_timer_positions_are_the_same_in_every_run(mode, builds, tmp_path):
    guest = Guest(builds.get("spintimer", "musl"), (mode, "where"))
    first, second = run_to_end(guest, tmp_path / "a"), run_to_end(guest, tmp_path / "b")
    assert first.stdout == second.stdout and first.status == 0
    assert first.stdout.count(b" after ") == 5


@pytest.mark.parametrize("mode", ["real", "virtual", "posix"])
def test_checkpoints_between_ticks_resume_with_ticks_at_the_same_instructions(
        mode, builds, tmp_path):
    """Saved between two ticks (and just before and after one), resumed in a fresh
    machine, three times in one run: every tick comes after the same number of spins."""
    guest = Guest(builds.get("spintimer", "musl"), (mode, "where"))
    reference = run_to_end(guest, tmp_path)
    period = {"real": 20_000_000, "virtual": 20_000_000, "posix": 10_000_000}[mode]
    points = [period + period // 2, 2 * period + 4_000_001, 3 * period + 4_000_000 + 17]
    assert_transparent(guest, points, reference=reference, base=tmp_path)


def test_clock_is_instructions_plus_system_calls_plus_sleeps():
    n = [0]
    c = Clock(instructions=lambda: n[0])
    n[0] = 1_000
    c.tick()
    c.monotonic_ns = c.monotonic_ns + 5_000  # a sleep
    assert (c.user_ns, c.system_ns, c.cpu_ns, c.monotonic_ns) == (
        1_000 * NS_PER_INSTRUCTION, SYSCALL_NS, 1_000 + SYSCALL_NS, 1_000 + SYSCALL_NS + 5_000)
    c.monotonic_ns = 0  # never backwards
    assert c.monotonic_ns == 1_000 + SYSCALL_NS + 5_000
    # deadlines as instruction counts
    assert c.at_cpu(c.cpu_ns + 7) == n[0] + 7
    assert c.at_monotonic(c.monotonic_ns + 7) == n[0] + 7
    assert c.at_user(10) == 10


def test_saved_clock_must_add_up():
    from vsnap.clock import ClockError
    c = Clock(instructions=lambda: 50)
    c.tick()
    saved = c.saved()
    d = Clock()
    d.load(saved, 50)
    assert (d.system_ns, d.slept_ns) == (c.system_ns, c.slept_ns)
    with pytest.raises(ClockError):
        d.load(saved, 51)  # another instruction count: the parts no longer add up
    with pytest.raises(ClockError):
        d.load(dict(saved, model="wall-clock"), 50)


def test_rusage_and_times_split_user_and_system_time(builds, tmp_path):
    """getrusage and times report instructions as user time and system calls as system
    time; RUSAGE_CHILDREN is zero (no child has run)."""
    src = tmp_path / "usage.c"
    src.write_text(r'''
#include <stdio.h>
#include <sys/resource.h>
#include <sys/times.h>
#include <unistd.h>
int main(void) {
    volatile unsigned long x = 0;
    for (unsigned long i = 0; i < 3000000; i++) x += i;
    for (int i = 0; i < 2000; i++) getppid();
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    struct tms t;
    times(&t);
    printf("%ld %ld %ld %ld %ld %ld\n", (long)self.ru_utime.tv_usec, (long)self.ru_stime.tv_usec,
           (long)kids.ru_utime.tv_usec + kids.ru_stime.tv_usec, (long)t.tms_utime,
           (long)t.tms_stime, (long)sysconf(_SC_CLK_TCK));
    return 0;
}
''')
    from vsnap.build import build
    result, out, _ = vsnap.run(build(str(src)), root=str(tmp_path))
    utime, stime, kids, tu, ts, hz = map(int, out.split())
    assert hz == 100 and kids == 0
    assert 3_000_000 * 2 // 1000 < utime < 3_000_000 * 12 // 1000  # 2-12 instructions a turn
    # getppid x 2000, the getrusage itself and libc's start-up calls
    assert 2001 * SYSCALL_NS // 1000 <= stime <= 2005 * SYSCALL_NS // 1000
    assert tu == utime // 10_000 and ts == stime // 10_000
    assert C.ITIMER_VIRTUAL == 1


def test_the_reference_counter_puts_the_ticks_at_the_same_instructions(builds, tmp_path,
                                                                       monkeypatch):
    """The per-instruction reference counter (VSNAP_COUNTER=insn) stops for each timer at
    the same instruction as the block counter: the same spins between ticks."""
    guest = Guest(builds.get("spintimer", "musl"), ("posix", "where"))
    block = run_to_end(guest, tmp_path / "block")
    monkeypatch.setenv("VSNAP_COUNTER", "insn")
    reference = run_to_end(guest, tmp_path / "insn")
    assert block.stdout == reference.stdout and block.status == reference.status == 0
