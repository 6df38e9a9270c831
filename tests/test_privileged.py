"""Privileged instructions in a user program (tests/guests/privileged.c): Linux answers each
with a general-protection fault, SIGSEGV with si_code SI_KERNEL and no address. Unicorn runs
its CPU in ring 0, where cli, rdmsr, mov %cr0, lgdt... all ran silently (only hlt was caught,
by its halt); vsnap now puts the guest in ring 3 (vsnap/userring.py). Port I/O, which Unicorn
never checks, stops the run with a message instead."""
from __future__ import annotations

import pytest

import vsnap
from conftest import require_native, run_cli, run_native
from vsnap.build import build
from vsnap.testing import Guest, assert_transparent, measure


@pytest.mark.parametrize("flavour", ["musl", "glibc"])
def test_privileged_instructions_fault_as_native(flavour, builds, tmp_path):
    prog = builds.get("privileged", flavour)
    result, out, err = vsnap.run(prog, root=str(tmp_path), cwd=str(tmp_path))
    lines = out.decode().splitlines()
    assert result.status == 0 and len(lines) == 2 * 19 + 2, (out, err)
    for line in lines[:-2]:
        assert line.endswith("signal 11 code 128 addr null"), line
    assert lines[-2:] == ["after popf: iopl 0 if 1", "ran 0"]
    require_native()
    native = run_native(prog, [], cwd=tmp_path)
    assert (out, err, result.status) == (native.stdout, native.stderr, native.status)


def test_an_uncaught_privileged_instruction_is_named(tmp_path):
    src = tmp_path / "rdmsr.c"
    src.write_text("int main(void) { __asm__ volatile(\"rdmsr\" : : \"c\"(0x10) : \"rax\", "
                   "\"rdx\"); return 0; }\n")
    result, _, _ = vsnap.run(build(str(src)), root=str(tmp_path))
    assert result.status == 139 and result.signal == "SIGSEGV"
    assert "rdmsr" in result.message, result.message


def test_port_io_stops_the_run_with_a_message(tmp_path):
    """Linux: SIGSEGV. Unicorn runs in/out without any permission check and its hook comes
    in the middle of a block, so vsnap cannot fault it exactly: it must not run on silently."""
    src = tmp_path / "outb.c"
    # the write(2) is in the same translated block as the outb, which runs on after the
    # hook's stop: Unicorn calls no syscall hook once a stop is asked for, and so it
    # must not be written
    src.write_text("#include <stdio.h>\nint main(void) { static const char m[] = \"went on\\n\";"
                   " long r; __asm__ volatile(\"outb %%al, $0x80\\n\\tmov $1, %%eax\\n\\t"
                   "syscall\" : \"=a\"(r) : \"a\"(0), \"D\"(1), \"S\"(m), \"d\"(8)"
                   " : \"rcx\", \"r11\", \"memory\"); puts(\"went on\"); return 0; }\n")
    outcome = run_cli("run", build(str(src)), cwd=tmp_path)
    assert outcome.status != 0 and b"went on" not in outcome.stdout, outcome.text()
    assert b"port I/O" in outcome.stderr and b"Traceback" not in outcome.stderr, outcome.text()


def test_checkpoints_keep_the_guest_in_ring3(builds, tmp_path):
    """A resumed guest is a fresh engine, which starts in ring 0 unless made ring 3 again:
    saved before the first fault and between faults (each siglongjmp's rt_sigprocmask and
    a few instructions after it), it must still fault each instruction."""
    guest = Guest(builds.get("privileged", "musl"))
    m = measure(guest, tmp_path)
    between = m.syscalls[len(m.syscalls) // 4::len(m.syscalls) // 4][:3]
    assert len(between) == 3, m.syscalls
    ks = [m.length // 10] + between + [between[0] + 5]
    for k in ks:
        assert_transparent(guest, [k], reference=m.outcome, base=tmp_path)
