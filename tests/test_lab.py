"""notebooks/_lab.py, the exercises' checks: a wrong prediction is reported as wrong, a right
one as right, a missing one as missing; with VSNAP_REVEAL=1 a wrong answer key fails."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture
def lab(monkeypatch):
    def load(reveal: bool, seed: str = "0"):
        monkeypatch.setenv("VSNAP_REVEAL", "1" if reveal else "0")
        monkeypatch.setenv("VSNAP_LAB_SEED", seed)
        monkeypatch.syspath_prepend(str(NOTEBOOKS))
        sys.modules.pop("_lab", None)
        return importlib.import_module("_lab")
    yield load
    sys.modules.pop("_lab", None)


def test_verdicts(lab, capsys):
    m = lab(reveal=False)
    ex = m.Exercise("1.1", "the exit status?", key=3)
    assert ex.check(None, 3) is None
    assert ex.check(4, 3) is False
    assert ex.check(3, 3) is True
    out = capsys.readouterr().out
    assert "no prediction yet" in out and "4 is not what happened" in out and "3 is right" in out
    assert "answer" not in out  # hidden without VSNAP_REVEAL
    assert [r.right for r in m.RESULTS] == [None, False, True]


def test_sets_and_typos(lab, capsys):
    m = lab(reveal=True)
    ex = m.Exercise("2", "which fds survive?", key={0, 1}, choices=(0, 1, 2, 3))
    assert ex.check([1, 0], {0, 1}) is True
    assert ex.check({0, 7}, {0, 1}) is False
    out = capsys.readouterr().out
    assert "Not among the choices: {7}" in out and "answer (VSNAP_REVEAL=1): {0, 1}" in out


def test_a_wrong_key_fails_only_when_revealed(lab):
    m = lab(reveal=True)
    with pytest.raises(m.AnswerKeyWrong, match="the answer key says 5, vsnap measured 6"):
        m.Exercise("3", "how many pages?", key=5).check(6, 6)
    m = lab(reveal=False)
    assert m.Exercise("3", "how many pages?", key=5).check(6, 6) is True


def test_variants_are_seeded(lab):
    m = lab(reveal=False, seed="0")
    a = [m.variant(f"q{i}", range(100)) for i in range(20)]
    assert a == [m.variant(f"q{i}", range(100)) for i in range(20)]  # stable
    m = lab(reveal=False, seed="7")
    assert a != [m.variant(f"q{i}", range(100)) for i in range(20)]  # another student
