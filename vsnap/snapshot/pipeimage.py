"""Pipes in an image, as CRIU keeps them (its pipes-data): one record per pipe in fds.json's
"pipes" list (capacity, end counts, inode, owner, birth time and the bytes it holds, page by
page, so the next writes fit exactly as they would have), and each pipe-end description
names its pipe by index and says which end it is. A pipe exists nowhere but in vsnap, so its
bytes are saved whole.

Read back from an untrusted image, every record is checked (AnonPipe.load) and the end counts
must be what the descriptions say: a pipe with two read-end descriptions has readers == 2.
kernel.json keeps the system's next pipe inode number and a write parked on a full pipe
(what it already moved), so a resumed run goes on exactly as the uninterrupted one.
"""
from __future__ import annotations

from ..kernel.pipefile import FIRST_INO, AnonPipe, PipeEnd

ENDS = {"read": (True, False), "write": (False, True), "both": (True, True)}
MAX_PIPES = 1 << 16
ACCESS = {"read": 0, "write": 1, "both": 2}  # the O_ACCMODE each end's description has


def _end_name(ops) -> str:
    return next(n for n, e in ENDS.items() if e == (ops.reading, ops.writing))


def save_pipe(f, ctx) -> dict:
    """A pipe-end description: its pipe's index in fds.json's "pipes" and which end."""
    pipe = f.ops.pipe
    index = next((i for i, q in enumerate(ctx.pipes) if q is pipe), None)
    if index is None:
        index = len(ctx.pipes)
        ctx.pipes.append(pipe)
    return {"pipe": index, "end": _end_name(f.ops)}


def saved_pipes(ctx) -> list:
    return [pipe.saved() for pipe in ctx.pipes]


def parse_pipes(r, raw) -> list:
    """fds.json's "pipes" (absent from images made before pipes: none)."""
    out = []
    for i, rec in enumerate(r.list(raw if raw is not None else [], "pipes", MAX_PIPES)):
        try:
            AnonPipe.load(rec)
        except ValueError as e:
            r.fail(f"pipes[{i}]", str(e))
        out.append(rec)
    return out


def parse_pipe(r, raw, path, ctx) -> dict:
    i = r.int(r.key(raw, "pipe", path), path + ".pipe", 0, max(0, len(ctx.pipes) - 1))
    if not ctx.pipes:
        r.fail(path + ".pipe", "the image holds no pipe")
    end = r.choice(r.key(raw, "end", path), path + ".end", set(ENDS))
    if raw["flags"] & 3 != ACCESS[end]:
        r.fail(path + ".flags", f"the {end} end of a pipe with access mode {raw['flags'] & 3}")
    return {"pipe": i, "end": end, "pipe_record": ctx.pipes[i]}


def check_counts(r, descs: list, pipes: list) -> None:
    """Each pipe's readers and writers are its descriptions of each end, and each pipe has
    at least one."""
    for i, rec in enumerate(pipes):
        ends = [d["end"] for d in descs if d["kind"] == "pipe" and d["pipe"] == i]
        if not ends:
            r.fail(f"pipes[{i}]", "no description holds this pipe")
        readers = sum(ENDS[e][0] for e in ends)
        writers = sum(ENDS[e][1] for e in ends)
        if (rec["readers"], rec["writers"]) != (readers, writers):
            r.fail(f"pipes[{i}]", f"says {rec['readers']} readers and {rec['writers']} writers, "
                                  f"its descriptions {readers} and {writers}")


def restore_pipe(f, d, ctx) -> None:
    pipes = ctx.pipes
    if d["pipe"] not in pipes:
        pipes[d["pipe"]] = AnonPipe.load(d["pipe_record"])
    f.ops = PipeEnd(pipes[d["pipe"]], *ENDS[d["end"]])


# kernel.json ------------------------------------------------------------------------------------

def kernel_fields(p) -> dict:
    return {"next_pipe_ino": p.sys.next_pipe_ino,
            "pending_write": getattr(p, "pending_write", None)}


def parse_kernel(r, d) -> dict:
    """The two fields (defaults for images made before pipes)."""
    nxt = r.int(d.get("next_pipe_ino", FIRST_INO), "next_pipe_ino", 0, (1 << 63) - 1)
    pend = d.get("pending_write")
    if pend is not None:
        pend = r.obj(pend, "pending_write")
        if set(pend) != {"key", "done", "first"}:
            r.fail("pending_write", "expected exactly key, done, first")
        key = r.list(pend["key"], "pending_write.key", 2)
        if len(key) != 2:
            r.fail("pending_write.key", "expected [pipe inode, byte count]")
        ino = r.int(key[0], "pending_write.key[0]", 0, (1 << 63) - 1)
        count = r.int(key[1], "pending_write.key[1]", 1, 1 << 24)
        done = r.int(pend["done"], "pending_write.done", 0, count - 1)
        pend = {"key": [ino, count], "done": done,
                "first": r.bool(pend["first"], "pending_write.first")}
    return {"next_pipe_ino": nxt, "pending_write": pend}


def restore_kernel(m, k: dict) -> None:
    """The system's next pipe inode (a process's parked write: restore._process_state)."""
    m.system.next_pipe_ino = k.get("next_pipe_ino", FIRST_INO)


# vsnap inspect ----------------------------------------------------------------------------------

def buffered(rec: dict) -> int:
    """The bytes a (checked) pipe record holds."""
    import base64
    return sum(len(base64.b64decode(text)) for _, text, _ in rec["slots"])


def describe(rec: dict) -> str:
    """One line for `vsnap inspect IMG fds`."""
    size, pages = rec["size"], len(rec["slots"])
    packets = sum(1 for s in rec["slots"] if s[2])
    return (f"pipe:[{rec['ino']}]  {buffered(rec)} bytes buffered in {pages} of its "
            f"{size // 4096} pages ({size // 1024} KiB)"
            + (f", {packets} packets" if packets else "")
            + f"; {rec['readers']} read end{'s' * (rec['readers'] != 1)}, "
              f"{rec['writers']} write end{'s' * (rec['writers'] != 1)}")
