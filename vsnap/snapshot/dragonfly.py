"""`vsnap resume --as-dragonfly`: resume as DragonFly BSD's checkpt(1) would, so that what
DragonFly cannot retain becomes visible (seeds/004; the manual pages checkpt(1) and
sys_checkpoint(2)).

sys_checkpoint(2): "The system checkpointing code is not able to retain the process pid,
process group, user/group creds, or descriptors 0, 1, and 2. These will be inherited from
whomever restores the checkpoint." and "the system checkpointing code does not retain
references to deleted files, so mappings and open descriptors of deleted files cannot be
restored." checkpt(1): "Programs which operate on devices, sockets, or pipes (including
piped commands) cannot be [restored] completely." DragonFly checkpoints one process.

The rules, applied to a parsed image before restore builds anything (so a refusal leaves
nothing half made):

- a tree (a second process, live or a zombie not yet waited for) is refused;
- a file deleted while open (a ghost, snapshot/inodes.py), by descriptor or by mapping, is
  refused, named, where vsnap would otherwise bring it back from the image;
- a pipe or FIFO on a descriptor above 2 is refused (checkpt(1): pipes cannot be restored);
- the pid is the one a fresh process table gives the resumer, with the saved pid counted as
  in use: on DragonFly the restored program takes over the pid of the checkpt process the
  shell just forked, and that can never be the saved pid while the checkpointed program may
  still be running (SIGCKPT is "checkpoint and continue"). A fresh table's first pid is
  1000 (proctable.FIRST_PID), which is also where every vsnap run starts, so a saved 1000
  becomes 1001 and any other saved pid becomes 1000;
- the process group and session are those of a program that vsnap, as the resuming shell
  (pid 999, session 999), has just started: its own group (pgid = the new pid) in the
  shell's session; the parent is the shell (ppid 999);
- uid and gid are the resumer's: vsnap's guests all run as uid 1000, gid 1000
  (kernel/creds.py), so they are 1000 again, whatever the image says;
- fds 0, 1 and 2 are the resumer's stdin, stdout and stderr, whatever the image had there
  (vsnap by default reattaches only descriptors that were the terminal, at any number, and
  reopens a file that the guest had put on 0-2 itself).
"""
from __future__ import annotations

from dataclasses import asdict

from ..errors import VsnapError
from ..proctable import FIRST_PID, VIRTUAL_PARENT, Proc, ProcessTable
from ..task import Task

STDIO = ("stdin", "stdout", "stderr")


class DragonflyRefused(VsnapError):
    """The image holds something DragonFly's checkpoints cannot restore."""


def apply(image) -> str:
    """Change `image` (parsed, not yet built) as checkpt(1) would resume it; returns the one
    notice line saying what changed. DragonflyRefused for what DragonFly cannot restore."""
    where = image.where
    saved = image.kernel["process"]
    _one_process(image, where)
    _no_ghosts(image, where)
    _no_deleted_mappings(image, where)
    _no_pipes(image, where)
    old = {k: saved[k] for k in ("pid", "ppid", "pgid", "sid", "uid", "gid")}
    pid = FIRST_PID if old["pid"] != FIRST_PID else FIRST_PID + 1
    fresh = Task()
    saved.update(pid=pid, ppid=VIRTUAL_PARENT, pgid=pid, sid=VIRTUAL_PARENT,
                 uid=fresh.uid, gid=fresh.gid)
    _table(image, old["pid"], pid)
    stdio = _stdio(image)
    return _notice(old, saved, stdio)


def _one_process(image, where: str) -> None:
    t = image.tree
    if t is None:
        return
    others = [q.pid for q in t["table"].processes() if q.pid != image.kernel["process"]["pid"]]
    if others:
        raise DragonflyRefused(
            f"vsnap: cannot resume {where} --as-dragonfly: it holds {len(others) + 1} "
            f"processes (also {', '.join(map(str, others))}); DragonFly checkpoints one "
            f"process, so resume it without --as-dragonfly")


def _no_ghosts(image, where: str) -> None:
    for i, rec in enumerate(image.inodes):
        if "ghost" not in rec:
            continue
        users = [d for d in image.descriptions if d.get("inode") == i]
        name = users[0]["path"] if users else f"inode {i}"
        fds = [e["fd"] for e in image.fds
               if any(image.descriptions[e["description"]] is u for u in users)]
        how = f"open on fd {fds[0]}" if fds else "mapped"
        raise DragonflyRefused(
            f"vsnap: cannot resume {where} --as-dragonfly: {name} was deleted while {how}; "
            f"DragonFly does not retain references to deleted files (sys_checkpoint(2)), "
            f"vsnap would bring it back from the image without --as-dragonfly")


def _no_deleted_mappings(image, where: str) -> None:
    for v in image.vmas:
        f = v.get("file")
        if f is not None and f["identity"]["deleted"]:
            raise DragonflyRefused(
                f"vsnap: cannot resume {where} --as-dragonfly: {f['path']} was deleted while "
                f"mapped at {v['start']:#x}; DragonFly cannot restore mappings of deleted "
                f"files (sys_checkpoint(2)), vsnap would bring it back without --as-dragonfly")


def _no_pipes(image, where: str) -> None:
    for e in image.fds:
        d = image.descriptions[e["description"]]
        if e["fd"] > 2 and d["kind"] in ("pipe", "fifo"):
            raise DragonflyRefused(
                f"vsnap: cannot resume {where} --as-dragonfly: fd {e['fd']} is a "
                f"{'pipe' if d['kind'] == 'pipe' else 'FIFO'} ({d['path']}); DragonFly cannot "
                f"restore pipes (checkpt(1)), vsnap does without --as-dragonfly")


def fresh_table(pid: int, like: ProcessTable | None = None) -> ProcessTable:
    """A process table holding only `pid`, as vsnap-as-shell's newly started program (with
    `like`'s budget and pid_max)."""
    like = like or ProcessTable()
    row = asdict(Proc(pid, VIRTUAL_PARENT, pid, VIRTUAL_PARENT, execd=True, link=1))
    return ProcessTable.load({
        "version": 1, "max_processes": like.max_processes, "pid_max": like.pid_max,
        "last_pid": pid, "next_link": 2, "processes": [row]})


def adopt(m) -> None:
    """After restore set the task's ids: the machine's books under the new pid (Machine.blank
    put the process under the first pid; an image made before trees has no table of its own)."""
    q = m.process
    m.system.processes = {q.task.pid: q}
    if m.system.table.get(q.task.pid) is None:
        m.system.table = fresh_table(q.task.pid, m.system.table)


def _table(image, old: int, pid: int) -> None:
    """The tree's process table made fresh, and the scheduler's records renamed to the new
    pid."""
    t = image.tree
    if t is None:
        return  # adopt() makes the table
    t["table"] = fresh_table(pid, t["table"])
    t["processes"][0]["pid"] = pid
    if t["rr_last"] == old:
        t["rr_last"] = pid
    if t["turn"] is not None and t["turn"][0] == old:
        t["turn"][0] = pid


def _stdio(image) -> list[str]:
    """fds 0-2 on new descriptions of the resumer's stdin, stdout and stderr; what each
    replaced, for the notice (nothing for a terminal descriptor that was already there)."""
    changed = []
    by_fd = {e["fd"]: e for e in image.fds}
    for fd, stream in enumerate(STDIO):
        e = by_fd.get(fd)
        before = None if e is None else image.descriptions[e["description"]]
        if before is not None and before["kind"] == "console" and before["stream"] == stream:
            continue
        console = {"kind": "console", "path": f"<{stream}>", "flags": 0 if fd == 0 else 1,
                   "offset": 0, "stream": stream}
        if e is not None and _only_here(image, e["description"]):
            # nothing else holds that file: it is not opened (nor checked) on resume at all
            image.descriptions[e["description"]] = console
            _drop_inode(image, before["inode"])
            new = {"fd": fd, "cloexec": False, "description": e["description"]}
        else:
            image.descriptions.append(console)
            new = {"fd": fd, "cloexec": False, "description": len(image.descriptions) - 1}
        if e is None:
            image.fds.append(new)
            changed.append(f"fd {fd} (closed) is the resumer's {stream}")
        else:
            e.update(new)
            changed.append(f"fd {fd} ({before['path']}) is the resumer's {stream}")
    image.fds.sort(key=lambda e: e["fd"])
    return changed


def _only_here(image, i: int) -> bool:
    """Description i is a file or directory held by one fd only: no other fd, no mapping,
    no lock names it."""
    if image.descriptions[i]["kind"] not in ("file", "dir"):
        return False
    if sum(e["description"] == i for e in image.fds) != 1:
        return False
    if any((v.get("file") or {}).get("description") == i for v in image.vmas):
        return False
    return not any(isinstance(x, dict) and x.get("description") == i
                   for group in image.locks.values() if isinstance(group, list)
                   for x in group)


def _drop_inode(image, ino: int) -> None:
    """Inode record `ino`, if no description uses it any more, out of the image."""
    if any(d.get("inode") == ino for d in image.descriptions):
        return
    del image.inodes[ino]
    for d in image.descriptions:
        if d.get("inode", -1) > ino:
            d["inode"] -= 1


def _notice(old: dict, new: dict, stdio: list[str]) -> str:
    parts = [f"new pid {new['pid']} instead of {old['pid']}",
             f"process group {new['pgid']} instead of {old['pgid']}",
             f"session {new['sid']} instead of {old['sid']}" if new["sid"] != old["sid"]
             else f"session {new['sid']} (the resuming shell's, as before)",
             f"parent {new['ppid']} (the resuming shell)"
             + ("" if new["ppid"] == old["ppid"] else f" instead of {old['ppid']}")]
    if (old["uid"], old["gid"]) == (new["uid"], new["gid"]):
        parts.append(f"uid/gid {new['uid']}/{new['gid']} are the resumer's, the same as "
                     f"saved (every vsnap guest runs as 1000/1000)")
    else:
        parts.append(f"uid/gid {new['uid']}/{new['gid']} (the resumer's) instead of "
                     f"{old['uid']}/{old['gid']}")
    parts += stdio or ["fds 0-2 are the resumer's terminal (they were already)"]
    return "vsnap: --as-dragonfly: " + "; ".join(parts)
