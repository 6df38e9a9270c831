"""The terminal in an image: kernel.json's "terminal" (the system's, in the first process's
kernel.json): its termios as the guest last set it (or as it read it), whether the guest set
it, the window size it set, and the foreground process group. A resume puts what the guest
set back, on the host terminal too when the resumed run has one (cli.py: reapply); a
terminal the guest never changed is the one of whoever resumes, as the descriptors on it are.
"""
from __future__ import annotations

from ..terminal import NCCS, Terminal

FLAGS = ("iflag", "oflag", "cflag", "lflag")
U32 = (1 << 32) - 1


def kernel_fields(p) -> dict:
    return {"terminal": p.sys.terminal.saved()}


def parse_kernel(r, d) -> dict:
    """Checked "terminal" (absent from images made before it: None, a fresh terminal)."""
    raw = d.get("terminal")
    if raw is None:
        return {"terminal": None}
    t = r.obj(raw, "terminal")
    tio = r.obj(r.key(t, "termios", "terminal"), "terminal.termios")
    out = {n: r.int(r.key(tio, n, "terminal.termios"), f"terminal.termios.{n}", 0, U32)
           for n in (*FLAGS, "ispeed", "ospeed")}
    out["line"] = r.int(r.key(tio, "line", "terminal.termios"), "terminal.termios.line", 0, 255)
    cc = r.str(r.key(tio, "cc", "terminal.termios"), "terminal.termios.cc", 2 * NCCS)
    try:
        if len(bytes.fromhex(cc)) != NCCS:
            raise ValueError
    except ValueError:
        r.fail("terminal.termios.cc", f"expected {NCCS} bytes in hex")
    out["cc"] = cc
    size = r.key(t, "winsize", "terminal")
    if size is not None:
        size = r.list(size, "terminal.winsize", 4)
        if len(size) != 4:
            r.fail("terminal.winsize", "expected [rows, cols, xpixel, ypixel]")
        size = [r.int(x, f"terminal.winsize[{i}]", 0, 0xFFFF) for i, x in enumerate(size)]
    return {"terminal": {
        "termios": out, "set": r.bool(r.key(t, "set", "terminal"), "terminal.set"),
        "winsize": size,
        "foreground": r.int(r.key(t, "foreground", "terminal"), "terminal.foreground", 1,
                            (1 << 31) - 1)}}


def restore_kernel(m, k: dict) -> None:
    if k.get("terminal") is not None:
        m.system.terminal.load(k["terminal"])


def describe(d: dict | None) -> str:
    """One line for `vsnap inspect`: the terminal's mode as the guest left it."""
    if d is None:
        return "not saved (an image from before vsnap kept it)"
    t = Terminal()
    t.load(d)
    tio = d["termios"]
    cc = bytes.fromhex(tio["cc"])
    mode = t.mode()
    kind = ("canonical" if mode["canonical"] else
            f"raw (VMIN {cc[6]}, VTIME {cc[5]})")
    flags = f"{kind}, {'echo' if mode['echo'] else 'no echo'}, " \
            f"{'signal keys' if mode['isig'] else 'no signal keys'}"
    size = "" if d["winsize"] is None else f", size {d['winsize'][0]}x{d['winsize'][1]} set"
    who = "set by the guest" if d["set"] else "as the guest found it"
    return f"{flags} ({who}){size}, foreground group {d['foreground']}"
