"""Signals: the same program natively and under vsnap, default actions with a shell's exit
statuses, and signals sent to a running `vsnap run` from the host."""
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vsnap
from guestrun import REPO
from vsnap.build import build

NATIVE = sys.platform == "linux" and platform.machine() == "x86_64"
GCC = shutil.which("gcc") and os.path.exists("/usr/lib/x86_64-linux-gnu/libc.a")
SIGNALS_C = REPO / "programs" / "signals.c"


def builds(tmp_path_factory):
    out = {"musl": build(str(SIGNALS_C))}
    if GCC:
        glibc = tmp_path_factory.mktemp("gcc") / "signals"
        subprocess.run(["gcc", "-static", "-O2", "-o", str(glibc), str(SIGNALS_C)], check=True)
        out["glibc"] = str(glibc)
    return out


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    return builds(tmp_path_factory)


@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_signals_program_matches_native(programs, libc, tmp_path):
    if libc not in programs:
        pytest.skip("no static glibc here")
    prog = programs[libc]
    result, out, err = vsnap.run(prog, root=str(tmp_path))
    assert result.status == 0 and out.endswith(b"EXIT-SUCCESS\n"), (out, err)
    if NATIVE:
        native = subprocess.run([prog], capture_output=True, cwd=tmp_path, timeout=60)
        assert (out, err, result.status) == (native.stdout, native.stderr, native.returncode)


DEATHS = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int sig = atoi(argv[1]);
    printf("sending %d\n", sig); fflush(stdout);
    if (sig == 6) abort();
    raise(sig);
    printf("still here after %d\n", sig);
    return 3;
}
"""


@pytest.mark.parametrize("signo, status", [(1, 129), (2, 130), (6, 134), (10, 138), (15, 143),
                                          (28, 3), (17, 3), (14, 142), (3, 131)])
def test_default_actions_give_a_shells_status(signo, status, tmp_path):
    src = tmp_path / "deaths.c"
    src.write_text(DEATHS)
    prog = build(str(src))
    result, out, _ = vsnap.run(prog, str(signo), root=str(tmp_path))
    assert result.status == status
    if NATIVE:
        native = subprocess.run([prog, str(signo)], capture_output=True, timeout=30)
        code = native.returncode if native.returncode >= 0 else 128 - native.returncode
        assert (out, result.status) == (native.stdout, code)
    if status > 128:
        assert result.signal == vsnap.machine.signals.NAMES[status - 128]
        assert "killed by" in result.message


LISTENER = r"""
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
static volatile sig_atomic_t n;
static void h(int s) { (void)s; n++; write(1, "got SIGUSR1\n", 12); }
int main(void) {
    signal(SIGUSR1, h);
    write(1, "ready\n", 6);
    volatile unsigned long spin = 0;
    while (n < 2) spin++;          /* no system calls: only a signal can end this loop */
    write(1, "two signals\n", 12);
    pause();                        /* until Ctrl-C: SIGINT's default kills it */
    return 0;
}
"""


def test_host_signals_reach_the_guest_even_in_a_loop(tmp_path):
    src = tmp_path / "listener.c"
    src.write_text(LISTENER)
    prog = build(str(src))
    run = subprocess.Popen([sys.executable, "-m", "vsnap", "run", prog], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert run.stdout.readline() == b"ready\n"
        time.sleep(0.3)  # inside the loop
        for _ in range(2):
            run.send_signal(signal.SIGUSR1)
            assert run.stdout.readline() == b"got SIGUSR1\n"
        assert run.stdout.readline() == b"two signals\n"
        time.sleep(0.2)
        run.send_signal(signal.SIGINT)  # Ctrl-C
        assert run.wait(timeout=30) == 130
        assert b"killed by SIGINT (Interrupt)" in run.stderr.read()
    finally:
        if run.poll() is None:
            run.kill()


def test_a_guest_waiting_for_nothing_is_stopped_not_hung(tmp_path):
    src = tmp_path / "wait.c"
    src.write_text("#include <unistd.h>\nint main(void) { pause(); return 0; }\n")
    result, _, _ = vsnap.run(build(str(src)), root=str(tmp_path))
    assert result.status == 1 and "nothing that could send one" in result.message


def test_signal_state_is_in_the_image(tmp_path):
    from vsnap.snapshot import checkpoint, load
    src = tmp_path / "state.c"
    src.write_text(r"""
#include <signal.h>
#include <unistd.h>
static void h(int s) { (void)s; }
int main(void) {
    signal(SIGUSR2, h);
    sigset_t b; sigemptyset(&b); sigaddset(&b, SIGUSR2); sigprocmask(SIG_BLOCK, &b, 0);
    raise(SIGUSR2);
    alarm(30);
    getppid();               /* the save point */
    return 0;
}""")
    prog = build(str(src))
    m = vsnap.Machine(prog, root=str(tmp_path), console=vsnap.Console(write_out=lambda b: None))
    marks = []
    m.system.strace = lambda line: marks.append(m.cpu.instructions) \
        if line.startswith("getppid") else None
    m.run(count=True)
    m2 = vsnap.Machine(prog, root=str(tmp_path), console=vsnap.Console(write_out=lambda b: 0))
    m2.advance(marks[0])
    checkpoint(m2, str(tmp_path / "s.img"))
    sig = load(str(tmp_path / "s.img")).kernel["signals"]
    assert sig.blocked == 1 << 11 and [p.signo for p in sig.pending] == [12]
    assert sig.actions[12].handler != 0 and sig.alarm_deadline is not None
    text = subprocess.run([sys.executable, "-m", "vsnap", "inspect", str(tmp_path / "s.img"),
                           "kernel"], capture_output=True, text=True).stdout
    assert "SIGUSR2" in text and "fires at" in text


RESTART = r"""
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void h(int s) { (void)s; write(1, "handler\n", 8); }
int main(int argc, char **argv) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    sa.sa_flags = argc > 1 ? SA_RESTART : 0;
    sigaction(SIGUSR1, &sa, 0);
    char buf[64];
    write(1, "reading\n", 8);
    ssize_t n = read(0, buf, sizeof buf);
    printf("read returned %zd\n", n);
    return 0;
}
"""


@pytest.mark.parametrize("restart, expected", [(False, b"read returned -1\n"),
                                               (True, b"read returned 6\n")])
def test_sa_restart_on_a_terminal_read(restart, expected, tmp_path):
    """A signal interrupts a blocked read: EINTR without SA_RESTART, the read goes on with
    it, as on Linux."""
    src = tmp_path / "restart.c"
    src.write_text(RESTART)
    prog = build(str(src))
    args = [prog, "r"] if restart else [prog]
    run = subprocess.Popen([sys.executable, "-m", "vsnap", "run", *args], cwd=tmp_path,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert run.stdout.readline() == b"reading\n"
        time.sleep(0.3)  # blocked in read
        run.send_signal(signal.SIGUSR1)
        assert run.stdout.readline() == b"handler\n"
        run.stdin.write(b"hello\n")
        run.stdin.flush()
        assert run.stdout.readline() == expected
        assert run.wait(timeout=30) == 0
    finally:
        if run.poll() is None:
            run.kill()


ABORT = r"""
#include <stdio.h>
#include <stdlib.h>
static void check(int x) { if (x != 42) { fprintf(stderr, "check failed\n"); abort(); } }
int main(void) { check(41); return 0; }
"""


def test_abort_gives_a_crash_image_and_a_core(tmp_path):
    """Not only CPU faults: a signal whose default action dumps core (abort's SIGABRT)."""
    src = tmp_path / "abrt.c"
    src.write_text(ABORT)
    prog = tmp_path / "abrt"
    prog.write_bytes(Path(build(str(src))).read_bytes())
    prog.chmod(0o755)
    r = subprocess.run([sys.executable, "-m", "vsnap", "run", "--save-on-crash", "a.img",
                        "--core", "a.core", str(prog)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 134 and "killed by SIGABRT (Aborted)" in r.stderr
    info = subprocess.run([sys.executable, "-m", "vsnap", "inspect", "a.img"], cwd=tmp_path,
                          capture_output=True, text=True).stdout
    assert "crashed      SIGABRT" in info
    if shutil.which("gdb"):
        bt = subprocess.run(["gdb", "-batch", "-nx", "-ex", "bt", str(prog), "a.core"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120).stdout
        assert "abort" in bt and "check" in bt and "main" in bt, bt
