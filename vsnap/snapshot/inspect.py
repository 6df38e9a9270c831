"""Reading an image the way CRIU's crit does: a summary, the fd table, the memory map, the
registers (rip disassembled), the kernel state, and what the image could not preserve, in words.
Also `diff`: what changed between two images."""
from __future__ import annotations

import json

from ..abi.signals import NAMES as SIGNAMES
from ..clock import NS_PER_INSTRUCTION
from ..cpu import GPRS
from ..memory import PAGE
from ..trace import disassemble
from .image import Image

VIEWS = ("summary", "fds", "mems", "regs", "kernel", "tree")

DIFFERS_FROM_LINUX = [
    "The saved state is vsnap's emulated process, not a Linux kernel's: there is no kernel "
    "stack, no page cache and no scheduler state to save, because vsnap has none.",
    "Memory is saved page by page, all-zero pages left out; Linux's own checkpointers (CRIU) "
    "also track dirty pages between dumps, vsnap saves everything each time.",
    "A save always lands between two instructions; a system call is never half done.",
    "The clock in the image is vsnap's virtual clock: 1 ns per instruction, 1 us per system "
    "call, plus the time slept, so a pending timer fires at the same instruction after a "
    "resume (Linux's clock is the host's, and a timer's signal lands wherever it lands).",
    "The scheduler's state is vsnap's and is saved: every guest process runs in turn inside "
    "one host process (round robin, 1,000,000 instructions a turn), so the image holds where "
    "the turn was and who waited in a call; Linux's scheduler state is not part of a "
    "checkpoint, and its interleaving differs from run to run.",
    "Pids are virtual (1000, 1001, ...; vsnap is 999, the guest's init 1) and kept by a "
    "resume; CRIU needs the same pids free on the host, DragonFly gives new ones.",
]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _rip_text(img: Image, code_at) -> str:
    rip = img.registers["rip"]
    code = code_at(rip, 16)
    if code is None:
        return f"{rip:#x}: <not in the image or the program>"
    lines = disassemble(code, rip, 1)
    return f"{rip:#x}: {lines[0][2]}" if lines else f"{rip:#x}: (bad)"


def code_reader(img: Image):
    """A function (addr, n) -> bytes or None, reading the image's pages or the program."""
    program = None
    try:
        from ..loader import read_program
        program = read_program(img.program["path"])
    except Exception:  # the program may be gone; registers are still worth showing
        program = None

    def read(addr: int, n: int):
        """Bytes [addr, addr+n) as the guest saw them, cut at the end of addr's region."""
        for v in img.vmas:
            if v["start"] <= addr < v["end"]:
                end = min(addr + n, v["end"])
                if v["source"] == "program":
                    return program.image_bytes(addr, end) if program else None
                return img.saved_bytes(v, addr, end)
        return None

    return read


def saved_bytes(v: dict) -> int:
    return sum(count for _, count, _ in v.get("pages", ())) * PAGE


def render(img: Image, view: str) -> str:
    if view == "summary":
        return _summary(img)
    if view == "fds":
        return _fds(img)
    if view == "mems":
        return _mems(img)
    if view == "regs":
        return _regs(img)
    if view == "tree":
        from .treeview import render as tree
        return tree(img)
    return _kernel(img)


def _summary(img: Image) -> str:
    from . import ttyimage
    k = img.kernel
    p = k["process"]
    total = sum(v["end"] - v["start"] for v in img.vmas)
    saved = sum(saved_bytes(v) for v in img.vmas)
    n = k["instructions"]
    lines = [
        f"image        {img.where}  (written by vsnap {img.written_by or '(version not recorded)'})",
        f"program      {img.program['path']}  (sha256 {img.program['sha256'][:16]}...)",
        f"stopped at   {_rip_text(img, code_reader(img))}",
        *([f"crashed      {k['crash']['signal']}"
           + (f" at {k['crash']['address']:#x}" if k["crash"]["address"] is not None else "")
           + f" (si_code {k['crash']['code']}); saved before the signal was delivered"]
          if k.get("crash") else []),
        f"instructions {n}",
        f"process      pid {p['pid']}  ppid {p['ppid']}  pgid {p['pgid']}  sid {p['sid']}  "
        f"cwd {p['cwd']}{' (removed)' if p.get('cwd_removed') else ''}  umask {p['umask']:03o}",
        f"memory       {len(img.vmas)} regions, {_size(total)} mapped, {_size(saved)} saved "
        f"(all-zero pages and text left out)",
        f"files        {len(img.fds)} descriptors, {len(img.descriptions)} open files, "
        f"{len(img.inodes)} inode{'' if len(img.inodes) == 1 else 's'} of the root behind "
        f"them ({sum(r['name'] is None for r in img.inodes)} deleted while open)",
        *_pipe_summary(img),
        *_socket_summary(img),
        f"terminal     {ttyimage.describe(k.get('terminal'))}",
        *([f"processes    {len(img.tree['table'].processes())} (the first one's parts are "
           f"the ones above; vsnap inspect IMAGE tree draws them all)"]
          if img.tree is not None and len(img.tree["table"].processes()) > 1 else []),
        f"clock        {k['clock']['monotonic_ns'] / 1e9:.6f} s since the guest's boot: "
        f"{n * NS_PER_INSTRUCTION / 1e9:.6f} s of instructions, "
        f"{k['clock']['system_ns'] / 1e9:.6f} s of {k['syscall_count']} system calls, "
        f"{k['clock']['slept_ns'] / 1e9:.6f} s asleep",
        "",
        "Antonov's save file, part by part (seeds/002):",
        "  fd table     fds.json            (vsnap inspect IMAGE fds)",
        "  stack        memory/stack.bin    (vsnap inspect IMAGE mems)",
        "  data segment memory/data.bin     data + bss + heap",
        "  other maps   memory/mappings.bin private mmap regions",
        "  jmp_buf      registers.json      every register (vsnap inspect IMAGE regs)",
        *(["  ghosts       files/ghost-N.bin   files deleted while open: their data, no "
           "holes"] if any(n.startswith("files/") for n in img.blobs) else []),
        "",
        "Not preserved / differs from Linux:",
    ]
    lines += [f"  - {t}" for t in k["not_preserved"] + DIFFERS_FROM_LINUX]
    return "\n".join(lines)


def _fds(img: Image) -> str:
    lines = [f"{'fd':>3}  {'kind':<8} {'flags':>8} {'offset':>10} {'cloexec':<7}  path"]
    for e in img.fds:
        d = img.descriptions[e["description"]]
        shared = [x["fd"] for x in img.fds
                  if x["description"] == e["description"] and x["fd"] != e["fd"]]
        note = f"  (shared with fd {', '.join(map(str, shared))})" if shared else ""
        note += _inode_note(img, e, d)
        lines.append(f"{e['fd']:>3}  {d['kind']:<8} {d['flags']:>#8o} {d['offset']:>10} "
                     f"{'yes' if e['cloexec'] else 'no':<7}  {d['path']}{note}")
    from .anonimage import describe_lines
    return "\n".join(lines + _pipe_lines(img) + _socket_lines(img) + describe_lines(img)
                     + _lock_lines(img))


def _socket_summary(img: Image) -> list[str]:
    from .sockimage import queued
    recs = img.sockets or []
    if not recs:
        return []
    nbytes = sum(queued(r)[0] for r in recs)
    nfds = sum(queued(r)[2] for r in recs)
    return [f"sockets      {len(recs)}, holding {nbytes} bytes and {nfds} descriptors in "
            f"flight, saved with the image (vsnap inspect IMAGE fds)"]


def _socket_lines(img: Image) -> list[str]:
    """Each socket once: kind, type, state, name, peer, what its queue holds, and who holds
    it (fds of the first process, another process's, a queue it is in flight in, a
    listener's backlog)."""
    from .sockimage import describe
    recs = img.sockets or []
    if not recs:
        return []
    held = {d["socket"]: i for i, d in enumerate(img.descriptions) if d["kind"] == "socket"}
    tables = [(img.kernel["process"]["pid"], img.fds)] + [
        (rec["pid"], rec["fds"]) for rec in ((img.tree or {}).get("processes") or [])[1:]]
    flight = {x: j for j, r in enumerate(recs) for q in r["queue"]
              for x in (q.get("fds") or ())}
    backlog = {q["embryo"]: j for j, r in enumerate(recs) for q in r["queue"] if "embryo" in q}
    out = []
    for i in range(len(recs)):
        desc = held.get(i)
        where = [f"pid {pid} fd {e['fd']}" for pid, fds in tables for e in fds
                 if desc is not None and e["description"] == desc]
        if desc is not None and desc in flight:
            where.append(f"in flight to socket:[{recs[flight[desc]]['ino']}]")
        if i in backlog:
            where.append(f"waiting in the backlog of socket:[{recs[backlog[i]]['ino']}]")
        if recs[i]["dead"]:
            where.append("closed")
        out.append(f"  {describe(recs, i)} ({'; '.join(where) or 'held by nothing'})")
    return ["", "Sockets:", *out]


def _pipe_summary(img: Image) -> list[str]:
    from .pipeimage import buffered
    pipes = {d["pipe"]: d["pipe_record"] for d in img.descriptions if d["kind"] == "pipe"}
    if not pipes:
        return []
    held = sum(buffered(rec) for rec in pipes.values())
    return [f"pipes        {len(pipes)}, holding {held} bytes in all, saved with the image "
            f"(vsnap inspect IMAGE fds)"]


def _pipe_lines(img: Image) -> list[str]:
    """Each pipe once, with what it holds and the fds of its ends."""
    from .pipeimage import describe
    seen: dict[int, dict] = {}
    for d in img.descriptions:
        if d["kind"] == "pipe":
            seen.setdefault(d["pipe"], d["pipe_record"])
    out = []
    for i, rec in sorted(seen.items()):
        mark = {"read": "r", "write": "w", "both": "rw"}
        ends = [f"{e['fd']}{mark[img.descriptions[e['description']]['end']]}"
                for e in img.fds if img.descriptions[e["description"]].get("pipe") == i]
        out.append(f"  {describe(rec)} (fd {', '.join(ends)})")
    return ["", "Pipes:", *out] if out else []


def _lock_lines(img: Image) -> list[str]:
    """The file locks the image holds, one line each, naming the fds of their holders."""
    locks = img.locks or {}
    types = {0: "F_RDLCK", 1: "F_WRLCK", 2: "F_UNLCK", None: None}

    def who(desc: int) -> str:
        fds = [str(e["fd"]) for e in img.fds if e["description"] == desc]
        return f"{img.descriptions[desc]['path']} (fd {', '.join(fds)})"

    out = [f"flock {'LOCK_EX' if e['type'] else 'LOCK_SH'} on {who(e['description'])}"
           for e in locks.get("flock", [])]
    for e in locks.get("records", []):
        end = "end of file" if e["end"] == (1 << 63) - 1 else e["end"]
        holder = "POSIX lock of the process" if e["owner"] == "process" else "OFD lock"
        out.append(f"{holder} {types[e['type']]} bytes {e['start']}..{end} on "
                   f"{who(e['description'])}")
    for e in locks.get("leases", []):
        breaking = f", breaking to {types[e['breaking']]}" if e["breaking"] is not None else ""
        out.append(f"lease {types[e['type']]}{breaking} on {who(e['description'])}")
    return ["", "File locks:", *(f"  {x}" for x in out)] if out else []


def _inode_note(img: Image, e: dict, d: dict) -> str:
    """What the image keeps of a descriptor's file: by name, or as a ghost."""
    note = ""
    if "inode" in d:
        rec = img.inodes[d["inode"]]
        same = [x["fd"] for x in img.fds if x["fd"] != e["fd"] and x["description"] !=
                e["description"] and img.descriptions[x["description"]].get("inode") ==
                d["inode"]]
        if same:
            note += f"  (same inode as fd {', '.join(map(str, same))})"
        if rec["name"] is not None and rec["name"] != d["path"]:
            note += f"  (reopened as {rec['name']}: its name now)"
        if rec["name"] is not None and rec["kind"] == "file":
            ident = rec["identity"]
            note += f"  [{ident['size']} bytes, digest {ident['sha256'][:12]}...]"
        elif rec["kind"] == "file":
            g = rec["ghost"]
            data = sum(n for _, n in g["extents"])
            note += (f"  [DELETED: {g['size']} bytes, {len(g['extents'])} data extents, "
                     f"{data} bytes in {g['part']}]")
        elif rec["name"] is None:
            note += "  [REMOVED directory]"
    if d.get("entries") is not None:
        note += f"  (listing: {min(d['offset'], len(d['entries']))} of {len(d['entries'])} " \
                f"entries read)"
    return note


def _state(img: Image, d: dict):
    """A file's size and digest or ghost record, for diff (None for other kinds)."""
    if d.get("kind") == "pipe":  # what waits in it
        from .pipeimage import buffered
        return {"size": buffered(d["pipe_record"])}
    if d.get("kind") == "socket":  # what waits in its queue
        from .sockimage import queued
        return {"size": queued(d["socket_record"])[0]}
    if "inode" not in d:
        return None
    rec = img.inodes[d["inode"]]
    if rec["name"] is not None:
        return {"named": True, **rec["identity"]}
    return {"named": False, **{k: v for k, v in rec["ghost"].items() if k != "part"}}


def _mems(img: Image) -> str:
    lines = [f"{'start':>14}-{'end':<14} {'perms':<5} {'size':>10} {'saved':>10}  "
             f"{'kind':<6} {'from':<8} name"]
    for v in img.vmas:
        perms = "".join(c if v["prot"] & b else "-" for c, b in (("r", 1), ("w", 2), ("x", 4)))
        saved = "-" if v["source"] == "program" else _size(saved_bytes(v))
        lines.append(f"{v['start']:>#14x}-{v['end']:<#14x} {perms + 'p':<5} "
                     f"{_size(v['end'] - v['start']):>10} {saved:>10}  {v['kind']:<6} "
                     f"{v['source']:<8} {v['name']}")
    lines.append(f"brk: start {img.brk_start:#x}, now {img.brk:#x} "
                 f"({_size(img.brk - img.brk_start)} of heap)")
    return "\n".join(lines)


def _regs(img: Image) -> str:
    r = img.registers
    lines = []
    names = [n for n in GPRS if n not in ("rip", "rflags")]
    for i in range(0, len(names), 4):
        lines.append("  ".join(f"{n:>3} {r[n]:016x}" for n in names[i:i + 4]))
    lines.append(f"rip {r['rip']:016x}  rflags {r['rflags']:08x}  fs_base {r['fs_base']:x}  "
                 f"gs_base {r['gs_base']:x}")
    lines.append(f"fpcw {r['fpcw']:04x}  fpsw {r['fpsw']:04x}  mxcsr {r['mxcsr']:08x}")
    lines += [f"xmm{i:<2} {r[f'xmm{i}']:032x}" for i in range(16) if r[f"xmm{i}"]]
    lines.append("")
    read = code_reader(img)
    code = read(r["rip"], 48)
    lines.append("next instructions:")
    for addr, hexbytes, text in disassemble(code or b"", r["rip"], 4):
        lines.append(f"  {addr:#x}: {hexbytes:<20} {text}")
    return "\n".join(lines)


def _kernel(img: Image) -> str:
    k = img.kernel
    view = {k2: v for k2, v in k.items() if k2 not in ("not_preserved", "signals")}
    s = k["signals"]
    view["signals"] = {
        "blocked": _signal_names(s.blocked),
        "pending": [f"{SIGNAMES.get(p.signo, p.signo)} (code {p.code})" for p in s.pending],
        "handlers": {SIGNAMES.get(n, str(n)): _handler(a) for n, a in s.actions.items()},
        "alarm": None if s.alarm_deadline is None else
        f"fires at {s.alarm_deadline / 1e9:.6f} s (every {s.alarm_interval / 1e9:g} s)"
        if s.alarm_interval else f"fires at {s.alarm_deadline / 1e9:.6f} s",
        "altstack": "disabled" if s.altstack_flags & 2 else
        f"{s.altstack_sp:#x} ({s.altstack_size} bytes)"}
    view["inodes"] = len(k["inodes"])
    view["limits"] = k["limits"].to_json()
    view["timers"] = k["timers"].to_json()
    return json.dumps(view, indent=2, sort_keys=True, default=str)


def _handler(a) -> str:
    return {0: "SIG_DFL", 1: "SIG_IGN"}.get(a.handler, f"handler at {a.handler:#x}, flags "
                                            f"{a.flags:#x}, mask {_signal_names(a.mask)}")


def _signal_names(mask: int) -> str:
    names = [SIGNAMES.get(n, str(n)) for n in range(1, 65) if mask >> (n - 1) & 1]
    return "|".join(names) or "none"


def as_json(img: Image, view: str) -> str:
    if view == "fds":
        obj = {"inodes": img.inodes, "descriptions": [
                   {k: v for k, v in d.items() if k != "socket_record"}
                   for d in img.descriptions], "fds": img.fds, "locks": img.locks,
               "sockets": img.sockets or []}
    elif view == "mems":
        obj = {"vmas": [{k: v for k, v in x.items()} for x in img.vmas],
               "brk_start": img.brk_start, "brk": img.brk}
    elif view == "regs":
        obj = {n: f"{v:#x}" for n, v in img.registers.items()}
    elif view == "kernel":
        obj = img.kernel
    elif view == "tree":
        from .treeview import _procs
        obj = {str(pid): p for pid, p in _procs(img).items()}
    else:
        obj = {"program": img.program, "instructions": img.kernel["instructions"],
               "rip": f"{img.registers['rip']:#x}", "regions": len(img.vmas),
               "fds": len(img.fds), "not_preserved": img.kernel["not_preserved"],
               "differs_from_linux": DIFFERS_FROM_LINUX}
    return json.dumps(obj, indent=2, sort_keys=True, default=_jsonable)


def _jsonable(o):
    if isinstance(o, bytes):
        return o.hex()
    if hasattr(o, "to_json"):  # limits, timers
        return o.to_json()
    if hasattr(o, "__dataclass_fields__"):
        from dataclasses import asdict
        return asdict(o)
    return str(o)


def diff(a: Image, b: Image) -> str:
    lines = []
    if a.program["sha256"] != b.program["sha256"]:
        lines.append(f"program: {a.program['path']} -> {b.program['path']} (different builds)")
    ia, ib = a.kernel["instructions"], b.kernel["instructions"]
    if ia != ib:
        lines.append(f"instructions: {ia} -> {ib}")
    from .treeview import diff as tree_diff
    lines += tree_diff(a, b)
    regs = [n for n in a.registers if a.registers[n] != b.registers[n]]
    lines.append(f"registers: {len(regs)} changed")
    lines += [f"  {n:<7} {a.registers[n]:#x} -> {b.registers[n]:#x}" for n in regs]
    lines.append("memory:")
    ra, rb = code_reader(a), code_reader(b)
    va = {(v["start"], v["end"]): v for v in a.vmas}
    vb = {(v["start"], v["end"]): v for v in b.vmas}
    for key in sorted(set(va) | set(vb)):
        v = va.get(key) or vb.get(key)
        label = f"  {key[0]:#x}-{key[1]:#x} {v['kind']:<6} {v['name']}"
        if key not in va:
            lines.append(f"{label}: new")
        elif key not in vb:
            lines.append(f"{label}: gone")
        else:
            changed = sum(1 for addr in range(key[0], key[1], PAGE)
                          if ra(addr, PAGE) != rb(addr, PAGE))
            if changed:
                lines.append(f"{label}: {changed} of {(key[1] - key[0]) // PAGE} pages differ")
    fa = {e["fd"]: a.descriptions[e["description"]] for e in a.fds}
    fb = {e["fd"]: b.descriptions[e["description"]] for e in b.fds}
    lines.append("files:")
    for fd in sorted(set(fa) | set(fb)):
        x, y = fa.get(fd), fb.get(fd)
        if x is None:
            lines.append(f"  fd {fd}: opened {y['path']}")
        elif y is None:
            lines.append(f"  fd {fd}: closed {x['path']}")
        elif (x["path"], x["offset"], _state(a, x)) != (y["path"], y["offset"], _state(b, y)):
            sx, sy = _state(a, x) or {}, _state(b, y) or {}
            what = [f"path {x['path']} -> {y['path']}"] if x["path"] != y["path"] else []
            if x["offset"] != y["offset"]:
                what.append(f"offset {x['offset']} -> {y['offset']}")
            if sx.get("size") != sy.get("size"):
                what.append(f"size {sx.get('size')} -> {sy.get('size')}")
            if sx.get("named") != sy.get("named"):
                what.append("deleted since" if sx.get("named") else "has a name again")
            lines.append(f"  fd {fd} {y['path']}: {', '.join(what) or 'content changed'}")
    return "\n".join(lines)
