"""Permissions and credentials are the guest's, whoever runs vsnap.

The guest is uid 1000 / gid 1000 and owns every file in its sandbox, so the owner's mode bits
decide, as for a normal user on their own files. Each program here runs three ways, which must
print the same bytes:

  native        as uid 1000 / gid 1000 (groups {1000}) in a tree that user owns: the truth
  vsnap, root   vsnap run by root (as CI does): the host kernel checks nothing for root, so
                every refusal must come from vsnap itself
  vsnap, user   vsnap itself run as uid 1000: the host kernel's checks and vsnap's meet

The third run starts as root, loads what vsnap needs (the interpreter lives under /root, which
that user cannot read), then drops to uid 1000 before it touches the sandbox.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import CLI_TIMEOUT, IS_ROOT, NATIVE_ENV, NATIVE_OK, Outcome, shell_status

USER = 1000  # the guest's uid and gid; the native runs use the same numbers

pytestmark = pytest.mark.skipif(not (IS_ROOT and NATIVE_OK),
                                reason="needs root on x86-64 Linux to run natively as a user")

# vsnap as a normal user: import what a run needs while still root, then drop the ids
AS_USER = """
import locale, os, sys
import vsnap.cli, vsnap.control, vsnap.driver, vsnap.hostsig, vsnap.kernel.signal
import vsnap.machine, vsnap.snapshot, vsnap.trace
vsnap.cli.parser()
import vsnap.counter, vsnap.tlb  # vsnap's own hooks, from root's cache, loaded while root
vsnap.counter._load_native(); vsnap.tlb._load_native()
os.setgroups([{uid}]); os.setgid({uid}); os.setuid({uid}); os.umask(0o022)
sys.exit(vsnap.cli.main(sys.argv[1:]))
"""


def _as_user():
    os.setgroups([USER])
    os.setgid(USER)
    os.setuid(USER)
    os.umask(0o022)


@pytest.fixture
def tree():
    """A fresh directory that uid 1000 owns and can reach (pytest's tmp_path lies under a
    directory only root may enter); call it again for another one."""
    made = []

    def make(prog: str, name: str = "prog", files: dict | None = None) -> Path:
        d = Path(tempfile.mkdtemp(prefix="vsnap-perm-", dir="/tmp"))
        made.append(d)
        os.chmod(d, 0o755)
        shutil.copyfile(prog, d / name)
        os.chmod(d / name, 0o755)
        for rel, (data, mode) in (files or {}).items():
            (d / rel).write_bytes(data)
            os.chmod(d / rel, mode)
        for path in [d, *d.rglob("*")]:
            os.chown(path, USER, USER, follow_symlinks=False)
        return d

    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)  # as root: modes do not stop it


def native_as_user(d: Path, argv: list[str]) -> Outcome:
    proc = subprocess.run(argv, cwd=d, env=NATIVE_ENV, capture_output=True, preexec_fn=_as_user,
                          timeout=60)
    return Outcome(proc.stdout, proc.stderr, shell_status(proc.returncode))


def vsnap_as_root(d: Path, argv: list[str]) -> Outcome:
    proc = subprocess.run([sys.executable, "-m", "vsnap", "run", "--root", str(d), *argv],
                          cwd=d, capture_output=True, timeout=CLI_TIMEOUT)
    return Outcome(proc.stdout, proc.stderr, proc.returncode)


def vsnap_as_user(d: Path, argv: list[str]) -> Outcome:
    proc = subprocess.run([sys.executable, "-c", AS_USER.format(uid=USER), "run", "--root",
                           str(d), *argv], cwd=d, capture_output=True, timeout=CLI_TIMEOUT)
    return Outcome(proc.stdout, proc.stderr, proc.returncode)


def three_ways(tree, prog: str, args=(), **kw) -> tuple[Outcome, Outcome, Outcome]:
    argv = ["./prog", *args]
    native = native_as_user(tree(prog, **kw), argv)
    return native, vsnap_as_root(tree(prog, **kw), argv), vsnap_as_user(tree(prog, **kw), argv)


def assert_same(native: Outcome, other: Outcome, who: str) -> None:
    assert b"Traceback" not in other.stderr, other.text()
    assert other.stdout.decode() == native.stdout.decode(), who
    assert (other.stderr, other.status) == (native.stderr, native.status), who


@pytest.mark.parametrize("flavour", ["musl", "glibc"])
def test_file_permissions_as_native(builds, tree, flavour):
    """open, create, mkdir, rmdir, unlink, rename, link, symlink, truncate, chdir, fchdir,
    access, listing, and the set-user-ID bits a write clears (tests/guests/perms.c)."""
    native, root, user = three_ways(tree, builds.get("perms", flavour))
    assert native.status == 0, native.text()
    # the native run really was unprivileged (a root run would open it)
    assert b"open ro O_WRONLY: EACCES\n" in native.stdout
    assert_same(native, root, "vsnap run by root")
    assert_same(native, user, "vsnap run by uid 1000")


@pytest.mark.parametrize("flavour", ["musl", "glibc"])
def test_cwd_below_an_unsearchable_directory(builds, tree, flavour):
    """Names relative to the working directory resolve even when a directory above it can no
    longer be searched. vsnap run by a normal user cannot do this (README: the host walks full
    paths), so only vsnap run by root is compared."""
    prog = builds.get("perms", flavour)
    native = native_as_user(tree(prog), ["./prog", "parent"])
    assert native.status == 0, native.text()
    assert b"stat ../x: EACCES\n" in native.stdout and b"stat f: ok\n" in native.stdout
    assert_same(native, vsnap_as_root(tree(prog), ["./prog", "parent"]), "vsnap run by root")


@pytest.mark.parametrize("flavour", ["musl", "glibc"])
def test_credentials_as_native(builds, tree, flavour):
    """set*id to the ids the guest has succeed and change nothing, to others EPERM; setfsuid
    answers the old id; setgroups EPERM; chown only when it changes nothing, clearing set-user-ID
    bits as Linux does (tests/guests/creds.c)."""
    native, root, user = three_ways(tree, builds.get("creds", flavour))
    assert native.status == 0, native.text()
    assert b"ids 1000 1000 1000 1000\n" in native.stdout
    assert b"unimplemented" not in root.stderr
    assert_same(native, root, "vsnap run by root")
    assert_same(native, user, "vsnap run by uid 1000")


from conftest import BUSYBOX  # noqa: E402  (None: no static busybox here)


@pytest.mark.skipif(BUSYBOX is None, reason="no /bin/busybox")
def test_busybox_shell_cannot_append_to_a_read_only_file(tree):
    """The case from issue 9: `echo x >> ro.txt` in busybox's shell fails with rc=1. Shell
    builtins only (vsnap has no fork). vsnap's own notices (lines starting "vsnap:") aside, the
    output is the native one."""
    script = ("echo x >> ro.txt; echo rc=$?; [ -w ro.txt ]; echo w=$?; [ -r ro.txt ]; "
              "echo r=$?; echo y > rx/new; echo rc=$?; cd nox; echo cd=$?; echo z > rw.txt; "
              "echo rc=$?")
    argv = ["./busybox", "sh", "-c", script]

    def make():
        d = tree(BUSYBOX, name="busybox", files={"ro.txt": (b"ro\n", 0o444),
                                                 "rw.txt": (b"rw\n", 0o644)})
        for name, mode in (("rx", 0o555), ("nox", 0o644)):
            (d / name).mkdir()
            os.chown(d / name, USER, USER)
            os.chmod(d / name, mode)
        return d

    def clean(o: Outcome) -> tuple:
        err = b"".join(line for line in o.stderr.splitlines(keepends=True)
                       if not line.startswith(b"vsnap:"))
        return o.stdout, err, o.status

    runs = [native_as_user(make(), argv), vsnap_as_root(make(), argv),
            vsnap_as_user(make(), argv)]
    native = clean(runs[0])
    assert native[0].startswith(b"rc=1\n"), native
    assert b"can't create ro.txt: Permission denied" in native[1]
    for who, run in zip(("vsnap run by root", "vsnap run by uid 1000"), runs[1:]):
        assert b"Traceback" not in run.stderr, run.text()
        assert clean(run) == native, who


def test_permission_state_survives_checkpoints(builds, tree, tmp_path):
    """A checkpoint at every system call of tests/guests/perm_ckpt.c, which holds a descriptor
    for writing on a file made read-only, sits in a working directory made unsearchable, and
    writes a set-user-ID file: each resume behaves as the uninterrupted run, which behaves as
    the program natively as uid 1000."""
    from vsnap.testing import Guest, assert_transparent, measure

    prog = builds.get("perm_ckpt")
    guest = Guest(prog)
    m = measure(guest, base=tmp_path)
    out = m.outcome.stdout
    assert m.outcome.status == 0, m.outcome.stderr
    assert native_as_user(tree(prog), ["./prog"]) == Outcome(out, b"", 0)
    assert out.count(b"create in read-only dir: EACCES\n") == 3
    assert out.count(b"write through old fd: ok\n") == 3
    assert b"stat f in unsearchable cwd: EACCES\n" in out and b"mode 755\n" in out
    for k in m.syscalls:
        assert_transparent(guest, [k], reference=m.outcome, base=tmp_path)
