"""Notebooks 02a and 02b (Antonov's save file, and the restart) and their helpers (notebooks/_n02.py).

Each notebook reports a wrong prediction as wrong (and a right one as right, with no answer shown
unless VSNAP_REVEAL=1); the fd picture's data is the guest's own fd table (vsnap's FdTable and
OpenFile objects, and what the guest itself reads back); the stack frames follow the saved rbp
chain; programs/fdshare.c prints the same bytes natively and under vsnap.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import sys

import pytest

from conftest import make_root, run_api, run_native

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))
import _n02 as n02  # noqa: E402

sys.path.remove(str(NOTEBOOKS))


def run_to_first_check(monkeypatch, name: str, wrong: str, right: str):
    """Run notebook `name` up to its Exercise 1 check, with `wrong` as the student's cell, then
    one more cell that checks `right`: the text of the two checks' outputs."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from test_notebooks import execute
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.delenv("VSNAP_REVEAL", raising=False)
    monkeypatch.delenv("VSNAP_LAB_SEED", raising=False)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    guess = next(i for i, c in enumerate(nb.cells) if "# Exercise 1, your" in c.source)
    checked = next(i for i, c in enumerate(nb.cells) if i > guess and ".check(" in c.source)
    nb.cells = nb.cells[:checked + 1]
    lines = nb.cells[guess].source.splitlines()      # the student's line: guess_... = None
    at = next(i for i, line in enumerate(lines) if line.startswith("guess_") and "= None" in line)
    nb.cells[guess].source = "\n".join(lines[:at] + [wrong] + lines[at + 1:])
    nb.cells.append(nbformat.v4.new_code_cell(right))
    execute(nb, f"{name} (a prediction checked)")
    text = lambda cell: "".join(o.get("text", "") for o in cell.outputs)  # noqa: E731
    return text(nb.cells[checked]), text(nb.cells[-1])


def test_notebook_02a_checks_a_prediction(monkeypatch):
    """Exercise 1 of 02a (the offsets of fds 3, 4, 5 after fdshare's writes): offsets as if
    dup gave fd 4 an offset of its own are reported wrong; what the FdTable holds is right."""
    wrong, right = run_to_first_check(
        monkeypatch, "02a-antonovs-save-file.ipynb", "guess_offsets = (A, B, C)",
        "ex1.check(tuple(seen[fd][0] for fd in (3, 4, 5)), "
        "tuple(seen[fd][0] for fd in (3, 4, 5)))")
    assert "is not what happened" in wrong and "dup shares one description" in wrong, wrong
    assert "answer" not in wrong
    assert "is right" in right and "answer" not in right


def test_notebook_02b_checks_a_prediction(monkeypatch):
    """Exercise 1 of 02b (the fds of the resumed fdshare): forgetting the deleted file's fd 6
    is reported wrong; the resumed guest's fds are right."""
    wrong, right = run_to_first_check(
        monkeypatch, "02b-antonovs-restart.ipynb", "guess_fds = {0, 1, 2, 3, 4, 5} - {X}",
        "ex1.check(set(resumed_fd.process.fds.fds), set(resumed_fd.process.fds.fds))")
    assert "is not what happened" in wrong and "deleted file's fd is not" in wrong, wrong
    assert "answer" not in wrong
    assert "is right" in right and "answer" not in right


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    return tmp_path_factory.mktemp("n02")


@pytest.mark.parametrize("args", [["10", "20", "5", "-e", "3"], ["7", "0", "50", "-e", "5", "-x", "4"],
                                  ["1", "2", "3", "-x", "3"]], ids=["dup", "dup-closed", "first-closed"])
def test_fd_picture_is_the_guest_fd_table(sandbox, args):
    """fd_graph(m) of a stopped fdshare is its FdTable: two fds share a description exactly when
    their entries hold the same OpenFile object; each fd's close-on-exec bit and each
    description's offset and flags are the objects'; two descriptions share a file exactly when
    their host descriptors are on one inode; the deleted file is marked so. And the guest,
    run on, reads back the same offsets and bits through its own system calls."""
    root = n02.new_root(sandbox, "-".join(args), "fdshare")
    m, out, _ = n02.stopped_after(root, args, "fdshare", "getpid")
    g = n02.fd_graph(m)
    table = m.process.fds.fds
    assert list(g.fds) == sorted(table)
    for a in table:
        d, cloexec = g.fds[a]
        assert cloexec == table[a].cloexec
        path, offset, flags, _ = g.descriptions[d]
        f = table[a].file
        assert (path, offset, flags) == (f.path, f.offset, f.flags)
        for b in table:
            assert (g.fds[a][0] == g.fds[b][0]) == (table[a].file is table[b].file)
            same_file = g.descriptions[d][3] == g.descriptions[g.fds[b][0]][3]
            fa, fb = table[a].file, table[b].file
            if fa.host_fd is not None and fb.host_fd is not None:
                sa, sb = os.fstat(fa.host_fd), os.fstat(fb.host_fd)
                assert same_file == ((sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino))
    ghost = g.files[g.descriptions[g.fds[6][0]][3]]
    assert ghost[0] == "/scratch.tmp" and ghost[2] is True
    assert not any(f[2] for i, f in enumerate(g.files) if i != g.descriptions[g.fds[6][0]][3])
    seen = {fd: (e.file.offset, e.cloexec) for fd, e in table.items()}
    closed = int(args[args.index("-x") + 1]) if "-x" in args else None
    assert (closed is None) == (3 in table and 4 in table and n02.sharing(g)[3] == {3, 4})
    # the picture shows every fd and every description's offset
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    n02.draw_fd_graph(g, ax)
    texts = [t.get_text() for t in ax.texts]
    plt.close(fig)
    for fd in table:
        assert any(t.startswith(f"fd {fd}") for t in texts)
    for path, offset, _, _ in g.descriptions:
        assert any(t.startswith(f"{path}  offset {offset}") for t in texts)
    assert m.run().status == 0
    report = bytes(out).decode()
    for fd in range(3, 7):
        line = f"fd {fd}: closed" if fd == closed else \
            f"fd {fd}: offset {seen[fd][0]}, close-on-exec {int(seen[fd][1])}"
        assert line in report, report


def test_frames_follow_the_saved_rbp_chain(sandbox):
    """frames(img) of counter stopped in main's loop: main first, each frame's top the next
    one's bottom, every return address just after a call, the chain's words the live
    machine's; dead_returns finds return addresses only below rsp."""
    from vsnap.snapshot import checkpoint, load
    root = n02.new_root(sandbox, "frames")
    k = n02.in_round(root, 3)
    m, _, _ = n02.start(root)
    assert m.advance(k) is None
    image = sandbox / "frames.img"
    checkpoint(m, str(image))
    img, prog = load(str(image)), n02.Program(root / "counter")
    fr = n02.frames(img, prog)
    assert fr[0].function == "main" and fr[0].lo == m.cpu.read("rsp")
    assert fr[0].returns_to.split("+")[0] == fr[1].function
    for a, b in zip(fr, fr[1:]):
        assert a.hi == b.lo
    rbp = m.cpu.read("rbp")
    for f in fr:
        ret = int.from_bytes(m.mem.read(f.hi - 8, 8), "little")
        assert prog.is_return_address(ret) and prog.return_site(ret) == f.returns_to
        assert f.hi - 16 == rbp
        rbp = int.from_bytes(m.mem.read(rbp, 8), "little")
    assert rbp == 0                              # the chain ends where _start cleared rbp
    assert not prog.is_return_address(prog.address("main"))   # a function pointer is not one
    dead = n02.dead_returns(img, prog)
    assert dead and all(a < m.cpu.read("rsp") for a, _ in dead)
    init = n02.initial_stack(img, 3)
    assert fr[-1].hi <= init["argc"] and n02.word(img, init["argc"]) == 3
    m.close()


def test_keys_of_the_saved_total(sandbox):
    """The saved `total` during round r is totals[r - 1] (02a's exercise 5), for every round."""
    from vsnap.snapshot import checkpoint, load
    totals = n02.totals(6)
    root = n02.new_root(sandbox, "rounds")
    moments = n02.round_moments(root)
    assert len(moments) == 7
    prog = n02.Program(root / "counter")
    for r in range(1, 7):
        n02.reset(root, "counter.log")
        m, _, _ = n02.start(root)
        assert m.advance((moments[r - 1] + moments[r]) // 2) is None
        checkpoint(m, str(sandbox / "r.img"))
        m.close()
        assert n02.word(load(str(sandbox / "r.img")), prog.address("total")) == totals[r - 1]


@pytest.mark.parametrize("flavour", ["musl", "glibc"])
def test_fdshare_as_natively(builds, tmp_path, flavour):
    """programs/fdshare.c prints the same bytes natively and under vsnap: dup's shared offset,
    close-on-exec per fd, the second open's own offset, a deleted file read back."""
    prog = builds.get("fdshare", flavour)
    for args in (["10", "20", "5", "-e", "3"], ["300", "200", "600", "-e", "5", "-x", "4"]):
        native_dir = make_root(tmp_path / f"n-{flavour}-{len(args)}", prog)
        vsnap_dir = make_root(tmp_path / f"v-{flavour}-{len(args)}", prog)
        native = run_native(str(native_dir / "prog"), args, cwd=native_dir)
        under, _ = run_api(str(vsnap_dir / "prog"), args, root=vsnap_dir)
        assert native.status == 0 and native.stdout.endswith(b"EXIT-SUCCESS\n"), native.text()
        assert (under.stdout, under.stderr, under.status) == (native.stdout, native.stderr, 0)
        assert (vsnap_dir / "shared.txt").read_bytes() == (native_dir / "shared.txt").read_bytes()
        shutil.rmtree(native_dir)
