"""Notebook 05 (testing the promise): a wrong prediction is reported as wrong; the reasoning
behind its answer keys (notebooks/_n05.py) holds for every seeded variant, not only CI's; its
Hypothesis profile does not depend on wall time."""
from __future__ import annotations

import pathlib
import sys

import pytest

from vsnap.build import build
from vsnap.testing import Guest, measure

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("matplotlib")

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NB05 = NOTEBOOKS / "05-testing-the-promise.ipynb"
sys.path.insert(0, str(NOTEBOOKS))
import _n05  # noqa: E402
sys.path.remove(str(NOTEBOOKS))


def test_notebook_05_checks_a_prediction(monkeypatch):
    """Exercise 5.1 (where the offset bug shrinks to): the open's return is a wrong guess,
    reported as wrong with no answer shown; the first write's return is right."""
    from test_notebooks import execute
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.delenv("VSNAP_REVEAL", raising=False)
    nb = nbformat.read(NB05, as_version=4)
    guess = next(i for i, c in enumerate(nb.cells) if "guess_offset = None" in c.source)
    checked = next(i for i, c in enumerate(nb.cells) if i > guess and "E_OFFSET.check(" in c.source)
    nb.cells = nb.cells[:checked + 1]
    nb.cells[guess].source = ("guess_offset = count_after(REWRITE_CALLS, M_REWRITE.syscalls, "
                              "r'open\\(')   # the open: offset still 0 there")
    nb.cells.append(nbformat.v4.new_code_cell(
        "E_OFFSET.check(count_after(REWRITE_CALLS, M_REWRITE.syscalls, r'write\\(3,'), "
        "V_OFFSET.points[0])"))
    execute(nb, "05 (a prediction checked)")
    wrong = "".join(o.get("text", "") for o in nb.cells[checked].outputs)
    right = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "5.1: " in wrong and "is not what happened" in wrong and "answer" not in wrong
    assert "is right" in right and "answer" not in right


@pytest.fixture(scope="module")
def rewrite():
    g = Guest(build(str(ROOT / "programs" / "rewrite.c")), ("records.dat",))
    return g, measure(g)


@pytest.mark.parametrize("window", [(0, 40), (440, 480), (610, 660), (660, 700)])
def test_rbx_liveness_is_the_register_bug_key(rewrite, window):
    """Exercise 5.4's key for each of its variants: the k in the window where rbx is live and
    not 0 are exactly the k where a checkpoint with the register bug changes the outcome."""
    guest, m = rewrite
    live = set(_n05.rbx_live(_n05.trace(guest, 900)))
    ks = range(*window)
    assert live & set(ks) == set(_n05.failing(guest, m.outcome, "register", ks))


def test_liveness_is_necessary_not_sufficient(rewrite):
    """Where the notebook's picture shows rbx live but no failure: a compare of rbx with a
    constant that neither its value nor 0 equals. A failing k outside the live set would mean
    the reasoning is wrong."""
    guest, m = rewrite
    live = set(_n05.rbx_live(_n05.trace(guest, 900)))
    bad = set(_n05.failing(guest, m.outcome, "register", range(480, 530)))
    assert bad <= live and live & set(range(480, 530)) - bad


def test_helpers():
    assert _n05.islands(range(10), [1, 2, 3, 6, 8, 9]) == [(1, 3), (6, 6), (8, 9)]
    calls = ["open(\"a\", O_RDONLY) = 3", "write(3, \"x\", 1) = 1", "write(3, \"y\", 1) = 1"]
    assert _n05.count_after(calls, [10, 20, 30], r"write\(3,") == 20
    with pytest.raises(LookupError):
        _n05.count_after(calls, [10, 20, 30], r"brk\(")


def test_the_profile_does_not_depend_on_wall_time():
    """After deterministic_hypothesis: draws derandomized, no search for more bugs after the
    first (which Hypothesis bounds by ten seconds of wall time), no five-minute shrink limit."""
    from hypothesis import settings
    from hypothesis.internal.conjecture import engine
    saved = (settings._current_profile, engine.MAX_SHRINKING_SECONDS)
    try:
        _n05.deterministic_hypothesis()
        s = settings.default
        assert s.derandomize and not s.report_multiple_bugs and s.database is None
        assert engine.MAX_SHRINKING_SECONDS >= 10 ** 9
    finally:
        settings.load_profile(saved[0])
        engine.MAX_SHRINKING_SECONDS = saved[1]
