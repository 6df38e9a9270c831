"""An image's records, parsed from untrusted parts and checked field by field.

`parse` is the only way from a file's bytes to something restore uses: after it, addresses are
page-aligned and inside the guest's half of the address space, VMAs do not overlap, every page
run lies inside its VMA and its blob, every fd points at a description (checked by each kind's
own entry in descriptions.KINDS), and every register has its architectural width.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .. import signals as S
from ..abi.signals import NUMBERS as S_NAMES
from ..clock import Clock, ClockError
from ..counter import COUNTING
from ..cpu import REGISTERS
from ..fdtable import MAX_FDS
from ..memory import MAX_MAP_COUNT, PAGE, RESERVE_FACTOR, STACK_TOP
from .. import rlimits, timers
from ..signals import Action, SignalState, SigInfo
from . import descriptions, mapped, pipeimage, tree, ttyimage
from .named import parse_removed
from .codec import ImageError, load_json_part
from .fields import Reader

KINDS = {"text", "text*", "data", "bss", "heap", "stack", "mmap"}
_EXEC_INTS = ("arg_start", "arg_end", "env_start", "env_end", "start_stack", "start_code",
              "end_code", "start_data", "end_data")
PERMS = re.compile(r"[r-][w-][x-][ps]\Z")
MAX_MEMORY = 64 << 30
_SHA = re.compile(r"[0-9a-f]{64}\Z")
_PROCESS_INTS = ("pid", "ppid", "pgid", "sid", "uid", "gid", "umask", "tid_address",
                 "robust_list")
# prctl and membarrier state (kernel/prctl.py): name -> (default for older images, largest)
_PROCESS_SWITCHES = {"dumpable": (1, 1), "child_subreaper": (0, 1), "pdeathsig": (0, 64),
                     "no_new_privs": (0, 1), "membarrier": (0, 0x1FF), "keepcaps": (0, 1),
                     "timerslack_ns": (50_000, (1 << 64) - 1), "thp_disable": (0, 1)}


def _width(name: str) -> int:
    return 128 if name.startswith("xmm") else 80 if name[:2] == "fp" and name[2:].isdigit() else 64


@dataclass
class Image:
    where: str
    program: dict
    registers: dict
    vmas: list
    brk_start: int
    brk: int
    descriptions: list
    fds: list
    kernel: dict
    blobs: dict
    inodes: list       # the files and directories open, one per inode (snapshot/inodes.py)
    locks: dict        # fds.json's file locks and highest fd (see _locks)
    written_by: str | None = None   # the vsnap version in the manifest (None: an older image)
    tree: dict | None = None   # the other processes, the table (snapshot/tree.py); None: older
    sockets: list | None = None   # fds.json's socket records (snapshot/sockimage.py)

    def saved_bytes(self, v: dict, start: int, end: int) -> bytes:
        """Bytes [start, end) of the saved region `v` (one whose source is the image) as the
        guest saw them: from its page runs, zeros for the pages the image left out."""
        out = bytearray(end - start)
        blob = self.blobs[v["part"]]
        for first, count, offset in v["pages"]:
            run = v["start"] + first * PAGE
            lo, hi = max(start, run), min(end, run + count * PAGE)
            if lo < hi:
                out[lo - start:hi - start] = blob[offset + lo - run:offset + hi - run]
        return bytes(out)


def parse(manifest: dict, parts: dict[str, bytes], where: str) -> Image:
    prog = _program(Reader(where, "manifest.json"), manifest.get("program"))
    regs, kernel, vmas, brk_start, brk = _process(parts, where)
    fds_part = load_json_part(parts, "fds.json", where)
    inodes, descs, fds, sockets = descriptions.parse(Reader(where, "fds.json"), fds_part, parts)
    locks = _locks(Reader(where, "fds.json"), fds_part, descs)
    mapped.check_descriptions(Reader(where, "memory.json"), vmas, descs)
    blobs = {n: b for n, b in parts.items() if n.startswith(("memory/", "files/"))}
    written_by = manifest.get("vsnap")
    if written_by is not None:
        written_by = Reader(where, "manifest.json").str(written_by, "vsnap", 100)
    procs = tree.parse(parts, where, len(descs), kernel["process"]["pid"], parse_process)
    return Image(where, prog, regs, vmas, brk_start, brk, descs, fds, kernel, blobs, inodes,
                 locks, written_by, procs, sockets)


def parse_process(parts: dict[str, bytes], where: str) -> dict:
    """Another process of a tree: its program, registers, kernel state and memory (its
    fds are tree.json's, on the tree's descriptions)."""
    prog = _program(Reader(where, "program.json"),
                    load_json_part(parts, "program.json", where))
    regs, kernel, vmas, brk_start, brk = _process(parts, where)
    for v in vmas:
        if "file" in v and ("description" in v["file"] or "ghost" in v["file"]):
            Reader(where, "memory.json").fail("vmas", "a deleted file's mapping")
    blobs = {n: b for n, b in parts.items() if n.startswith("memory/")}
    return {"program": prog, "registers": regs, "kernel": kernel, "vmas": vmas,
            "brk_start": brk_start, "brk": brk, "blobs": blobs}


def _process(parts: dict[str, bytes], where: str) -> tuple:
    """(registers, kernel state, vmas, brk_start, brk) of one process's parts."""
    regs = _registers(Reader(where, "registers.json"),
                      load_json_part(parts, "registers.json", where))
    kernel = _kernel(Reader(where, "kernel.json"), load_json_part(parts, "kernel.json", where))
    mem = load_json_part(parts, "memory.json", where)
    vmas, brk_start, brk = _memory(Reader(where, "memory.json"), mem, parts,
                                   kernel["memory_limit"])
    return regs, kernel, vmas, brk_start, brk


def _program(r: Reader, p) -> dict:
    p = r.obj(p, "program")
    sha = r.str(r.key(p, "sha256", "program"), "program.sha256")
    if not _SHA.match(sha):
        r.fail("program.sha256", "not a SHA-256")
    return {"path": r.str(r.key(p, "path", "program"), "program.path"), "sha256": sha,
            "guest_path": r.opt_str(p.get("guest_path"), "program.guest_path")}


def _registers(r: Reader, d) -> dict:
    regs = r.obj(r.key(r.obj(d, "."), "registers", ""), "registers")
    if set(regs) != set(REGISTERS):
        missing = sorted(set(REGISTERS) - set(regs)) or sorted(set(regs) - set(REGISTERS))
        r.fail("registers", f"wrong register set ({', '.join(missing[:3])})")
    return {n: r.hex(regs[n], f"registers.{n}", _width(n)) for n in REGISTERS}


def _memory(r: Reader, d, parts, limit: int):
    d = r.obj(d, ".")
    vmas, last_end, total = [], PAGE, 0
    for i, v in enumerate(r.list(r.key(d, "vmas", ""), "vmas", MAX_MAP_COUNT)):
        path = f"vmas[{i}]"
        v = r.obj(v, path)
        start = r.hex(r.key(v, "start", path), path + ".start")
        end = r.hex(r.key(v, "end", path), path + ".end")
        if start % PAGE or end % PAGE or not last_end <= start < end <= STACK_TOP + PAGE:
            r.fail(path, f"bad range {start:#x}-{end:#x} (unaligned, overlapping or outside "
                         f"the guest's address space)")
        last_end = end
        total += end - start
        perms = r.str(r.key(v, "perms", path), path + ".perms")
        if not PERMS.match(perms):
            r.fail(path + ".perms", "expected like rw-p")
        prot = (1 if perms[0] == "r" else 0) | (2 if perms[1] == "w" else 0) | \
               (4 if perms[2] == "x" else 0)
        rec = {"start": start, "end": end, "prot": prot, "shared": perms[3] == "s",
               "kind": r.choice(r.key(v, "kind", path), path + ".kind", KINDS),
               "name": r.str(v.get("name", ""), path + ".name"),
               "source": r.choice(r.key(v, "source", path), path + ".source",
                                  {"program", "image"})}
        if rec["source"] == "image":
            part = r.str(r.key(v, "part", path), path + ".part")
            if not part.startswith("memory/") or part not in parts:
                r.fail(path + ".part", f"no such part {part!r}")
            rec["part"] = part
            rec["pages"] = _runs(r, v, path, (end - start) // PAGE, len(parts[part]))
        if "file" in v:  # a file mapping: which pages still follow the file
            rec["file"] = mapped.parse(r, v["file"], path + ".file", (end - start) // PAGE,
                                       parts)
        rec["growsdown"] = r.bool(v.get("growsdown", False), path + ".growsdown")
        vmas.append(rec)
    if total > min(RESERVE_FACTOR * limit, MAX_MEMORY):
        r.fail("vmas", "more memory than the image's own budget")
    brk_start = r.hex(r.key(d, "brk_start", ""), "brk_start")
    brk = r.hex(r.key(d, "brk", ""), "brk")
    if brk < brk_start:
        r.fail("brk", "below brk_start")
    return vmas, brk_start, brk


def _runs(r: Reader, v: dict, path: str, npages: int, blob_size: int) -> list:
    runs = []
    for j, run in enumerate(r.list(r.key(v, "pages", path), path + ".pages", 1 << 22)):
        p = f"{path}.pages[{j}]"
        if not isinstance(run, list) or len(run) != 3:
            r.fail(p, "expected [first page, count, offset]")
        first = r.int(run[0], p, 0, npages - 1)
        count = r.int(run[1], p, 1, npages - first)
        offset = r.int(run[2], p, 0, blob_size - count * PAGE)
        runs.append((first, count, offset))
    return runs


def _locks(r: Reader, d: dict, descs: list) -> dict:
    """File locks (kernel/filelocks.py locks_record); absent in images from before them."""
    from ..locks import OFFSET_MAX
    rec = r.obj(d.get("locks", {}), "locks")
    last = len(descs) - 1
    out = {"highest_fd": r.int(d.get("highest_fd", 0), "highest_fd", 0, MAX_FDS - 1),
           "flock": [], "records": [], "leases": []}
    seen = set()
    for i, e in enumerate(r.list(rec.get("flock", []), "locks.flock", MAX_FDS)):
        p = f"locks.flock[{i}]"
        e = r.obj(e, p)
        desc = r.int(r.key(e, "description", p), p + ".description", 0, last)
        if desc in seen:
            r.fail(p, f"description {desc} holds two flock locks")
        seen.add(desc)
        out["flock"].append({"description": desc,
                             "type": r.int(r.key(e, "type", p), p + ".type", 0, 1)})
    for i, e in enumerate(r.list(rec.get("records", []), "locks.records")):
        p = f"locks.records[{i}]"
        e = r.obj(e, p)
        start = r.hex(r.key(e, "start", p), p + ".start", 63)
        end = r.hex(r.key(e, "end", p), p + ".end", 63)
        if not start <= end <= OFFSET_MAX:
            r.fail(p, "end before start")
        out["records"].append({
            "owner": r.choice(r.key(e, "owner", p), p + ".owner", {"process", "description"}),
            **({"pid": r.int(e["pid"], p + ".pid", 1, 1 << 22)} if "pid" in e else {}),
            "description": r.int(r.key(e, "description", p), p + ".description", 0, last),
            "type": r.int(r.key(e, "type", p), p + ".type", 0, 1), "start": start, "end": end})
    seen = set()
    for i, e in enumerate(r.list(rec.get("leases", []), "locks.leases", MAX_FDS)):
        p = f"locks.leases[{i}]"
        e = r.obj(e, p)
        desc = r.int(r.key(e, "description", p), p + ".description", 0, last)
        if desc in seen or descs[desc]["kind"] != "file":
            r.fail(p, f"description {desc} cannot hold this lease")
        seen.add(desc)
        deadline = e.get("deadline_ns")
        out["leases"].append({
            "description": desc, "type": r.int(r.key(e, "type", p), p + ".type", 0, 1),
            "breaking": r.choice(e.get("breaking"), p + ".breaking", {None, 0, 2}),
            "deadline_ns": None if deadline is None else r.int(deadline, p + ".deadline_ns")})
    return out


def _kernel(r: Reader, d) -> dict:
    d = r.obj(d, ".")
    p = r.obj(r.key(d, "process", ""), "process")
    proc = {n: r.int(r.key(p, n, "process"), f"process.{n}", 0, (1 << 64) - 1)
            for n in _PROCESS_INTS}
    cwd = r.str(r.key(p, "cwd", "process"), "process.cwd")
    if not cwd.startswith("/"):
        r.fail("process.cwd", "not an absolute guest path")
    proc.update(cwd=cwd, exe=r.str(r.key(p, "exe", "process"), "process.exe"),
                exit_status=None, exit_signal=None)
    # a removed cwd stays removed (kernel/dirref.py): null, or its mode and mtime
    gone = r.key(p, "cwd_removed", "process")
    proc["cwd_removed"] = None if gone is None else parse_removed(r, gone, "process.cwd_removed")
    for n, (default, top) in _PROCESS_SWITCHES.items():
        proc[n] = r.int(p.get(n, default), f"process.{n}", 0, top)
    refused = r.obj(d.get("refused", {}), "refused")
    clock = r.obj(r.key(d, "clock", ""), "clock")
    rnd = r.obj(r.key(d, "random", ""), "random")
    signals = _signals(r, r.obj(r.key(d, "signals", ""), "signals"))
    inodes = []
    for i, t in enumerate(r.list(r.key(d, "inodes", ""), "inodes")):
        if not isinstance(t, list) or len(t) != 3:
            r.fail(f"inodes[{i}]", "expected [dev, ino, guest ino]")
        inodes.append(tuple(r.int(x, f"inodes[{i}]") for x in t))
    ctimes = []  # absent from images made before vsnap kept ctimes
    for i, t in enumerate(r.list(d.get("ctimes", []), "ctimes")):
        if not isinstance(t, list) or len(t) != 2:
            r.fail(f"ctimes[{i}]", "expected [guest ino, ns]")
        ctimes.append(tuple(r.int(x, f"ctimes[{i}]") for x in t))
    instructions = r.int(r.key(d, "instructions", ""), "instructions")
    counting = r.str(r.key(d, "counting", ""), "counting", 100)
    if counting != COUNTING:
        raise ImageError(f"{r.where}: its position (instruction {instructions}) was counted "
                         f"as {counting!r} and this vsnap counts as {COUNTING!r}, so it would "
                         f"resume at another point; resume it with the vsnap that made it")
    # images from before limits, timers and the CPU clock: the defaults, CPU time = uptime
    limits = rlimits.from_json(d["limits"], r.fail) if "limits" in d else rlimits.Limits()
    tmrs = timers.from_json(d["timers"], r) if "timers" in d else timers.Timers()
    saved_clock = {n: r.int(r.key(clock, n, "clock"), f"clock.{n}") for n in
                   ("boot_realtime_ns", "monotonic_ns", "cpu_ns", "system_ns", "slept_ns")}
    saved_clock["model"] = r.str(r.key(clock, "model", "clock"), "clock.model", 100)
    try:  # the parts must add up with the instruction count
        Clock().load(saved_clock, instructions)
    except ClockError as e:
        r.fail("clock", str(e))
    return {
        "process": proc,
        "clock": saved_clock,
        "limits": limits,
        "timers": tmrs,
        "random": {"seed": r.hex(r.key(rnd, "seed", "random"), "random.seed"),
                   "counter": r.int(r.key(rnd, "counter", "random"), "random.counter")},
        "signals": signals,
        "inodes": inodes,
        "ctimes": ctimes,
        "unknown_syscalls_reported": [r.int(x, "unknown_syscalls_reported", 0, 1 << 20) for x in
                                      r.list(r.key(d, "unknown_syscalls_reported", ""), "u")],
        "syscall_count": r.int(r.key(d, "syscall_count", ""), "syscall_count"),
        "ckpt_return": r.bool(d.get("ckpt_return", False), "ckpt_return"),
        "accounts": _accounts(r, d, instructions),
        **pipeimage.parse_kernel(r, d),
        **ttyimage.parse_kernel(r, d),
        "refused": {r.str(what, "refused", 100): r.int(n, f"refused.{what}")
                    for what, n in list(refused.items())[:4096]},
        "instructions": instructions,
        "memory_limit": r.int(r.key(d, "memory_limit", ""), "memory_limit", PAGE, MAX_MEMORY),
        "root": r.str(r.key(d, "root", ""), "root"),
        "crash": _crash(r, d.get("crash")),
        "exec": _exec(r, d.get("exec")),
        "not_preserved": [r.str(x, "not_preserved") for x in
                          r.list(d.get("not_preserved", []), "not_preserved", 100)],
    }


def _accounts(r: Reader, d: dict, instructions: int) -> dict:
    """Whose the counts are: instructions of processes that ended before the save
    (retired), the process's own system calls, its waited children's CPU time. Images from
    before processes: all the process's own."""
    calls = r.int(r.key(d, "syscall_count", ""), "syscall_count")
    a = r.obj(d.get("accounts", {"retired": 0, "own_syscalls": calls,
                                  "children_ns": [0, 0]}), "accounts")
    ns = r.list(r.key(a, "children_ns", "accounts"), "accounts.children_ns", 2)
    if len(ns) != 2:
        r.fail("accounts.children_ns", "expected [user ns, system ns]")
    retired = r.int(r.key(a, "retired", "accounts"), "accounts.retired", 0, instructions)
    return {"retired": retired,
            "own_instructions": r.int(a.get("own_instructions", instructions - retired),
                                      "accounts.own_instructions", 0, instructions - retired),
            "own_syscalls": r.int(r.key(a, "own_syscalls", "accounts"),
                                  "accounts.own_syscalls", 0, calls),
            "children_ns": [r.int(x, "accounts.children_ns", 0) for x in ns]}


def _exec(r: Reader, e) -> dict | None:
    """What exec left for /proc/self (process.ExecLayout); None in older images."""
    if e is None:
        return None
    e = r.obj(e, "exec")
    out = {n: r.int(r.key(e, n, "exec"), f"exec.{n}") for n in _EXEC_INTS}
    auxv = []
    for i, pair in enumerate(r.list(r.key(e, "auxv", "exec"), "exec.auxv", 64)):
        if not isinstance(pair, list) or len(pair) != 2:
            r.fail(f"exec.auxv[{i}]", "expected [key, value]")
        auxv.append([r.int(x, f"exec.auxv[{i}]") for x in pair])
    out["auxv"] = auxv
    out["comm"] = r.str(r.key(e, "comm", "exec"), "exec.comm", 64)
    return out


def _crash(r: Reader, c) -> dict | None:
    if c is None:
        return None
    c = r.obj(c, "crash")
    addr = c.get("address")
    return {"signal": r.choice(r.key(c, "signal", "crash"), "crash.signal", set(S_NAMES)),
            "code": r.int(r.key(c, "code", "crash"), "crash.code", -(1 << 31), (1 << 31) - 1),
            "rip": r.hex(r.key(c, "rip", "crash"), "crash.rip"),
            "address": None if addr is None else r.hex(addr, "crash.address")}


def _signals(r: Reader, d: dict) -> SignalState:
    s = SignalState()
    for key, a in r.obj(r.key(d, "actions", "signals"), "signals.actions").items():
        if not key.isdigit() or not 1 <= int(key) <= S.NSIG:
            r.fail("signals.actions", f"no signal {key!r}")
        p = f"signals.actions.{key}"
        a = r.obj(a, p)
        s.actions[int(key)] = Action(r.hex(r.key(a, "handler", p), p + ".handler"),
                                     r.hex(r.key(a, "flags", p), p + ".flags", 32),
                                     r.hex(r.key(a, "restorer", p), p + ".restorer"),
                                     r.hex(r.key(a, "mask", p), p + ".mask"))
    s.set_blocked(r.hex(r.key(d, "blocked", "signals"), "signals.blocked"))
    for i, p in enumerate(r.list(r.key(d, "pending", "signals"), "signals.pending", 4096)):
        path = f"signals.pending[{i}]"
        p = r.obj(p, path)
        s.pending.append(SigInfo(r.int(r.key(p, "signo", path), path, 1, S.NSIG),
                                 r.int(r.key(p, "code", path), path, -(1 << 31), (1 << 31) - 1),
                                 r.int(r.key(p, "pid", path), path, 0, (1 << 31) - 1),
                                 r.int(r.key(p, "uid", path), path, 0, (1 << 32) - 1),
                                 r.hex(r.key(p, "addr", path), path),
                                 r.int(r.key(p, "errno", path), path, 0, 4095),
                                 r.int(p.get("timerid", 0), path, 0, (1 << 31) - 1),
                                 r.int(p.get("overrun", 0), path, 0, (1 << 31) - 1),
                                 r.hex(p.get("value", "0x0"), path)))
    alt = r.obj(r.key(d, "altstack", "signals"), "signals.altstack")
    s.altstack_sp = r.hex(r.key(alt, "sp", "altstack"), "signals.altstack.sp")
    s.altstack_size = r.int(r.key(alt, "size", "altstack"), "signals.altstack.size", 0, 1 << 40)
    s.altstack_flags = r.int(r.key(alt, "flags", "altstack"), "signals.altstack.flags", 0, 7)
    alarm = r.obj(r.key(d, "alarm", "signals"), "signals.alarm")
    deadline = alarm.get("deadline_ns")
    s.alarm_deadline = None if deadline is None else r.int(deadline, "signals.alarm")
    s.alarm_interval = r.int(r.key(alarm, "interval_ns", "alarm"), "signals.alarm")
    saved = d.get("saved_blocked")
    s.saved_blocked = None if saved is None else r.hex(saved, "signals.saved_blocked")
    return s


__all__ = ["Image", "ImageError", "parse"]
