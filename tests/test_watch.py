"""`vsnap run --watch` (vsnap/watch.py, vsnap/fdstore.py): vsnap supervises the guest with
systemd's conventions (socket activation, the fd store over NOTIFY_SOCKET, Restart=always with
the start limit, KillMode=control-group).

The service is tests/guests/watched.c, a line server written for systemd; its clients are
tests/guests/watchclient.c, a process vsnap starts beside the service (not part of it: a
restart does not kill it), whose stdout is the transcript. Each transcript is checked against
a small model of the server and of the store's rules (what a restart hands back), and, where
tests/mudharness.py (the native reference supervisor, programs/mud's) is present, against the
same two programs run natively under it. The start limit and the options go through the CLI.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import make_root, require_native, run_cli
from vsnap.kernel.core import Capture
from vsnap.watch import Watch

FLAVOURS = ("musl", "glibc")


@pytest.fixture(scope="module", autouse=True)
def prebuilt(builds):
    builds.prebuild(["watched", "watchclient", "exit7"], FLAVOURS)


class Watched:
    def __init__(self, result, transcript, server, log, watch):
        self.result, self.transcript, self.server = result, transcript, server
        self.log, self.watch = log, watch

    def restarts(self) -> list[str]:
        return [line for line in self.log if "restarted as pid" in line]


def watch_run(builds, tmp_path, steps, flavour="musl", name="w", **kw) -> Watched:
    """The server under a Watch, the client beside it following `steps`."""
    root = make_root(tmp_path / name, builds.get("watched", flavour))
    shutil.copyfile(builds.get("watchclient", flavour), root / "client")
    (root / "client").chmod(0o755)
    cap, log = Capture(), []
    w = Watch(str(root / "prog"), [], root=str(root), unix_listen=["/srv.sock"],
              console=cap.console, log=log, **kw)
    w.start_outside(str(root / "client"), ["unix:/srv.sock", *steps])
    try:
        result = w.machine.run(max_instructions=200_000_000)
    finally:
        w.close()
    return Watched(result, cap.out.decode(), cap.err.decode(), log, w)


def model(steps, store_max=64):
    """The transcript watched.c gives `steps`, and the names each restart hands back, by the
    rules of systemd's store: a crash hands back what is stored (FDSTORE at accept, minus
    FDSTOREREMOVE, minus clients that hung up, at most store_max); a client not handed back
    sees the end of its connection."""
    out, conn, stored, gone, handed = [], {}, [], set(), []
    next_id = 1
    served: list[int] = []
    for st in steps:
        n, op, arg = int(st[0]), st[1], st[2:]
        if op == "+":
            cid = next_id
            next_id += 1
            conn[n] = cid
            served.append(cid)
            if len(stored) < store_max:
                stored.append(cid)
            out.append(f"{n}< welcome client-{cid}")
        elif op == "-":
            out.append(f"{n} closed")
            gone.add(conn[n])
            served.remove(conn[n])
        elif op == "?":
            out.append(f"{n}< " + ("EOF" if conn[n] not in served else "?"))
        elif op == ".":
            out += [f"{n}> stop", f"{n}< stopping"]
        elif op == "!":
            out.append(f"{n}! sent")
        else:
            out.append(f"{n}> {arg}")
            if conn[n] not in served:
                out.append(f"{n}< EOF")
                continue
            word = arg.split()[0]
            reply = {"echo": arg[5:], "count": f"{len(served)} clients", "crash": "crashing",
                     "forget": "forgotten", "fork": "forked", "bad": "sent",
                     "exit": "bye"}[word]
            out.append(f"{n}< {reply}")
            if word == "forget":
                stored.remove(conn[n])
            if word in ("crash", "exit"):
                stored = [c for c in stored if c not in gone]
                handed.append(["listen"] + [f"client-{c}" for c in stored])
                served = list(stored)
    return "".join(line + "\n" for line in out), handed


def handed_back(w: Watched) -> list[list[str]]:
    """The LISTEN_FDNAMES of each restart, from its line on vsnap's log."""
    return [line.rsplit("(", 1)[1].rstrip(")").split(":") for line in w.restarts()]


# ------------------------------------------------------------------------------------------
# restarts that keep the clients

CRASH = ["0+", "0:echo hi", "1+", "1:count", "0:crash", "0:echo after", "1:echo b",
         "1:count", "0."]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_crash_restart_keeps_every_client(builds, tmp_path, flavour):
    w = watch_run(builds, tmp_path, CRASH, flavour)
    transcript, handed = model(CRASH)
    assert w.transcript == transcript
    assert handed_back(w) == handed == [["listen", "client-1", "client-2"]]
    assert w.result.status == 0 and w.watch.ended_by == "exit"
    # one line per restart: how the old one died, the new pid, what it was handed
    assert w.restarts() == [
        "vsnap: --watch: the guest (pid 1000) was killed by SIGSEGV (Segmentation fault); "
        "restarted as pid 1002 with LISTEN_FDS=3 (listen:client-1:client-2)"]
    assert w.log[-1] == ("vsnap: --watch: the guest (pid 1002) exited with status 0 after "
                         "STOPPING=1; the watch ends")
    assert "restored client-1\nrestored client-2\nstarted with 2 stored\n" in w.server


def test_same_bytes_every_run(builds, tmp_path):
    a = watch_run(builds, tmp_path, CRASH, name="a")
    b = watch_run(builds, tmp_path, CRASH, name="b")
    assert (a.transcript, a.server, a.log, a.result.instructions) == \
        (b.transcript, b.server, b.log, b.result.instructions)


def test_exit_restarts_under_always(builds, tmp_path):
    """Restart=always: an exit, even with status 0, without STOPPING=1 is restarted."""
    steps = ["0+", "0:exit 3", "0:echo one", "0:exit 0", "0:echo two", "0."]
    w = watch_run(builds, tmp_path, steps)
    assert w.transcript == model(steps)[0]
    assert [line.split(";")[0] for line in w.restarts()] == [
        "vsnap: --watch: the guest (pid 1000) exited with status 3",
        "vsnap: --watch: the guest (pid 1002) exited with status 0"]


def test_fdstoreremove(builds, tmp_path):
    """FDSTOREREMOVE=1 closes the stored fd: after the restart that client is not handed
    back, and it sees the end of its connection (its last fd went with the old server)."""
    steps = ["0+", "1+", "0:forget", "1:crash", "0?", "1:count", "1."]
    w = watch_run(builds, tmp_path, steps)
    transcript, handed = model(steps)
    assert w.transcript == transcript
    assert handed_back(w) == handed == [["listen", "client-2"]]


def test_hung_up_client_leaves_the_store(builds, tmp_path):
    """A stored socket whose peer hung up reports POLLHUP: the store drops it (FDPOLL)."""
    steps = ["0+", "1+", "2+", "1-", "0:crash", "0:count", "2:echo still here", "0."]
    w = watch_run(builds, tmp_path, steps)
    transcript, handed = model(steps)
    assert w.transcript == transcript
    assert handed_back(w) == handed == [["listen", "client-1", "client-3"]]


def test_store_limit_refuses_and_says_so(builds, tmp_path):
    steps = ["0+", "1+", "2+", "0:crash", "0:count", "2?", "0."]
    w = watch_run(builds, tmp_path, steps, fdstore_max=2)
    transcript, handed = model(steps, store_max=2)
    assert w.transcript == transcript
    assert handed == handed_back(w) == [["listen", "client-1", "client-2"]]
    full = [line for line in w.log if "fd store" in line]
    assert full == ["vsnap: --watch: the fd store is full (2, --fdstore-max): FDSTORE=1 "
                    "from pid 1000 refused"]


def test_bad_notify_messages_are_ignored(builds, tmp_path):
    """What systemd ignores or refuses changes nothing: the store keeps only what a valid
    FDSTORE=1 sent (not the pipe sent with a bad name, nor the fds without FDSTORE=1), and
    READY/STOPPING in a message with a NUL byte do not count (exit 0 then restarts)."""
    steps = ["0+", "0:bad", "0:exit 0", "0:count", "0."]
    w = watch_run(builds, tmp_path, steps)
    assert w.transcript == model(steps)[0]
    assert handed_back(w) == [["listen", "client-1"]]
    said = [line for line in w.log if "restarted" not in line and "watch ends" not in line]
    assert said == [
        "vsnap: --watch: a notify message longer than 4096 bytes from pid 1000: ignored",
        "vsnap: --watch: a notify message with a NUL byte from pid 1000: ignored",
        "vsnap: --watch: FDSTORE=1 from pid 1000 with an invalid FDNAME= ('bad:name'): "
        "1 fd refused",
        "vsnap: --watch: FDSTOREREMOVE=1 from pid 1000 without a valid FDNAME=: ignored"]


def test_only_the_service_is_heard(builds, tmp_path):
    """A process beside the service (the client) sends an fd to the store: not kept."""
    steps = ["0+", "0!", "0:crash", "0:count", "0."]
    w = watch_run(builds, tmp_path, steps)
    assert w.transcript == model(steps)[0]
    assert handed_back(w) == [["listen", "client-1"]]
    assert "vsnap: --watch: a notify message from pid 1001, not a process of the service: " \
        "ignored (NotifyAccess=all)" in w.log


def test_killmode_control_group(builds, tmp_path):
    """The old server's child is killed before the new server starts; the client (not the
    service's) lives on."""
    steps = ["0+", "0:fork", "0:crash", "0:count", "0."]
    w = watch_run(builds, tmp_path, steps)
    assert w.transcript == model(steps)[0]
    assert w.restarts() == [
        "vsnap: --watch: the guest (pid 1000) was killed by SIGSEGV (Segmentation fault); "
        "killed 1 other process of it (KillMode=control-group); restarted as pid 1003 with "
        "LISTEN_FDS=2 (listen:client-1)"]


# ------------------------------------------------------------------------------------------
# the native reference: the same programs under tests/mudharness.py (systemd's conventions)

@pytest.mark.parametrize("steps", [CRASH, ["0+", "1+", "0:forget", "1:crash", "0?",
                                           "1:count", "1."]], ids=["crash", "forget"])
def test_native_supervisor_gives_the_same_transcript(builds, tmp_path, steps):
    require_native()
    harness = pytest.importorskip("mudharness", reason="tests/mudharness.py (programs/mud) "
                                  "is not in this tree")
    port = free_port()
    server, client = builds.get("watched", "glibc"), builds.get("watchclient", "glibc")
    devnull = open(os.devnull, "w")
    sup = harness.FdStoreSupervisor([server], port, env={"PATH": "/bin"},
                                    stderr=devnull).start()
    try:
        native = subprocess.run([client, f"tcp:{port}", *steps], capture_output=True,
                                timeout=60)
        sup.wait(30)
    finally:
        sup.stop()
        devnull.close()
    under = watch_run(builds, tmp_path, steps, "glibc")
    assert under.transcript == native.stdout.decode()
    assert handed_back(under) == [["listen", *names] for names in sup.stored_at_death[:-1]]


# ------------------------------------------------------------------------------------------
# the command line

def test_start_limit_cli(builds, tmp_path):
    """A service that keeps failing: started 5 times in 10 s (virtual), then one clear line
    and its status."""
    root = make_root(tmp_path / "r", builds.get("exit7"))
    out = run_cli("run", "--watch", "--root", str(root), str(root / "prog"))
    lines = out.text().splitlines()
    assert out.status == 7
    assert len([ln for ln in lines if "restarted as pid" in ln]) == 4
    assert lines[-1] == ("vsnap: --watch: the guest (pid 1004) exited with status 7, and it "
                         "was started 5 times within 10 s (StartLimitBurst=5, "
                         "StartLimitIntervalSec=10s): not restarting it")


def test_start_limit_after_clean_exits_is_a_failure(builds, tmp_path):
    """Restart=always restarts a clean exit without STOPPING=1 too; at the limit the status
    is 1, not the 0 it exited with."""
    root = make_root(tmp_path / "r", builds.get("exit7"))
    src = tmp_path / "exit0.c"
    src.write_text("int main(void) { return 0; }\n")
    out = run_cli("run", "--watch", "--root", str(root), str(src))
    assert out.status == 1
    assert "started 5 times within 10 s" in out.text().splitlines()[-1]
    on_failure = run_cli("run", "--watch", "--restart", "on-failure", "--root", str(root),
                         str(src))
    assert on_failure.status == 0
    assert on_failure.text().splitlines() == [
        "vsnap: --watch: the guest (pid 1000) exited with status 0 (--restart on-failure); "
        "the watch ends"]


def test_listen_port_taken_on_the_host(builds, tmp_path):
    """--watch --listen PORT with the host's port taken: one line, no traceback."""
    root = make_root(tmp_path / "r", builds.get("watched"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = run_cli("run", "--watch", "--listen", str(port), "--root", str(root),
                      str(root / "prog"))
    assert out.status == 2
    assert out.text().splitlines() == [
        f"vsnap: --listen {port}: the host's 127.0.0.1:{port} cannot be taken (EADDRINUSE: "
        f"the host's 127.0.0.1:{port}: Address already in use)"]


@pytest.mark.parametrize("argv, message", [
    (["--watch-socket", "/s"], "vsnap: --watch-socket is an option of --watch; add --watch"),
    (["--fdstore-max", "0"], "vsnap: --fdstore-max is an option of --watch; add --watch"),
    (["--watch", "--fdstore-max", "5000"], "vsnap: --fdstore-max 5000: at most 1000"),
    (["--watch", "--save-at", "100", "-o", "x.img"], "vsnap: --watch with --save-at"),
    (["--watch", "--watch-socket", "/prog"], "vsnap: --watch-socket /prog: cannot bind it"),
])
def test_cli_usage_errors(builds, tmp_path, argv, message):
    root = make_root(tmp_path / "r", builds.get("exit7"))
    out = run_cli("run", *argv, "--root", str(root), str(root / "prog"))
    assert out.status != 0
    assert out.text().startswith(message), out.text()
    assert len(out.text().splitlines()) == 1


def test_ctrl_c_ends_the_watch(builds, tmp_path):
    """SIGINT from the host is `systemctl stop`: the guest gets it, and is not restarted."""
    import signal
    import sys
    root = make_root(tmp_path / "r", builds.get("watched"))
    proc = subprocess.Popen([sys.executable, "-m", "vsnap", "run", "--watch", "--watch-socket",
                             "/s.sock", "--root", str(root), str(root / "prog")],
                            stderr=subprocess.PIPE)
    try:
        assert proc.stderr.readline() == b"started with 0 stored\n"
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=60)[1].decode()
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.splitlines()[0] == (
        "vsnap: --watch: the guest (pid 1000) was killed by SIGINT (Interrupt) after SIGINT "
        "from the host (as systemctl stop); the watch ends")


# ------------------------------------------------------------------------------------------
# real host clients: --watch --listen PORT

from vsnap.testing import free_port  # noqa: E402  (below the ephemeral range)


def test_host_clients_stay_connected_across_a_restart(builds, tmp_path):
    """The client runs natively on the host and talks TCP to 127.0.0.1:PORT, the activation
    socket vsnap made for --listen PORT: the server crashes and is restarted, no connection
    drops, and the transcript is the one the same client gets from the same server under
    the native reference supervisor."""
    require_native()
    import sys
    harness = pytest.importorskip("mudharness")
    server, client = builds.get("watched", "glibc"), builds.get("watchclient", "glibc")
    root = make_root(tmp_path / "r", server)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "vsnap", "run", "--watch", "--listen",
                             str(port), "--root", str(root), str(root / "prog")],
                            stderr=subprocess.PIPE)
    try:
        under = subprocess.run([client, f"tcp:{port}", *CRASH], capture_output=True,
                               timeout=120)
        err = proc.communicate(timeout=60)[1].decode()
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert [line for line in err.splitlines() if line.startswith("vsnap:")] == [
        "vsnap: --watch: the guest (pid 1000) was killed by SIGSEGV (Segmentation fault); "
        "restarted as pid 1001 with LISTEN_FDS=3 (listen:client-1:client-2)",
        "vsnap: --watch: the guest (pid 1001) exited with status 0 after STOPPING=1; the "
        "watch ends"]
    port = free_port()
    devnull = open(os.devnull, "w")
    sup = harness.FdStoreSupervisor([server], port, env={"PATH": "/bin"},
                                    stderr=devnull).start()
    try:
        native = subprocess.run([client, f"tcp:{port}", *CRASH], capture_output=True,
                                timeout=60)
        sup.wait(30)
    finally:
        sup.stop()
        devnull.close()
    assert under.stdout == native.stdout
    assert under.stdout.decode() == model(CRASH)[0]


def test_the_mud_keeps_its_players_under_watch(tmp_path):
    """programs/mud (seed 000), written for systemd's fd store, under `vsnap run --watch
    --listen PORT` with three real host players: it crashes, vsnap restarts it with the
    listener and the three stored connections, and no player notices (tests/test_mud.py's
    checks: every transcript equals a run that never went down)."""
    require_native()
    mud = pytest.importorskip("test_mud")
    launcher = mud.make_launcher("vsnap-musl", tmp_path / "bin")
    transcripts, at_restart, server = mud.run_supervised(launcher, tmp_path, abstract=True)
    mud.check_unnoticed(launcher, tmp_path, transcripts, at_restart)
    said = (tmp_path / "fdstore-abstract" / "vsnap.log").read_text().splitlines()
    assert said == [
        "vsnap: --watch: the guest (pid 1000) was killed by SIGSEGV (Segmentation fault); "
        "restarted as pid 1001 with LISTEN_FDS=4 (listen:player-alice:player-bob:"
        "player-carol)",
        "vsnap: --watch: the guest (pid 1001) exited with status 0 (--restart on-failure); "
        "the watch ends"]


def test_ctrl_c_reaches_a_restarted_guest_that_spins(builds, tmp_path):
    """After a restart the running engine is the new process's: a host signal stops it even
    in a loop without system calls (the threads that stop the CPU follow the machine's)."""
    import signal
    import sys
    root = make_root(tmp_path / "r")
    proc = subprocess.Popen([sys.executable, "-m", "vsnap", "run", "--watch", "--root",
                             str(root), str(Path(__file__).parent / "guests" / "watch_spin.c")],
                            stderr=subprocess.PIPE)
    try:
        assert proc.stderr.readline() == b"crash\n"
        assert b"restarted as pid 1001" in proc.stderr.readline()
        assert proc.stderr.readline() == b"spin\n"
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=60)[1].decode()
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130
    assert "after SIGINT from the host (as systemctl stop); the watch ends" in err


# ------------------------------------------------------------------------------------------
# --restart-from-checkpoint

def host_watch(builds, tmp_path, steps, *extra):
    """vsnap run --watch --listen PORT EXTRA... with the client natively on the host: (the
    client's transcript, vsnap's stderr lines, its status)."""
    require_native()
    import sys
    server, client = builds.get("watched", "glibc"), builds.get("watchclient", "glibc")
    root = make_root(tmp_path / "r", server)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "vsnap", "run", "--watch", "--listen",
                             str(port), *extra, "--root", str(root), str(root / "prog")],
                            stderr=subprocess.PIPE)
    try:
        out = subprocess.run([client, f"tcp:{port}", *steps], capture_output=True,
                             timeout=120)
        err = proc.communicate(timeout=60)[1].decode()
    finally:
        proc.kill()
        proc.wait()
    return out.stdout.decode(), err.splitlines(), proc.returncode


def test_restart_from_checkpoint(builds, tmp_path):
    """The server saves itself with two clients, a third comes, the server crashes: it comes
    back from the image (it knows two clients, and says it was resumed), their live
    connections put back in place of the saved sockets; the third, unknown to the image,
    is closed (it sees the end of its connection)."""
    steps = ["0+", "1+", "0:save", "2+", "0:echo x", "1:crash", "2?", "0:count", "1:echo y",
             "0."]
    transcript, err, status = host_watch(builds, tmp_path, steps,
                                         "--restart-from-checkpoint")
    assert status == 0, err
    assert transcript == "".join(line + "\n" for line in [
        "0< welcome client-1", "1< welcome client-2", "0> save", "0< saved",
        "2< welcome client-3", "0> echo x", "0< x", "1> crash", "1< crashing", "2< EOF",
        "0> count", "0< 2 clients", "1> echo y", "1< y", "0> stop", "0< stopping"])
    assert "vsnap: --watch: the guest (pid 1000) was killed by SIGSEGV (Segmentation fault); " \
        "restarted as pid 1001 from prog.ckpt: 3 live sockets put back, stored fds the " \
        "image does not know closed (client-3)" in err
    assert "resumed from the checkpoint with 2 clients" in err
    assert "started with 2 stored" not in err     # not a fresh start


def test_restart_from_checkpoint_closes_saved_connections_gone_since(builds, tmp_path):
    """A client the image knows but the store no longer holds (FDSTOREREMOVE after the
    save): its saved socket comes back closed by the peer, and the restored server sees its
    end. (A TCP client that only hung up stays in the store, as on Linux: its socket reports
    POLLRDHUP, not POLLHUP, so systemd keeps it too.)"""
    steps = ["0+", "1+", "0:save", "1:forget", "0:crash", "1?", "0:echo after", "0."]
    transcript, err, status = host_watch(builds, tmp_path, steps,
                                         "--restart-from-checkpoint")
    assert status == 0, err
    assert "vsnap: --watch: the guest (pid 1000) was killed by SIGSEGV (Segmentation " \
        "fault); restarted as pid 1001 from prog.ckpt: 2 live sockets put back, 1 saved " \
        "connection closed (gone since)" in err
    assert transcript.endswith("1< EOF\n0> echo after\n0< after\n0> stop\n0< stopping\n")
    assert err.index("resumed from the checkpoint with 2 clients") < err.index("client-2 left")


def test_restart_from_checkpoint_without_an_image_starts_fresh(builds, tmp_path):
    """No image yet, or one of several processes (the clients beside the service are in a
    whole-tree image): a fresh start, and the line says why."""
    w = watch_run(builds, tmp_path, ["0+", "0:crash", "0:echo a", "0:save", "0:crash",
                                     "0:echo b", "0."], from_checkpoint=True)
    assert w.transcript.endswith("0> echo b\n0< b\n0> stop\n0< stopping\n")
    assert [line.split("; restarted as pid ")[1] for line in w.restarts()] == [
        "1002 with LISTEN_FDS=2 (listen:client-1) (not from a checkpoint: no image at "
        "prog.ckpt)",
        "1003 with LISTEN_FDS=2 (listen:client-1) (not from a checkpoint: prog.ckpt: it "
        "holds several processes)"]
