"""The command line: vsnap build / run / save / resume / inspect / diff / patch / core /
check."""
from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys

from .abi.consts import RLIMIT_CORE
from .errors import UsageError, VsnapError
from .proctable import DEFAULT_MAX_PROCESSES
from . import watchcli

HOST_SIGCKPT = 62  # the host's SIGRTMAX-2: hostsig.py turns it into the guest's SIGCKPT


def _size(text: str) -> int:
    """'256' (MiB), '256M', '1G' -> bytes."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("ib")
    mult = units.get(t[-1:], None)
    try:
        return int(t[:-1]) * mult if mult else int(t) << 20
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 256M or 1G)") from None


def _count(text: str) -> int:
    try:
        n = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return n


def _count0(text: str) -> int:
    """A count that may be 0 (--fdstore-max 0: the store is off, systemd's default)."""
    return 0 if text.strip() == "0" else _count(text)


class _Version(argparse.Action):
    """argparse's "version" action, with the version looked up only when asked for: the
    lookup costs a tenth of a `vsnap run hello` (see version.py)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from .version import version
        sys.stdout.write(f"vsnap {version()}\n")  # argparse's prints it on stdout too
        parser.exit()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vsnap", description="Run static x86-64 Linux programs "
                                "in an emulator, in a sandbox, deterministically.")
    p.add_argument("--version", action=_Version, nargs=0,
                   help="print vsnap's version (the one its images record) and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    b = sub.add_parser("build", help="compile a C file into a static x86-64 Linux program")
    b.add_argument("source", nargs="?")
    b.add_argument("--print-include-dir", action="store_true", help="print the directory "
                   "that holds <vsnap/checkpoint.h>, for other compilers (-I DIR)")
    b.add_argument("-o", "--output", help="where to write the program (default: SOURCE "
                   "without .c)")
    b.add_argument("--pie", action="store_true", help="build a static-pie program")

    r = sub.add_parser("run", help="run a program (an ELF file, or a .c file built on the fly)")
    r.add_argument("program")
    r.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the program")
    r.add_argument("--root", default=".", help="the host directory the guest sees as / "
                   "(default: the current directory)")
    r.add_argument("--env", action="append", default=None, metavar="K=V",
                   help="set an environment variable for the guest (repeatable)")
    r.add_argument("--max-instructions", type=_count, metavar="N",
                   help="stop the guest after N instructions")
    r.add_argument("--max-memory", type=_size, default=1 << 30, metavar="SIZE",
                   help="memory budget for the guest, all its processes together "
                   "(default 1G)")
    r.add_argument("--max-processes", type=_count, default=DEFAULT_MAX_PROCESSES,
                   metavar="N", help="most guest processes at once, zombies included "
                   f"(default {DEFAULT_MAX_PROCESSES}); a fork past it stops the run")
    r.add_argument("--strace", action="store_true", help="print each system call to stderr")
    r.add_argument("--trace", type=_count, metavar="N",
                   help="print the first N instructions, disassembled, to stderr")
    r.add_argument("--stats", action="store_true", help="print instructions, system calls, "
                   "wall and virtual time at exit")
    r.add_argument("--seed", type=int, default=0, help="seed of the guest's randomness")
    _net_options(r)
    r.add_argument("--ckptfile", metavar="TEMPLATE", help="where sys_checkpoint and SIGCKPT "
                   "save (default %%N.ckpt: %%N the program's name, %%P its pid, in the "
                   "guest's current directory)")
    _log_options(r)
    _save_options(r)
    _crash_options(r)
    watchcli.add_options(r, _count0)

    s = sub.add_parser("save", help="checkpoint a `vsnap run` running in another terminal")
    s.add_argument("pid", type=int, help="the pid of that vsnap run (ps shows it)")
    s.add_argument("-o", "--output", default=None, help="image to write (default "
                   "vsnap-PID.img)")
    s.add_argument("--exit", action="store_true", help="stop the guest after saving")
    s.add_argument("--signal", action="store_true", help="send the guest SIGCKPT instead, as "
                   "DragonFly's ^E does: the guest decides (its handler, or by default a "
                   "checkpoint to its template, %%N.ckpt)")

    z = sub.add_parser("resume", help="continue a saved guest in this process")
    z.add_argument("image")
    z.add_argument("--root", help="sandbox root (default: the one recorded in the image)")
    z.add_argument("--program", help="where the program is now, if it moved")
    z.add_argument("--force", action="store_true", help="resume even if open files "
                   "changed since the save (say what is risked)")
    z.add_argument("--as-dragonfly", action="store_true", help="resume as DragonFly BSD's "
                   "checkpt(1) would: a new pid, process group and session, fds 0-2 from "
                   "this terminal; refuse deleted-but-open files, pipes, several processes")
    z.add_argument("--strace", action="store_true", help="print each system call to stderr")
    z.add_argument("--stats", action="store_true", help="print instructions, system calls, "
                   "wall and virtual time at exit")
    z.add_argument("--max-instructions", type=_count, metavar="N",
                   help="stop the guest after N more instructions")
    z.add_argument("--retval", type=int, default=1, metavar="N",
                   help="what the guest's sys_checkpoint call that made the image returns "
                   "(default 1; <vsnap/checkpoint.h>)")
    _net_options(z)
    z.add_argument("--ckptfile", metavar="TEMPLATE", help="where sys_checkpoint and SIGCKPT "
                   "save (default %%N.ckpt: %%N the program's name, %%P its pid)")
    _log_options(z)
    _save_options(z)
    _crash_options(z)

    i = sub.add_parser("inspect", help="show what an image holds, as CRIU's crit does")
    i.add_argument("image")
    i.add_argument("view", nargs="?", default="summary",
                   choices=("summary", "fds", "mems", "regs", "kernel", "tree"))
    i.add_argument("--json", action="store_true", help="machine-readable output")

    d = sub.add_parser("diff", help="what changed between two images")
    d.add_argument("a")
    d.add_argument("b")

    c = sub.add_parser("core", help="write an ELF core file of a saved guest, for gdb")
    c.add_argument("image")
    c.add_argument("-o", "--output", default="core", help="core file to write (default: core)")
    c.add_argument("--signal", type=int, help="the signal the core says it died of (default: "
                   "the crash's own, or 11, SIGSEGV)")

    k = sub.add_parser("check", help="property-test checkpoint/restore on a program: is it "
                       "transparent? if not, the smallest counterexample")
    k.add_argument("program")
    k.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the program")
    k.add_argument("--examples", type=_count, default=50, help="checkpoint examples to try")
    k.add_argument("--seed", type=int, default=0, help="hypothesis seed (same seed, same "
                   "examples)")
    k.add_argument("--root", help="a directory whose copy is the guest's root in every run "
                   "(default: an empty one)")
    k.add_argument("--stdin", metavar="FILE", help="the guest's standard input")

    t = sub.add_parser("patch", help="change registers or bytes of a saved guest")
    t.add_argument("image")
    t.add_argument("--set", action="append", default=[], metavar="REG=VALUE",
                   help="set a register, e.g. rax=0 or rip=0x401234 (repeatable)")
    t.add_argument("--poke", action="append", default=[], metavar="ADDR=HEX",
                   help="write bytes, e.g. 0x401000=9090 (repeatable)")
    t.add_argument("-o", "--output", help="write the patched image here (default: in place)")
    t.add_argument("--root", help="sandbox root (default: the one recorded in the image)")
    return p


def _net_options(p) -> None:
    p.add_argument("--listen", action="append", metavar="PORT", help="a guest listening on "
                   "TCP port PORT of its loopback listens on the host's 127.0.0.1:PORT too "
                   "(repeatable; hostnet.py)")
    p.add_argument("--connect", action="append", metavar="HOST:PORT", help="let the guest "
                   "open TCP connections to HOST:PORT on the host (repeatable)")


def _log_options(p) -> None:
    p.add_argument("--log", metavar="FILE", help="write vsnap's own lines (notices of "
                   "unimplemented calls, warnings, --strace, --stats) to FILE, appended, "
                   "never to the guest's stderr")
    p.add_argument("-q", "--quiet", action="store_true", help="drop vsnap's notices and "
                   "confirmations (what --stats/--strace print, and errors, still show)")


def _crash_options(p) -> None:
    p.add_argument("--save-on-crash", metavar="IMAGE", help="if the guest crashes, save it "
                   "at the faulting instruction, before the signal kills it")
    p.add_argument("--core", metavar="FILE", help="ulimit -c unlimited: a process that dumps "
                   "core writes 'core' in its working directory, and vsnap also writes it "
                   "on the host at FILE (FILE.PID for a process other than the first)")


def _save_options(p) -> None:
    p.add_argument("--save-at", type=_count, action="append", default=[], metavar="N",
                   help="checkpoint after exactly N instructions (repeatable; counted from "
                   "the program's start)")
    p.add_argument("--save-every", type=_count, metavar="N",
                   help="checkpoint every N instructions, a numbered series")
    p.add_argument("-o", "--output", help="image path (numbered .0001, .0002 for a series)")
    p.add_argument("--exit", action="store_true", help="stop the guest after the first save "
                   "(otherwise it goes on)")


def _program_path(path: str) -> str:
    if not os.path.exists(path):
        from .errors import ProgramNotFound
        raise ProgramNotFound(f"vsnap: {path}: no such file; give an ELF program or a .c "
                              f"file")
    if path.endswith(".c"):
        from .build import build
        return build(path)
    return path


def cmd_build(a) -> int:
    from .build import INCLUDE_DIR, build
    if a.print_include_dir:
        print(INCLUDE_DIR)
        return 0
    if a.source is None:
        raise UsageError("vsnap build: give a C source file (or --print-include-dir)")
    out = a.output or (a.source[:-2] if a.source.endswith(".c") else a.source + ".out")
    build(a.source, out, pie=a.pie)
    print(out)
    return 0


class _Lines:
    """Where vsnap's own lines go: stderr (flushed at once, so that they interleave rightly
    with the guest's output), or the --log file; --quiet drops the notices."""

    out = sys.stderr
    quiet = False


def _say(line: str) -> None:
    """A line the user asked for or must see (--stats, --strace, how the guest ended)."""
    _Lines.out.write(line + "\n")
    _Lines.out.flush()


def _notice(line: str) -> None:
    """A line the user may silence with --quiet (unimplemented calls, confirmations)."""
    if not _Lines.quiet:
        _say(line)


def _open_log(a) -> None:
    _Lines.quiet = bool(getattr(a, "quiet", False))
    path = getattr(a, "log", None)
    if path:
        try:
            _Lines.out = open(path, "a", encoding="utf-8", errors="backslashreplace")
        except OSError as e:
            raise UsageError(f"vsnap: --log {path}: {e.strerror}") from None


@contextlib.contextmanager
def _no_collection():
    """Start-up: the modules a run loads make a few hundred thousand objects that live as long
    as the process; the cyclic collector would walk them again and again while they are made
    (~3 ms of a `vsnap run hello`). Off for the imports only: it is on while a guest runs."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def cmd_run(a) -> int:
    with _no_collection():
        from . import control, driver, hostsig  # noqa: F401  (what drive() loads: here, see above)
        from .machine import DEFAULT_ENV, Machine
        from .trace import disassemble_one
    env = list(DEFAULT_ENV)
    for kv in a.env or ():
        if "=" not in kv:
            raise UsageError(f"vsnap: --env {kv}: expected K=V")
        env = [e for e in env if e.split("=", 1)[0] != kv.split("=", 1)[0]] + [kv]
    net = _net(a)
    program = _program_path(a.program)
    watch = watchcli.from_args(a, program, env, net)
    m = watch.machine if watch is not None else \
        Machine(program, a.args, argv0=a.program if a.program.endswith(".c") else None,
                env=env, root=a.root, seed=a.seed, max_memory=a.max_memory,
                max_processes=a.max_processes)
    m.log = _notice
    m.system.net = net
    if a.ckptfile:
        m.system.ckpt_template = a.ckptfile
    if a.strace:
        m.system.strace = _say
    if a.trace:
        m.cpu.trace_instructions(a.trace, lambda addr, code: _say(
            f"{addr:#014x}: {code.hex():<20} {disassemble_one(code, addr)}"))
    try:
        return _drive(m, a, max_instructions=a.max_instructions)
    finally:
        if watch is not None:
            watch.close()


def _net(a):
    """The host network policy of --listen/--connect (None: the guest reaches nothing)."""
    if not (a.listen or a.connect):
        return None
    from .hostnet import from_args
    return from_args(a)


def _drive(m, a, max_instructions=None) -> int:
    from .driver import SavePlan, drive
    from .crashdump import saver
    if getattr(a, "save_on_crash", None):
        m.on_crash = saver(a.save_on_crash, _notice)
    if getattr(a, "core", None):
        m.core_file = a.core  # and a copy of each core on the host (crashdump.py)
        # --core is the user's `ulimit -c unlimited`: the soft limit goes up to the hard one
        hard = m.process.limits.get(RLIMIT_CORE)[1]
        m.process.limits.values[RLIMIT_CORE] = (hard, hard)
    plan = SavePlan(a.output, a.save_at, a.save_every, a.exit)
    if (plan.wanted or a.exit) and not a.output:
        raise UsageError("vsnap: --save-at/--save-every need -o IMAGE (where to save)")
    from .progress import wanted
    from .terminal import restore_host
    try:
        result = drive(m, plan, count=a.stats, max_instructions=max_instructions,
                       say=_notice, progress=wanted(quiet=_Lines.quiet))
    finally:  # the host terminal as it was, before vsnap's last lines (and at exit: atexit)
        restore_host()
        if m.system.net is not None:
            m.system.net.close_all()  # the host's ports go back when the guest ends
    sys.stdout.flush()
    if result.message:
        _say(result.message)
    if a.stats:
        from .diag import refused_summary
        peak = "" if result.peak_memory is None else \
            f", peak memory {result.peak_memory >> 10} KiB touched"
        _say(f"vsnap: {result.instructions} instructions, {result.syscalls} system calls, "
             f"{result.seconds:.3f} s wall, {result.virtual_ns / 1e9:.6f} s virtual, "
             f"exit status {result.status}{peak}")
        refused = refused_summary(m.system.refused)
        if refused:  # nothing refused: the one line of counts, as before
            _say(refused)
        net = m.system.net and m.system.net.summary()
        if net:
            _say(net)
    return result.status


def cmd_save(a) -> int:
    from .control import SaveFailed, request_save, socket_path
    if a.signal:
        if not os.path.exists(socket_path(a.pid)):
            raise SaveFailed(f"vsnap: no vsnap run with pid {a.pid} is listening "
                             f"({socket_path(a.pid)} is missing); check the pid with ps")
        os.kill(a.pid, HOST_SIGCKPT)  # vsnap run hands it to the guest (hostsig.py)
        print(f"sent SIGCKPT to the guest of vsnap run {a.pid}")
        return 0
    out = a.output or f"vsnap-{a.pid}.img"
    reply = request_save(a.pid, out, a.exit)
    if not reply.get("ok"):
        raise SaveFailed(f"vsnap: vsnap run {a.pid} could not save: {reply.get('message')}")
    where = reply.get("instructions")
    print(f"saved {reply['path']}" + (f" at instruction {where}" if where is not None else "")
          + f", rip {reply['rip']:#x}" + ("; the guest stopped" if a.exit else ""))
    return 0


def cmd_resume(a) -> int:
    from .kernel import Console
    from .snapshot import restore
    net = _net(a)
    m, warnings = restore(a.image, root=a.root, program=a.program, force=a.force,
                          console=Console.host(), retval=a.retval,
                          as_dragonfly=a.as_dragonfly)
    if a.ckptfile:
        m.system.ckpt_template = a.ckptfile
    m.log = _notice
    m.system.terminal.reapply()  # the guest's terminal settings, on this host terminal
    m.system.net = net
    for w in warnings:
        _say(w)
    from .snapshot.inetsockimage import reopen_host_listeners
    reopen_host_listeners(m, _say)  # host sides of listeners: only with the same --listen
    if a.strace:
        m.system.strace = _say
    budget = None if a.max_instructions is None else m.instructions + a.max_instructions
    return _drive(m, a, max_instructions=budget)  # N more than the image's


def cmd_inspect(a) -> int:
    from .snapshot import load
    from .snapshot.inspect import as_json, render
    img = load(a.image)
    print(as_json(img, a.view) if a.json else render(img, a.view))
    return 0


def cmd_check(a) -> int:
    from .check import check, report
    from .testing import Guest
    if a.root and not os.path.isdir(a.root):
        raise UsageError(f"vsnap: --root {a.root}: not a directory")
    stdin = b""
    if a.stdin:
        try:
            with open(a.stdin, "rb") as f:
                stdin = f.read()
        except OSError as e:
            raise UsageError(f"vsnap: --stdin {a.stdin}: {e.strerror}") from None
    program = os.path.abspath(_program_path(a.program))
    guest = Guest(program, tuple(a.args), stdin=stdin,
                  template=os.path.abspath(a.root) if a.root else None)
    from .progress import Examples, wanted
    if wanted(quiet=_Lines.quiet):
        with Examples(a.examples) as bar:
            verdict = check(guest, examples=a.examples, seed_=a.seed, progress=bar)
    else:
        verdict = check(guest, examples=a.examples, seed_=a.seed)
    print(report(guest, verdict))
    return 0 if verdict.transparent else 1


def cmd_core(a) -> int:
    from .snapshot import load
    from .snapshot.coredump import write_core
    from .abi.signals import NUMBERS
    img = load(a.image)
    crash = img.kernel.get("crash")
    signo = a.signal or (NUMBERS[crash["signal"]] if crash else 11)
    write_core(img, a.output, signo)
    print(f"wrote {a.output}; open it with: gdb {img.program['path']} {a.output}")
    return 0


def cmd_patch(a) -> int:
    from .snapshot.patch import parse_poke, parse_set, patch
    if not a.set and not a.poke:
        raise UsageError("vsnap: patch needs --set REG=VALUE or --poke ADDR=HEX")
    sets = [parse_set(x) for x in a.set]
    pokes = [parse_poke(x) for x in a.poke]
    for line in patch(a.image, a.output or a.image, sets, pokes, root=a.root):
        print(line)
    return 0


def cmd_diff(a) -> int:
    from .snapshot import load
    from .snapshot.inspect import diff
    print(diff(load(a.a), load(a.b)))
    return 0


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    try:
        _open_log(a)
        return {"build": cmd_build, "run": cmd_run, "save": cmd_save, "resume": cmd_resume,
                "inspect": cmd_inspect, "diff": cmd_diff, "core": cmd_core,
                "patch": cmd_patch, "check": cmd_check}[a.command](a)
    except VsnapError as e:
        msg = str(e)
        sys.stderr.write((msg if msg.startswith("vsnap:") else f"vsnap: {msg}") + "\n")
        return e.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141
    finally:
        if _Lines.out is not sys.stderr:
            _Lines.out.close()
            _Lines.out = sys.stderr
        # the process ends soon: its objects need not be walked once more by the collector
        # at exit (~7 ms of a `vsnap run hello`); finalizers and atexit still run
        if argv is None:
            gc.freeze()
