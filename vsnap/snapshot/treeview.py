"""`vsnap inspect IMAGE tree`: the processes of an image as `pstree -p` draws them, with each
process's group and session, what it runs, and whether it waits (parked at a call) or is a
zombie waiting to be reaped; and `vsnap diff`'s lines about the tree."""
from __future__ import annotations

from ..waitstatus import siginfo_of, CLD_EXITED


def _procs(img) -> dict:
    """pid -> {ppid, pgid, sid, state, status, comm, parked}: the table, with what each
    live process's own records say."""
    t = img.tree
    if t is None:  # an image of one process made before trees
        p = img.kernel["process"]
        return {p["pid"]: {"ppid": p["ppid"], "pgid": p["pgid"], "sid": p["sid"],
                           "state": "run", "status": 0, "parked": False,
                           "comm": (img.kernel.get("exec") or {}).get("comm", "")}}
    live = {rec["pid"]: rec for rec in t["processes"]}
    out = {}
    for q in t["table"].processes():
        rec = live.get(q.pid)
        if rec is None:
            comm = ""
        else:
            k = img.kernel if "image" not in rec else rec["image"]["kernel"]
            comm = (k.get("exec") or {}).get("comm", "")
        out[q.pid] = {"ppid": q.ppid, "pgid": q.pgid, "sid": q.sid, "state": q.state,
                      "status": q.status, "comm": comm,
                      "parked": bool(rec and rec["parked"])}
    return out


def _what(p: dict) -> str:
    if p["state"] == "zombie":
        code, value = siginfo_of(p["status"])
        how = f"exited {value}" if code == CLD_EXITED else f"killed by signal {value}"
        return f"zombie ({how}, not yet waited for)"
    if p["state"] == "stopped":
        return "stopped"
    return "waits in a call" if p["parked"] else "runnable"


def render(img) -> str:
    procs = _procs(img)
    kids: dict[int, list[int]] = {}
    for pid, p in procs.items():
        kids.setdefault(p["ppid"], []).append(pid)
    roots = sorted(pid for pid, p in procs.items() if p["ppid"] not in procs)
    lines = [f"{len(procs)} process{'es' if len(procs) != 1 else ''} "
             f"({sum(p['state'] == 'zombie' for p in procs.values())} zombie), "
             f"{len({p['pgid'] for p in procs.values()})} process groups, "
             f"{len({p['sid'] for p in procs.values()})} sessions; "
             "parents 999 (vsnap) and 1 (the guest's init) are vsnap's own", ""]

    def draw(pid: int, lead: str, last: bool, top: bool) -> None:
        p = procs[pid]
        name = p["comm"] or "?"
        branch = "" if top else ("`-" if last else "|-")
        marks = [f"pgid {p['pgid']}", f"sid {p['sid']}"]
        if p["pgid"] == pid:
            marks.append("group leader")
        if p["sid"] == pid:
            marks.append("session leader")
        lines.append(f"{lead}{branch}{name}({pid})  [{', '.join(marks)}]  {_what(p)}")
        children = sorted(kids.get(pid, []))
        for i, c in enumerate(children):
            draw(c, lead + ("" if top else ("  " if last else "| ")), i == len(children) - 1,
                 False)

    for r in roots:
        lines.append(f"(parent {procs[r]['ppid']})")
        draw(r, "", True, True)
    return "\n".join(lines)


def diff(a, b) -> list[str]:
    """What changed in the tree between two images."""
    pa, pb = _procs(a), _procs(b)
    out = []
    for pid in sorted(set(pa) | set(pb)):
        x, y = pa.get(pid), pb.get(pid)
        if x is None:
            out.append(f"  + process {pid} ({y['comm'] or '?'}): {_what(y)}")
        elif y is None:
            out.append(f"  - process {pid} ({x['comm'] or '?'}) is gone (reaped)")
        elif (x["pgid"], x["sid"], _what(x)) != (y["pgid"], y["sid"], _what(y)):
            out.append(f"  ~ process {pid}: pgid {x['pgid']} sid {x['sid']} {_what(x)} -> "
                       f"pgid {y['pgid']} sid {y['sid']} {_what(y)}")
    return (["processes:"] + out) if out else []
