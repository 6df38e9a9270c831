"""programs/mud/: the three designs of seeds/000, played by real clients over TCP.

Each scenario connects three clients (alice, bob, carol), plays a script, makes the server go
down in the middle (a `copyover`, a `crash` handled by copyover, a crash under the Watcher, a
fork-to-core crash, a crash under a socket-activation + fd-store supervisor) and plays on. What
"no player notices" means here, checked for each:

- no connection drops: every client reads to its own `quit`, never an early EOF;
- each transcript, once the restart's own lines are taken out ("The world shimmers...",
  "The world settles again. You are in the ROOM.", the Watcher's "[watcher] ..."), is byte for
  byte the transcript of the same script played on a server that never went down;
- each player comes back in the room it was in;
- the server's log shows what happened to the process (fd tables around exec, wait statuses).

Scenarios take a `launcher`: how the programs start. Natively (musl built by vsnap's zig cc,
glibc by gcc -static) and under vsnap (`vsnap run --listen PORT ...`, the clients real host
sockets); the transcript checks are the same for all.
"""
from __future__ import annotations

import array
import os
import re
import resource
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import have_gcc_static, require_native, shell_status
from mudharness import FdStoreSupervisor
from vsnap.build import build as vsnap_build

MUD_DIR = Path(__file__).resolve().parent.parent / "programs" / "mud"
WAIT = 20.0   # seconds any one reply may take (a slow machine, vsnap)


# ------------------------------------------------------------------------------------------------
# launchers: how the MUD's programs start (the lead adds the vsnap ones)

_BUILT: dict[tuple[str, str], str] = {}


def built(name: str, flavour: str, outdir: Path) -> str:
    key = (name, flavour)
    if key not in _BUILT:
        src = str(MUD_DIR / f"{name}.c")
        if flavour == "musl":
            _BUILT[key] = vsnap_build(src)
        else:
            if not have_gcc_static():
                pytest.skip("no gcc -static here: cannot build the glibc flavour")
            out = outdir / f"{name}.{flavour}"
            subprocess.run(["gcc", "-static", "-O2", "-g", "-Wall", "-D_GNU_SOURCE", "-o", str(out),
                            src], check=True, capture_output=True, timeout=300)
            _BUILT[key] = str(out)
    return _BUILT[key]


class Running:
    """A started server: its log (stderr) and its end."""

    def __init__(self, proc=None, supervisor=None, log: Path | None = None):
        self.proc, self.supervisor, self.log_path = proc, supervisor, log

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        """Its status as a shell shows it (the supervisor's: its service's last)."""
        if self.supervisor is not None:
            status = self.supervisor.wait(timeout)
            return shell_status(os.waitstatus_to_exitcode(status))
        return shell_status(self.proc.wait(timeout))   # 128 + signal, as vsnap's CLI exits

    def kill(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        elif self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class NativeLauncher:
    """The programs as Linux runs them."""

    PENDING: dict[str, str] = {}   # a design this launcher cannot run yet -> why

    def needs(self, what: str) -> None:
        """Skip, saying why, a scenario that needs what this launcher lacks so far."""
        if what in self.PENDING:
            pytest.skip(f"{self.name}: {self.PENDING[what]}")

    def __init__(self, flavour: str, tmp: Path):
        require_native()
        self.name = f"native-{flavour}"
        self.flavour = flavour
        self.tmp = tmp
        self.bins = {n: built(n, flavour, tmp) for n in ("mud", "watcher")}

    def prog(self, name: str) -> str:
        """The path of `mud` or `watcher` as a program (the Watcher's argument) names it."""
        return self.bins[name]

    def start(self, argv: list[str], port: int, cwd: Path, *, core: bool = False) -> Running:
        """argv[0] is a prog(); natively a crash's core goes where core_pattern says."""
        log = cwd / "server.log"
        with open(log, "wb") as err:
            proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err)
        return Running(proc=proc, log=log)

    def supervise(self, argv: list[str], port: int, cwd: Path, *, abstract=True) -> Running:
        """Socket activation and the fd store (what `vsnap run --watch` does)."""
        log = cwd / "server.log"
        err = open(log, "wb")
        sup = FdStoreSupervisor(argv, port, cwd=str(cwd), env={"PATH": "/usr/bin:/bin"},
                                stderr=err, abstract=abstract)
        err.close()   # the supervisor's child gets a dup at each start
        sup.stderr = open(log, "ab")
        return Running(supervisor=sup.start(), log=log)

    def core_files(self, cwd: Path) -> list[Path] | None:
        """Where a crashed child's core is, or None where the kernel does not write files we
        can find (a pipe to systemd-coredump or apport, an absolute directory)."""
        pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
        if pattern.startswith("|") or "/" in pattern:
            return None
        return sorted(p for p in cwd.iterdir() if p.name.startswith(pattern.split("%")[0]))


class VsnapLauncher(NativeLauncher):
    """The same programs under `vsnap run --listen PORT` (the directory of the run is the
    sandbox root, the programs copied into it as /mud and /watcher), and the fd-store
    supervision under `vsnap run --watch` (systemd's conventions, as tests/mudharness.py)."""

    PENDING: dict[str, str] = {}   # what a scenario needs that vsnap lacks so far: why

    def __init__(self, flavour: str, tmp: Path):
        super().__init__(flavour, tmp)
        self.name = f"vsnap-{flavour}"

    def prog(self, name: str) -> str:
        return "/" + name   # inside the root

    def _argv(self, argv, port, cwd, extra=()) -> list[str]:
        for name, path in self.bins.items():
            shutil.copyfile(path, cwd / name)
            os.chmod(cwd / name, 0o755)
        return [sys.executable, "-m", "vsnap", "run", "--root", str(cwd), "--listen", str(port),
                "--log", str(cwd / "vsnap.log"), *extra, str(cwd) + argv[0], *argv[1:]]

    def start(self, argv, port, cwd, *, core: bool = False) -> Running:
        extra = ("--core", str(cwd / "core")) if core else ()
        return super().start(self._argv(argv, port, cwd, extra), port, cwd)

    def supervise(self, argv, port, cwd, *, abstract=True) -> Running:
        # Restart=on-failure, as tests/mudharness.py: the MUD's shutdown is an exit 0
        # without STOPPING=1, which --watch's default (Restart=always) would restart
        self.needs("fdstore")
        return super().start(self._argv(argv, port, cwd, ("--watch", "--restart",
                                                            "on-failure")), port, cwd)

    def core_files(self, cwd: Path) -> list[Path]:
        """`--core FILE` writes a child's core as FILE.PID (README, Crashes)."""
        return sorted(cwd.glob("core.*"))


# how the servers start (MUD_LAUNCHERS=vsnap-musl,... picks some); each vsnap scenario takes
# a few seconds, both flavours stay in the default tier
LAUNCHERS = os.environ.get("MUD_LAUNCHERS",
                           "native-musl,native-glibc,vsnap-musl,vsnap-glibc").split(",")


def make_launcher(name: str, tmp: Path):
    kind, flavour = name.split("-", 1)
    if kind == "native":
        return NativeLauncher(flavour, tmp)
    if kind == "vsnap":
        return VsnapLauncher(flavour, tmp)
    raise ValueError(f"no launcher {name}")


@pytest.fixture(params=LAUNCHERS)
def launcher(request, tmp_path_factory):
    return make_launcher(request.param, tmp_path_factory.mktemp("bin-" + request.param))


# ------------------------------------------------------------------------------------------------
# clients and scripts

from vsnap.testing import free_port  # noqa: E402  (below the ephemeral range)


class Client:
    """One player's connection: everything it ever received, and how many prompts ("> ")."""

    def __init__(self, port: int):
        deadline = time.monotonic() + WAIT
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
                break
            except ConnectionRefusedError:   # the server is not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.data = b""
        self.eof = False
        self.seen = 0   # prompts waited for so far

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            self.eof = True
        self.data += chunk

    def prompts(self, n: int = 1) -> None:
        """Wait for n more prompts."""
        self.seen += n
        while self.data.count(b"> ") < self.seen:
            assert not self.eof, f"connection dropped; it had: {self.data!r}"
            self._read()

    def until(self, text: bytes) -> None:
        while text not in self.data:
            assert not self.eof, f"connection dropped waiting for {text!r}: {self.data!r}"
            self._read()

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def until_eof(self) -> None:
        while not self.eof:
            self._read()
        self.sock.close()


NAMES = ["alice", "bob", "carol"]
BEFORE = [(0, "alice"), (1, "bob"), (2, "carol"), (0, "say hello, everyone"),
          (1, "go garden"), (2, "go garden"), (2, "say the bees are busy"), (0, "look")]
AFTER = [(0, "who"), (1, "say still here?"), (2, "look"), (0, "go garden"), (1, "go library"),
         (0, "say where did bob go?"), (0, "quit"), (1, "who"), (1, "quit"), (2, "quit")]
RESTART = "restart"   # the step where a scenario brings the server down


def play(port: int, restart=None) -> tuple[list[bytes], dict]:
    """BEFORE, the restart (a function of the clients), AFTER; each client's transcript, and
    the room of each player when the restart came."""
    clients = []
    for _ in NAMES:           # one at a time: the server's order of arrivals is fixed
        c = Client(port)
        c.prompts()
        clients.append(c)
    rooms = {n: "hall" for n in NAMES}
    at_restart = {}
    steps = BEFORE + ([RESTART] if restart else []) + AFTER
    for step in steps:
        if step == RESTART:
            at_restart = dict(rooms)
            restart(clients)
            continue
        who, line = step
        c = clients[who]
        c.send(line)
        if line == "quit":
            c.until_eof()
        else:
            c.prompts()
        if line.startswith("go "):
            rooms[NAMES[who]] = line[3:]
    for c in clients:
        assert c.eof   # each left by its own quit, after every prompt it waited for
    return [c.data for c in clients], at_restart


def by_command(command: str):
    """A restart: alice sends COMMAND; every player then gets the world back with a prompt."""
    def restart(clients):
        clients[0].send(command)
        for c in clients:
            c.prompts()
    return restart


RESTART_LINES = re.compile(rb"The world shimmers[^\n]*\n|\[watcher\][^\n]*\n(> )?"
                           rb"|The world settles again\.[^\n]*\n> ")


def unnoticed(transcripts: list[bytes]) -> list[bytes]:
    return [RESTART_LINES.sub(b"", t) for t in transcripts]


def shutdown(port: int) -> None:
    """An admin logs in and ends the world (exit 0)."""
    c = Client(port)
    c.prompts()
    c.send("admin")
    c.prompts()
    c.send("shutdown")
    c.until_eof()


_REFERENCE: dict[str, list[bytes]] = {}


def reference(launcher, tmp: Path) -> list[bytes]:
    """The script on a server that never goes down (once per launcher)."""
    if launcher.name not in _REFERENCE:
        cwd = tmp / "reference"
        cwd.mkdir()
        port = free_port()
        server = launcher.start([launcher.prog("mud"), str(port)], port, cwd)
        try:
            transcripts, _ = play(port)
            shutdown(port)
            assert server.wait(WAIT) == 0, server.log()
        finally:
            server.kill()
        _REFERENCE[launcher.name] = transcripts
    return _REFERENCE[launcher.name]


def check_unnoticed(launcher, tmp, transcripts, at_restart, restarts=1) -> None:
    assert unnoticed(transcripts) == reference(launcher, tmp)
    for name, t in zip(NAMES, transcripts):
        came_back = re.findall(rb"The world settles again\. You are in the (\w+)\.", t)
        assert came_back == [at_restart[name].encode()] * restarts, (name, t)


def fd_tables(log: str) -> list[tuple[str, dict[int, str]]]:
    """The "mud: fds WHEN: 0=chr 3=listen ..." lines: [(WHEN, {fd: kind})]."""
    out = []
    for when, table in re.findall(r"^mud: fds ([^:]+): (.*)$", log, re.M):
        out.append((when, {int(f): k for f, k in (e.split("=") for e in table.split())}))
    return out


# ------------------------------------------------------------------------------------------------
# the scenarios

def run_copyover(launcher, tmp: Path, command: str, *extra: str):
    cwd = tmp / command
    cwd.mkdir()
    port = free_port()
    server = launcher.start([launcher.prog("mud"), *extra, str(port)], port, cwd,
                            core="--forkcore" in extra)
    try:
        transcripts, at_restart = play(port, by_command(command))
        shutdown(port)
        assert server.wait(WAIT) == 0, server.log()   # the same process all along
    finally:
        server.kill()
    return transcripts, at_restart, server.log(), cwd


def test_copyover_command(launcher, tmp_path):
    transcripts, at_restart, log, cwd = run_copyover(launcher, tmp_path, "copyover")
    check_unnoticed(launcher, tmp_path, transcripts, at_restart)
    assert all(b"The world shimmers as it is rebuilt...\n" in t for t in transcripts)
    # the fd table: the event log (a file) is close-on-exec, the sockets are not
    tables = dict((w, t) for w, t in fd_tables(log) if w in ("before exec",))
    before = tables["before exec"]
    after = [t for w, t in fd_tables(log) if w == "at start"][1]
    kept = {fd: k for fd, k in before.items() if "cloexec" not in k}
    gone = {fd for fd, k in before.items() if "cloexec" in k}
    assert any(k == "file(cloexec)" for k in before.values()), log
    assert sorted(k for k in kept.values()).count("socket") == 3, log
    assert after == kept and not gone & after.keys(), log
    assert "copyover: the file gave back 3 players" in log
    assert not (cwd / "copyover.dat").exists()   # read once, then gone


def test_crash_copyover(launcher, tmp_path):
    transcripts, at_restart, log, _ = run_copyover(launcher, tmp_path, "crash")
    check_unnoticed(launcher, tmp_path, transcripts, at_restart)
    assert all(b"The world shimmers: something broke" in t for t in transcripts)
    assert "mud: caught signal 11; saving the players and re-executing" in log


def test_stack_overflow_copyover(launcher, tmp_path):
    """A crash with no stack left (`overflow` recurses until SIGSEGV): the handler runs on
    its own stack (sigaltstack, SA_ONSTACK), set again after each exec."""
    transcripts, at_restart, log, _ = run_copyover(launcher, tmp_path, "overflow")
    check_unnoticed(launcher, tmp_path, transcripts, at_restart)
    assert "mud: caught signal 11; saving the players and re-executing" in log


def test_fork_to_core(launcher, tmp_path):
    transcripts, at_restart, log, cwd = run_copyover(launcher, tmp_path, "crash", "--forkcore")
    check_unnoticed(launcher, tmp_path, transcripts, at_restart)
    lines = [ln for ln in log.splitlines() if "fork-to-core" in ln]
    assert len(lines) == 1, log
    if resource.getrlimit(resource.RLIMIT_CORE)[1] == 0:
        assert "died of signal 11 (no core" in lines[0]
        return
    assert "died of signal 11 (core dumped)" in lines[0]   # WCOREDUMP of its wait status
    cores = launcher.core_files(cwd)
    if cores is None:   # piped to a handler: the wait status is what we can see
        return
    assert len(cores) == 1, cores
    # the forked child's core (its pid is in the log line), of the crash's signal
    child = int(re.search(r"the child (\d+) died", lines[0]).group(1))
    assert prstatus(cores[0]) == (11, child)
    if shutil.which("gdb"):   # and its backtrace is the crash's, not the handler's
        bt = subprocess.run(["gdb", "-batch", "-nx", "-ex", "bt", launcher.bins["mud"],
                             str(cores[0])], capture_output=True, text=True, timeout=120).stdout
        frames = [ln for ln in bt.splitlines() if ln.startswith("#")]
        assert frames and " command (" in frames[0] and '"crash"' in frames[0], bt
        assert not any("on_crash" in f for f in frames), bt


def prstatus(path: Path) -> tuple[int, int]:
    """(signal, pid) from an ELF core's NT_PRSTATUS note (struct elf_prstatus: si_signo at 0,
    pr_pid at 32), read by hand."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and struct.unpack_from("<H", data, 16)[0] == 4   # ET_CORE
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
                return (struct.unpack_from("<i", data, desc)[0],
                        struct.unpack_from("<i", data, desc + 32)[0])
            at = desc + (descsz + 3) // 4 * 4
    raise AssertionError(f"no NT_PRSTATUS in {path}")


def test_watcher_restart(launcher, tmp_path):
    launcher.needs("watcher")
    port = free_port()
    cwd = tmp_path / "watcher"
    cwd.mkdir()
    down_ms = "1000"   # the Watcher answers the players itself for a second

    def crash(clients):
        clients[0].send("crash")
        clients[1].until(b"[watcher] The world is being rebuilt...\n")
        clients[1].send("look")   # answered by the Watcher: the MUD is not there
        clients[1].prompts(2)     # the Watcher's answer, then the world again
        clients[0].prompts()
        clients[2].prompts()

    server = launcher.start([launcher.prog("watcher"), str(port), launcher.prog("mud"),
                             "--down-ms", down_ms], port, cwd)
    try:
        transcripts, at_restart = play(port, crash)
        shutdown(port)
        assert server.wait(WAIT) == 0, server.log()
    finally:
        server.kill()
    log = server.log()
    check_unnoticed(launcher, tmp_path, transcripts, at_restart)
    assert b"[watcher] The world is being rebuilt, bob. Please wait.\n> " in transcripts[1]
    assert "watcher: the mud died of signal 11; I still hold 3 client sockets" in log
    assert "handed it the listening socket and 3 players" in log
    # the new MUD's fds came over the Unix socket, not by inheritance: at its start it has only
    # the socketpair's end (fd 3); after the handover the listener and three players
    tables = fd_tables(log)
    starts = [t for w, t in tables if w == "at start"]
    handovers = [t for w, t in tables if w == "after the watcher's handover"]
    assert len(starts) == 2 and all(sorted(t) == [0, 1, 2, 3] for t in starts), log
    assert list(handovers[1].values()).count("socket") == 4, log   # the pair's end + 3
    assert list(handovers[1].values()).count("listen") == 1, log


def test_copyover_under_the_watcher(launcher, tmp_path):
    """The two designs together: a copyover re-executes the watched MUD, which keeps its fds
    (the Watcher's socket too) and goes on telling the Watcher; a crash after it is the
    Watcher's to mend, with the players as they were after the copyover."""
    launcher.needs("watcher")
    port = free_port()

    def both(clients):
        by_command("copyover")(clients)
        by_command("crash")(clients)

    server = launcher.start([launcher.prog("watcher"), str(port), launcher.prog("mud")],
                            port, tmp_path)
    try:
        transcripts, at_restart = play(port, both)
        shutdown(port)
        assert server.wait(WAIT) == 0, server.log()
    finally:
        server.kill()
    check_unnoticed(launcher, tmp_path, transcripts, at_restart, restarts=2)
    log = server.log()
    assert "mud: copyover: the file gave back 3 players" in log
    assert "watcher: started the mud, handed it the listening socket and 3 players" in log


def run_supervised(launcher, tmp, *, abstract: bool):
    launcher.needs("fdstore")
    port = free_port()
    cwd = tmp / ("fdstore-abstract" if abstract else "fdstore-path")
    cwd.mkdir()
    server = launcher.supervise([launcher.prog("mud")], port, cwd, abstract=abstract)
    try:
        transcripts, at_restart = play(port, by_command("crash"))
        shutdown(port)
        assert server.wait(WAIT) == 0, server.log()
    finally:
        server.kill()
    return transcripts, at_restart, server


def test_fd_store_restart(launcher, tmp_path):
    transcripts, at_restart, server = run_supervised(launcher, tmp_path, abstract=True)
    check_unnoticed(launcher, tmp_path, transcripts, at_restart)
    # no copyover here: the process died of SIGSEGV and the supervisor started a new one
    # with the listener and the three stored connections
    assert b"shimmers" not in b"".join(transcripts)
    log = server.log()
    sup = server.supervisor   # the native launcher's: tests/mudharness.py
    if sup is not None:
        assert [os.WIFSIGNALED(s) and os.WTERMSIG(s) for s in sup.statuses] == [11, False]
        assert sup.stored_at_death[0] == ["player-alice", "player-bob", "player-carol"]
        assert sup.ready == 2
        assert sup.store == {}   # each quit took its fd out (FDSTOREREMOVE)
    assert "mud: from the fd store: player-bob" in log
    assert log.count("mud: socket activation: 1 fds") == 1
    assert log.count("mud: socket activation: 4 fds") == 1


def test_fd_store_hears_only_the_service(tmp_path):
    """The supervisor takes notifications from the service's own pid only (systemd's
    NotifyAccess=main): another process's FDSTORE is dropped, its fd closed."""
    launcher = make_launcher("native-musl", tmp_path)
    port = free_port()
    server = launcher.supervise([launcher.prog("mud")], port, tmp_path)
    sup = server.supervisor
    try:
        c = Client(port)
        c.prompts()
        c.send("alice")
        c.prompts()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            address = "\0" + sup.notify_name[1:]
            with open(os.devnull) as intruder:
                s.sendmsg([b"FDSTORE=1\nFDNAME=player-mallory"],
                          [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                            array.array("i", [intruder.fileno()]))], 0, address)
        deadline = time.monotonic() + WAIT
        while not sup.ignored and time.monotonic() < deadline:
            time.sleep(0.01)
        c.send("quit")
        c.until_eof()
        shutdown(port)
        assert server.wait(WAIT) == 0, server.log()
    finally:
        server.kill()
    assert sup.ignored == ["FDSTORE=1\nFDNAME=player-mallory"]
    assert "FDSTORE=1\nFDNAME=player-alice" in sup.messages
    assert "FDSTORE=1\nFDNAME=player-mallory" not in sup.messages


def test_fd_store_path_address(launcher, tmp_path):
    """NOTIFY_SOCKET as a file system path, not an abstract name."""
    transcripts, at_restart, server = run_supervised(launcher, tmp_path, abstract=False)
    check_unnoticed(launcher, tmp_path, transcripts, at_restart)


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="no systemd-socket-activate here")
@pytest.mark.parametrize("design", ["copyover", "watcher"])
def test_systemd_socket_activate(tmp_path, design):
    """systemd's own tool passes the listener (LISTEN_FDS=1, fd 3): the MUD takes it and a
    copyover keeps it (a socket-activated fd is not close-on-exec); the Watcher takes it and
    hands it to the MUD it starts, and again after the MUD's crash."""
    launcher = make_launcher("native-musl", tmp_path)
    port = free_port()
    log = tmp_path / "server.log"
    argv = ([launcher.prog("mud")] if design == "copyover" else
            [launcher.prog("watcher"), str(port), launcher.prog("mud")])
    with open(log, "wb") as err:
        proc = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}",
                                 "--fdname=mud", *argv], cwd=tmp_path,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    try:
        transcripts, at_restart = play(port, by_command(
            "copyover" if design == "copyover" else "crash"))
        shutdown(port)
        assert proc.wait(WAIT) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    check_unnoticed(launcher, tmp_path, transcripts, at_restart)
    text = log.read_text()
    if design == "copyover":
        assert "mud: socket activation: 1 fds" in text, text
    else:
        assert "watcher: the listening socket came by socket activation (1 fds)" in text, text
        assert "watcher: the mud died of signal 11" in text, text


def test_transcripts_agree_across_launchers(tmp_path):
    """The bytes each client sees do not depend on the libc or on what runs the server."""
    seen = {}
    for name in LAUNCHERS:
        try:
            launcher = make_launcher(name, tmp_path)
        except pytest.skip.Exception:
            continue
        sub = tmp_path / name
        sub.mkdir()
        seen[name] = run_copyover(launcher, sub, "crash")[0]
    assert len(seen) >= 1
    first = next(iter(seen.values()))
    assert all(t == first for t in seen.values()), seen


def test_corrupt_player_list_aborts_copyover(launcher, tmp_path):
    """The post's sanity check ("abort if you suddenly have 40000 players"): `tangle` links the
    player list into a cycle and crashes; the copyover counts past the slots, gives up instead
    of writing forever, and the handler (one-shot, SIG_DFL again) lets the fault kill."""
    port = free_port()
    server = launcher.start([launcher.prog("mud"), str(port)], port, tmp_path)
    try:
        clients = []
        for name in NAMES[:2]:
            c = Client(port)
            c.prompts()
            c.send(name)
            c.prompts()
            clients.append(c)
        clients[0].send("tangle")
        for c in clients:
            c.until_eof()   # the process is gone: so are its connections
        status = server.wait(WAIT)
    finally:
        server.kill()
    assert status == 128 + 11, server.log()
    assert "copyover aborted: the player list is corrupt after 65 entries" in server.log()
    assert not (tmp_path / "copyover.dat").exists()
    for c in clients:   # the list was checked before anyone was told anything
        assert b"The world shimmers" not in c.data, c.data


MAXP = 64   # mud.c's player slots


def run_flood_and_vanish(launcher, tmp: Path) -> tuple[bytes, list[bytes], str]:
    """alice and bob play; a client floods the MUD with connections past its slots and lets
    them go; alice vanishes with a reset in the middle of a line; bob plays on. Bob's
    transcript, what the flood's last connections read, and the log."""
    port = free_port()
    cwd = tmp / "flood"
    cwd.mkdir()
    server = launcher.start([launcher.prog("mud"), str(port)], port, cwd)
    try:
        alice, bob = Client(port), None
        alice.prompts()
        alice.send("alice")
        alice.prompts()
        bob = Client(port)
        bob.prompts()
        bob.send("bob")
        bob.prompts()
        flood = [socket.create_connection(("127.0.0.1", port), timeout=WAIT)
                 for _ in range(MAXP - 2 + 2)]   # the free slots, and two more
        refused = []
        for s in flood[-2:]:   # no slot left: told so, then the end
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            refused.append(data)
        for s in flood:
            s.close()
        alice.sock.sendall(b"say hel")   # half a line, then gone with a reset
        time.sleep(0.1)
        alice.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        alice.sock.close()
        bob.until(b"alice has left the world.\n")
        bob.send("who")
        bob.prompts()
        bob.send("quit")
        bob.until_eof()
        shutdown(port)
        assert server.wait(WAIT) == 0, server.log()
    finally:
        server.kill()
    return bob.data, refused, server.log()


_FLOOD: dict[str, tuple] = {}


def test_flood_and_a_vanishing_peer(launcher, tmp_path):
    """The issue's bad input with real clients: more connections than the MUD has slots (the
    extra ones are told and closed, the players do not notice), and a player whose connection
    ends with a reset in the middle of a line (read gives the half line, then ECONNRESET: the
    MUD lets the player go and tells the room). The same bytes as natively."""
    bob, refused, log = run_flood_and_vanish(launcher, tmp_path)
    assert refused == [b"The world is full. Come back later.\n"] * 2
    assert b"alice has left the world.\n" in bob and b"Players: bob (hall)" in bob, bob
    assert "mud: gone: alice" in log, log
    assert log.count("mud: gone: -") == MAXP - 2, log   # the flood's connections, let go
    if launcher.name != "native-musl":
        if "native-musl" not in _FLOOD:
            sub = tmp_path / "native"
            sub.mkdir()
            _FLOOD["native-musl"] = run_flood_and_vanish(make_launcher("native-musl", sub),
                                                         sub)
        assert (bob, refused) == _FLOOD["native-musl"][:2]
