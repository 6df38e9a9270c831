"""README's table of system calls is the registry's: regenerate it with
`python -m vsnap.kernel.table` and paste it between the markers when this fails."""
import re
from pathlib import Path

from vsnap.kernel import SYSCALLS
from vsnap.kernel.table import NOTES, markdown, unregistered_notes

REPO = Path(__file__).resolve().parents[1]


def readme_table() -> str:
    text = (REPO / "README.md").read_text()
    return re.search(r"<!-- syscall-table -->\n(.*?)<!-- /syscall-table -->", text, re.S).group(1)


def test_readme_table_is_the_registry():
    assert readme_table() == markdown(), (
        "README.md's system call table is stale: run `python -m vsnap.kernel.table` and put "
        "its output between the <!-- syscall-table --> markers")


def test_every_note_names_a_registered_call():
    assert unregistered_notes() == []


def test_every_registered_call_is_a_row():
    rows = set(re.findall(r"^\| `(\w+)` \|", readme_table(), re.M))
    assert rows == {e.name for e in SYSCALLS.values()}
    assert all(status in ("refuses", "differs") for status, _ in NOTES.values())


PROTOTYPE = re.compile(r"^[A-Za-z_][\w *]*?\b\*?\w+\(.*?\);", re.S)


def test_handlers_document_their_prototype():
    # handler docstrings start with the man page's prototype, a C declaration: "int f(...);"
    missing = [e.name for e in SYSCALLS.values()
               if e.handler.__name__ != "<lambda>"
               and not PROTOTYPE.match((e.handler.__doc__ or "").strip())]
    assert missing == []
