"""Helpers of notebook 03b, "the same moment, from outside": leaving a step out of the save
file, what the file covers of the address space (the pictures), the moment in the middle of
the handler, the native runs, and vsnap's image of the same moment next to the guest's file.
The save file's parsing, the runs and the tables are notebook 03a's, in notebooks/_n03.py.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys

import matplotlib.pyplot as plt
from matplotlib.patches import Patch, Rectangle

import _n03 as n3
from vsnap.machine import DEFAULT_ENV
from vsnap.memory import PAGE


# Ways to leave a step out of the library, done to the save file between the two runs
# (the same bytes a library without that step would have written or read back).
def _fd_records(data, edit):
    data = bytearray(data)
    h = dict(zip(n3.HEADER_FIELDS, n3.HEADER.unpack_from(data)))
    for i in range(h["nfds"]):
        at = n3.HEADER.size + i * n3.FD_RECORD.size
        r = dict(zip(n3.FD_FIELDS, n3.FD_RECORD.unpack_from(data, at)))
        if r["kind"] == 1:                        # a disk file
            edit(r)
            n3.FD_RECORD.pack_into(data, at, *(r[f] for f in n3.FD_FIELDS))
    return bytes(data)


def _zero_part(part, lo=0, hi=None):
    def change(data):
        a, b = n3.parse_save(data)["parts"][part]
        data = bytearray(data)
        data[a + lo:b if hi is None else a + hi] = bytes((b if hi is None else a + hi) - a - lo)
        return bytes(data)
    return change


LEAVE_OUT = {
    "the seek (step 7 reopens files at offset 0)": lambda d: _fd_records(d, lambda r: r.update(offset=0)),
    "the names (the program opened its journal with open(), not antonov_open())":
        lambda d: _fd_records(d, lambda r: r.update(name=b"")),
    "the heap (step 5 saves the data segment only)": _zero_part("heap"),
    "the mask (the jmp_buf keeps an empty signal mask)": _zero_part("jmp_buf", 72, 80),
}


def failing_ks(step, n=6):
    """The k in 1..n for which demo -n N -c K, then the restore, differs from one run
    (stdout, exit status or journal) when `step` (a LEAVE_OUT key) is left out."""
    ref = n3.run_demo(f"ref-{len(list(n3.SANDBOX.iterdir()))}", ["-n", str(n)])
    ref_journal = (ref["root"] / "demo.journal").read_bytes()
    bad = set()
    for k in range(1, n + 1):
        out, status, journal = n3.save_and_restore(f"leave-{len(list(n3.SANDBOX.iterdir()))}", n, k,
                                                LEAVE_OUT[step])
        if (out, status, journal) != (ref["out"], 0, ref_journal):
            bad.add(k)
    return bad


# ---- the address space: what the file covers, and vsnap's image ---------------------------

def vma_color(v):
    if v.kind == "data":
        return "#edc948" if v.prot & 2 else "#dddddd"        # .data; read-only data
    return {"text": "#e15759", "bss": "#a0cbe8", "heap": "#59a14f", "stack": "#f28e2b"}.get(
        v.kind, "#b07aa1")


def region_name(v):
    return {"text": "text", "bss": ".bss", "heap": "heap", "stack": "stack"}.get(
        v.kind, ".data" if v.prot & 2 else "read-only data")


def covered_regions(h, vmas):
    """The memory regions (region_name) that the guest's save file holds any byte of."""
    ranges = [(h["stack_lo"], h["stack_hi"]), (h["data_lo"], h["data_hi"]),
              (h["heap_lo"], h["heap_hi"])]
    return {region_name(v) for v in vmas for a, b in ranges if a < v.end and v.start < b}


def draw_coverage(lanes, vmas, marks_low, marks_stack, stack_window):
    """lanes: [(label, [(start, end, color, hatch, text), ...])], drawn top to bottom in two
    panels, both to scale: the program's region, and the top of the stack. Marks are
    (address, name), labelled in staggered rows above the lanes."""
    low_lo = min(v.start for v in vmas if v.kind != "stack")
    low_hi = max(v.end for v in vmas if v.kind != "stack")
    nl, rows = len(lanes), max(len(marks_low), len(marks_stack))
    fig, axes = plt.subplots(1, 2, figsize=(13, 1.2 + 0.7 * nl + 0.22 * rows),
                             gridspec_kw={"width_ratios": [2.2, 1]})
    for ax, (lo, hi), marks in ((axes[0], (low_lo, low_hi), marks_low),
                                (axes[1], stack_window, marks_stack)):
        for row, (label, boxes) in enumerate(lanes):
            y = nl - 1 - row
            for a, b, color, hatch, text in boxes:
                a, b = max(a, lo), min(b, hi)
                if a >= b:
                    continue
                ax.add_patch(Rectangle((a, y + 0.1), b - a, 0.7, facecolor=color, hatch=hatch,
                                       edgecolor="white" if hatch else "none", lw=0.5))
                if text and (b - a) > 0.04 * (hi - lo):
                    ax.text((a + b) / 2, y + 0.45, text, ha="center", va="center", fontsize=7)
        for k, (value, text) in enumerate(sorted(marks)):
            if lo <= value <= hi:
                top = nl + 0.2 + 0.3 * k
                ax.plot([value, value], [0, top], color="black", lw=0.7, ls=":")
                ax.text(value, top, f" {text} {value:#x} ", fontsize=7, va="center",
                        ha="right" if value > (lo + hi) / 2 else "left")
        ax.set_xlim(lo, hi)
        ax.set_ylim(0, nl + 0.3 + 0.3 * rows)
        ax.set_yticks([nl - 1 - i + 0.45 for i in range(nl)])
        ax.set_yticklabels([label for label, _ in lanes] if ax is axes[0] else [], fontsize=8)
        ax.tick_params(axis="y", length=0)
        ticks = [lo, hi]
        if ax is axes[0]:                       # the region boundaries, unless too close
            ticks = [lo]
            for t in sorted({v.end for v in vmas if v.kind != "stack"}):
                if t - ticks[-1] > 0.05 * (hi - lo) or t == hi:
                    ticks.append(t)
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:#x}" for t in ticks], rotation=30, fontsize=7, ha="right")
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    axes[0].set_title("the program's region", fontsize=9)
    axes[1].set_title(f"the top {n3.human(stack_window[1] - stack_window[0])} of the "
                      f"{n3.human(next(v.size for v in vmas if v.kind == 'stack'))} stack", fontsize=9)
    return fig, axes


def map_lane(vmas):
    return ("memory map", [(v.start, v.end, vma_color(v), None,
                            {"text": "r-x text", "bss": "rw- .bss", "heap": "[heap]",
                             "stack": "[stack]"}.get(v.kind, ".data" if v.prot & 2 else "r-- rodata"))
                           for v in vmas])


def guest_lane(h, label="guest's save file"):
    return (label, [(h["stack_lo"], h["stack_hi"], "#1f77b4", None, "stack"),
                    (h["data_lo"], h["data_hi"], "#1f77b4", None, "data segment"),
                    (h["heap_lo"], h["heap_hi"], "#17becf", None, "heap")])


def image_lane(img):
    boxes = []
    for v in img.vmas:
        if v["source"] == "program":
            boxes.append((v["start"], v["end"], "#e15759", "//", "text: re-read, hash checked"))
        for first, count, _ in v.get("pages", []):
            boxes.append((v["start"] + first * PAGE, v["start"] + (first + count) * PAGE,
                          "#4e79a7", None, None))
    return ("vsnap's image", boxes)


def coverage_picture(vmas, h, frame, jb, img=None):
    """The memory map, the guest's file and (with img) vsnap's image, in two panels."""
    window = ((min(h["stack_lo"], frame["address"]) - 2 * PAGE) & ~(PAGE - 1), h["stack_hi"])
    marks_low = [(h["ehdr"], "ehdr"), (h["etext"], "etext"), (h["data_lo"], "data_lo"),
                 (h["edata"], "edata"), (h["end"], "end"), (h["heap_hi"], "brk")]
    marks_stack = [(h["stack_lo"], "stack_lo"), (frame["address"], "signal frame"),
                   (jb[6], "jmp_buf rsp"), (frame["regs"]["rsp"], "interrupted rsp")]
    lanes = [map_lane(vmas), guest_lane(h)] + ([image_lane(img)] if img is not None else [])
    fig, _ = draw_coverage(lanes, vmas, marks_low, marks_stack, window)
    handles = [Patch(color="#1f77b4", label="the guest's stack and data segment"),
               Patch(color="#17becf", label="the guest's heap")]
    if img is not None:
        handles += [Patch(color="#4e79a7", label="vsnap: stored (non-zero) pages"),
                    Patch(facecolor="#e15759", hatch="//", label="vsnap: text, from the program")]
    fig.legend(handles=handles, fontsize=8, loc="lower center", ncol=len(handles))
    plt.tight_layout(rect=(0, 0.1, 1, 1))
    plt.show()


def maps_with_sections(vmas):
    """Each region with its size and the sections of the program inside it."""
    lines = []
    for v in vmas:
        parts = [name for name, (a, s) in sorted(n3.SECTIONS.items(), key=lambda kv: kv[1])
                 if s and v.start <= a < v.end]
        lines.append(f"{v.start:#x}-{v.end:#x} {v.perms()} {v.kind:<6} {n3.human(v.size):>9}  "
                     + " ".join(parts))
    return "\n".join(lines)


def read_image(img, addr, n):
    """n bytes at guest address addr, as vsnap's image holds them (a page in no run: zeros)."""
    out = bytearray()
    while len(out) < n:
        a = addr + len(out)
        v = next(v for v in img.vmas if v["start"] <= a < v["end"])
        page, within = divmod(a - v["start"], PAGE)
        take = min(n - len(out), PAGE - within)
        chunk = bytes(take)
        for first, count, offset in v.get("pages", []):
            if first <= page < first + count:
                at = offset + (page - first) * PAGE + within
                chunk = img.blobs[v["part"]][at:at + take]
        out += chunk
    return bytes(out)


def differences(guest, img):
    """{part: [addresses where the guest's file and vsnap's image differ]} for the stack,
    the data segment and the heap."""
    h = guest["header"]
    out = {}
    for part, lo in (("stack", "stack_lo"), ("data segment", "data_lo"), ("heap", "heap_lo")):
        mine = guest["raw"][part]
        theirs = read_image(img, h[lo], len(mine))
        out[part] = [h[lo] + i for i in range(len(mine)) if mine[i] != theirs[i]]
    return out


def stack_side(diff, frame_address):
    """Where the differing stack bytes lie, relative to the signal frame."""
    below = any(a < frame_address for a in diff)
    above = any(a >= frame_address for a in diff)
    return {(False, False): "none differ", (True, False): "all below the frame",
            (False, True): "all above the frame", (True, True): "on both sides"}[(below, above)]


def tmp_parts(tmp_size, guest):
    """The parts of the save file that are whole in a demo.save.tmp of tmp_size bytes
    (None: there is no demo.save.tmp)."""
    if tmp_size is None:
        return set()
    return {name for name, (a, b) in guest["parts"].items() if b <= tmp_size}


def tmp_size_at(args, count):
    """Run demo ARGS in a fresh sandbox to exactly `count` instructions: the size of its
    demo.save.tmp then, or None if there is none."""
    root = n3.new_root(f"moment-{len(list(n3.SANDBOX.iterdir()))}")
    m, _, _ = n3.start(root, args)
    assert m.advance(count) is None
    tmp = root / "demo.save.tmp"
    size = tmp.stat().st_size if tmp.exists() else None
    m.close()
    return size


# ---- natively, with setarch -R -------------------------------------------------------------

NATIVE_ENV = dict(e.split("=", 1) for e in DEFAULT_ENV)
SETARCH = shutil.which("setarch")


def native_possible():
    """x86-64 Linux with a setarch whose personality call this container allows."""
    return (sys.platform.startswith("linux") and platform.machine() in ("x86_64", "amd64")
            and SETARCH is not None
            and subprocess.run([SETARCH, "-R", "true"], capture_output=True).returncode == 0)


def native(root, args, aslr_off=True):
    cmd = ([SETARCH, "-R"] if aslr_off else []) + ["./demo", *args]
    print("$", " ".join(os.path.basename(c) if c == SETARCH else c for c in cmd))
    return subprocess.run(cmd, cwd=root, env=NATIVE_ENV, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=60)


def native_table(native_guest, guest, frame):
    nh, h = native_guest["header"], guest["header"]
    nframe = n3.find_signal_frame(native_guest["raw"]["stack"], nh["stack_lo"])
    same = lambda a, b: "same" if a == b else "differs"
    rows = [(k, nh[k] if k in n3.PLAIN else f"{nh[k]:#x}", h[k] if k in n3.PLAIN else f"{h[k]:#x}",
             same(nh[k], h[k])) for k in n3.HEADER_FIELDS[1:]]
    rows.append(("stack bytes", f"{nh['stack_hi'] - nh['stack_lo']:,}",
                 f"{h['stack_hi'] - h['stack_lo']:,}", ""))
    rows.append(("signal frame at", f"{nframe['address']:#x}", f"{frame['address']:#x}", ""))
    rows.append(("interrupted rip", n3.function_at(nframe["regs"]["rip"]),
                 n3.function_at(frame["regs"]["rip"]), same(nframe["regs"]["rip"], frame["regs"]["rip"])))
    for a, b in zip(native_guest["fds"], guest["fds"]):
        rows.append((f"fd {a['fd']}", f"{n3.KINDS[a['kind']]} {a['name']}".strip(),
                     f"{n3.KINDS[b['kind']]} {b['name']}".strip(), same(a["kind"], b["kind"])))
    rows.append(("interrupted rcx, r11", f"{nframe['regs']['rcx']:#x}, {nframe['regs']['r11']:#x}",
                 f"{frame['regs']['rcx']:#x}, {frame['regs']['r11']:#x}",
                 same((nframe["regs"]["rcx"], nframe["regs"]["r11"]),
                      (frame["regs"]["rcx"], frame["regs"]["r11"]))))
    jbn, jb = n3.jmpbuf_words(native_guest), n3.jmpbuf_words(guest)
    rows.append(("jmp_buf rip, __fl", f"{n3.function_at(jbn[7])}, {n3.function_at(jbn[8])}",
                 f"{n3.function_at(jb[7])}, {n3.function_at(jb[8])}", same(jbn[7:9], jb[7:9])))
    return n3.table(["", "native (setarch -R)", "under vsnap", ""], rows), nframe


def comparison_table(guest, save_size, img, image_size, kj, frame, saved_pages):
    """What the guest's save file and vsnap's image of the same moment each hold."""
    h, jb, R, sig = guest["header"], n3.jmpbuf_words(guest), img.registers, kj["signals"]
    rows = [
        ("form", "one binary file in the library's own layout; nothing checks it but the library",
         "a zip of JSON and page files, every part hashed in manifest.json, parsed suspiciously"),
        ("size", f"{save_size:,} bytes", f"{image_size:,} bytes"),
        ("fd table", f"{len(guest['fds'])} records from fstat/lseek/fcntl; a name only for files "
         "opened through antonov_open; 0-2 'inherited, name unknown'",
         f"{len(img.fds)} fds and their open file descriptions, every one named (console "
         "streams too), sharing between dup'd fds kept"),
        ("a file's identity", "size and mtime (compared at restore)",
         "size, mtime and SHA-256 of the content"),
        ("stack", f"{h['stack_hi'] - h['stack_lo']:,} bytes, from sp-256 in antonov_save to the top, "
         "the handler's own frames included", f"{saved_pages.get('stack', 0)} non-zero pages of the stack"),
        ("data segment", f"[data_lo, end): {h['data_hi'] - h['data_lo']:,} bytes, writable part only",
         "every non-zero page of the read-only data, .data and .bss"),
        ("heap", f"[end, sbrk(0)): {h['heap_hi'] - h['heap_lo']} bytes",
         f"the [heap] region's non-zero pages; brk {img.brk:#x}"),
        ("text", "not saved: relies on the same binary at the same addresses (checks etext/edata/end)",
         f"not saved: re-read from the program, whose SHA-256 ({img.program['sha256'][:12]}...) must match"),
        ("registers", "jmp_buf: rbp, r12-r15, rsp, rip at the setjmp (rbx in __ss[1]); every "
         "register of the interrupted code in the signal frame on its stack",
         f"all {len(R)}: general, flags, fs/gs base, x87, SSE, mxcsr, at the handler's entry "
         "(and the same signal frame on the stack)"),
        ("fs_base (thread pointer)", "not saved: the new process's start-up sets it to the same "
         "place in .bss", f"{R['fs_base']:#x}"),
        ("signal mask", f"in the jmp_buf: {jb[9]:#x} (inside the handler); in the frame: "
         f"{frame['sigmask']:#x}", f"blocked {sig['blocked']} (inside the handler); the same frame"),
        ("signal handlers", "not saved: the new main installs them again before antonov_restart",
         "; ".join(f"signal {n}: handler {a['handler']} ({n3.function_at(int(a['handler'], 16))}), "
                   f"restorer {n3.function_at(int(a['restorer'], 16))}, flags {a['flags']}"
                   for n, a in sig["actions"].items())),
        ("pending signals", "not saved (sigpending could tell it, the library never asks)",
         ", ".join(map(str, sig["pending"])) or "saved: none pending"),
        ("pid, tid", f"recorded ({h['pid']}, {h['tid']}) only to fix musl's cached tid; a new "
         "process has a new pid (natively; under vsnap every run is pid 1000)",
         f"kept: pid {kj['process']['pid']}, ppid {kj['process']['ppid']} (vsnap's pids are virtual)"),
        ("clock", "not saved, and cannot be set back: a restored process sees its clock jump (under "
         "vsnap every run boots at the same virtual time, so it jumps back)",
         f"kept: {kj['clock']['monotonic_ns']} ns since boot, and goes on from there"),
        ("cwd, umask", "not saved: relative names are reopened in the new run's directory",
         f"cwd {kj['process']['cwd']}, umask {kj['process']['umask']:03o}"),
        ("where it goes on", "after sigsetjmp returns 1, in the old handler: reopen, redraw, return",
         "at the handler's first instruction: the whole handler runs, save included"),
    ]
    return n3.table(["", "the guest's save file (antonov.c)", "vsnap's image (from outside)"], rows)
