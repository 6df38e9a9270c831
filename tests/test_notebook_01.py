"""Notebook 01, "a process in an emulator", and its helpers (notebooks/_n01.py): the slider's
panel agrees with a direct Machine.advance(k) run, the stack picture's data is the guest's
real initial stack, the exercises' answer keys (worked out from each variant's parameters)
agree with vsnap for every variant, the strace table is built from the two traces, and a wrong
prediction in the notebook is reported as wrong."""
from __future__ import annotations

import io
import shutil
import struct
import sys
import zipfile
from pathlib import Path

import pytest

import vsnap
from vsnap.build import build
from vsnap.memory import PAGE
from vsnap.snapshot import image_bytes

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PROGRAMS = Path(__file__).resolve().parents[1] / "programs"


@pytest.fixture(scope="module")
def n01():
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        import _n01
    finally:
        sys.path.remove(str(NOTEBOOKS))
    return _n01


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, n01):
    """A sandbox holding hello, maps (notebook 01's brk/mmap program) and lines."""
    root = tmp_path_factory.mktemp("nb01")
    build(str(PROGRAMS / "hello.c"), str(root / "hello"))
    for name, source in (("maps", n01.MAPS_C), ("lines", n01.LINES_C)):
        (root / f"{name}.c").write_text(source)
        build(str(root / f"{name}.c"), str(root / name))
    return root


def _machine(n01, root, name, args=()):
    return n01.make_machine(root / name, args, root=root)[0]


def _regs(m):
    return dict(zip(vsnap.cpu.GPRS, m.cpu.read_many(vsnap.cpu.GPRS)))


def test_panel_matches_a_direct_run(n01, sandbox):
    """panel(k) for several k: the registers, the changed ones, the memory map, the stack
    pages and the image's parts are what a Machine advanced to k (and to k-1) shows; the
    rendered HTML lights exactly the changed registers."""
    last = _machine(n01, sandbox, "maps").run().instructions
    seen_changed = set()
    for k in (1, 2, 5, 7, 100, last // 3, last // 2, last - 1):
        p = n01.panel(sandbox / "maps", k, root=sandbox)
        m = _machine(n01, sandbox, "maps")
        assert m.advance(k - 1) is None
        before = _regs(m)
        assert m.advance(k) is None
        after = _regs(m)
        assert not p.ended and p.registers == after
        assert p.changed == {r for r in after if r not in ("rip", "rflags")
                             and after[r] != before[r]}
        seen_changed |= p.changed
        assert p.vmas == [(v.start, v.end, v.kind, v.perms(), v.name) for v in m.mem.vmas]
        stack = next(v for v in m.mem.vmas if v.kind == "stack")
        touched = [a for a in range(stack.start, stack.end, PAGE)
                   if any(m.mem.read(a, PAGE))]
        assert p.stack_pages == touched and touched
        data = image_bytes(m)
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            assert p.parts == {i.filename: i.file_size for i in z.infolist()}
        assert p.image_size == len(data)
        html = n01.render(p)
        assert html.count("background:#ffd54f") == len(p.changed)
        for r in p.changed:
            assert f"background:#ffd54f;font-weight:bold'>{r:>6}" in html
    assert seen_changed, "no k chosen changed a register: the test would prove nothing"
    assert n01.panel(sandbox / "maps", last + 10, root=sandbox).ended


def test_panel_follows_the_memory_map(n01, sandbox):
    """Past maps' brk and mmap calls the panel shows a [heap] and a new mapping that were not
    there at the first instruction, and the image gains their parts."""
    last = _machine(n01, sandbox, "maps").run().instructions
    first, end = n01.panel(sandbox / "maps", 1, root=sandbox), \
        n01.panel(sandbox / "maps", last - 1, root=sandbox)
    assert "heap" not in {v[2] for v in first.vmas} and "heap" in {v[2] for v in end.vmas}
    assert len(end.vmas) > len(first.vmas)
    assert set(end.parts) - set(first.parts)


def test_stack_picture_is_the_guests_stack(n01, sandbox):
    """initial_stack (what draw_stack draws) is the guest's real initial stack: each slot
    holds the word at its address, argv is the argument list, the loader's own record of
    the exec (where argv and envp strings start, rsp, the auxv) agrees, every pointer has an
    arrow in the picture; and Exercise 1's key is where argv[1] really starts."""
    for args in ([], ["a b"], ["one", "two", "three"], ["x" * 300, ""]):
        m = _machine(n01, sandbox, "hello", args)
        st = n01.initial_stack(m)
        layout = m.process.exec
        assert st.rsp == m.cpu.read("rsp") == layout.start_stack
        for s in st.slots:
            assert struct.unpack("<Q", m.mem.read(s.addr + (8 if s.label.startswith("AT_")
                                                            else 0), 8))[0] == s.value
        assert st.slot("argc").value == len(args) + 1
        assert st.argv() == ["/hello", *args]
        assert st.slot("argv[0]").value == layout.arg_start
        assert st.slot("envp[0]").value == layout.env_start
        assert [[vsnap.loader.__dict__[s.label] if s.label in vsnap.loader.__dict__ else -1,
                 s.value] for s in st.slots if s.label.startswith("AT_")] == layout.auxv
        assert all(st.rsp <= b.addr < st.top for b in st.blobs)
        if len(args) >= 1:
            assert st.top - st.slot("argv[1]").value == n01.argv1_below_top(args)
        fig = n01.draw_stack(st)
        arrows = [a for a in fig.axes[0].texts if getattr(a, "arrow_patch", None) is not None
                  and a.get_text() == ""]
        assert len(arrows) == sum(s.target is not None for s in st.slots)
        import matplotlib.pyplot as plt
        plt.close(fig)


def test_register_key_for_each_of_the_first_instructions(n01, sandbox):
    """Exercise 2's key (START_KEY, read off musl's _start by hand) is right for every k it
    offers: the instruction is the one reasoned about, and it changes those registers."""
    for k, (text, regs) in n01.START_KEY.items():
        got_text, got = n01.step_changes(sandbox / "hello", k, root=sandbox)
        assert got_text.startswith(text), (k, got_text)
        assert got == regs, (k, got_text, got)


def test_syscall_and_status_keys_for_every_variant(n01, sandbox):
    """Exercises 3 and 4: the formulas give what vsnap measures for each variant."""
    for n in range(1, 7):
        for tty in (False, True):
            result, calls, out = n01.run_counted(sandbox / "lines", [str(n)], root=sandbox,
                                                 tty=tty)
            assert out.count(b"\n") == n
            assert result.syscalls == len(calls) == n01.syscalls_key(n, tty), (n, tty, calls)
    for value in (0, 7, 255, 256, 300, -1, 1000):
        result, _, _ = n01.run_counted(sandbox / "lines", ["1", str(value)], root=sandbox)
        assert result.status == n01.status_key(value)


def test_strace_table_comes_from_the_traces(n01, sandbox, monkeypatch):
    """The table's rows are parsed from the two traces; a difference is named by its place;
    vsnap spells out ARCH_SET_FS and TIOCGWINSZ; without strace the native column is None."""
    line = ('writev(1, [{iov_base="a, b", iov_len=4}, {iov_base=NULL, iov_len=0}], 2) = 4')
    assert n01.parse_strace([line]) == [
        ("writev", ["1", '[{iov_base="a, b", iov_len=4}, {iov_base=NULL, iov_len=0}]', "2"],
         "4")]
    ours = n01.parse_strace(n01.vsnap_strace(sandbox / "hello", sandbox))
    assert [c[0] for c in ours][:3] == ["arch_prctl", "set_tid_address", "ioctl"]
    assert ours[0][1][0] == "ARCH_SET_FS" and ours[2][1][1] == "TIOCGWINSZ"
    theirs = [(c[0], list(c[1]), c[2]) for c in ours]
    theirs[1] = (theirs[1][0], theirs[1][1], "4242")
    rows = n01.compare(ours, theirs)
    assert [r["differs"] for r in rows][:3] == [[], ["result"], []]
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert n01.native_strace(sandbox / "hello") is None
    assert all(r["native"] is None for r in n01.compare(ours, None))


def test_notebook_01_checks_a_prediction(monkeypatch):
    """Exercise 1 of notebook 01 (argc and where argv[1] lands): a wrong prediction is
    reported wrong, the measured one right, and no answer is shown unless VSNAP_REVEAL=1. The
    notebook runs up to that check."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.delenv("VSNAP_REVEAL", raising=False)
    nb = nbformat.read(NOTEBOOKS / "01-a-process-in-an-emulator.ipynb", as_version=4)
    guess = next(i for i, c in enumerate(nb.cells) if c.source.startswith("# Exercise 1, your"))
    checked = next(i for i, c in enumerate(nb.cells) if i > guess and "check(" in c.source)
    nb.cells = nb.cells[:checked + 1]
    nb.cells[guess].source = "guess = (1, 8)"     # argv[1] right below the top: wrong
    nb.cells.append(nbformat.v4.new_code_cell("ex1.check(measured, measured)"))
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    wrong = "".join(o.get("text", "") for o in nb.cells[checked].outputs)
    right = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "(1, 8) is not what happened" in wrong and "answer" not in wrong
    assert "is right" in right and "answer" not in right


def test_slider_is_the_panel(n01, sandbox):
    """The slider's widget spans k = 0..last, and moving it renders panel(k) again (its
    callback runs headless, outside a browser)."""
    pytest.importorskip("ipywidgets")
    shown = []
    real = n01.render
    n01.render = lambda p: shown.append(p) or real(p)
    try:
        box = n01.slider(sandbox / "hello", root=sandbox, last=1340, value=3)
        k = box.children[0]
        assert (k.min, k.max, k.value) == (0, 1340, 3)
        k.value = 8
    finally:
        n01.render = real
    assert [p.k for p in shown] == [3, 8]
    assert shown[1].registers["rsi"] == 1     # mov esi, dword ptr [rdi]: argc, at k = 8


def test_image_key_for_every_variant(n01, sandbox):
    """Exercise 5's key (IMAGE_KEY, read off maps.c): for each pair of calls it offers, the
    call is the one reasoned about and the part grows by that many pages between images taken
    just after the two calls."""
    instants = n01.syscall_instants(sandbox / "maps", root=sandbox)
    for first, (call, part, pages) in n01.IMAGE_KEY.items():
        assert instants[first][1].startswith(call), instants[first]
        a, b = (n01.panel(sandbox / "maps", instants[i][0], root=sandbox)
                for i in (first, first + 1))
        assert b.parts.get(part, 0) - a.parts.get(part, 0) == pages * PAGE, (first, part)
