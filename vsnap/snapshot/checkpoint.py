"""Checkpoint (dump): Antonov's save file, taken from a stopped Machine.

His list, in his order: the open files (names, types, offsets), the stack, the data segment,
and the jmp_buf. Here the jmp_buf holds every register (a guest stopped at an arbitrary
instruction has live values in all of them), and beside his parts sit the kernel state a guest
can observe. Text is not copied: restore re-reads it from the program, whose hash is recorded.
"""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import fields

from ..counter import COUNTING
from ..guestram import touched_pages
from ..kernel.dirref import removed_cwd
from ..memory import PAGE, PROT_WRITE
from .atomic import write_atomically
from . import descriptions, pipeimage, tree, ttyimage
from ..kernel import mapmtime
from . import mapped
from .codec import dumps, encode
from .inodes import CannotSave
from .fields import hexs

ZERO_PAGE = bytes(PAGE)

# A test-only switch (vsnap check's own tests and notebook 05): plant one deliberate bug in
# every image, to show that checking finds it. Never set in normal use.
PLANTED_BUGS = ("offset", "register", "brk", "sigmask", "page")
PLANTED_BUG = os.environ.get("VSNAP_PLANT_BUG") or None

# which part of the image each kind of VMA goes to; text comes back from the program file
PART_OF_KIND = {"stack": "memory/stack.bin", "data": "memory/data.bin",
                "bss": "memory/data.bin", "heap": "memory/data.bin",
                "mmap": "memory/mappings.bin", "text*": "memory/mappings.bin"}

NOT_PRESERVED = [
    "Text pages are not in the image: they are re-read from the program file, which must "
    "have the recorded SHA-256.",
    "File mappings keep only what is not the file's: a private mapping's pages the process "
    "wrote; the rest, and every page of a MAP_SHARED mapping, is the file's and comes back "
    "from it (by path, offset and the file's identity), so it must be unchanged.",
    "Descriptors on the terminal (stdin, stdout, stderr, /dev/tty) are reattached to the "
    "terminal of whoever resumes, as DragonFly BSD's checkpoints do; what was typed or "
    "printed is not replayed. The settings and window size the guest gave its terminal are "
    "kept and applied to that terminal.",
    "Files and directories are saved once per inode, however many descriptors lead to it. "
    "One with a name in the root is reopened by that name (another hard link, if the one "
    "it was opened by is gone) and must be unchanged: size, modification time, a digest of "
    "its content; a directory, the same entries.",
    "A file deleted while open (a ghost) travels in the image as its data extents "
    "(files/ghost-N.bin, holes left out) and comes back as one nameless file, as sparse as "
    "it was (blocks fallocate reserved are reserved again), with its mode and time; every "
    "descriptor on it shares it again. A directory "
    "removed while open comes back removed (empty, st_nlink 0). Not kept: holes on a "
    "host file system that cannot report them (no SEEK_DATA: the file is saved whole), "
    "and hard links outside the root (a file whose only names are there is a ghost).",
    "The pid, process group and session are kept (DragonFly cannot keep them; vsnap's "
    "pids are virtual). Inode numbers are kept for the files seen before the save and for "
    "every open file, ghosts included.",
    "Saved pages are copied into the resumed guest's memory, and checked, before it runs; "
    "DragonFly BSD maps them from the checkpoint file instead, which ties the running "
    "process to that file (on Linux, truncating it would kill the process).",
    "Several processes are one image (tree.json, procs/PID/): every live process, the "
    "process table with its zombies, and each open file description once, shared again by "
    "every process that held it. Not kept: MAP_SHARED anonymous memory shared between "
    "processes and a vfork child running in its parent's memory (both refused).",
    "Pipes live in vsnap, never on the host: each is saved once, with the bytes it holds "
    "page by page, and its ends come back shared by the same descriptors.",
    "Sockets between guest processes (AF_UNIX, loopback TCP and UDP) live in vsnap too: each "
    "is saved once with its peer, name, options and receive queue (bytes, credentials, "
    "descriptors in flight), as CRIU's sk-unix images. A connection to the host cannot "
    "follow an image: it is recorded, and a resumed guest finds it reset by the peer. "
    "Bytes from the host network (--listen, --connect) are the one input vsnap cannot "
    "reproduce: the image keeps what had arrived, and a run from it never sees more.",
    "Unicorn's translation cache and host resources (host descriptors, the host pid) are "
    "not part of a process and are made anew.",
]


def program_record(m) -> dict:
    return {"path": m.program_path, "guest_path": m.exe, "size": len(m.program.data),
            "sha256": m.program.sha256, "pie": m.program.pie}


def _memory(m) -> tuple[dict, dict[str, list]]:
    """The VMA table, and for each memory part the list of its non-zero page runs (views
    into one bulk read per VMA: nothing is joined or copied again before it is written)."""
    chunks: dict[str, list] = {}
    sizes: dict[str, int] = {}
    vmas = []
    seen: dict = {}
    for v in m.mem.vmas:
        rec = {"start": hexs(v.start), "end": hexs(v.end), "perms": v.perms(),
               "kind": v.kind, "name": v.name}
        if v.file is not None:  # the pages it still shares with the file, and which file
            rec["file"] = mapped.record(m, v, seen, chunks)
        if v.growsdown:
            rec["growsdown"] = True
        part = None if v.kind == "text" and not v.prot & PROT_WRITE else PART_OF_KIND.get(
            v.kind, "memory/mappings.bin")
        if part is None:
            rec["source"] = "program"
        else:
            rec["source"] = "image"
            rec["part"] = part
            if v.file is not None:  # only the pages that are no longer the file's
                runs, data = _own_runs(m, v), None
            else:
                data = memoryview(m.mem.read_bulk(v.start, v.size))
                runs = _nonzero_runs(data)
            out = chunks.setdefault(part, [])
            for run in runs:
                first, count = run
                run.append(sizes.get(part, 0))
                sizes[part] = run[2] + count * PAGE
                out.append(data[first * PAGE:(first + count) * PAGE] if data is not None
                           else memoryview(m.mem.read_bulk(v.start + first * PAGE,
                                                           count * PAGE)))
            rec["pages"] = runs
        vmas.append(rec)
    record = {"vmas": vmas, "brk_start": hexs(m.mem.brk_start), "brk": hexs(m.mem.brk)}
    return record, chunks


def _own_runs(m, v) -> list[list[int]]:
    """[[first page, count]] of file VMA `v`'s own pages (a private mapping's written
    pages): the rest is the file's, and comes back from it on resume (mapped.py)."""
    runs: list[list[int]] = []
    for page in m.mem.own_pages(v):
        i = (page - v.start) // PAGE
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1][1] += 1
        else:
            runs.append([i, 1])
    return runs


def _nonzero_runs(data: memoryview) -> list[list[int]]:
    """[[first page, count]] of the pages of `data` that are not all zero."""
    obj = data.obj
    npages = len(data) // PAGE
    if hasattr(obj, "madvise"):  # a view into guest RAM (an mmap): find() is C speed
        base = _view_offset(data)
        touched = touched_pages(data) or b"\x01" * npages

        def zero(i):
            return obj.find(ZERO_PAGE, base + i * PAGE, base + (i + 1) * PAGE) == base + i * PAGE
    else:
        raw = obj if isinstance(obj, (bytes, bytearray)) and len(obj) == len(data) \
            else bytes(data)
        touched = b"\x01" * npages

        def zero(i):
            return raw.startswith(ZERO_PAGE, i * PAGE)  # C speed, no slice made
    runs: list[list[int]] = []
    for span in _TOUCHED_RUN.finditer(touched):  # pages never touched are zero: not read
        for i in range(span.start(), span.end()):
            if zero(i):
                continue
            if runs and runs[-1][0] + runs[-1][1] == i:
                runs[-1][1] += 1
            else:
                runs.append([i, 1])
    return runs


_TOUCHED_RUN = re.compile(b"\x01+")


def _view_offset(view: memoryview) -> int:
    """Where a memoryview starts inside the mmap it was cut from."""
    import ctypes
    whole = (ctypes.c_char * 1).from_buffer(view.obj)
    part = (ctypes.c_char * 1).from_buffer(view)
    return ctypes.addressof(part) - ctypes.addressof(whole)


def _signals(p) -> dict:
    p.take_host_signals()  # a Ctrl-C that arrived just before the save is part of the state
    s = p.signals
    return {
        "actions": {str(n): {"handler": hexs(a.handler), "flags": hexs(a.flags),
                             "restorer": hexs(a.restorer), "mask": hexs(a.mask)}
                    for n, a in sorted(s.actions.items())},
        "blocked": hexs(s.blocked),
        "pending": [{"signo": info.signo, "code": info.code, "pid": info.pid, "uid": info.uid,
                     "addr": hexs(info.addr), "errno": info.errno, "timerid": info.timerid,
                     "overrun": info.overrun, "value": hexs(info.value)} for info in s.pending],
        "altstack": {"sp": hexs(s.altstack_sp), "size": s.altstack_size,
                     "flags": s.altstack_flags},
        "alarm": {"deadline_ns": s.alarm_deadline, "interval_ns": s.alarm_interval},
        "saved_blocked": None if s.saved_blocked is None else hexs(s.saved_blocked),
    }


def _fields(obj) -> dict:
    """A dataclass of plain values as a dict for JSON (asdict's deep copy costs more than the
    rest of kernel.json, and the dict is serialised at once)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _kernel(m) -> dict:
    p = m.process
    return {
        "process": {**_fields(p.task), "cwd_removed": removed_cwd(p)},
        "exec": _fields(p.exec),
        "clock": p.sys.clock.saved(),  # its parts; monotonic and CPU time for the reader
        "random": {"seed": hexs(p.sys.random.seed), "counter": p.sys.random.counter},
        "signals": _signals(p),
        "limits": p.limits.to_json(),
        "timers": p.timers.to_json(),
        "inodes": [[dev, ino, guest] for (dev, ino), guest in sorted(p.sys.inodes.items())],
        "ctimes": [[ino, ns] for ino, ns in sorted(p.sys.ctimes.items())],
        "unknown_syscalls_reported": sorted(p.sys.unknown_reported),
        "refused": dict(sorted(p.sys.refused.items())),
        "syscall_count": p.sys.syscall_count,
        # made by the process's own sys_checkpoint: a resume makes that call return retval
        "ckpt_return": p.ckpt_return,
        # the process's own share of the counts (its CPU clocks), and its waited children's
        "accounts": {"retired": p.sys.retired, "own_instructions": p.instructions,
                     "own_syscalls": p.syscalls,
                     "children_ns": list(p.children_ns)},
        **pipeimage.kernel_fields(p),  # the next pipe's inode, a write parked on a full pipe
        **ttyimage.kernel_fields(p),  # the terminal's termios, size, foreground group
        "instructions": m.instructions,
        "counting": COUNTING,  # what "instruction" means in that count (counter.py)
        "memory_limit": m.mem.limit,
        "crash": None if p.crash is None else {
            "signal": p.crash["signal"], "code": p.crash["code"], "rip": hexs(p.crash["rip"]),
            "address": None if p.crash["address"] is None else hexs(p.crash["address"])},
        "root": m.vfs.root,
        "not_preserved": NOT_PRESERVED,
    }


def _registers(m) -> dict:
    return {"registers": {name: hexs(v) for name, v in m.cpu.snapshot_registers().items()}}


@contextlib.contextmanager
def _parts(m):
    """The image's parts; a ghost file's part reads the file as it is written, so the parts
    are only good inside this block."""
    procs = tree.processes(m)  # the first process, then the others (tree.py)
    mapmtime.pin(m.system)  # files mapped shared for writing: the mtime the guest sees
    current = m.system.current
    m._switch(procs[0])
    try:
        memory, chunks = _memory(m)
        fds, opened = descriptions.save(m, chunks, procs)
    except OSError as e:
        m._switch(current)
        raise CannotSave(f"vsnap: cannot save this guest: reading its open files failed "
                         f"({e.strerror or e})") from None
    except BaseException:
        m._switch(current)
        raise
    try:
        regs, kernel = _registers(m), _kernel(m)
        others: dict = {}
        tree.save_others(m, procs, others, _memory, _registers, _kernel, program_record)
        chunks.update(others)
        chunks[tree.TREE] = dumps(tree.record(m, procs, fds))
        fds.pop("tables", None)
        if PLANTED_BUG:
            _plant(PLANTED_BUG, m, regs, fds, kernel, memory, chunks)
        yield {"registers.json": dumps(regs), "fds.json": dumps(fds),
               "kernel.json": dumps(kernel), "memory.json": dumps(memory), **chunks}
    finally:
        m._switch(current)
        for part in opened:
            part.close()


def _plant(bug, m, regs, fds, kernel, memory, chunks) -> None:
    """The deliberate bugs behind PLANTED_BUG (see there)."""
    if bug == "offset":        # a forgotten file offset
        for d in fds["descriptions"]:
            d["offset"] = 0
    elif bug == "register":    # a lost register
        regs["registers"]["rbx"] = hexs(0)
    elif bug == "brk":         # a lost program break
        memory["brk"] = memory["brk_start"]
    elif bug == "sigmask":     # a stale signal mask
        kernel["signals"]["blocked"] = hexs(0)
    elif bug == "page":        # the page under the stack pointer left out
        rsp = m.cpu.read("rsp")
        for v in memory["vmas"]:
            start = int(v["start"], 16)
            if v.get("kind") == "stack" and start <= rsp < int(v["end"], 16):
                page = (rsp - start) // PAGE
                v["pages"] = [r for r in v["pages"] if not r[0] <= page < r[0] + r[1]]
    else:
        raise ValueError(f"no planted bug {bug!r}; one of {', '.join(PLANTED_BUGS)}")


def image_bytes(m) -> bytes:
    """The whole image of a stopped machine, as the bytes of one file."""
    with _parts(m) as parts:
        return encode(parts, program_record(m))


def checkpoint(m, path: str) -> None:
    """Save machine `m` (stopped between two instructions) to `path`, atomically."""
    if not m.running:
        raise ValueError("the guest has already ended; there is nothing to save")
    with _parts(m) as parts:
        try:
            write_atomically(path, parts, program_record(m))
        except OSError as e:
            raise CannotSave(f"vsnap: cannot save to {path}: {e.strerror or e}") from None
