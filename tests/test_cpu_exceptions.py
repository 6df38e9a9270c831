"""CPU exceptions caught again and again (tests/guests/refaults.c): a divide error, a
privileged instruction (hlt), an invalid opcode and a breakpoint, four rounds each, natively
and under vsnap. Unicorn left its 'exception in flight' set after the first divide error, so
the second became a double fault (SIGSEGV) and the third hung vsnap (vsnap/doublefault.py);
hlt, which Unicorn runs in ring 0, went on as if nothing happened; int3 came as SIGSEGV."""
from __future__ import annotations

import pytest

import vsnap
from conftest import require_native, run_native
from vsnap.testing import Guest, assert_transparent, measure

EXPECTED = {  # what Linux sends: (signal, si_code, si_addr set)
    "divide error": (8, 1, "set"), "hlt": (11, 128, "null"), "ud2": (4, 2, "set"),
    "int3": (5, 128, "null")}


@pytest.mark.parametrize("flavour", ["musl", "glibc"])
def test_repeated_cpu_exceptions_as_native(flavour, builds, tmp_path):
    prog = builds.get("refaults", flavour)
    result, out, err = vsnap.run(prog, root=str(tmp_path), cwd=str(tmp_path))
    lines = out.decode().splitlines()
    assert result.status == 0 and len(lines) == 16, (out, err)
    for line in lines:
        words = line.split()
        name = " ".join(words[2:-6])
        assert (int(words[-5]), int(words[-3]), words[-1]) == EXPECTED[name], line
    require_native()
    native = run_native(prog, [], cwd=tmp_path)
    assert (out, err, result.status) == (native.stdout, native.stderr, native.status)


def test_an_uncaught_hlt_is_a_segmentation_fault(tmp_path):
    src = tmp_path / "hlt.c"
    src.write_text("int main(void) { __asm__ volatile(\"hlt\"); return 0; }\n")
    from vsnap.build import build
    result, _, err = vsnap.run(build(str(src)), root=str(tmp_path))
    assert result.status == 139 and result.signal == "SIGSEGV"
    assert "hlt" in result.message, result.message


def test_checkpoints_between_the_exceptions(builds, tmp_path):
    """Saved between two rounds (a fresh engine on resume) and inside a handler."""
    guest = Guest(builds.get("refaults", "musl"))
    m = measure(guest, tmp_path)
    ks = [m.length // 5, m.length // 2, m.length - 100] + m.in_handlers[::3][:4]
    for k in ks:
        assert_transparent(guest, [k], reference=m.outcome, base=tmp_path)
