"""The notebooks' exercises: predict, then check against what vsnap measures.

Each exercise asks for a prediction before anything runs, in the spirit of OSTEP's homework
simulators: the student writes a value in a cell (`guess = ...`), runs the experiment, and
`Exercise.check(guess, measured)` says whether the prediction was right. Questions come in
seeded variants (`variant`), so two students (or two runs with another VSNAP_LAB_SEED) get
different numbers to reason about, while CI always gets the same ones.

Instructors and CI set VSNAP_REVEAL=1: every check then also prints the answer, and an exercise
that has an answer key (`key`: the value worked out by reasoning, as an instructor would, not
by running the experiment) asserts that the key equals what vsnap measured. A wrong key, or a
vsnap change that makes the measured value differ from the reasoning, fails the notebook in
CI instead of teaching a wrong answer. Every check is recorded in RESULTS, so tests can see
that a wrong prediction was reported as wrong.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

# Answers are hidden unless VSNAP_REVEAL=1 (instructors; tests/test_notebooks.py sets it).
REVEAL = os.environ.get("VSNAP_REVEAL") == "1"
# Which variant of each question this student gets (any integer; CI uses 0).
SEED = int(os.environ.get("VSNAP_LAB_SEED", "0") or 0)

RESULTS: list["Result"] = []   # every check made in this kernel, in order


class AnswerKeyWrong(AssertionError):
    """An exercise's answer key disagrees with what vsnap measured (VSNAP_REVEAL=1 only)."""


@dataclass
class Result:
    exercise: str
    guess: object
    measured: object
    right: bool | None          # None: no prediction yet


def shown(value) -> str:
    """A value as the student would write it; a set in sorted order (Python prints sets in
    an order that changes between runs)."""
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(map(repr, sorted(value))) + "}" if value else "set()"
    return repr(value)


def variant(name: str, choices):
    """One of `choices`, the same for the same exercise name and VSNAP_LAB_SEED every time
    (random.Random seeded with a string is stable across runs and machines)."""
    choices = list(choices)
    return random.Random(f"{SEED}:{name}").choice(choices)


def _normal(guess, measured):
    if isinstance(guess, (list, tuple)) and isinstance(measured, (set, frozenset)):
        return set(guess)
    return guess


@dataclass
class Exercise:
    """One prediction question. `key`: the instructor's answer worked out without running
    (None when the answer can only be measured). `choices`: the names a set may hold (a
    name outside them is pointed out as a probable typo)."""

    name: str
    question: str
    key: object = None
    hint: str = ""
    choices: tuple | None = None
    results: list = field(default_factory=list)

    def ask(self) -> None:
        """Print the question (the cell below it holds the student's prediction)."""
        print(f"Exercise {self.name}: {self.question}")

    def check(self, guess, measured) -> bool | None:
        """Compare the prediction with the measurement; print the verdict (and the answer
        with VSNAP_REVEAL=1). True/False, or None when there is no prediction yet."""
        guess = _normal(guess, measured)
        hint = self.hint
        if self.choices is not None and isinstance(guess, (set, frozenset)) \
                and guess - set(self.choices):
            hint = f"(Not among the choices: {shown(guess - set(self.choices))}.) {hint}"
        if guess is None:
            print(f"{self.name}: no prediction yet. Fill it in above, then run this cell again.")
            right = None
        elif guess == measured:
            print(f"{self.name}: {shown(guess)} is right.")
            right = True
        else:
            print(f"{self.name}: {shown(guess)} is not what happened. {hint}".rstrip())
            right = False
        if REVEAL:
            print(f"    answer (VSNAP_REVEAL=1): {shown(measured)}")
            key = _normal(self.key, measured)
            if self.key is not None and key != measured:
                raise AnswerKeyWrong(f"exercise {self.name}: the answer key says {shown(key)}, "
                                     f"vsnap measured {shown(measured)}")
        result = Result(self.name, guess, measured, right)
        self.results.append(result)
        RESULTS.append(result)
        return right


def check(question: str, guess, measured, hint: str = "", choices=None) -> bool | None:
    """A one-off check without an Exercise object (notebooks 06-08 use this form)."""
    return Exercise(question, question, hint=hint,
                    choices=tuple(choices) if choices is not None else None).check(guess, measured)


def vsnap_cli(*args, cwd, env=None, show=True):
    """`vsnap ARGS` in the directory `cwd`, as at a shell (printed with its output and exit
    status when `show`); returns the finished process."""
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-m", "vsnap", *map(str, args)], cwd=cwd, env=env,
                       capture_output=True, text=True)
    if show:
        print(f"$ vsnap {' '.join(map(str, args))}")
        print(p.stdout, end="" if p.stdout.endswith("\n") or not p.stdout else "\n")
        if p.stderr:
            print("[stderr]\n" + p.stderr, end="")
        print(f"[exit status {p.returncode}]\n")
    return p
