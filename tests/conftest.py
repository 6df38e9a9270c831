"""Shared fixtures and helpers for the tests that run real guest programs.

Guest programs (programs/*.c and tests/guests/*.c) are built once per session, in up to four
flavours:

    musl        vsnap.build.build(src)              zig cc, static musl (cached in ~/.cache/vsnap)
    musl-pie    vsnap.build.build(src, pie=True)    zig cc, static-pie musl
    glibc       gcc -static -O2                     skipped without gcc or libc.a
    glibc-pie   gcc -static-pie -O2                 skipped without gcc, libc.a or rcrt1.o

Helpers run a program natively (in a fresh directory, optionally chrooted there, with a fixed
minimal environment), under the vsnap CLI in a subprocess, and through the Python API, and
snapshot the files a run leaves behind.
"""
from __future__ import annotations

import os
import platform
import shutil
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import vsnap
from vsnap.build import build as vsnap_build
from vsnap.machine import DEFAULT_ENV

REPO = Path(__file__).resolve().parent.parent
PROGRAMS = REPO / "programs"
GUESTS = REPO / "tests" / "guests"
SAMPLE = PROGRAMS / "data" / "sample.txt"

VSNAP = [sys.executable, "-m", "vsnap"]       # the CLI, from the same interpreter as the tests
NATIVE_ENV = dict(e.split("=", 1) for e in DEFAULT_ENV)

FLAVOURS = ("musl", "musl-pie", "glibc", "glibc-pie")
GLIBC_LIBC_A = "/usr/lib/x86_64-linux-gnu/libc.a"

NATIVE_OK = sys.platform.startswith("linux") and platform.machine() in ("x86_64", "amd64")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

def _static_busybox() -> str | None:
    """Debian's busybox-static, the third-party program several fidelity tests run natively
    and under vsnap; None where /bin/busybox is missing or dynamic (vsnap runs static ELF)."""
    path = "/bin/busybox"
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    return None if b"ld-linux" in head else path


BUSYBOX = _static_busybox()

CLI_TIMEOUT = 120  # seconds: a hang fails the test instead of stopping the suite


# ------------------------------------------------------------------------------------------------
# building

def have_gcc_static() -> bool:
    return shutil.which("gcc") is not None and os.path.exists(GLIBC_LIBC_A)


class Builds:
    """Builds guest programs lazily, once per (source, flavour), thread-safe."""

    def __init__(self, outdir: Path):
        self.outdir = outdir
        self._done: dict[tuple[str, str], str] = {}
        self._failed: dict[tuple[str, str], str] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()
        self._gcc_pie_ok: bool | None = None

    @staticmethod
    def source(name: str) -> Path:
        """programs/NAME.c, or tests/guests/NAME.c for the test-only guests."""
        for d in (PROGRAMS, GUESTS):
            if (d / f"{name}.c").exists():
                return d / f"{name}.c"
        raise FileNotFoundError(f"no guest program {name}.c in programs/ or tests/guests/")

    def skip_reason(self, flavour: str) -> str | None:
        if flavour.startswith("glibc"):
            if not have_gcc_static():
                return f"no gcc or no {GLIBC_LIBC_A}: cannot build glibc static programs"
            if flavour == "glibc-pie" and not self._gcc_static_pie_works():
                return "gcc cannot link -static-pie here"
        return None

    def _gcc_static_pie_works(self) -> bool:
        with self._lock:
            if self._gcc_pie_ok is None:
                src = self.outdir / "probe.c"
                src.write_text("int main(void) { return 0; }\n")
                proc = subprocess.run(["gcc", "-static-pie", "-O2", "-o",
                                       str(self.outdir / "probe"), str(src)],
                                      capture_output=True)
                self._gcc_pie_ok = proc.returncode == 0
            return self._gcc_pie_ok

    def get(self, name: str, flavour: str = "musl") -> str:
        """The path of the built program; skips the test when the flavour cannot be built."""
        reason = self.skip_reason(flavour)
        if reason:
            pytest.skip(reason)
        key = (name, flavour)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key in self._failed:
                pytest.fail(self._failed[key])
            if key not in self._done:
                try:
                    self._done[key] = self._build(name, flavour)
                except Exception as e:  # remember, so that each test reports it quickly
                    self._failed[key] = f"building {name} ({flavour}) failed: {e}"
                    pytest.fail(self._failed[key])
            return self._done[key]

    def _build(self, name: str, flavour: str) -> str:
        src = str(self.source(name))
        if flavour == "musl":
            return vsnap_build(src)
        if flavour == "musl-pie":
            return vsnap_build(src, pie=True)
        link = "-static" if flavour == "glibc" else "-static-pie"
        out = self.outdir / f"{name}.{flavour}"
        proc = subprocess.run(["gcc", link, "-O2", "-D_GNU_SOURCE", "-o", str(out), src],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"gcc {link} {src}: {proc.stderr.strip()[-2000:]}")
        return str(out)

    def prebuild(self, names, flavours=FLAVOURS) -> None:
        """Build many at once (zig and gcc in parallel); failures show up later in get()."""
        todo = [(n, f) for n in names for f in flavours if self.skip_reason(f) is None]

        def one(key):
            try:
                self.get(*key)
            except BaseException:  # noqa: BLE001  (pytest's skip/fail are BaseExceptions)
                pass

        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            list(pool.map(one, todo))


@pytest.fixture(scope="session")
def builds(tmp_path_factory) -> Builds:
    return Builds(tmp_path_factory.mktemp("gcc-builds"))


# ------------------------------------------------------------------------------------------------
# running

@dataclass
class Outcome:
    """What a run of a program looks like from outside: the bytes and the status."""

    stdout: bytes
    stderr: bytes
    status: int          # as a shell shows it: exit code, or 128 + signal number

    def text(self) -> str:
        return self.stderr.decode(errors="replace")


def shell_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def require_native() -> None:
    if not NATIVE_OK:
        pytest.skip(f"native runs need an x86-64 Linux host, not {sys.platform}/"
                    f"{platform.machine()}")


def run_native(prog: str, args=(), *, cwd: Path, stdin: bytes = b"", chroot: bool = False,
               timeout: float = 60) -> Outcome:
    """Run a program natively with the guest's environment, in `cwd`.

    With chroot=True, `cwd` becomes / first (the program must be inside it, named by its path
    inside the root): paths then look exactly as they do under vsnap with root = cwd.
    """
    require_native()
    root = str(cwd)

    def setup():
        os.umask(0o022)
        if chroot:
            os.chroot(root)
            os.chdir("/")

    proc = subprocess.run([prog, *args], cwd=root, env=NATIVE_ENV, input=stdin,
                          capture_output=True, preexec_fn=setup, timeout=timeout)
    return Outcome(proc.stdout, proc.stderr, shell_status(proc.returncode))


def run_cli(*argv: str, cwd: Path | str | None = None, stdin: bytes = b"",
            timeout: float = CLI_TIMEOUT) -> Outcome:
    """`vsnap ARGV...` in a subprocess; its stdout, stderr and exit status."""
    proc = subprocess.run([*VSNAP, *argv], cwd=cwd, input=stdin, capture_output=True,
                          timeout=timeout)
    return Outcome(proc.stdout, proc.stderr, proc.returncode)


def run_api(prog: str, args=(), *, root: Path, cwd: Path | None = None, stdin: bytes = b"",
            **kw) -> tuple[Outcome, vsnap.RunResult]:
    """vsnap.run(...), which captures the guest's stdout and stderr."""
    result, out, err = vsnap.run(prog, *args, root=str(root), cwd=str(cwd or root), stdin=stdin,
                                 **kw)
    return Outcome(out, err, result.status), result


def run_in_root(prog: str, tmp_path, args=(), name="v"):
    """The built guest `prog` copied into a fresh root under tmp_path/name and run there with
    run_api: (Outcome, RunResult, the notices vsnap logged)."""
    root = make_root(tmp_path / name, prog)
    notices: list[str] = []
    under, result = run_api(str(root / "prog"), args, root=root, log=notices)
    return under, result, notices


def assert_no_traceback(outcome: Outcome) -> None:
    assert b"Traceback" not in outcome.stderr, outcome.text()
    assert b"Traceback" not in outcome.stdout


# ------------------------------------------------------------------------------------------------
# the files a run leaves behind

def snapshot_tree(root: Path | str, *, modes: bool = False) -> dict:
    """{relative path: bytes | '<dir>' | '-> target' | '<special>'} for everything under root.

    Symbolic links are not followed. With modes=True the values are (value, permission bits).
    """
    root = str(root)
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                value = "-> " + os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                value = "<dir>"
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    value = f.read()
            else:
                value = "<special>"
            out[rel] = (value, oct(stat.S_IMODE(st.st_mode))) if modes else value
    return out


def make_root(path: Path, prog: str | None = None, *, inputs: dict | None = None,
              dev_null: bool = False) -> Path:
    """A fresh sandbox root: the program copied to /prog, input files, optionally dev/null."""
    path.mkdir(parents=True, exist_ok=False)
    if prog is not None:
        shutil.copyfile(prog, path / "prog")
        os.chmod(path / "prog", 0o755)
    for rel, data in (inputs or {}).items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    if dev_null:
        (path / "dev").mkdir()
        os.mknod(path / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return path


def can_chroot() -> bool:
    """Root on Linux, and chroot(2) and mknod(2) really work here (not in every container).

    VSNAP_TEST_NO_CHROOT=1 turns it off, to try the normalising path that non-root users get.
    """
    if not (IS_ROOT and NATIVE_OK) or os.environ.get("VSNAP_TEST_NO_CHROOT"):
        return False
    global _CHROOT_OK
    if _CHROOT_OK is None:
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            try:
                os.mknod(os.path.join(d, "null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
            except OSError:
                _CHROOT_OK = False
            else:
                probe = subprocess.run([sys.executable, "-c", f"import os; os.chroot({d!r})"],
                                       capture_output=True)
                _CHROOT_OK = probe.returncode == 0
    return _CHROOT_OK


_CHROOT_OK: bool | None = None


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False,
                     help="nightly-style: ten times the generated workload examples")


def pytest_configure(config):
    # the long tier, for tests that pick their example counts when their module loads (the
    # state machines): VSNAP_SLOW=1 in every worker
    if config.getoption("--slow"):
        os.environ["VSNAP_SLOW"] = "1"


SLOW = os.environ.get("VSNAP_SLOW") == "1"  # read again by the modules that need it
