"""Driving a machine from the command line: save points, the save channel, the end report.

`vsnap run` and `vsnap resume` both come here: run to each save point exactly (--save-at,
--save-every), write an image there, stop if asked (--exit, like DragonFly's SIGCKPTEXIT) or go
on (like SIGCKPT), and answer `vsnap save PID` requests from another terminal.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from .machine import Machine, RunResult


@dataclass
class SavePlan:
    output: str | None = None
    at: list[int] = field(default_factory=list)
    every: int | None = None
    stop: bool = False

    def points(self, start: int):
        """Instruction counts to save at, in order, after `start`."""
        fixed = sorted(n for n in set(self.at) if n >= start)
        if self.every is None:
            yield from fixed
            return
        n = (start // self.every + 1) * self.every
        while True:
            while fixed and fixed[0] < n:
                yield fixed.pop(0)
            yield n
            n += self.every

    def path(self, index: int, numbered: bool) -> str:
        out = self.output or "vsnap.img"
        if not numbered:
            return out
        base, ext = os.path.splitext(out)
        return f"{base}.{index:04d}{ext}"

    @property
    def wanted(self) -> bool:
        return bool(self.at) or self.every is not None


def say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def drive(m: Machine, plan: SavePlan, *, count: bool = False,
          max_instructions: int | None = None, listen: bool = True, say=say,
          progress: bool = False) -> RunResult:
    """Run `m` through the save points of `plan` to its end. `progress`: a bar on the
    terminal while the run is counted (vsnap/progress.py); the caller checked it is one."""
    bar = None
    if progress and (plan.wanted or count or max_instructions is not None):
        from .progress import Instructions  # here: a plain run need not load it (start-up)
        bar = Instructions(m, total=max_instructions)
        say = _share_terminal(m, bar, say)
    try:
        return _drive(m, plan, count, max_instructions, listen, say, bar)
    finally:
        if bar is not None:
            bar.close()


def _share_terminal(m: Machine, bar, say):
    """What else writes to the terminal while the bar is up clears it first: the guest's
    output, vsnap's notices and --strace lines. Returns `say`, guarded likewise."""
    con, k = m.system.console, m.system
    con.write_out, con.write_err = bar.around(con.write_out), bar.around(con.write_err)
    k.notice = bar.around(k.notice)
    if k.strace is not None:
        k.strace = bar.around(k.strace)
    return bar.around(say)


def _drive(m: Machine, plan: SavePlan, count: bool, max_instructions: int | None,
           listen: bool, say, bar) -> RunResult:
    numbered = plan.every is not None or len(plan.at) > 1
    index = 0
    if plan.wanted:
        from .snapshot import checkpoint  # here, not at the top: a plain run need not load it
        for n in plan.points(m.instructions):
            if max_instructions is not None and n > max_instructions:
                break
            if bar is not None:
                bar.note = f"next save at {n:,}" + (f", {index} saved" if index else "")
            result = m.advance(n)
            if result is not None:
                say(f"vsnap: the guest ended before instruction {n}; no image saved there")
                return result
            index += 1
            path = plan.path(index, numbered)
            checkpoint(m, path)
            say(f"vsnap: saved {path} at instruction {n}")
            if plan.stop:
                return RunResult(0, message=None, instructions=n,
                                 syscalls=m.system.syscall_count)
    if bar is not None and not (count or max_instructions is not None):
        bar.close()  # the save points are done: a plain run shows no bar
    server = host = None
    if listen:
        from .control import ControlServer
        from .hostsig import HostSignals
        host = HostSignals(m.system, _Running(m))
        try:
            server = ControlServer(_Running(m))
        except OSError as e:  # no socket: saving from outside is off, running is not
            say(f"vsnap: warning: vsnap save cannot reach this run ({e})")
        if server is not None:
            m.on_stop = lambda machine: _serve_save(machine, server, say)
            # a guest waiting on a host socket waits in select(): the request wakes it
            server.wake = lambda: os.write(host.wake_w, b"!")
    try:
        return m.run(count=count, max_instructions=max_instructions)
    finally:
        if server is not None:
            server.close()
        if host is not None:
            host.close()


class _Running:
    """The engine that runs now, for the threads that stop it (a host signal, vsnap save):
    the machine's cpu is the running process's (Machine._switch), which an exec, another
    process's turn or a --watch restart changes after the thread was made."""

    def __init__(self, m: Machine):
        self.m = m

    def stop(self) -> None:
        self.m.cpu.stop()


def _serve_save(m: Machine, server, say=say) -> RunResult | None:
    from .snapshot import checkpoint
    req = server.take()
    if req is None:
        return None
    try:
        checkpoint(m, req.path)
        req.reply = {"ok": True, "path": req.path, "instructions": m.instructions,
                     "rip": m.cpu.read("rip")}
        say(f"vsnap: saved {req.path} (requested by vsnap save)")
    except Exception as e:  # the requester gets the reason; the guest goes on
        req.reply = {"ok": False, "message": f"{type(e).__name__}: {e}"}
    finally:
        req.done.set()
    if req.stop and req.reply.get("ok"):
        req.sent.wait(5)  # do not end the process before `vsnap save` has its answer
        return RunResult(0, message=None, syscalls=m.system.syscall_count)
    return None
