"""Find the planted bug: copies of antonov.c with one realistic mistake each.

    python programs/antonov/bugs.py OUTDIR      # writes OUTDIR/bug-1/antonov.c ... bug-N
    python programs/antonov/grade.py OUTDIR/bug-1

Each variant is made from the reference antonov.c by the edit below (so they never drift
from it: an edit that no longer applies exactly once is an error, and a test checks it).
The directories are numbered, not named, so that the grader's message is the clue; the
names and the expected messages here are the answers (tests/test_libckpt_assignment.py).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Bug:
    name: str
    story: str           # what went wrong, in the student's terms
    edits: tuple         # (old, new) pairs, each old text found exactly once
    expect: str          # a piece of the grader's message for it


BUGS = (
    Bug("offsets-not-restored",
        "the files are reopened at their old numbers, but never seeked: every offset is 0",
        (("""            if (f->offset >= 0) {
                long o = sys3(NR_lseek, f->fd, f->offset, SEEK_SET);
                if (o != f->offset)
                    restore_failed("cannot seek ", f->name, o < 0 ? o : 0);
            }
""", ""),),
        "reload (step 7): fd 3 (workout.in)'s offset is 0, the saved one was 37: restore "
        "offsets with lseek"),
    Bug("stack-one-page-short",
        "the start of the stack rounded to a page boundary the wrong way: up, not down",
        (("h->stack_lo = (stack_pointer() - RED_ZONE) & ~(uintptr_t)15;",
          "h->stack_lo = ((stack_pointer() - RED_ZONE) | (PAGE - 1)) + 1;"),),
        "save (step 4): the saved stack starts at"),
    Bug("data-segment-end-wrong",
        "the data segment saved to edata, the end of the initialised data: the bss is lost",
        (("h->data_hi = (uintptr_t)end;", "h->data_hi = (uintptr_t)edata;"),),
        "it ends at edata, so the bss is left out"),
    Bug("heap-not-saved",
        "the seed says 'from _etext to _end': the brk heap above end is left out",
        (("h->heap_hi = (uintptr_t)sys3(NR_brk, 0, 0, 0);  /* sbrk(0) */",
          "h->heap_hi = (uintptr_t)end;"),),
        "save (step 5): the saved heap is"),
    Bug("jmp_buf-saved-before-setjmp",
        "the jmp_buf written with the rest of the file, before sigsetjmp filled it in",
        (("""    antonov_save_fd = (int)fd;
    return 0;""", """    if ((r = write_all((int)fd, &antonov_jb, sizeof antonov_jb)) < 0) {
        save_failed((int)fd, "the jmp_buf", r);
        return -1;
    }
    antonov_save_fd = (int)fd;
    return 0;"""),
         ("""    long r = write_all(fd, &antonov_jb, sizeof antonov_jb);
    if (r == 0)
        r = sys3(NR_fsync, fd, 0, 0);""", """    long r = sys3(NR_fsync, fd, 0, 0);""")),
        "save (step 6): the jmp_buf at the end of the save file is all zeros"),
    Bug("O_APPEND-lost",
        "the files reopened with their access mode only: the other flags of F_GETFL dropped",
        (("int flags = (f->flags & ~(O_CREAT | O_TRUNC | O_EXCL)) |",
          "int flags = (f->flags & O_ACCMODE) |"),),
        "reload (step 7): fd 5 (workout.log) lost O_APPEND"),
)


def planted(bug: Bug, reference: str | None = None) -> str:
    """The reference antonov.c with `bug`'s edits made."""
    text = reference if reference is not None else (HERE / "antonov.c").read_text()
    for old, new in bug.edits:
        if text.count(old) != 1:
            raise ValueError(f"bug {bug.name}: its edit no longer applies to antonov.c "
                             f"({text.count(old)} matches for {old.splitlines()[0]!r})")
        text = text.replace(old, new)
    return text


def write_all(outdir: Path) -> list:
    out = []
    for i, bug in enumerate(BUGS, 1):
        d = outdir / f"bug-{i}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "antonov.c").write_text(planted(bug))
        out.append(d)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python programs/antonov/bugs.py OUTDIR", file=sys.stderr)
        sys.exit(2)
    for d in write_all(Path(sys.argv[1])):
        print(d / "antonov.c")
