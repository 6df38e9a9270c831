"""The grader's checks, in the order of the recipe: the save file against vsnap's image of
the instant the handler started (steps 1-6), and the restored process, where its handler
returns, against the same image (steps c-e and 7). Each failure is one line,
"STEP: what is wrong: what to do".
"""
from __future__ import annotations

import os
import struct

from libckpt_run import FRAME_REGS, Symbols

# The save file, as antonov.c's structs lay it out (the given part of the assignment).
HEADER = struct.Struct("<8s 4Q 2Q 2Q 2Q 2Q 2q")
HEADER_FIELDS = ("magic etext edata end ehdr stack_lo stack_hi data_lo data_hi heap_lo heap_hi "
                 "jmpbuf_size nfds pid tid").split()
FD_RECORD = struct.Struct("<4i q 2Q 3q 256s")
FD_FIELDS = "fd kind flags fdflags offset dev ino size mtime_sec mtime_nsec name".split()
KIND = {"file": 1, "dir": 2}
KIND_NAME = {1: "disk file", 2: "directory", 3: "tty", 4: "character device", 5: "pipe",
             6: "socket", 7: "other"}
O_ACCMODE, O_APPEND = 3, 0o2000
# the library's own bookkeeping: filled during the save, so it differs from the instant the
# handler started, and is allowed to
PRIVATE = ("antonov_fds", "antonov_hdr", "antonov_jb", "antonov_save_fd")


def parse_save(data: bytes):
    if len(data) < HEADER.size:
        return None
    h = dict(zip(HEADER_FIELDS, HEADER.unpack_from(data)))
    if h["magic"] != b"ANTONOV1" or h["nfds"] > 64:
        return None
    at = HEADER.size
    fds = []
    for _ in range(h["nfds"]):
        if at + FD_RECORD.size > len(data):
            return None
        r = dict(zip(FD_FIELDS, FD_RECORD.unpack_from(data, at)))
        r["name"] = r["name"].split(b"\0")[0].decode(errors="replace")
        fds.append(r)
        at += FD_RECORD.size
    parts = {}
    for name, size in (("stack", h["stack_hi"] - h["stack_lo"]),
                       ("data", h["data_hi"] - h["data_lo"]),
                       ("heap", h["heap_hi"] - h["heap_lo"]), ("jmp_buf", h["jmpbuf_size"])):
        if size < 0 or size > 1 << 30:
            return None
        parts[name] = data[at:at + size]
        at += size
    return h, fds, parts


def first_diff(a: bytes, b: bytes, skip=()):
    """The first offset where a and b differ, outside the [lo, hi) ranges in `skip`."""
    n = min(len(a), len(b))
    i = 0
    while i < n:
        if a[i] != b[i]:
            hole = next(((lo, hi) for lo, hi in skip if lo <= i < hi), None)
            if hole is None:
                return i
            i = hole[1]
            continue
        i += 1
    return None if len(a) == len(b) else n


def private_ranges(sym: Symbols, base: int):
    return [(a - base, a - base + size) for a, size, n in sym.objects if n in PRIVATE]


def guest_path(name: str) -> str:
    """A name as the program gave it to antonov_open, as vsnap names it (cwd is /)."""
    return os.path.normpath(os.path.join("/", name)) if name else ""


def check_save(save: bytes, o: dict, sym: Symbols) -> list:
    parsed = parse_save(save)
    if parsed is None:
        return ["save (steps 2-3): the save file does not start with an antonov_header "
                "(magic ANTONOV1) and its fd records: write the header, then nfds records"]
    h, records, parts = parsed
    out = []
    # steps 1 and 3: one record per open descriptor, with its type, offset, flags and name
    by_fd = {r["fd"]: r for r in records}
    for fd, (kind, path, flags, offset, _) in sorted(o["fds"].items()):
        r = by_fd.get(fd)
        name = os.path.basename(path) or path
        if r is None:
            out.append(f"save (step 1): fd {fd} ({name}) is open but the save file has no "
                       "record of it: fstat every fd from 0 to 63 and keep the open ones")
            continue
        if kind in KIND and r["kind"] != KIND[kind]:
            out.append(f"save (step 1): fd {fd} ({name}) is recorded as a "
                       f"{KIND_NAME.get(r['kind'], r['kind'])}, vsnap's image has a "
                       f"{KIND_NAME[KIND[kind]]}: take the type from fstat's st_mode")
        if kind == "file" and r["offset"] != offset:
            out.append(f"save (step 1): fd {fd} ({name})'s record says offset {r['offset']}, "
                       f"vsnap's image has {offset}: read it with lseek(fd, 0, SEEK_CUR)")
        if kind in KIND and (r["flags"] & (O_ACCMODE | O_APPEND)) != (flags & (O_ACCMODE |
                                                                                O_APPEND)):
            out.append(f"save (step 1): fd {fd} ({name})'s record has flags {r['flags']:#o}, "
                       f"vsnap's image has {flags:#o}: read them with fcntl(fd, F_GETFL)")
        if kind in KIND and guest_path(r["name"]) != path:
            out.append(f"save (step 3): fd {fd}'s record is named {r['name']!r}, it is {name}: "
                       "copy the name antonov_open remembered (antonov_names[fd])")
    for fd in sorted(set(by_fd) - set(o["fds"])):
        out.append(f"save (step 1): the save file has a record for fd {fd}, which is not open "
                   "(fstat fails with EBADF for it): skip it")
    # step 4: the stack, from below the handler's frames to the top
    if h["stack_hi"] != o["top"]:
        out.append(f"save (step 4): the saved stack ends at {h['stack_hi']:#x}, the top of the "
                   f"stack is {o['top']:#x}: save up to stack_top()")
    if h["stack_lo"] > o["rsp"]:
        out.append(f"save (step 4): the saved stack starts at {h['stack_lo']:#x}, above the "
                   f"signal frame at {o['rsp']:#x}: start below the current stack pointer "
                   "(stack_pointer() - RED_ZONE), so the handler's frames and the frame are in")
    else:
        lo = o["rsp"] - h["stack_lo"]
        mine, theirs = parts["stack"][lo:], o["mem"][o["rsp"]]
        i = first_diff(mine, theirs[:len(mine)])
        if i is not None:
            out.append(f"save (step 4): the saved stack differs from vsnap's image at "
                       f"{o['rsp'] + i:#x}: write the bytes of [stack_lo, stack_hi) as they are")
    # step 5: the data segment and the heap
    end = sym.by_name["end"]
    if h["data_lo"] != sym.data_lo or h["data_hi"] != end:
        what = ("edata, so the bss is left out" if h["data_hi"] == sym.by_name.get("edata")
                else f"{h['data_hi']:#x}")
        out.append(f"save (step 5): the saved data segment is [{h['data_lo']:#x}, "
                   f"{h['data_hi']:#x}), the writable data is [{sym.data_lo:#x}, {end:#x}): "
                   f"it ends at {what}; save from data_start() to end")
    else:
        i = first_diff(parts["data"], o["mem"][sym.data_lo], private_ranges(sym, sym.data_lo))
        if i is not None:
            a = sym.data_lo + i
            out.append(f"save (step 5): the saved data segment differs from vsnap's image at "
                       f"{a:#x} ({sym.object_at(a) or 'no symbol'}): write [data_start(), end)")
    if h["heap_lo"] != end or h["heap_hi"] != o["brk"]:
        out.append(f"save (step 5): the saved heap is [{h['heap_lo']:#x}, {h['heap_hi']:#x}), "
                   f"vsnap's image has [end, brk) = [{end:#x}, {o['brk']:#x}): save from end to "
                   "sbrk(0) (the brk system call with 0)")
    else:
        i = first_diff(parts["heap"], o["mem"][end])
        if i is not None:
            out.append(f"save (step 5): the saved heap differs from vsnap's image at "
                       f"{end + i:#x}: write [end, sbrk(0)) as it is")
    # step 6: the jmp_buf, after sigsetjmp returned 0
    jb = parts["jmp_buf"]
    if len(jb) < 64 or not any(jb):
        out.append("save (step 6): the jmp_buf at the end of the save file is all zeros: write "
                   "antonov_jb after sigsetjmp has filled it (antonov_finish_save), last")
    else:
        # musl's jmp_buf: rbx rbp r12 r13 r14 r15 rsp rip, in the clear (glibc scrambles rsp
        # and rip with its pointer guard; the grader builds with musl)
        sp = struct.unpack_from("<Q", jb, 48)[0]
        if not h["stack_lo"] <= sp < o["rsp"]:
            out.append(f"save (step 6): the jmp_buf's stack pointer {sp:#x} is outside the saved "
                       f"stack, which starts at {h['stack_lo']:#x}: the frame of the setjmp "
                       "is not in the file; save the stack from below the stack pointer")
    return out


def check_return(got: dict, o: dict, sym: Symbols) -> list:
    """The restored process, where its handler returned, against vsnap's image."""
    out = []
    for fd, (kind, path, flags, offset, cloexec) in sorted(o["fds"].items()):
        if kind not in KIND:
            continue
        name = os.path.basename(path) or path
        g = got["fds"].get(fd)
        if g is None or g[1] != path:
            out.append(f"reload (step 7): fd {fd} is not {name} after the restore: reopen each "
                       f"named file and dup2 it to its old number")
            continue
        if kind == "file" and g[3] != offset:
            out.append(f"reload (step 7): fd {fd} ({name})'s offset is {g[3]}, the saved one "
                       f"was {offset}: restore offsets with lseek")
        if (g[2] & O_APPEND) != (flags & O_APPEND):
            out.append(f"reload (step 7): fd {fd} ({name}) {'lost' if flags & O_APPEND else 'gained'}"
                       f" O_APPEND: reopen with the saved flags (F_GETFL) minus "
                       f"O_CREAT|O_TRUNC|O_EXCL")
        elif (g[2] & O_ACCMODE) != (flags & O_ACCMODE):
            out.append(f"reload (step 7): fd {fd} ({name}) has access mode {g[2] & 3}, it had "
                       f"{flags & 3}: reopen with the saved flags")
    for r in FRAME_REGS:
        if got["regs"][r] != o["frame"][r]:
            out.append(f"reload (steps c-e): after the handler returned, {r} is "
                       f"{got['regs'][r]:#x}, the interrupted code had {o['frame'][r]:#x} "
                       "(vsnap's image): the signal frame did not come back with the stack")
            break
    if got["brk"] != o["brk"]:
        out.append(f"reload (step d): the break is {got['brk']:#x}, it was {o['brk']:#x}")
    end = sym.by_name["end"]
    for lo, what, skip, step in ((o["rsp"], "stack", (), "c"),
                                 (sym.data_lo, "data segment", private_ranges(sym, sym.data_lo),
                                  "d"), (end, "heap", (), "d")):
        mine, theirs = got["mem"].get(lo), o["mem"][lo]
        i = None if mine is None else first_diff(mine, theirs, skip)
        if mine is None or i is not None:
            a = lo + (i or 0)
            out.append(f"reload (step {step}): the {what} differs from vsnap's image at {a:#x} "
                       f"({sym.object_at(a) or 'no symbol'}): read it back, in the order it "
                       "was saved, with the read system call")
    return out
