"""Antonov's 1990 trick as a guest (programs/antonov/): a program that saves itself from a
SIGUSR1 handler (fd table, stack, data segment, heap, jmp_buf, by raw write calls) and, run
again, reads itself back in main's special branch and goes on.

The same binary is held to the same promise twice: natively on this Linux machine (with
address randomisation off for the process: setarch -R) and under vsnap.  The promise:

    stdout(run with -c K) + stdout(run again) == stdout(one run without -c)

and the journal file the program writes is the same, and the save file is gone at the end.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import NATIVE_ENV, NATIVE_OK, REPO, have_gcc_static, run_cli
from vsnap.build import build as vsnap_build

HERE = REPO / "programs" / "antonov"
DEMO = HERE / "demo.c"
CFLAGS = ("-O2", "-g", "-std=c11", "-D_GNU_SOURCE", "-Wall")  # as vsnap/build.py
SETARCH = shutil.which("setarch") or "/usr/bin/setarch"
STEPS = 7
# ------------------------------------------------------------------------------------------
# building: demo.c includes antonov.c, so the library's text goes into the cache key

def _library_digest() -> str:
    h = hashlib.sha256()
    for name in ("antonov.c", "antonov.h"):
        h.update((HERE / name).read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    out = tmp_path_factory.mktemp("antonov-build")
    made: dict[str, str] = {}

    def get(libc: str) -> str:
        if libc not in made:
            if libc == "musl":
                made[libc] = vsnap_build(str(DEMO),
                                         extra_flags=(f"-DANTONOV_LIB={_library_digest()}",))
            else:
                if not have_gcc_static():
                    pytest.skip("no gcc or no static glibc (libc.a) here")
                target = out / "demo.glibc"
                p = subprocess.run(["gcc", *CFLAGS, "-static", "-no-pie", "-o", str(target),
                                    str(DEMO)], capture_output=True, text=True)
                assert p.returncode == 0, p.stderr
                made[libc] = str(target)
        return made[libc]

    return get


@pytest.fixture(params=["musl", "glibc"])
def demo(request, builds) -> str:
    return builds(request.param)


# ------------------------------------------------------------------------------------------
# running natively, with address randomisation off for the process

_SETARCH_OK: bool | None = None


def require_setarch() -> None:
    global _SETARCH_OK
    if not NATIVE_OK:
        pytest.skip("native runs need an x86-64 Linux host")
    if _SETARCH_OK is None:
        _SETARCH_OK = (os.path.exists(SETARCH) and
                       subprocess.run([SETARCH, "-R", "true"], capture_output=True).returncode
                       == 0)
    if not _SETARCH_OK:
        pytest.skip("setarch -R (personality ADDR_NO_RANDOMIZE) does not work here")


def native(prog: str, *args, cwd: Path, aslr_off: bool = True) -> subprocess.CompletedProcess:
    cmd = ([SETARCH, "-R"] if aslr_off else []) + [prog, *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=NATIVE_ENV, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=60)


def vsnap_run(prog: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    o = run_cli("run", "--root", str(cwd), prog, *map(str, args), cwd=cwd)
    assert b"Traceback" not in o.stderr, o.text()
    return subprocess.CompletedProcess([prog, *args], o.status, o.stdout, o.stderr)


RUNNERS = {"native": native, "vsnap": vsnap_run}


def fresh(base: Path, name: str) -> Path:
    d = base / name
    d.mkdir()
    return d


def files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def save_then_restart(run, prog: str, tmp_path: Path, k: int, steps: int = STEPS):
    """The reference run and the two-run split at step k; asserts the promise."""
    ref_dir, split = fresh(tmp_path, "ref"), fresh(tmp_path, "split")
    ref = run(prog, "-n", steps, cwd=ref_dir)
    assert ref.returncode == 0, ref.stderr.decode()
    assert ref.stdout.endswith(b"EXIT-SUCCESS\n") and ref.stdout.count(b"\n") == steps + 2

    a = run(prog, "-n", steps, "-c", k, "-v", cwd=split)
    assert a.returncode == 0, a.stderr.decode()
    assert b"antonov: saved the process to demo.save; exiting" in a.stderr
    assert a.stdout.count(b"\n") == k                       # it stopped right after step k
    assert (split / "demo.save").exists() and not (split / "demo.save.tmp").exists()

    b = run(prog, "-n", steps, "-c", k, "-v", cwd=split)    # the same command line again
    assert b.returncode == 0, b.stderr.decode()
    assert a.stdout + b.stdout == ref.stdout
    assert files(split) == files(ref_dir)                   # the journal; the save file gone
    err = b.stderr.decode()
    assert "| restored from demo.save" in err and f"| step {k:3d} of {steps:<3d}" in err
    assert "reopened fd 3: disk file demo.journal, offset" in err
    return ref, a, b


# ------------------------------------------------------------------------------------------
# natively

@pytest.mark.parametrize("k", [1, 4, STEPS])
def test_native_save_then_restart_equals_one_run(demo, k, tmp_path):
    require_setarch()
    save_then_restart(native, demo, tmp_path, k)


def chain(run, prog: str, tmp_path: Path, steps=9, stops=(2, 5, 7)) -> None:
    ref = run(prog, "-n", steps, cwd=fresh(tmp_path, "ref"))
    d = fresh(tmp_path, "chain")
    args = ["-n", steps] + [x for k in stops for x in ("-c", k)]
    out = b""
    for i in range(len(stops) + 1):
        r = run(prog, *args, cwd=d)
        assert r.returncode == 0, r.stderr.decode()
        out += r.stdout
        # a restored process saves itself again at the next stop (musl's raise() needs the
        # thread id fixed after a restore: antonov_fix_identity)
        assert (d / "demo.save").exists() == (i < len(stops)), (i, r.stderr.decode())
    assert out == ref.stdout
    assert files(d) == files(tmp_path / "ref")


def test_native_a_restored_process_saves_again(demo, tmp_path):
    require_setarch()
    chain(native, demo, tmp_path)


def test_native_kill_usr1_from_outside(demo, tmp_path):
    """The signal at a moment the program does not choose (in nanosleep, most likely)."""
    require_setarch()
    ref = native(demo, "-n", 10, cwd=fresh(tmp_path, "ref"))
    d = fresh(tmp_path, "killed")
    cmd = [SETARCH, "-R", demo, "-n", "10", "-d", "100"]
    p = subprocess.Popen(cmd, cwd=d, env=NATIVE_ENV, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = b"".join(p.stdout.readline() for _ in range(3))
        p.send_signal(signal.SIGUSR1)  # setarch execs the demo: same pid
        rest, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0 and b"saved the process" in err, err.decode()
    a = first + rest
    assert 3 <= a.count(b"\n") < 10
    b = native(demo, "-n", 10, "-d", 100, cwd=d)
    assert b.returncode == 0, b.stderr.decode()
    assert a + b.stdout == ref.stdout
    assert files(d) == files(tmp_path / "ref")


def test_native_restart_with_randomisation_on_is_refused(demo, tmp_path):
    require_setarch()
    if Path("/proc/sys/kernel/randomize_va_space").read_text().strip() == "0":
        pytest.skip("address randomisation is off on this machine")
    d = fresh(tmp_path, "d")
    a = native(demo, "-n", 5, "-c", 2, cwd=d)
    assert a.returncode == 0 and (d / "demo.save").exists()
    b = native(demo, "-n", 5, "-c", 2, cwd=d, aslr_off=False)
    assert b.returncode == 2 and b.stdout == b""
    assert b"the top of the stack was at" in b.stderr and b"setarch -R" in b.stderr
    assert (d / "demo.save").exists()  # refused before the point of no return: still usable
    c = native(demo, "-n", 5, "-c", 2, cwd=d)
    assert c.returncode == 0 and a.stdout + c.stdout == native(
        demo, "-n", 5, cwd=fresh(tmp_path, "ref")).stdout


def test_native_save_with_randomisation_on_fails_and_goes_on(demo, tmp_path):
    require_setarch()
    if Path("/proc/sys/kernel/randomize_va_space").read_text().strip() != "2":
        pytest.skip("the program break is not randomised on this machine")
    d = fresh(tmp_path, "d")
    r = native(demo, "-n", 4, "-c", 2, cwd=d, aslr_off=False)
    assert r.returncode == 0 and r.stdout.count(b"\n") == 4 + 2  # no checkpoint: ran through
    assert b"cannot save the heap" in r.stderr and b"setarch -R" in r.stderr
    assert sorted(p.name for p in d.iterdir()) == ["demo.journal"]


@pytest.mark.parametrize("change", ["appended", "truncated", "removed"])
def test_native_a_changed_file_is_refused(builds, change, tmp_path):
    require_setarch()
    prog = builds("musl")
    d = fresh(tmp_path, "d")
    assert native(prog, "-n", 5, "-c", 3, cwd=d).returncode == 0
    journal = d / "demo.journal"
    if change == "appended":
        with open(journal, "ab") as f:
            f.write(b"someone else\n")
        why = b"changed since the save: demo.journal"
    elif change == "truncated":
        os.truncate(journal, 5)
        why = b"shorter than its offset: demo.journal"
    else:
        journal.unlink()
        why = b"is gone: demo.journal"
    r = native(prog, "-n", 5, "-c", 3, cwd=d)
    assert r.returncode == 2 and why in r.stderr, r.stderr.decode()


def test_native_a_truncated_save_file_is_refused(builds, tmp_path):
    require_setarch()
    prog = builds("musl")
    d = fresh(tmp_path, "d")
    assert native(prog, "-n", 5, "-c", 3, cwd=d).returncode == 0
    os.truncate(d / "demo.save", 4000)
    r = native(prog, "-n", 5, "-c", 3, cwd=d)
    assert r.returncode == 2 and b"wrong size" in r.stderr, r.stderr.decode()


# ------------------------------------------------------------------------------------------
# under vsnap

def test_vsnap_runs_the_demo_as_linux_does(demo, tmp_path):
    """No checkpoint: the same bytes on stdout and in the journal, natively and in vsnap."""
    v = vsnap_run(demo, "-n", STEPS, cwd=fresh(tmp_path, "v"))
    assert v.returncode == 0, v.stderr.decode()
    if NATIVE_OK:
        n = native(demo, "-n", STEPS, cwd=fresh(tmp_path, "n"), aslr_off=False)
        assert n.returncode == 0 and n.stdout == v.stdout and n.stderr == v.stderr
        assert files(tmp_path / "n") == files(tmp_path / "v")


@pytest.mark.parametrize("k", [1, 4, STEPS])
def test_vsnap_save_then_restart_equals_one_run(demo, k, tmp_path):
    _, a, b = save_then_restart(vsnap_run, demo, tmp_path, k)
    # every system call the library makes is served (glibc's rseq is optional: it copes)
    for r in (a, b):
        assert b"unimplemented syscall" not in r.stderr.replace(
            b"unimplemented syscall 334 (rseq)", b""), r.stderr.decode()


def test_vsnap_a_restored_process_saves_again(builds, tmp_path):
    chain(vsnap_run, builds("musl"), tmp_path)


def test_vsnap_and_native_save_files_agree_on_the_layout(builds, tmp_path):
    """The save file's header (etext, edata, end, stack, data, heap ranges) is the same
    natively (setarch -R) and under vsnap: vsnap lays the process out as Linux does."""
    require_setarch()
    prog = builds("musl")
    heads = []
    for where, run in RUNNERS.items():
        d = fresh(tmp_path, where)
        r = run(prog, "-n", 4, "-c", 2, cwd=d)
        assert r.returncode == 0, r.stderr.decode()
        head = (d / "demo.save").read_bytes()[:120]
        # magic; etext edata end ehdr; (not stack_lo: Linux's auxv and signal frame are
        # larger than vsnap's); stack_hi; data_lo data_hi heap_lo heap_hi
        heads.append((head[:8], head[8:40], head[48:56], head[56:88]))
    assert heads[0] == heads[1]


def _function_range(prog: str, name: str) -> tuple[int, int]:
    from elftools.elf.elffile import ELFFile
    with open(prog, "rb") as f:
        sym = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)[0]
        return sym["st_value"], sym["st_value"] + sym["st_size"]


def test_vsnap_saves_the_guest_in_the_middle_of_its_own_restore(builds, tmp_path):
    """Both checkpointers at once: vsnap stops the second run at instruction k (before,
    inside and after antonov_reload, which reads the guest's stack and data back over it),
    saves an image, and a `vsnap resume` of it finishes the job: still one run's output."""
    prog = builds("musl")
    args = ("-n", 6, "-c", 3)
    ref = vsnap_run(prog, "-n", 6, cwd=fresh(tmp_path, "ref"))
    first = fresh(tmp_path, "first")
    a = vsnap_run(prog, *args, cwd=first)
    assert a.returncode == 0 and (first / "demo.save").exists()
    # where the restore runs: trace the whole second run, note antonov_reload's instructions
    probe = shutil.copytree(first, tmp_path / "probe")  # copy2: the journal's mtime is kept
    trace = run_cli("run", "--trace", "10000000", "--root", str(probe), prog,
                    *map(str, args), cwd=probe)
    lo, hi = _function_range(prog, "antonov_reload")
    pcs = [int(line.split(b":")[0], 16) for line in trace.stderr.splitlines()
           if line.startswith(b"0x")]
    inside = [i + 1 for i, pc in enumerate(pcs) if lo <= pc < hi]  # k = instructions run
    assert inside, "antonov_reload never ran"
    first_k, last_k = inside[0], inside[-1]
    for k in (first_k - 1, first_k + 10, (first_k + last_k) // 2, last_k, last_k + 50,
              len(pcs) // 2):
        d = shutil.copytree(first, tmp_path / f"at{k}")
        img = tmp_path / f"at{k}.img"
        b1 = run_cli("run", "--root", str(d), "--save-at", str(k), "-o", str(img), "--exit",
                     prog, *map(str, args), cwd=d)
        assert img.exists(), b1.text()
        b2 = run_cli("resume", str(img), cwd=tmp_path)
        assert b2.status == 0, b2.text()
        assert a.stdout + b1.stdout + b2.stdout == ref.stdout, k
        assert files(d) == files(tmp_path / "ref"), k


def test_vsnap_refuses_a_save_file_from_another_binary(builds, tmp_path):
    """A save file of the glibc build offered to the musl build: refused, nothing run.  The
    save file is made natively, so this holds whether or not vsnap delivers signals."""
    require_setarch()
    musl, glibc = builds("musl"), builds("glibc")
    d = fresh(tmp_path, "d")
    assert native(glibc, "-n", 4, "-c", 2, cwd=d).returncode == 0
    r = vsnap_run(musl, "-n", 4, "-c", 2, cwd=d)
    assert r.returncode == 2 and r.stdout == b""
    assert b"a different program (or a rebuilt one) saved it" in r.stderr, r.stderr.decode()
    assert (d / "demo.save").exists()
