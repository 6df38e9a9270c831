"""Notebook 04 (crashes, cores and copyover): a wrong prediction is reported as wrong, and the
core file's layout drawn in the notebook (notebooks/_n04.py) is what pyelftools reads in a
real core that vsnap wrote at a crash."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from vsnap.build import build
from vsnap.snapshot import load

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("matplotlib")
ELFFile = pytest.importorskip("elftools.elf.elffile").ELFFile

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NB04 = NOTEBOOKS / "04-crashes-cores-and-copyover.ipynb"
sys.path.insert(0, str(NOTEBOOKS))
import _n04  # noqa: E402
sys.path.remove(str(NOTEBOOKS))

CRASH_C = r"""
#include <stdio.h>
#include <stdlib.h>
struct node { long pad; int value; struct node *next; };
int main(void) {
    struct node *n = calloc(1, sizeof *n);
    printf("%d\n", n->value);
    fflush(stdout);
    return n->next->value;      /* NULL + 8 */
}
"""


def test_notebook_04_checks_a_prediction(monkeypatch):
    """Exercise 4.1 (the exit status of the crash): a wrong guess is reported as wrong with no
    answer shown (VSNAP_REVEAL unset), the right one as right."""
    from test_notebooks import execute
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.delenv("VSNAP_REVEAL", raising=False)
    nb = nbformat.read(NB04, as_version=4)
    guess = next(i for i, c in enumerate(nb.cells) if c.source.startswith("# Exercise 4.1, your"))
    checked = next(i for i, c in enumerate(nb.cells) if i > guess and "E_STATUS.check(" in c.source)
    nb.cells = nb.cells[:checked + 1]
    nb.cells[guess].source = "guess_status = 11   # the signal's number, not the shell's status"
    nb.cells.append(nbformat.v4.new_code_cell("E_STATUS.check(128 + 11, run.returncode)"))
    execute(nb, "04 (a prediction checked)")
    wrong = "".join(o.get("text", "") for o in nb.cells[checked].outputs)
    right = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "4.1: 11 is not what happened" in wrong and "answer" not in wrong
    assert "4.1: 139 is right" in right and "answer" not in right


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    """A guest that dies of SIGSEGV under `vsnap run --save-on-crash --core`: its directory
    (with `core` and `crash.img`)."""
    d = tmp_path_factory.mktemp("crash")
    (d / "crash.c").write_text(CRASH_C)
    here = os.getcwd()
    os.chdir(d)
    try:
        build("crash.c", "crash", extra_flags=("-O0", "-fno-sanitize=undefined"))
    finally:
        os.chdir(here)
    p = subprocess.run([sys.executable, "-m", "vsnap", "run", "--save-on-crash", "crash.img",
                        "--core", "core", "./crash"], cwd=d, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 139, p.stderr
    return d


def test_core_layout_is_what_pyelftools_reads(crashed):
    """Every byte of the file is in exactly one piece, in order; the header pieces are where
    the ELF header says; each PT_LOAD piece is a segment pyelftools reads (offset, file size,
    address), and there is one for each region of the image of the same crash, as large."""
    core = crashed / "core"
    pieces = _n04.core_layout(core)
    assert pieces[0].offset == 0
    assert all(a.offset + a.size == b.offset for a, b in zip(pieces, pieces[1:]))
    assert pieces[-1].offset + pieces[-1].size == core.stat().st_size
    with open(core, "rb") as f:
        elf = ELFFile(f)
        h = elf.header
        assert h.e_type == "ET_CORE"
        segs = [(s["p_type"], s["p_offset"], s["p_filesz"], s["p_vaddr"])
                for s in elf.iter_segments()]
    kinds = {p.what: p for p in pieces}
    assert (kinds["ELF header"].offset, kinds["ELF header"].size) == (0, h.e_ehsize)
    assert (kinds["program headers"].offset, kinds["program headers"].size) == \
        (h.e_phoff, h.e_phnum * h.e_phentsize)
    note = next(s for s in segs if s[0] == "PT_NOTE")
    assert (kinds["notes"].offset, kinds["notes"].size) == note[1:3]
    loads = [(p.offset, p.size, p.vaddr) for p in pieces if p.what == "PT_LOAD"]
    assert loads == [s[1:] for s in segs if s[0] == "PT_LOAD"]
    assert all(off % 4096 == 0 for off, _, _ in loads)   # each segment's bytes start on a page
    # the exercise's reasoning: one PT_LOAD per region of the process, each region whole
    img = load(str(crashed / "crash.img"))
    assert sorted((v["start"], v["end"] - v["start"]) for v in img.vmas) == \
        sorted((vaddr, size) for _, size, vaddr in loads)
    assert [n for n, _ in _n04.note_names(core)] == \
        ["NT_PRSTATUS", "NT_PRPSINFO", "NT_FPREGSET", "NT_AUXV", "NT_FILE"]


def test_core_layout_picture(crashed):
    """The picture draws every piece of the whole-file bar, as long as its bytes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pieces = _n04.core_layout(crashed / "core")
    fig, ax = plt.subplots()
    _n04.draw_core_layout(pieces, ax)
    total = sum(p.size for p in pieces)
    bars = [(round(r.get_x() * total), round(r.get_width() * total)) for r in ax.patches
            if r.get_y() + r.get_height() / 2 == 1]
    assert bars == [(p.offset, p.size) for p in pieces]
    plt.close(fig)


def test_timeline_and_int32():
    phases = _n04.timeline([(0x10, "copyover-1.img"), (0x10, "copyover-2.img")], [100, 180, 250], 0)
    runs = [(p.process, p.start, p.end) for p in phases if p.what == "run"]
    assert runs == [(1, 0, 100), (2, 100, 180), (3, 180, 250)]
    assert [p.what for p in phases].count("repair") == 2 and phases[-1].label == "exit 0"
    assert [_n04.as_int32(v) for v in (0x2a, 0x100000007, 0xfffffffe, 0xffffffff)] == [42, 7, -2, -1]
