"""A tree of processes in one image.

The first process is saved as an image of one process always was (registers.json,
kernel.json, memory.json, fds.json and memory/*.bin at the top), so every tool that reads
one process reads the first one of a tree. Beside it:

* tree.json: the process table (pids, parents, groups, sessions, zombies and their wait
  statuses: proctable.saved), the scheduler's place (the round robin's last process), the
  CPU time of the zombies, and for each live process whether it was parked in a call and
  what that call remembered (a sleep's end), and the fd table of each process but the first;
* procs/PID/registers.json, kernel.json, memory.json, program.json and memory/*.bin for
  each live process but the first, in the same forms.

Open file descriptions are saved once for the whole tree (fds.json's descriptions, as CRIU's
image keeps one record per open file and each fd names it): a pipe whose ends two processes
hold, or a file a parent and child share with one offset, comes back shared.

A parked process is between two instructions at its `syscall` instruction (errors.Blocked);
it comes back parked "until its turn", and at its turn its call runs again and parks anew
if what it waits for has not come: the same instructions and the same output, because a
call that parks in vain counts nothing and moves nothing (sched.py).
"""
from __future__ import annotations

from ..proctable import ProcessTable
from .codec import ImageError, dumps, load_json_part
from .fields import Reader
from .inodes import CannotSave

TREE = "tree.json"
MAX_PROCESSES = 4096


def prefix(pid: int) -> str:
    return f"procs/{pid}/"


def processes(m) -> list:
    """The processes to save: the first one, then the others by pid. CannotSave for a
    moment vsnap cannot save (a vfork child running in its parent's memory)."""
    system = m.system
    for q in system.processes.values():
        if q.lent_to is not None or q.borrowed_from is not None:
            child = q if q.borrowed_from is not None else q.lent_to
            raise CannotSave(f"vsnap: cannot save this guest now: process "
                             f"{child.task.pid} is a vfork child running in its parent's "
                             f"memory, which an image cannot hold apart yet; save after it "
                             f"execs or exits")
    init = system.init
    procs = [init] + [q for pid, q in sorted(system.processes.items()) if q is not init]
    if len(procs) > 1:
        for q in procs:
            if any(v.shared and v.file is None for v in q.mem.vmas):
                raise CannotSave(f"vsnap: cannot save this guest: process {q.task.pid} has "
                                 f"shared anonymous memory (MAP_SHARED), which a tree image "
                                 f"cannot keep shared between processes yet")
    return procs


def record(m, procs: list, fds: dict) -> dict:
    """tree.json's content; `fds` is descriptions.save's record (its "tables")."""
    system = m.system
    tables = {t["pid"]: t for t in fds.get("tables", [])}
    out = []
    for q in procs:
        rec = {"pid": q.task.pid, "parked": q.blocked is not None,
               "memo": None if q.memo is None else [list(q.memo[0]), _memo(q.memo[1])],
               # a vfork parent's call returns this child's pid when it runs again
               "vfork_child": q.vfork_child, "execd": q.execd}
        if q is not system.init:
            rec["fds"], rec["highest_fd"] = tables[q.task.pid]["fds"], \
                tables[q.task.pid]["highest_fd"]
        out.append(rec)
    return {"table": system.table.saved(), "rr_last": system.rr_last, "turn": system.turn,
            "forked": system.forked,
            "child_times": [[pid, u, s] for pid, (u, s) in sorted(system.child_times.items())],
            "processes": out}


def _memo(value):
    """A parked call's memo: a number (a sleep's end), or a socket call's progress."""
    if isinstance(value, dict):
        from .sockimage import memo_record
        return memo_record(value)
    return value


def save_others(m, procs: list, parts: dict, memory, registers, kernel, program) -> None:
    """The parts of every process but the first, each made by the one-process functions
    with the machine switched to it."""
    first = m.system.current
    try:
        for q in procs[1:]:
            m._switch(q)
            pre = prefix(q.task.pid)
            if any(v.file is not None and v.file.key is not None and _deleted(v)
                   for v in q.mem.vmas):
                raise CannotSave(f"vsnap: cannot save this guest: process {q.task.pid} "
                                 f"maps a deleted file, which a tree image cannot hold yet")
            mem, chunks = memory(m)  # its parts are named in memory.json without the prefix
            for name, chunk in chunks.items():
                parts[pre + name] = chunk
            parts[pre + "memory.json"] = dumps(mem)
            parts[pre + "registers.json"] = dumps(registers(m))
            parts[pre + "kernel.json"] = dumps(kernel(m))
            parts[pre + "program.json"] = dumps(program(m))
    finally:
        m._switch(first)


def _deleted(v) -> bool:
    import os
    try:
        return os.fstat(v.file.fd).st_nlink == 0
    except (OSError, AttributeError):
        return False


# reading -------------------------------------------------------------------------------------

def parse(parts: dict, where: str, ndescs: int, first_pid: int, parse_one) -> dict | None:
    """tree.json and every other process's parts, checked (None: an image of one process
    made before trees). parse_one(sub_parts, where) parses one process's parts."""
    if TREE not in parts:
        return None
    r = Reader(where, TREE)
    d = r.obj(load_json_part(parts, TREE, where), ".")
    try:
        table = ProcessTable.load(r.key(d, "table", ""))
    except (ValueError, TypeError, KeyError) as e:
        raise ImageError(f"{where}: {TREE}: its process table: {e}") from None
    live = [q.pid for q in table.processes() if q.state != "zombie"]
    recs = r.list(r.key(d, "processes", ""), "processes", MAX_PROCESSES)
    pids = []
    procs = []
    for i, raw in enumerate(recs):
        path = f"processes[{i}]"
        raw = r.obj(raw, path)
        pid = r.int(r.key(raw, "pid", path), path + ".pid", 1, 1 << 22)
        memo = raw.get("memo")
        if memo is not None:
            memo = r.list(memo, path + ".memo", 2)
            key = r.list(memo[0] if memo else None, path + ".memo[0]", 2)
            if len(memo) != 2 or len(key) != 2:
                r.fail(path + ".memo", "expected [[number, address], value]")
            if isinstance(memo[1], dict):  # a socket call's progress (kernel/sockfile.py)
                from .sockparse import parse_memo
                value = parse_memo(r, memo[1], path + ".memo[1]")
            else:
                value = r.int(memo[1], path + ".memo", 0, (1 << 63) - 1)
            memo = ((r.int(key[0], path + ".memo", 0, 1 << 16), r.int(key[1], path + ".memo")),
                    value)
        vchild = raw.get("vfork_child")
        rec = {"pid": pid, "parked": r.bool(r.key(raw, "parked", path), path + ".parked"),
               "memo": memo, "execd": r.bool(raw.get("execd", False), path + ".execd"),
               "vfork_child": None if vchild is None else r.int(vchild, path, 1, 1 << 22)}
        if i == 0:
            if pid != first_pid:
                r.fail(path + ".pid", f"the first process is {first_pid}")
        else:
            rec["fds"] = _fds(r, r.key(raw, "fds", path), path + ".fds", ndescs)
            rec["highest_fd"] = r.int(r.key(raw, "highest_fd", path), path + ".highest_fd",
                                      0, 1 << 20)
            pre = prefix(pid)
            sub = {n[len(pre):]: b for n, b in parts.items() if n.startswith(pre)}
            for name in ("registers.json", "kernel.json", "memory.json", "program.json"):
                if name not in sub:
                    raise ImageError(f"{where}: damaged image: part {pre}{name} is missing")
            rec["image"] = parse_one(sub, f"{where} ({pre[:-1]})")
        pids.append(pid)
        procs.append(rec)
    if sorted(pids) != sorted(live) or len(set(pids)) != len(pids):
        r.fail("processes", f"the live processes are {sorted(live)}, not {sorted(pids)}")
    rr = d.get("rr_last")
    turn = d.get("turn")
    if turn is not None:
        turn = r.list(turn, "turn", 3)
        if len(turn) != 3 or turn[0] not in pids:
            r.fail("turn", "expected [a live pid, end or null, start]")
        turn = [turn[0], None if turn[1] is None else r.int(turn[1], "turn[1]"),
                r.int(turn[2], "turn[2]")]
    times = {}
    for i, t in enumerate(r.list(d.get("child_times", []), "child_times", MAX_PROCESSES)):
        if not isinstance(t, list) or len(t) != 3:
            r.fail(f"child_times[{i}]", "expected [pid, user ns, system ns]")
        times[r.int(t[0], "child_times")] = (r.int(t[1], "child_times"),
                                              r.int(t[2], "child_times"))
    return {"table": table, "processes": procs, "child_times": times,
            "rr_last": None if rr is None else r.int(rr, "rr_last", 1, 1 << 22),
            "turn": turn,
            "forked": r.bool(d.get("forked", False), "forked")}


def _fds(r: Reader, raw, path: str, ndescs: int) -> list:
    out, seen = [], set()
    for i, e in enumerate(r.list(raw, path, 4096)):
        p = f"{path}[{i}]"
        e = r.obj(e, p)
        fd = r.int(r.key(e, "fd", p), p + ".fd", 0, 4095)
        if fd in seen:
            r.fail(p, f"fd {fd} appears twice")
        seen.add(fd)
        out.append({"fd": fd, "cloexec": r.bool(r.key(e, "cloexec", p), p),
                    "description": r.int(r.key(e, "description", p), p, 0, ndescs - 1)})
    return out


def process_image(img, pid: int):
    """The image as seen from one process of its tree (its program, registers, kernel
    state, memory), for the tools that look at one process: a core file of the child that
    crashed, say. The first process's is the image itself."""
    from dataclasses import replace
    if img.tree is None or pid == img.kernel["process"]["pid"]:
        return img
    for rec in img.tree["processes"][1:]:
        if rec["pid"] == pid:
            one = rec["image"]
            return replace(img, where=f"{img.where} (process {pid})", program=one["program"],
                           registers=one["registers"], kernel=one["kernel"],
                           vmas=one["vmas"], brk_start=one["brk_start"], brk=one["brk"],
                           blobs=one["blobs"])
    raise ValueError(f"{img.where}: no live process {pid} in the image")
