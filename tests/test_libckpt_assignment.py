"""The libckpt assignment (programs/antonov/, README.md "Assignment"; issue 14): the grader
passes the reference antonov.c, fails the student version with a message that names the
missing step, catches each planted bug with its own message, and the student version
differs from the reference only in the bodies of the functions the student writes.

The quick tier saves at a few steps and a few instants from outside; --slow (VSNAP_SLOW=1)
saves at every step and at 40 instants, for the reference and the student version.
"""
from __future__ import annotations

import importlib.util
import sys

import pytest

from conftest import REPO, SLOW

HERE = REPO / "programs" / "antonov"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"libckpt_{name}", HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


grade = _load("grade")
bugs = _load("bugs")
import libckpt_todo as todo  # noqa: E402  (grade.py put programs/antonov on sys.path)

REFERENCE = HERE / "antonov.c"
STUDENT = HERE / "student" / "antonov.c"
PREAMBLE_END = " */\n"   # the student file's own comment on top, then the reference's text


def _student_text() -> str:
    text = STUDENT.read_text()
    assert text.startswith("/* THE STUDENT VERSION")
    return text[text.index(PREAMBLE_END) + len(PREAMBLE_END):]


def _with_body_of(name: str, tmp_path) -> object:
    """The reference antonov.c with one function's body taken from the student version."""
    ref, stu = REFERENCE.read_text(), _student_text()
    a, b = todo.function_bodies(ref)[name]
    c, d = todo.function_bodies(stu)[name]
    path = tmp_path / "antonov.c"
    path.write_text(ref[:a] + stu[c:d] + ref[b:])
    return path


def test_student_version_differs_from_the_reference_only_in_the_todo_bodies():
    ref, stu = REFERENCE.read_text(), _student_text()
    assert set(todo.function_bodies(ref)) == set(todo.TODO_FUNCTIONS)
    assert todo.without_todo_bodies(stu) == todo.without_todo_bodies(ref)
    bodies = todo.function_bodies(stu)
    for name in todo.TODO_FUNCTIONS:
        a, b = bodies[name]
        assert "TODO" in stu[a:b], f"{name} in the student version has no TODO"
        assert stu[a:b] != ref[slice(*todo.function_bodies(ref)[name])], name


def test_the_drift_check_sees_a_change_outside_the_todo_bodies():
    ref = REFERENCE.read_text()
    changed = ref.replace("#define RED_ZONE 256", "#define RED_ZONE 128")
    assert changed != ref
    assert todo.without_todo_bodies(changed) != todo.without_todo_bodies(ref)


def test_the_reference_passes_the_grader():
    assert grade.grade(REFERENCE) == []


def test_the_student_version_fails_and_names_the_missing_step(capsys):
    assert grade.main([str(STUDENT.parent)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("FAIL:")
    assert out[0].startswith("workout -c 1: save (steps 1-5): the program went on after the "
                             "signal and left no workout.save"), out[0]
    assert "antonov_save is not written yet" in out[0] and "write antonov_save" in out[0]


# one TODO function missing at a time (the rest the reference's): the first message names it
MISSING = {
    "antonov_scan_fds": "save (step 1): fd 0 (<stdin>) is open but the save file has no "
                        "record of it",
    "antonov_save": "save (steps 1-5): the program went on after the signal",
    "antonov_finish_save": "save (step 6): the saving run ended with status 1 and left no "
                           "workout.save (only its .tmp)",
    "antonov_reopen_files": "reload (step 7): fd 3 is not workout.in after the restore",
    "antonov_reload": "reload (steps b-e): the restored process never returned from the "
                      "signal handler",
}


@pytest.mark.parametrize("name", todo.TODO_FUNCTIONS)
def test_each_missing_step_is_named(name, tmp_path):
    failures = grade.grade(_with_body_of(name, tmp_path), ("workout",))
    assert failures, f"{name} left as a TODO passed the grader"
    assert MISSING[name] in failures[0], failures[0]


@pytest.mark.parametrize("bug", bugs.BUGS, ids=lambda b: b.name)
def test_each_planted_bug_is_caught(bug, tmp_path):
    path = tmp_path / "antonov.c"
    path.write_text(bugs.planted(bug))
    failures = grade.grade(path, ("workout",))
    assert any(bug.expect in line for line in failures), "\n".join(failures)


def test_a_planted_bug_that_no_longer_applies_is_an_error():
    with pytest.raises(ValueError, match="no longer applies"):
        bugs.planted(bugs.BUGS[0], reference="int main(void) { return 0; }\n")


def test_bug_variants_are_written_numbered(tmp_path):
    dirs = bugs.write_all(tmp_path)
    assert [d.name for d in dirs] == [f"bug-{i}" for i in range(1, len(bugs.BUGS) + 1)]
    texts = {(d / "antonov.c").read_text() for d in dirs}
    assert len(texts) == len(bugs.BUGS) and REFERENCE.read_text() not in texts


def test_the_grader_says_in_one_line_when_it_cannot_start(tmp_path, capsys):
    assert grade.main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err
    broken = tmp_path / "antonov.c"
    broken.write_text(REFERENCE.read_text().replace("static int antonov_scan_fds(void)\n{",
                                                    "static int antonov_scan_fds(void)\n{ x"))
    assert grade.main([str(broken)]) == 2
    err = capsys.readouterr().err
    assert "does not compile" in err and "Traceback" not in err


@pytest.mark.skipif(not SLOW, reason="the exhaustive sweep: run with --slow")
@pytest.mark.parametrize("program", ["workout", "demo"])
def test_slow_the_reference_passes_at_every_point(program):
    assert grade.grade(REFERENCE, (program,), all_points=True) == []


@pytest.mark.skipif(not SLOW, reason="the exhaustive sweep: run with --slow")
@pytest.mark.parametrize("bug", bugs.BUGS, ids=lambda b: b.name)
def test_slow_each_planted_bug_is_caught_in_the_full_sweep(bug, tmp_path):
    path = tmp_path / "antonov.c"
    path.write_text(bugs.planted(bug))
    failures = grade.grade(path, ("workout",), all_points=True)
    assert any(bug.expect in line for line in failures), "\n".join(failures)
