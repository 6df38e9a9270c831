"""Notebooks 03a and 03b (Antonov's libckpt inside the guest) and their helpers, notebooks/_n03.py:
each notebook reports a wrong prediction as wrong (and a right one as right, with no answer
shown unless VSNAP_REVEAL=1); the byte-proportional bar of the save file is the file's real
layout; the exercises' measurements agree with the reasoning in every variant."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")
pytest.importorskip("elftools")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NB_A = NOTEBOOKS / "03a-the-trick-inside-the-guest.ipynb"
NB_B = NOTEBOOKS / "03b-the-same-moment-from-outside.ipynb"


@pytest.fixture(scope="module")
def n3():
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        import _n03
        import _n03b  # noqa: F401  (the n3b fixture takes it from sys.modules)
    finally:
        sys.path.remove(str(NOTEBOOKS))
    return _n03


@pytest.fixture(scope="module")
def n3b(n3):
    return sys.modules["_n03b"]


def run_until_check(path, exercise, wrong, right_expr, monkeypatch):
    """Run the notebook up to the check of `exercise` (the cells that follow "# Exercise
    EXERCISE, your prediction"), with the student's cell set to `wrong`, then one more cell
    that checks `right_expr` (the value the notebook measured). Returns both checks' text."""
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.delenv("VSNAP_REVEAL", raising=False)
    monkeypatch.setenv("VSNAP_LAB_SEED", "0")
    nb = nbformat.read(path, as_version=4)
    guess = next(i for i, c in enumerate(nb.cells)
                 if c.source.startswith(f"# Exercise {exercise}, your prediction"))
    checked = next(i for i, c in enumerate(nb.cells) if i > guess and ".check(" in c.source)
    nb.cells = nb.cells[:checked + 1]
    nb.cells[guess].source = f"guess = {wrong!r}"
    ex = nb.cells[checked].source.split(".check(")[0].split()[-1]
    nb.cells.append(nbformat.v4.new_code_cell(f"{ex}.check({right_expr}, {right_expr})"))
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    text = lambda cell: "".join(o.get("text", "") for o in cell.outputs)
    return text(nb.cells[checked]), text(nb.cells[-1])


def test_notebook_03a_checks_a_prediction(monkeypatch):
    """Exercise 3a.3 (fd 3's offset in the save file for another -c K): a wrong offset is
    reported wrong, the measured one right, and no answer is shown without VSNAP_REVEAL."""
    wrong, right = run_until_check(NB_A, "3a.3", 12345, 'journal["offset"]', monkeypatch)
    assert "12345 is not what happened" in wrong and "answer" not in wrong
    assert "is right" in right and "answer" not in right


def test_notebook_03b_checks_a_prediction(monkeypatch):
    """Exercise 3b.1 (which regions the save file holds, or leaves out): a wrong set is
    reported wrong, the measured one right, and no answer is shown without VSNAP_REVEAL."""
    wrong, right = run_until_check(NB_B, "3b.1", {"text"} | {".bss"},
                                   '{"hold": held, "miss": set(REGIONS) - held}[COVER_Q]',
                                   monkeypatch)
    assert "{'.bss', 'text'} is not what happened" in wrong and "answer" not in wrong
    assert "is right" in right and "answer" not in right


def test_save_bar_is_the_files_layout(n3):
    """The bar's parts, read from the file the guest wrote: contiguous from offset 0 to the
    file's end, in antonov.c's order, each as long as its header says; and the bytes under
    each part are that part: the magic, fd 3's record, the top of the stack (the program's
    name, AT_EXECFN, under an 8-byte end marker), demo's counter in the data segment, the
    heap word, and the jmp_buf whose rip is in sigsetjmp."""
    guest, data = n3.save_at(3)
    segs = n3.bar_segments(data)
    assert [s[0] for s in segs] == ["header", "fd records", "stack", "data segment", "heap",
                                    "jmp_buf"]
    at = 0
    for _, offset, size in segs:
        assert offset == at and size > 0
        at += size
    assert at == len(data)
    # the header read here with its own struct, not through the notebook's parser
    (magic, etext, edata, end, ehdr, stack_lo, stack_hi, data_lo, data_hi, heap_lo, heap_hi,
     jmpbuf_size, nfds, pid, tid) = struct.unpack_from("<8s14Q", data)
    part = {name: data[a:a + n] for name, a, n in segs}
    assert magic == b"ANTONOV1" and part["header"][:8] == magic
    assert [n for _, _, n in segs] == [120, 320 * nfds, stack_hi - stack_lo, data_hi - data_lo,
                                       heap_hi - heap_lo, jmpbuf_size]
    fd3 = part["fd records"][3 * 320:4 * 320]
    assert struct.unpack_from("<i", fd3)[0] == 3 and b"demo.journal\0" in fd3
    assert struct.unpack_from("<q", fd3, 16)[0] == sum(map(len, n3.journal_lines(3)))
    assert part["stack"][-8:] == bytes(8) and part["stack"][-8 - 6:-8] == b"/demo\0"
    counter = int(n3.journal_lines(3)[-1].split()[-1])
    at = n3.SYM["counter"] - data_lo
    assert struct.unpack_from("<q", part["data segment"], at)[0] == counter == 796073
    word = part["heap"][-(n3.MAX_STEPS + 1):]
    assert word[:4] == b"ikf\0"
    rip = struct.unpack_from("<Q", part["jmp_buf"], 56)[0]
    assert n3.function_at(rip).startswith("sigsetjmp+")


def test_setjmp_registers_measured(n3):
    """setjmp keeps the callee-saved registers, the stack pointer and the return address,
    measured with marker values; the scratch registers are not kept."""
    args = ["-n", "6", "-c", "3"]
    run = n3.run_demo("setjmp-trace", args, trace=True)
    kept = n3.setjmp_registers(args, near=n3.save_writes(run["strace"])["heap"])
    assert kept == {"rbx", "rbp", "r12", "r13", "r14", "r15", "rsp", "rip"}


@pytest.mark.parametrize("step, fail", [("seek", set(range(1, 6))), ("names", set(range(1, 6))),
                                        ("heap", set(range(1, 7))), ("mask", set())])
def test_leaving_a_step_out(n3b, step, fail):
    """Every variant of exercise 3b.2: the k that fail when the step is left out of the save
    file, as notebook 03b reasons them; and the reference save file restores at every k."""
    name = next(k for k in n3b.LEAVE_OUT if k.split()[1] == step)
    assert n3b.failing_ks(name, n=6) == fail
    n3b.LEAVE_OUT["none"] = lambda data: data
    try:
        assert n3b.failing_ks("none", n=6) == set()
    finally:
        del n3b.LEAVE_OUT["none"]


def test_tmp_parts_at_each_moment(n3, n3b):
    """Exercise 3b.4 in every variant: the parts complete in demo.save.tmp at a moment of the
    handler are the parts whose write() came before it in the trace."""
    args = ["-n", "6", "-c", "3", "-v"]
    run = n3.run_demo("trace-for-test", args, trace=True)
    guest = n3.parse_save((run["root"] / "demo.save").read_bytes())
    writes = n3.save_writes(run["strace"])
    for prefix in ('open("demo.save.tmp"', 'write(2, "antonov:   saving fd 3',
                   "rt_sigprocmask(2, NULL", "fsync("):
        at = next(n for n, line in run["strace"] if line.startswith(prefix))
        measured = n3b.tmp_parts(n3b.tmp_size_at(args, at), guest)
        assert measured == {p for p, n in writes.items() if n <= at}, prefix
    assert n3b.tmp_parts(None, guest) == set()


def test_size_and_offset_for_every_k(n3):
    """Exercises 3a.1 and 3a.3 in every variant: the save file is as big after any step (no
    part depends on k), and fd 3's offset is the journal lines written so far."""
    base = None
    for k in range(1, 7):
        guest, data = n3.save_at(k)
        base = base or len(data)
        assert len(data) == base
        assert guest["fds"][3]["offset"] == sum(map(len, n3.journal_lines(k)))
