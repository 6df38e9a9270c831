"""The smaller calls of issue 9, each against Linux: prctl, capget/capset, membarrier,
sethostname/setdomainname (prctl_caps.c), memfd_create, O_TMPFILE and O_PATH (anonfiles.c),
mknod and FIFOs (fifo.c); what vsnap refuses, loudly (refusals.c, fifo.c deadlock); and the
promise around the state they create (a prctl name, nameless files, O_PATH descriptors).

Native runs that depend on privilege (capabilities, mknod of devices, sethostname!) run as
an ordinary user (uid 65534) when the tests run as root, as the guest is one.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import termios

import pytest

import vsnap
from conftest import (IS_ROOT, NATIVE_ENV, Outcome, make_root, require_native, run_api,
                      shell_status, snapshot_tree)
from vsnap.snapshot import image_bytes
from vsnap.snapshot.checkpoint import CannotSave
from vsnap.testing import Guest, Measured, assert_transparent, measure, start
from vsnap.kernel import Capture

FLAVOURS = ("musl", "glibc")
NOBODY = 65534


@pytest.fixture(scope="module", autouse=True)
def prebuilt(builds):
    builds.prebuild(["prctl_caps", "anonfiles", "fifo", "refusals", "novdso"], FLAVOURS)


def run_native_as_user(root, args=(), timeout: float = 30) -> Outcome:
    """root/prog run natively in root, as an ordinary user (uid 65534 when we are root)."""
    require_native()
    if IS_ROOT:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                os.chown(name, NOBODY, NOBODY)

    def setup():
        os.umask(0o022)
        if IS_ROOT:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)

    proc = subprocess.run(["./prog", *args], cwd=root, env=NATIVE_ENV, capture_output=True,
                          preexec_fn=setup, timeout=timeout)
    return Outcome(proc.stdout, proc.stderr, shell_status(proc.returncode))


def both(builds, tmp_path, name, flavour, args=()):
    """(native outcome, vsnap outcome, vsnap's notices, native root, vsnap root): the same
    program at /prog of two fresh roots of the same layout."""
    prog = builds.get(name, flavour)
    native_root = make_root(tmp_path / "native", prog)
    guest_root = make_root(tmp_path / "vsnap", prog)
    native = run_native_as_user(native_root, args)
    notices: list[str] = []
    under, _ = run_api(str(guest_root / "prog"), args, root=guest_root, log=notices)
    return native, under, notices, native_root, guest_root


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_prctl_caps_membarrier_hostname_match_linux(builds, tmp_path, flavour):
    native, under, notices, _, _ = both(builds, tmp_path, "prctl_caps", flavour)
    assert native.status == 0, native.text()
    assert under.stdout == native.stdout
    assert under.status == native.status
    assert notices == []  # every option and command used here is implemented
    assert b"initial name                 0 [prog] pad=1" in under.stdout
    assert b"after long name              0 [a-rather-long-w]" in under.stdout


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_memfd_tmpfile_opath_match_linux(builds, tmp_path, flavour):
    native, under, notices, native_root, guest_root = both(builds, tmp_path, "anonfiles",
                                                           flavour)
    assert native.status == 0, native.text()
    assert under.stdout == native.stdout
    assert under.status == native.status
    assert notices == []
    # nothing nameless left a name behind, in the root or in the O_TMPFILE directory
    assert snapshot_tree(guest_root / "w", modes=True) == \
        snapshot_tree(native_root / "w", modes=True)
    assert not [n for n in os.listdir(guest_root) if n.startswith(".vsnap")]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_mknod_and_fifos_match_linux(builds, tmp_path, flavour):
    native, under, notices, native_root, guest_root = both(builds, tmp_path, "fifo", flavour)
    assert native.status == 0, native.text()
    assert under.stdout == native.stdout
    assert under.status == native.status
    assert notices == []
    assert snapshot_tree(guest_root, modes=True) == snapshot_tree(native_root, modes=True)


def test_fifo_that_would_wait_forever_is_refused_loudly(builds, tmp_path):
    root = make_root(tmp_path / "r", builds.get("fifo"))
    notices: list[str] = []
    out, result = run_api(str(root / "prog"), ["deadlock"], root=root, log=notices)
    assert out.stdout.decode().splitlines() == [
        "blocking open for reading        -1 Resource deadlock would occur",
        "blocking open for writing        -1 Resource deadlock would occur",
        "read of an empty FIFO            -1 Resource deadlock would occur"]
    assert len(notices) == 3 and all("would wait forever" in n for n in notices), notices
    assert notices[0].startswith("vsnap: opening for reading the FIFO /q")
    assert out.stderr == b""  # the notices are vsnap's, not the guest's
    assert sum(result.refused.values()) == 3


def test_memfd_sealing_is_refused_loudly(builds, tmp_path):
    root = make_root(tmp_path / "r", builds.get("refusals"))
    notices: list[str] = []
    out, result = run_api(str(root / "prog"), ["seal"], root=root, log=notices)
    assert out.stdout == (b"F_ADD_SEALS -1 Invalid argument\nF_GET_SEALS -1 Invalid argument"
                          b"\nwrite 14\n")
    assert [n.split(":")[1].strip() for n in notices] == ["fcntl F_ADD_SEALS",
                                                          "fcntl F_GET_SEALS"]
    assert result.refused == {"fcntl(F_ADD_SEALS)": 1, "fcntl(F_GET_SEALS)": 1}


def test_unknown_prctl_option_is_named_once(tmp_path):
    """A prctl option Linux has and vsnap does not: EINVAL, one notice, counted each time."""
    src = tmp_path / "mm.c"
    src.write_text('#include <stdio.h>\n#include <sys/prctl.h>\nint main(void) {\n'
                   '  for (int i = 0; i < 3; i++) printf("%d\\n", prctl(35, 0, 0, 0, 0));\n'
                   '  return 0;\n}\n')
    from vsnap.build import build
    notices: list[str] = []
    result, out, _ = vsnap.run(build(str(src)), root=str(tmp_path), log=notices)
    assert out == b"-1\n-1\n-1\n"
    assert notices == ["vsnap: prctl option 35 (PR_SET_MM) is not implemented: EINVAL"]
    assert result.refused == {"prctl(PR_SET_MM)": 3}


# ------------------------------------------------------------------------------------------------
# the promise: checkpoints anywhere keep the prctl state, nameless files and O_PATH descriptors

def _points(m: Measured) -> list[int]:
    calls = m.syscalls
    step = max(1, len(calls) // 10)
    return sorted({p + d for p in calls[::step] for d in (0, 1)})


@pytest.mark.parametrize("name", ["prctl_caps", "anonfiles", "fifo"])
def test_state_survives_checkpoints(builds, tmp_path, name):
    guest = Guest(builds.get(name), ())
    m = measure(guest, tmp_path)
    assert m.outcome.status == 0
    points = _points(m)
    for k in points:
        assert_transparent(guest, [k], reference=m.outcome, base=tmp_path)
    assert_transparent(guest, points[1::4], reference=m.outcome, base=tmp_path)


def _stopped_holding(builds, tmp_path, name, kind):
    """A machine running guest `name`, stopped at the first system call where it holds an
    open file description of `kind`."""
    guest = Guest(builds.get(name), ())
    m = measure(guest, tmp_path / "measure")
    root = tmp_path / "r"
    root.mkdir()
    machine = start(guest, root, Capture())
    for k in m.syscalls:
        assert machine.advance(k) is None
        if any(f.kind == kind for f in machine.process.fds.descriptions()):
            return machine
    raise AssertionError(f"{name} never held a {kind} description")


def test_fifo_with_bytes_waiting_survives_a_checkpoint(builds, tmp_path):
    """The bytes in a pipe exist only there: the image carries them, saving leaves them in
    place for the guest that goes on, and resume puts them back."""
    guest = Guest(builds.get("fifo"), ())
    reference = measure(guest, tmp_path / "measure")
    points = []
    root = tmp_path / "r"
    root.mkdir()
    cap = Capture()
    m = start(guest, root, cap)
    for k in reference.syscalls[:-1]:
        assert m.advance(k) is None
        waiting = [f for f in m.process.fds.descriptions() if f.kind == "fifo"
                   and fcntl.ioctl(f.host_fd, termios.FIONREAD, b"\0" * 4) != b"\0" * 4]
        if waiting:
            points.append(k)
            image_bytes(m)  # saving leaves the bytes in place for the guest that goes on
    assert len(points) >= 3, "the guest never left bytes in a FIFO"
    assert m.run().status == 0
    assert bytes(cap.out) == reference.outcome.stdout
    for k in points:
        assert_transparent(guest, [k], reference=reference.outcome, base=tmp_path)


def test_checkpoint_with_opath_of_a_removed_file_is_refused_in_one_line(builds, tmp_path):
    m = _stopped_holding(builds, tmp_path, "refusals", "path")
    m.advance(m.instructions + 1000)  # past the unlink
    with pytest.raises(CannotSave, match=r"O_PATH descriptor names /victim, which was "
                                         r"removed since"):
        image_bytes(m)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_no_vdso_so_time_calls_are_system_calls(builds, tmp_path, flavour):
    """README: no vDSO, on purpose. Without AT_SYSINFO_EHDR both libcs call the kernel."""
    lines: list[str] = []
    cap = Capture()
    m = vsnap.Machine(builds.get("novdso", flavour), root=str(tmp_path), console=cap.console)
    m.system.strace = lines.append
    assert m.run().status == 0
    assert bytes(cap.out) == b"AT_SYSINFO_EHDR 0\n"
    timed = [x.split("(")[0] for x in lines if x.startswith(("clock_gettime(", "gettimeofday(",
                                                              "time("))]
    assert len(timed) == 3, lines


@pytest.mark.parametrize("kind", ["path", "file"])
def test_opath_and_nameless_files_survive_a_checkpoint_while_open(builds, tmp_path, kind):
    """Checkpoints exactly where the guest holds an O_PATH descriptor (of a file, a symlink,
    a directory, /dev/null) or a nameless file (memfd, O_TMPFILE), each resumed."""
    guest = Guest(builds.get("anonfiles"), ())
    reference = measure(guest, tmp_path / "measure")
    root = tmp_path / "r"
    root.mkdir()
    m = start(guest, root, Capture())
    points = []
    for k in reference.syscalls[:-1]:
        assert m.advance(k) is None
        held = [f for f in m.process.fds.descriptions() if f.kind == kind
                and (kind == "path" or f.path.endswith(" (deleted)"))]
        if held:
            points.append(k)
    assert len(points) >= 6
    for k in points[::max(1, len(points) // 6)]:
        assert_transparent(guest, [k], reference=reference.outcome, base=tmp_path)
