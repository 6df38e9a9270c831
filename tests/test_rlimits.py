"""Resource limits: the same guest (tests/guests/rlimits.c) natively, as an unprivileged user,
and under vsnap, musl and glibc; each enforced limit is run into and must give the same output
and exit status. Then the limits in a checkpoint image, and the kernel object's rules."""
from __future__ import annotations

import os
import subprocess

import pytest

import vsnap
from conftest import NATIVE_ENV, IS_ROOT, Outcome, require_native, shell_status
from vsnap.abi import consts as C
from vsnap.abi import errno as E
from vsnap.errors import SyscallError
from vsnap.rlimits import INF, Limits
from vsnap.testing import Guest, assert_transparent, measure

NOBODY = 65534


def run_unprivileged(prog: str, args) -> tuple[Outcome, dict]:
    """Natively, as uid/gid 65534 (no CAP_SYS_RESOURCE: raising a hard limit is EPERM), with
    the limits vsnap starts a guest with (this host's may differ), in a fresh directory of
    its own; the outcome and the files it left."""
    require_native()
    import resource
    import shutil
    import tempfile
    with tempfile.TemporaryDirectory() as d:  # not under pytest's 0700 folders
        os.chmod(d, 0o755)
        copy = os.path.join(d, "prog")
        shutil.copy(prog, copy)
        os.chmod(copy, 0o755)
        work = os.path.join(d, "work")
        os.mkdir(work)
        os.chown(work, NOBODY, NOBODY)

        def setup():
            os.umask(0o022)
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 4096))
            resource.setrlimit(resource.RLIMIT_CORE, (0, resource.RLIM_INFINITY))
            resource.setrlimit(resource.RLIMIT_STACK, (8 << 20, resource.RLIM_INFINITY))
            if IS_ROOT:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)

        p = subprocess.run([copy, *args], cwd=work, env=NATIVE_ENV, capture_output=True,
                           preexec_fn=setup, timeout=60)
        files = {n: open(os.path.join(work, n), "rb").read() for n in os.listdir(work)}
    return Outcome(p.stdout, p.stderr, shell_status(p.returncode)), files


def run_vsnap(prog: str, args, root) -> Outcome:
    result, out, err = vsnap.run(prog, *args, root=str(root), cwd=str(root))
    return Outcome(out, err, result.status)


@pytest.mark.parametrize("flavour", ["musl", "glibc"])
@pytest.mark.parametrize("mode, status", [
    ("rules", 0), ("nofile", 0), ("fsize", 153), ("fsize-ign", 0), ("fsize-handler", 0),
    ("mem", 0), ("stack-default", 0), ("stack-small", 0), ("stack-big", 0)])
def test_limits_match_native(mode, status, flavour, builds, tmp_path):
    prog = builds.get("rlimits", flavour)
    got = run_vsnap(prog, [mode], tmp_path)
    assert got.status == status, got
    assert got.stdout.endswith(b"done\n") == (status == 0 and mode not in (
        "stack-small", "stack-default"))  # these end in their SIGSEGV handler
    native, files = run_unprivileged(prog, [mode])
    assert (got.stdout, got.status) == (native.stdout, native.status)
    if mode.startswith("fsize"):  # the partial write stopped exactly at the limit
        assert (tmp_path / "out.txt").read_bytes() == files["out.txt"]


@pytest.mark.parametrize("mode, flavour, status, lines", [
    ("cpu", "musl", 152, [b"set CPU 1/unlimited          0 ok\n"]),
    ("cpu-handler", "glibc", 137, [b"set CPU 1/2                  0 ok\n",
                                   b"SIGXCPU 1, soft limit now 2\n"])])
def test_cpu_limit_on_the_virtual_cpu_clock(mode, flavour, status, lines, builds, tmp_path):
    """SIGXCPU at the soft limit (which then moves up a second), SIGKILL at the hard one. A
    second of vsnap's CPU time is a million system calls (one virtual microsecond each)."""
    prog = builds.get("rlimits", flavour)
    got = run_vsnap(prog, [mode], tmp_path)
    assert (got.stdout, got.status) == (b"".join(lines), status)
    native, _ = run_unprivileged(prog, [mode])
    assert (native.stdout, native.status) == (got.stdout, got.status)


def test_limits_survive_a_checkpoint(builds, tmp_path):
    """Limits set before a checkpoint are in force after it: the fd limit, the file size limit
    and its partial write, and what getrlimit reports."""
    guest = Guest(builds.get("rlimits", "musl"), ("rules",))
    m = measure(guest, tmp_path)
    assert m.outcome.stdout.endswith(b"done\n")
    for point in m.syscalls[8::6]:
        assert_transparent(guest, [point], reference=m.outcome, base=tmp_path)
    for mode in ("nofile", "fsize-handler"):
        g = Guest(guest.program, (mode,))
        m = measure(g, tmp_path)
        for point in m.syscalls[10::3]:
            assert_transparent(g, [point], reference=m.outcome, base=tmp_path)


def test_limits_are_in_the_image_and_checked(builds, tmp_path):
    from vsnap.snapshot import checkpoint, load
    from vsnap.snapshot.codec import ImageError
    prog = builds.get("rlimits", "musl")
    m = vsnap.Machine(prog, ["nofile"], root=str(tmp_path), console=vsnap.Capture().console)
    marks = []
    m.system.strace = lambda line: marks.append(m.cpu.instructions) \
        if line.startswith(("prlimit64", "setrlimit")) else None
    m.run(count=True)
    m = vsnap.Machine(prog, ["nofile"], root=str(tmp_path), console=vsnap.Capture().console)
    m.advance(marks[-1])
    img = tmp_path / "l.img"
    checkpoint(m, str(img))
    k = load(str(img)).kernel
    assert k["limits"].get(C.RLIMIT_NOFILE) == (8, 8)
    import json
    import zipfile
    with zipfile.ZipFile(img) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    kernel = json.loads(parts["kernel.json"])
    assert kernel["limits"]["NOFILE"] == [8, 8]
    from vsnap.snapshot.image import parse
    manifest = json.loads(parts["manifest.json"])
    for bad in ([9, 8], [8, "lots"], [8, 10**9]):
        kernel["limits"]["NOFILE"] = bad
        parts2 = dict(parts, **{"kernel.json": json.dumps(kernel).encode()})
        with pytest.raises(ImageError, match="limits"):
            parse(manifest, parts2, "x.img")


def test_the_rules_of_an_unprivileged_process():
    lim = Limits()
    assert lim.get(C.RLIMIT_NOFILE) == (1024, 4096) and lim.get(C.RLIMIT_CORE) == (0, INF)
    assert lim.get(C.RLIMIT_STACK) == (8 << 20, INF)
    with pytest.raises(SyscallError) as e:
        lim.get(C.RLIM_NLIMITS)
    assert e.value.errno == E.EINVAL
    lim.set(C.RLIMIT_FSIZE, 10, 100)
    for soft, hard, errno in ((200, 100, E.EINVAL), (10, 200, E.EPERM), (10, INF, E.EPERM)):
        with pytest.raises(SyscallError) as e:
            lim.set(C.RLIMIT_FSIZE, soft, hard)
        assert e.value.errno == errno
    lim.set(C.RLIMIT_FSIZE, 100, 100)
    assert lim.get(C.RLIMIT_FSIZE) == (100, 100)
    with pytest.raises(SyscallError):
        lim.set(C.RLIMIT_NOFILE, 1024, 1 << 21, privileged=True)  # past nr_open: even root


def test_core_limit_zero_means_no_core_file(builds, tmp_path):
    """--core is the user's `ulimit -c unlimited`; a guest that then sets RLIMIT_CORE to 0
    (as programs holding secrets do) gets no core file, as on Linux, and vsnap says so."""
    from conftest import run_cli
    prog = builds.get("rlimits", "musl")
    out = run_cli("run", "--core", "c.core", prog, "nocore", cwd=tmp_path)
    assert out.status == 134 and not (tmp_path / "c.core").exists()
    assert b"no core file: the guest set its RLIMIT_CORE to 0" in out.stderr
    out = run_cli("run", "--core", "c.core", prog, "fsize", cwd=tmp_path)
    assert out.status == 153 and (tmp_path / "c.core").read_bytes()[:4] == b"\x7fELF"


def test_the_kernel_grows_the_stack_too(builds, tmp_path):
    """A signal frame or a system call's buffer just under the stack's lowest page grows it,
    as Linux's copy_to_user does; past RLIMIT_STACK it is EFAULT."""
    m = vsnap.Machine(builds.get("rlimits", "musl"), ["rules"], root=str(tmp_path),
                      console=vsnap.Capture().console)
    stack = [v for v in m.mem.vmas if v.kind == "stack"]
    assert len(stack) == 1 and stack[0].size < 1 << 20  # the arguments plus 128 KiB
    top = stack[0].end
    m.process.write(stack[0].start - 100, b"frame")
    (grown,) = [v for v in m.mem.vmas if v.kind == "stack"]
    assert grown.start < stack[0].start and grown.end == top
    assert m.process.read(stack[0].start - 100, 5) == b"frame"
    with pytest.raises(SyscallError) as e:
        m.process.write(top - (8 << 20) - 4096, b"x")
    assert e.value.errno == E.EFAULT
    m.process.write(top - (8 << 20), b"x")  # the last page the limit allows
    m.close()


def test_checkpoints_while_the_stack_grows(builds, tmp_path):
    """Saved with the stack part-grown (its VMA as far as it got) and resumed: it goes on
    growing to the same limit, and the run ends as an uninterrupted one does."""
    guest = Guest(builds.get("rlimits", "musl"), ("stack-small",))
    m = measure(guest, tmp_path)
    assert m.outcome.stdout.endswith(b"SIGSEGV: the stack could not grow\n")
    for point in (m.length // 3, m.length // 2, m.length - 50):
        assert_transparent(guest, [point], reference=m.outcome, base=tmp_path)
