"""Notebook 05's helpers: Hypothesis made independent of the machine's speed, the searches
the notebook shows, the register bug's pass/fail islands over k (scanned and drawn), and the
reasoning behind the exercises' answer keys (where a lost value is live).

Kept out of the notebook so its cells stay short and so tests/test_notebook_05.py can check
them.
"""
from __future__ import annotations

import _lab

import re
import tempfile

import capstone
from hypothesis import HealthCheck, Phase, settings
from hypothesis.internal.conjecture import engine as _engine

from vsnap.check import Capture, start
from vsnap.testing import first_difference, fresh_root, planted_bug, run_with_checkpoints


def deterministic_hypothesis() -> None:
    """Load the notebook's Hypothesis profile, so that what it finds and how far it shrinks
    depends on the seed and on nothing else, whatever the machine's speed:

    - derandomize=True (and @seed where a cell gives one): the same draws on every run;
    - database=None: no replay of an earlier run's failure from a .hypothesis/ folder;
    - deadline=None and no health checks: a guest run takes milliseconds, by design;
    - report_multiple_bugs=False: after the first failure, Hypothesis would go on looking for
      other bugs for up to ten seconds of wall time; now it shrinks the first one at once;
    - no "explain" phase (it traces every line of Python, slowly);
    - and shrinking is not cut short after five minutes of wall time. That limit lives in
      Hypothesis's engine (MAX_SHRINKING_SECONDS, not a setting): on a slow machine it stops
      the shrink early, with a "PLEASE REPORT THIS" warning, and the counterexample printed
      then depends on the machine. Each shrink here takes seconds; the limit can only do harm.
    """
    settings.register_profile("notebook", database=None, deadline=None, print_blob=False,
                              derandomize=True, report_multiple_bugs=False,
                              suppress_health_check=list(HealthCheck),
                              phases=(Phase.explicit, Phase.generate, Phase.shrink))
    settings.load_profile("notebook")
    if not hasattr(_engine, "MAX_SHRINKING_SECONDS"):
        raise RuntimeError("this Hypothesis has no MAX_SHRINKING_SECONDS: check how it limits "
                           "shrinking, or the notebook's results may depend on the machine")
    _engine.MAX_SHRINKING_SECONDS = 10 ** 9


def count_after(calls, counts, pattern: str) -> int:
    """The instruction count right after the first system call whose strace line matches
    `pattern` (a regular expression), from `calls` (strace lines) and `counts` (measure's
    .syscalls, in the same order)."""
    for line, k in zip(calls, counts):
        if re.match(pattern, line):
            return k
    raise LookupError(f"no system call matches {pattern!r}")


def failing(guest, reference, bug: str, ks) -> list[int]:
    """The k in `ks` at which one checkpoint, with `bug` planted, changes the outcome."""
    with planted_bug(bug):
        return [k for k in ks if first_difference(reference, run_with_checkpoints(guest, [k]))]


def islands(ks, bad) -> list[tuple[int, int]]:
    """Runs of consecutive failing k, as (first, last)."""
    bad, out = set(bad), []
    for k in ks:
        if k in bad:
            if out and out[-1][1] == k - 1:
                out[-1] = (out[-1][0], k)
            else:
                out.append((k, k))
    return out


_CS = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
_CS.detail = True
_RBX = {"rbx", "ebx", "bx", "bl", "bh"}


def trace(guest, n: int) -> list:
    """The first n instructions the guest runs, as (capstone instruction with operand detail,
    the value of rbx before it): trace[k] is what runs after a checkpoint at k."""
    out = []
    with tempfile.TemporaryDirectory(prefix="vsnap-trace-") as base:
        m = start(guest, fresh_root(guest, base), Capture(guest.stdin))
        try:
            for k in range(n):
                rip = m.cpu.read("rip")
                out.append((next(_CS.disasm(m.mem.read(rip, 16), rip, 1)), m.cpu.read("rbx")))
                if m.advance(k + 1) is not None:   # advance(to): to an absolute count
                    break
        finally:
            m.close()
    return out


def _rbx_use(insn) -> str | None:
    """'read' if the instruction reads rbx (or a part of it), 'write' if it only overwrites
    it, None if it does not touch it. `xor ebx, ebx` writes a zero whatever rbx held."""
    read, written = insn.regs_access()
    read = {insn.reg_name(r) for r in read}
    written = {insn.reg_name(r) for r in written}
    if insn.mnemonic == "xor" and insn.op_str in ("ebx, ebx", "rbx, rbx"):
        return "write"
    if read & _RBX:
        return "read"
    if written & {"rbx", "ebx"}:   # a 32-bit write clears the top half too: all of rbx new
        return "write"
    return None


def touches_rbx(insn) -> bool:
    return _rbx_use(insn) is not None


def rbx_live(steps) -> list[int]:
    """The k at which rbx is live and not 0: the instructions from k on read rbx before
    anything overwrites it, and it holds something else than the 0 the register bug's
    image leaves in it. Only there can losing rbx matter. (k near the end of the trace,
    where neither a read nor a write comes within it, are left out.)"""
    live = []
    for k in range(len(steps)):
        if steps[k][1] == 0:
            continue
        for insn, _ in steps[k:]:
            use = _rbx_use(insn)
            if use is not None:
                if use == "read":
                    live.append(k)
                break
    return live


def draw_islands(ax, ks, bad, shrunk=None, title="", live=None):
    """One strip: each k red where a checkpoint there fails, green where it passes; the
    point Hypothesis shrank to marked; above it, in grey, the k where rbx is live (`live`)."""
    bad = set(bad)
    if live is not None:
        ax.bar([k for k in ks if k in live], [0.15] * len(set(ks) & set(live)), bottom=1.1,
               width=1.0, align="edge", linewidth=0, color="0.5")
        ax.text(ks[-1] + 1, 1.17, " rbx live, not 0", va="center", fontsize=8)
    ax.bar(list(ks), [1] * len(ks), width=1.0, align="edge", linewidth=0,
           color=["tab:red" if k in bad else "tab:green" for k in ks])
    if shrunk is not None:
        ax.annotate(f"Hypothesis shrank to {shrunk}", (shrunk + 0.5, 1), (shrunk + 0.5, 1.5),
                    ha="center", arrowprops={"arrowstyle": "->"}, fontsize=9)
    ax.set_xlim(ks[0], ks[-1] + 1)
    ax.set_ylim(0, 1.8)
    ax.set_yticks([])
    ax.set_xlabel("k: one checkpoint after k instructions (red: the outcome changes)")
    ax.set_title(title, fontsize=10)


# --- the notebook's small tools (moved here so that its cells stay short) ---

def table(headers, rows):
    """An HTML table in the notebook; cells are shown as code."""
    from html import escape

    from IPython.display import HTML, display
    head = "".join(f"<th style='text-align:left'>{escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'><code>{escape(str(c))}</code>"
                                    "</td>" for c in row) + "</tr>" for row in rows)
    display(HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"))


vsnap_cli = _lab.vsnap_cli  # the labs' one runner of the command line


def system_calls(guest, sandbox) -> list[str]:
    """vsnap's strace lines for one run of `guest`, in order: the same list as
    `vsnap run --strace`, collected in Python."""
    import vsnap
    lines = []
    console = vsnap.Console(read=lambda n: b"", write_out=lambda b: None,
                            write_err=lambda b: None)
    root = fresh_root(guest, sandbox)
    m = vsnap.Machine(guest.program, guest.args, root=str(root), cwd=str(root), console=console)
    m.system.strace = lines.append
    m.run()
    return lines


def short(text, n=70) -> str:
    text = str(text)
    return text if len(text) <= n else text[:n - 3] + "..."


def near_a_syscall(k, m) -> bool:
    return any(abs(k - s) <= 2 for s in m.syscalls)


def draw_points(ax, name, m, drawn) -> tuple[int, int]:
    """One row per example drawn, its points joined; red within 2 instructions of a system
    call; grey lines the system calls, orange those with a signal blocked after them.
    Returns (points near a system call, all points)."""
    ax.vlines(m.syscalls, -1, len(drawn), color="0.8", lw=0.8)
    ax.vlines(m.in_handlers, -1, len(drawn), color="tab:orange", lw=1.2)
    for row, points in enumerate(drawn):
        ax.plot(points, [row] * len(points), "-", color="tab:blue", lw=0.6, alpha=0.6)
        ax.scatter(points, [row] * len(points), s=14, zorder=3,
                   c=["tab:red" if near_a_syscall(k, m) else "tab:blue" for k in points])
    ax.set_xlim(0, m.length)
    ax.set_ylim(-1, len(drawn))
    ax.set_ylabel("example")
    all_points = [k for points in drawn for k in points]
    close = sum(near_a_syscall(k, m) for k in all_points)
    ax.set_title(f"{name}: {m.length:,} instructions; {close} of {len(all_points)} drawn points "
                 f"(red) within 2 instructions of a system call", fontsize=10)
    return close, len(all_points)


def points_legend(fig) -> None:
    from matplotlib.lines import Line2D
    fig.legend(handles=[Line2D([], [], color="0.8", label="a system call"),
                        Line2D([], [], color="tab:orange",
                               label="a system call with a signal blocked after it"),
                        Line2D([], [], ls="", marker="o", color="tab:red",
                               label="drawn point within 2 instructions of a system call"),
                        Line2D([], [], ls="", marker="o", color="tab:blue",
                               label="drawn point elsewhere")],
               loc="lower center", ncol=2, fontsize=9, frameon=False)


def planted_rows(cases, examples=60, seed_=1):
    """Each (bug, how the program is shown, guest, verdict or None) checked with its bug
    planted (unless a verdict is given); the table's rows and the verdicts by bug."""
    from vsnap.check import check, instruction_at
    rows, verdicts = [], {}
    for bug, shown_as, guest, verdict in cases:
        if verdict is None:
            with planted_bug(bug):
                verdict = check(guest, examples=examples, seed_=seed_)
        verdicts[bug] = verdict
        if verdict.transparent:
            rows.append((bug, shown_as, verdict.examples, "not found", "", ""))
            continue
        k = verdict.points[0]
        before = instruction_at(guest, k - 1).split(": ", 1)[1] if k > 0 else "(nothing yet)"
        rows.append((bug, shown_as, verdict.examples,
                     f"{', '.join(f'{p:,}' for p in verdict.points)} of "
                     f"{verdict.measured.length:,}", before, short(verdict.difference, 80)))
    return rows, verdicts
