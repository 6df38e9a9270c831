"""Helpers of notebook 08, "copyover: a crash no player notices".

The notebook plays programs/mud/ (mud.c, watcher.c) with real TCP clients from Python: the
server runs under `vsnap run --listen PORT` (a subprocess; vsnap opens that port on the host's
127.0.0.1 and the guest's listener takes those connections) or natively, the clients are plain
Python sockets. This module holds what the notebook needs and a student need not read: starting
and stopping a server, the players, reading the MUD's log (its fd tables), the core file's
registers, the picture of the fd table around exec, and the checks of the exercises.
"""
from __future__ import annotations

import atexit
import os
import pathlib
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

# The repository root: walk up from this file until we see pyproject.toml.
REPO = pathlib.Path(__file__).resolve().parent
while not (REPO / "pyproject.toml").exists():
    if REPO == REPO.parent:
        raise RuntimeError("notebooks/_copyover.py must stay inside the vsnap repository")
    REPO = REPO.parent
MUD_DIR = REPO / "programs" / "mud"

WAIT = 20.0   # seconds any one reply may take before we call the connection stuck

# the exercises' checks (VSNAP_REVEAL, check, shown) are the labs' own: notebooks/_lab.py
from _lab import REVEAL, check, shown  # noqa: E402,F401


# ------------------------------------------------------------------------------------------
# the programs and the servers

_BUILT: dict[str, str] = {}


def program(name: str) -> str:
    """programs/mud/NAME.c built static with musl by vsnap's zig cc (cached in ~/.cache/vsnap)."""
    if name not in _BUILT:
        from vsnap.build import build
        _BUILT[name] = build(str(MUD_DIR / f"{name}.c"))
    return _BUILT[name]


from vsnap.testing import free_port  # noqa: E402  (below the ephemeral range)


class Server:
    """One server (the MUD, or the Watcher with the MUD), in a directory of its own.

    under="vsnap": `vsnap run --root DIR --listen PORT /PROG ARGS`: DIR is the guest's "/",
    with the programs copied in as /mud and /watcher, and the guest's working directory.
    under="native": the same programs run by Linux, with DIR as their working directory.
    In ARGS, "PORT" stands for the port and "MUD" for the path of the mud program."""

    def __init__(self, work: pathlib.Path, label: str, prog: str, *args: str,
                 under: str = "vsnap"):
        if under not in ("vsnap", "native"):
            raise ValueError(f"under={under!r}: 'vsnap' or 'native'")
        self.under, self.port = under, free_port()
        self.killed = False
        self.script: list[tuple[str, str]] = []   # (player, line) as the players typed them
        self.dir = pathlib.Path(work) / label
        self.dir.mkdir(parents=True)
        for name in ("mud", "watcher"):
            shutil.copyfile(program(name), self.dir / name)
            os.chmod(self.dir / name, 0o755)
        mud = "/mud" if under == "vsnap" else str(self.dir / "mud")
        args = [str(self.port) if a == "PORT" else mud if a == "MUD" else a for a in args]
        if under == "vsnap":
            argv = [sys.executable, "-m", "vsnap", "run", "--root", str(self.dir),
                    "--listen", str(self.port), "--log", str(self.dir / "vsnap.log"),
                    str(self.dir / prog), *args]
            self.command = f"vsnap run --listen {self.port} /{prog} {' '.join(args)}"
        else:
            argv = [str(self.dir / prog), *args]
            self.command = f"./{prog} {' '.join(args)}"
        env = dict(os.environ, PYTHONPATH=str(REPO))   # this repository's vsnap
        with open(self.dir / "server.log", "wb") as err:
            # a session of its own: kill() ends the Watcher's MUD too, natively
            self.proc = subprocess.Popen(argv, cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True)
        atexit.register(self.kill)   # nothing left listening when the notebook's kernel ends

    def log(self) -> str:
        """What the server wrote on stderr so far (the MUD's log, the Watcher's)."""
        return (self.dir / "server.log").read_text(errors="replace")

    def shutdown(self) -> int:
        """An admin logs in and types `shutdown` (the MUD exits 0); the exit status."""
        admin = Player(self.port, "admin")
        admin.send("shutdown")
        admin.until_eof()
        try:
            return self.proc.wait(WAIT)
        finally:
            self.kill()

    def kill(self) -> None:
        """End the server and whatever it started (once: the group's number is not ours
        after that)."""
        if self.killed:
            return
        self.killed = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


class Dropped(AssertionError):
    """A player's connection ended when it should not have."""


class Player:
    """One player's TCP connection from the host: everything it ever received. Given a
    Server (not a port), what the player types after its name is added to the server's script,
    so that replay() can play it again."""

    def __init__(self, server: "Server | int", name: str):
        port = server.port if isinstance(server, Server) else server
        self.script = None
        deadline = time.monotonic() + WAIT
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
                break
            except ConnectionRefusedError:   # the server is not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.name, self.data, self.eof, self.seen = name, b"", False, 0
        self.quitted = False
        self.prompt()            # "Welcome to the MUD. What is your name?"
        self.do(name)
        if isinstance(server, Server):
            self.script = server.script

    def _read(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise Dropped(f"{self.name}: nothing for {WAIT:.0f} s; it had: "
                          f"{self.data.decode(errors='replace')!r}") from None
        if not chunk:
            self.eof = True
        self.data += chunk

    def prompt(self) -> str:
        """Wait for the next prompt ("> "); what came since the last one."""
        start = len(self.data)
        self.seen += 1
        while self.data.count(b"> ") < self.seen:
            if self.eof:
                raise Dropped(f"{self.name}: connection closed; it had: {self.data!r}")
            self._read()
        return self.data[start:].decode(errors="replace")

    def until(self, text: str) -> str:
        """Wait until TEXT has arrived (a line with no prompt after it); what came since."""
        start = len(self.data)
        while text.encode() not in self.data[start:]:
            if self.eof:
                raise Dropped(f"{self.name}: connection closed; it had: {self.data!r}")
            self._read()
        return self.data[start:].decode(errors="replace")

    def send(self, line: str) -> None:
        if self.script is not None:
            self.script.append((self.name, line))
        self.sock.sendall(line.encode() + b"\n")

    def do(self, line: str) -> str:
        """Send a line and wait for the prompt that ends the answer."""
        self.send(line)
        return self.prompt()

    def until_eof(self) -> None:
        while not self.eof:
            self._read()
        self.sock.close()

    def quit(self) -> None:
        self.quitted = True
        self.send("quit")
        self.until_eof()

    def connected(self) -> bool:
        """Is the connection still open? (a peek: it reads nothing)"""
        if self.eof:
            return False
        timeout = self.sock.gettimeout()
        self.sock.settimeout(0)   # with a timeout, Python would wait for data before peeking
        try:
            return self.sock.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            return True       # open, nothing to read
        except OSError:
            return False
        finally:
            self.sock.settimeout(timeout)

    def transcript(self) -> str:
        return self.data.decode(errors="replace")


def act(player: Player, line: str) -> str:
    """A player types LINE; print it and the answer (with what others did meanwhile)."""
    answer = player.do(line)
    print(f"[{player.name}] {line}")
    print("".join(f"    {ln}\n" for ln in answer.removesuffix("> ").splitlines()), end="")
    return answer


def show_transcripts(players) -> None:
    for p in players:
        state = ("still connected" if p.connected() else
                 "closed by the server after its quit" if p.quitted else "DROPPED")
        print(f"----- {p.name} ({state}) " + "-" * 40)
        print(p.transcript())
        print()


# ------------------------------------------------------------------------------------------
# the MUD's log: its fd tables ("mud: fds WHEN: 0=pipe 3=file(cloexec) 4=listen ...")

def fd_tables(log: str) -> list[tuple[str, dict[int, str]]]:
    """[(WHEN, {fd: kind})] in the order of the log."""
    out = []
    for when, table in re.findall(r"^mud: fds ([^:]+): (.*)$", log, re.M):
        out.append((when, {int(f): k for f, k in (e.split("=") for e in table.split())}))
    return out


def around_exec(log: str, n: int = 1) -> tuple[dict[int, str], dict[int, str]]:
    """The fd table just before the n-th exec of a copyover, and the one at the new image's
    start."""
    tables = fd_tables(log)
    k = [i for i, (when, _) in enumerate(tables) if when == "before exec"][n - 1]
    after = next(t for when, t in tables[k + 1:] if when == "at start")
    return tables[k][1], after


STANDARD = {0: "stdin", 1: "stdout", 2: "stderr"}
CHOICES = ["stdin", "stdout", "stderr", "mud.log", "listening socket", "copyover.dat"]   # + players


def names_of(before: dict[int, str], players: list[str]) -> dict[int, str]:
    """What each fd of the table before exec is: 0-2 by number, the one regular file is
    mud.log (the MUD opens no other file that stays open), the listener by its kind, and the
    client sockets in the order the players connected (they came one at a time, each waited
    for its welcome, and accept() gives the lowest free number)."""
    names, clients = {}, iter(players)
    for fd in sorted(before):
        kind = before[fd].replace("(cloexec)", "")
        if fd in STANDARD:
            names[fd] = STANDARD[fd]
        elif kind == "file":
            names[fd] = "mud.log"
        elif kind == "listen":
            names[fd] = "listening socket"
        elif kind == "socket":
            names[fd] = next(clients)
        else:
            names[fd] = f"fd {fd} ({kind})"
    return names


def survivors(before: dict[int, str], after: dict[int, str], players: list[str]) -> set[str]:
    """The names of the fds open before exec that are open after it, at the same number and
    of the same kind. (copyover.dat is in neither table: it was closed before the exec.)"""
    names = names_of(before, players)
    return {names[fd] for fd, kind in before.items()
            if fd in after and after[fd] == kind.replace("(cloexec)", "")}


# ------------------------------------------------------------------------------------------
# the picture: fd table before exec -> open file descriptions <- fd table after exec

def what_it_is(name: str, kind: str, port: int | None = None) -> str:
    kind = kind.replace("(cloexec)", "")
    if name in STANDARD.values():
        return f"{kind} ({name})"
    if name == "mud.log":
        return "file mud.log\nopened O_CLOEXEC"
    if name == "listening socket":
        return "TCP listener\n127.0.0.1" + (f":{port}" if port else "")
    if kind == "socket":
        return f"TCP connection\nto {name}"
    return name


def draw_exec(ax, before: dict[int, str], after: dict[int, str], players: list[str],
              port: int | None = None, title: str = "") -> None:
    """Three columns: the fd table before execve, the open file descriptions (the kernel's
    objects the fds point to), the fd table after execve. An fd that did not survive is an
    empty slot after exec, and a description no fd points to any more is crossed out."""
    from matplotlib.patches import FancyBboxPatch, Rectangle
    names = names_of(before, players)
    fds = sorted(before)
    row = {fd: -i for i, fd in enumerate(fds)}
    xb, xd, xa = 0.0, 4.2, 9.6          # the columns' left edges
    cw, dw, h = 1.6, 3.4, 0.72          # cell width, description width, row height
    for x, text in ((xb, "fd table\nbefore execve"), (xd, "open file descriptions\n(in the kernel)"),
                    (xa, "fd table\nafter execve")):
        w = dw if x == xd else cw
        ax.text(x + w / 2, 1.0, text, ha="center", va="center", fontsize=10, weight="bold")
    for fd in fds:
        y = row[fd]
        kept = fd in after and after[fd] == before[fd].replace("(cloexec)", "")
        cloexec = "cloexec" in before[fd]
        # before: the fd cell, with its close-on-exec flag
        ax.add_patch(Rectangle((xb, y - h / 2), cw, h, facecolor="#f2f2f2", edgecolor="#444"))
        ax.text(xb + 0.12, y, f"{fd}", ha="left", va="center", fontsize=11, weight="bold")
        ax.text(xb + cw - 0.1, y, "FD_CLOEXEC" if cloexec else "", ha="right", va="center",
                fontsize=7, color="#b22222")
        # the description
        colour = "#d9ead3" if kept else "#f4cccc"
        ax.add_patch(FancyBboxPatch((xd, y - h / 2), dw, h, boxstyle="round,pad=0.02",
                                    facecolor=colour, edgecolor="#444"))
        ax.text(xd + dw / 2, y, what_it_is(names[fd], before[fd], port), ha="center",
                va="center", fontsize=8)
        ax.annotate("", (xd, y), (xb + cw, y), arrowprops=dict(arrowstyle="->", color="#444"))
        # after: the same number pointing at the same description, or an empty slot
        ax.add_patch(Rectangle((xa, y - h / 2), cw, h, facecolor="#f2f2f2" if kept else "white",
                               edgecolor="#444", linestyle="-" if kept else ":"))
        if kept:
            ax.text(xa + 0.12, y, f"{fd}", ha="left", va="center", fontsize=11, weight="bold")
            ax.annotate("", (xd + dw, y), (xa, y), arrowprops=dict(arrowstyle="->", color="#444"))
        else:
            ax.text(xa + cw / 2, y, f"{fd}: closed", ha="center", va="center", fontsize=8,
                    color="#b22222")
            for sx in (1, -1):   # the description crossed out: no fd refers to it any more
                ax.plot([xd + 0.1, xd + dw - 0.1], [y - sx * h / 2.4, y + sx * h / 2.4],
                        color="#b22222", linewidth=1.5, alpha=0.6)
    # an fd that only the new image has (none in a copyover, but say so if one appears)
    extra = sorted(set(after) - set(before))
    y = row[fds[-1]] - 1.3 if fds else -1
    ax.add_patch(FancyBboxPatch((xd, y - h / 2), dw, h, boxstyle="round,pad=0.02",
                                facecolor="white", edgecolor="#888", linestyle="--"))
    ax.text(xd + dw / 2, y, "copyover.dat: opened O_CLOEXEC,\nwritten and closed before execve",
            ha="center", va="center", fontsize=7.5, color="#555")
    if extra:
        ax.text(xa, y, "new after exec: " + ", ".join(map(str, extra)), fontsize=8)
    ax.set_xlim(-0.3, xa + cw + 0.3)
    ax.set_ylim(y - 0.8, 1.5)
    ax.set_aspect("auto")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)


# ------------------------------------------------------------------------------------------
# the forked child's core: what its registers say, with no debugger

PRSTATUS_REGS = 112   # offset of pr_reg in x86-64's struct elf_prstatus
REG_INDEX = {"rax": 10, "rip": 16, "rsp": 19}   # in struct user_regs_struct


def core_registers(path) -> dict:
    """signal, pid and a few registers from an ELF core's NT_PRSTATUS note, read by hand."""
    data = pathlib.Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or struct.unpack_from("<H", data, 16)[0] != 4:   # ET_CORE
        raise ValueError(f"{path} is not an ELF core file")
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        ptype, _flags, off, _va, _pa, size = struct.unpack_from("<IIQQQQ", data,
                                                                phoff + i * phentsize)
        if ptype != 4:   # PT_NOTE
            continue
        at = off
        while at < off + size:
            namesz, descsz, ntype = struct.unpack_from("<III", data, at)
            desc = at + 12 + (namesz + 3) // 4 * 4
            if ntype == 1:   # NT_PRSTATUS
                regs = {r: struct.unpack_from("<Q", data, desc + PRSTATUS_REGS + 8 * k)[0]
                        for r, k in REG_INDEX.items()}
                return dict(signal=struct.unpack_from("<i", data, desc)[0],
                            pid=struct.unpack_from("<i", data, desc + 32)[0], **regs)
            at = desc + (descsz + 3) // 4 * 4
    raise ValueError(f"{path}: no NT_PRSTATUS note")


def functions(exe) -> dict[str, tuple[int, int]]:
    """name -> (start, end) of every function in the program's symbol table."""
    from elftools.elf.elffile import ELFFile
    with open(exe, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        return {s.name: (s["st_value"], s["st_value"] + s["st_size"])
                for s in symtab.iter_symbols()
                if s["st_info"]["type"] == "STT_FUNC" and s["st_size"]}


def function_at(exe, addr: int) -> str | None:
    return next((n for n, (a, b) in functions(exe).items() if a <= addr < b), None)


def instruction_at(exe, addr: int) -> str:
    """The instruction at a virtual address of the program, disassembled."""
    import capstone
    from elftools.elf.elffile import ELFFile
    with open(exe, "rb") as f:
        elf = ELFFile(f)
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_vaddr"] <= addr < seg["p_vaddr"] + seg["p_filesz"]:
                code = seg.data()[addr - seg["p_vaddr"]:][:16]
                insn = next(capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64).disasm(code, addr))
                return f"{insn.mnemonic} {insn.op_str}"
    raise ValueError(f"{addr:#x} is not in the program's code")


def crashed_in(exe, regs: dict) -> str:
    """Where the core's process was when it died: "on_crash" (the handler), "the crash" (the
    `crash` command's store of 42 through a NULL pointer: an instruction that writes the
    constant 42 through the register holding 0), or another function's name."""
    if function_at(exe, regs["rip"]) == "on_crash":
        return "on_crash"
    insn = instruction_at(exe, regs["rip"])
    m = re.match(r"mov dword ptr \[(\w+)\], 0x2a$", insn)
    if m and m[1] == "rax" and regs["rax"] == 0:
        return "the crash"
    return function_at(exe, regs["rip"]) or "somewhere else"


def gdb_backtrace(exe, core) -> str | None:
    """`gdb -batch -ex bt EXE CORE`'s frames, or None where gdb is not installed."""
    if shutil.which("gdb") is None:
        return None
    p = subprocess.run(["gdb", "-batch", "-nx", "-ex", "bt", str(exe), str(core)],
                       capture_output=True, text=True, timeout=120)
    lines = p.stdout.splitlines()
    # gdb shows frame #0 once as it loads the core, then the backtrace: keep the backtrace
    last = max((i for i, line in enumerate(lines) if line.startswith("#0 ")), default=len(lines))
    return "\n".join(line for line in lines[last:] if line.startswith("#"))


def workdir() -> pathlib.Path:
    """A temporary folder for the notebook's servers, removed when the kernel stops."""
    work = pathlib.Path(tempfile.mkdtemp(prefix="vsnap-notebook-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    return work


def source(name: str, pattern: str) -> None:
    """Print the lines of programs/mud/NAME.c that match PATTERN, with their numbers."""
    for n, line in enumerate((MUD_DIR / f"{name}.c").read_text().splitlines(), 1):
        if re.search(pattern, line):
            print(f"{name}.c:{n:<4} {line.strip()}")


def log_lines(server: Server, pattern: str = "", since: int = 0) -> int:
    """Print the server's log lines from line SINCE on (those matching PATTERN); returns how
    many lines the log has now, for the next call."""
    lines = server.log().splitlines()
    for line in lines[since:]:
        if re.search(pattern, line):
            print(line)
    return len(lines)


# ------------------------------------------------------------------------------------------
# "no player notices": the same script on a server that never goes down

RESTART_LINES = re.compile(r"The world shimmers[^\n]*\n|\[watcher\][^\n]*\n(> )?"
                           r"|The world settles again\.[^\n]*\n> ")


def unnoticed(transcript: str) -> str:
    """A transcript without the lines a restart adds (the copyover's, the Watcher's)."""
    return RESTART_LINES.sub("", transcript)


def replay(work: pathlib.Path, server: Server, players: list[str], skip: set[str],
           under: str = "vsnap") -> dict[str, str]:
    """Start a fresh MUD, connect PLAYERS in the same order, and play SERVER's script again
    without the lines in SKIP (the commands that brought it down), each line waited for as the
    first time; then shut it down. Each player's transcript."""
    ref = Server(work, f"{server.dir.name}-replayed", "mud", "PORT", under=under)
    try:
        clients = {name: Player(ref.port, name) for name in players}
        for name, line in server.script:
            if line in skip:
                continue
            if line == "quit":
                clients[name].quit()
            else:
                clients[name].do(line)
        if ref.shutdown() != 0:
            raise AssertionError(f"the replayed MUD did not exit 0:\n{ref.log()}")
    finally:
        ref.kill()
    return {name: c.transcript() for name, c in clients.items()}
