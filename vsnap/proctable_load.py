"""Checks a saved process table (untrusted checkpoint input) before vsnap believes it.

Each rule is one that Linux keeps true of its own tables, so a table that breaks one could never
have been saved by vsnap: ValueError with a one-line message naming the process and the rule.
"""
from __future__ import annotations

from .proctable import INIT, RESERVED_PIDS, VIRTUAL_PARENT
from .waitstatus import is_exit_status

_TYPES = {"state": str, "report": str, "execd": bool, "subreaper": bool}


def _bad(why: str):
    raise ValueError(f"process table: {why}")


def check(d: dict, pid_max: int, names: list[str], make) -> dict:
    """The {pid: Proc} that d describes, or ValueError."""
    if d.get("version") != 1:
        _bad(f"unknown version {d.get('version')!r}")
    last, nxt, rows = d.get("last_pid"), d.get("next_link"), d.get("processes")
    if type(last) is not int or not RESERVED_PIDS <= last < pid_max:
        _bad(f"last_pid {last!r} is not a pid below pid_max {pid_max}")
    if type(nxt) is not int or nxt < 1:
        _bad(f"next_link {nxt!r} is not a positive integer")
    if not isinstance(rows, list):
        _bad("processes is not a list")
    procs = {}
    for row in rows:
        if not isinstance(row, dict) or sorted(row) != sorted(names):
            _bad(f"a process record must have exactly the fields {', '.join(names)}")
        for k in names:
            if type(row[k]) is not _TYPES.get(k, int):
                _bad(f"process {row.get('pid')!r}: {k} is not a {_TYPES.get(k, int).__name__}")
        p = make(**row)
        if not RESERVED_PIDS <= p.pid < pid_max or p.pid == VIRTUAL_PARENT:
            _bad(f"pid {p.pid} is out of range")
        if p.pid in procs:
            _bad(f"pid {p.pid} appears twice")
        procs[p.pid] = p
    links = [p.link for p in procs.values()]
    if len(set(links)) != len(links) or any(not 1 <= k < nxt for k in links):
        _bad("children-list positions (link) are not distinct numbers below next_link")
    for p in procs.values():
        _check_one(p, procs, pid_max)
    _check_tree(procs)
    return procs


def _check_one(p, procs: dict, pid_max: int) -> None:
    if p.state not in ("run", "stopped", "zombie"):
        _bad(f"process {p.pid}: unknown state {p.state!r}")
    if p.state == "zombie" and not is_exit_status(p.status):
        _bad(f"process {p.pid}: status {p.status:#x} is not an exit status")
    if p.state != "zombie" and p.status != 0:
        _bad(f"process {p.pid}: only a zombie has an exit status")
    if (p.state == "stopped") != (1 <= p.stopsig <= 64) or (p.state != "stopped" and p.stopsig):
        _bad(f"process {p.pid}: stop signal {p.stopsig} does not fit state {p.state}")
    want = {"": True, "stopped": p.state == "stopped", "continued": p.state == "run"}
    if not want.get(p.report, False):
        _bad(f"process {p.pid}: report {p.report!r} does not fit state {p.state}")
    parent = procs.get(p.ppid)
    if p.ppid == p.pid or not (p.ppid == VIRTUAL_PARENT or (p.ppid == INIT and p.state != "zombie")
                               or (parent is not None and parent.state != "zombie")):
        _bad(f"process {p.pid}: parent {p.ppid} is not a live process")
    if not RESERVED_PIDS <= p.pgid < pid_max or p.pgid == VIRTUAL_PARENT:
        _bad(f"process {p.pid}: process group {p.pgid} is out of range")
    if not (p.sid == VIRTUAL_PARENT or RESERVED_PIDS <= p.sid < pid_max):
        _bad(f"process {p.pid}: session {p.sid} is out of range")
    if p.sid == p.pid and p.pgid != p.pid:
        _bad(f"process {p.pid}: a session leader must lead its process group")


def _check_tree(procs: dict) -> None:
    session_of: dict[int, int] = {}
    for p in procs.values():
        if session_of.setdefault(p.pgid, p.sid) != p.sid:
            _bad(f"process group {p.pgid} spans two sessions")
    for p in procs.values():
        if p.pid in session_of and session_of[p.pid] != p.sid:
            _bad(f"process {p.pid} is in another session than the group it names")
        if p.sid in procs and procs[p.sid].sid != p.sid:
            _bad(f"process {p.pid}: its session leader {p.sid} left the session")
        seen, a = {p.pid}, procs.get(p.ppid)
        while a is not None:             # every chain of parents ends at 999 or 1
            if a.pid in seen:
                _bad(f"process {p.pid}: its parents form a cycle")
            seen.add(a.pid)
            a = procs.get(a.ppid)
