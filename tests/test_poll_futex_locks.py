"""poll/select, futex and file locks: the same guest natively and under vsnap (musl and glibc,
CLI and API), what Linux would hang on, busybox's `read`, and checkpoints while locks are held
and waits are under way."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import assert_no_traceback, make_root, run_api, run_cli, run_native
from vsnap.testing import Guest, assert_transparent, measure

GUESTS = ("polling", "futexes", "filelocks")
from conftest import BUSYBOX  # noqa: E402  (None: no static busybox here)


@pytest.fixture(scope="module", autouse=True)
def prebuilt(builds):
    builds.prebuild(GUESTS, ("musl", "glibc"))


@pytest.mark.parametrize("flavour", ["musl", "glibc"])
@pytest.mark.parametrize("name", GUESTS)
def test_matches_native(name, flavour, builds, tmp_path):
    prog = builds.get(name, flavour)
    root = make_root(tmp_path / "native", prog)
    want = run_native(str(root / "prog"), cwd=root)
    assert want.status == 0 and want.stdout.endswith(b"EXIT-SUCCESS\n"), want.text()
    root = make_root(tmp_path / "api", prog)
    got, result = run_api(str(root / "prog"), root=root)
    assert got.stdout.splitlines() == want.stdout.splitlines()  # the differing line, shown
    assert (got.stdout, got.stderr, got.status) == (want.stdout, want.stderr, want.status)
    root = make_root(tmp_path / "cli", prog)
    cli = run_cli("run", "./prog", cwd=root)
    assert_no_traceback(cli)
    assert (cli.stdout, cli.stderr, cli.status) == (want.stdout, want.stderr, want.status)


@pytest.mark.parametrize("name, arg, what", [
    ("futexes", "hang", "waits on the futex at 0x"),
    ("filelocks", "deadlock", "waits in flock for /dead.txt"),
])
def test_what_linux_hangs_on_ends_with_one_line(name, arg, what, builds, tmp_path):
    """Linux would wait forever; with no timer and no way to get a signal, vsnap ends the
    guest and says why."""
    prog = builds.get(name, "musl")
    root = make_root(tmp_path / "root", prog)
    got, result = run_api(str(root / "prog"), (arg,), root=root)
    assert result.status == 1
    assert what in result.message and "deadlock" in result.message
    assert got.stdout.endswith(b"\n") and b"EXIT-SUCCESS" not in got.stdout


def test_a_lease_nobody_gives_up_breaks_after_lease_break_time(builds, tmp_path):
    """Linux waits /proc/sys/fs/lease-break-time (45 s) and then downgrades the write lease;
    vsnap does the same on its clock, at once."""
    prog = builds.get("filelocks", "musl")
    root = make_root(tmp_path / "root", prog)
    got, result = run_api(str(root / "prog"), ("lease-timeout",), root=root)
    assert result.status == 0, got.text()
    assert got.stdout == (b"WRLCK = 0\nreader open after 45 s: fd ok 1\n"
                          b"GETLEASE (downgraded) = 0\n")


# busybox ash's read builtin polls before each byte --------------------------------------------
BUSYBOX_CASES = {
    "read-file": ("read x < f.txt; echo \"[$x]\"; read a b < f.txt; echo \"[$b]\"", b""),
    "while-read": ("while read l; do echo \"<$l>\"; done < f.txt; echo rc=$?", b""),
    "read-null": ("read x < /dev/null; echo \"rc=$? [$x]\"", b""),
    "read-stdin": ("while read l; do echo \"<$l>\"; done; echo done", b"one\ntwo\nthree"),
    "read-n": ("read -n 3 x < f.txt; echo \"[$x]\"", b""),
}


@pytest.mark.skipif(BUSYBOX is None, reason="no /bin/busybox here")
@pytest.mark.parametrize("case", sorted(BUSYBOX_CASES))
def test_busybox_read_builtin(case, tmp_path):
    script, stdin = BUSYBOX_CASES[case]
    inputs = {"f.txt": b"first line here\nsecond line\n\nlast without newline"}
    argv = ("sh", "-c", script)
    root = make_root(tmp_path / "native", inputs=inputs)
    want = run_native(BUSYBOX, argv, cwd=root, stdin=stdin)
    assert want.status == 0 and want.stdout
    root = make_root(tmp_path / "api", inputs=inputs)
    got, _ = run_api(BUSYBOX, argv, root=root, stdin=stdin)
    assert (got.stdout, got.status) == (want.stdout, want.status)
    root = make_root(tmp_path / "cli", inputs=inputs)
    cli = run_cli("run", BUSYBOX, *argv, cwd=root, stdin=stdin)
    assert_no_traceback(cli)
    assert (cli.stdout, cli.status) == (want.stdout, want.status)


# checkpoints while locks are held, leases are breaking, waits are under way -------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ckpt-locks")


@pytest.mark.parametrize("name, args, step", [
    ("filelocks", (), 2), ("filelocks", ("lease-timeout",), 1), ("polling", (), 1),
    ("futexes", (), 3)])
def test_checkpoints_keep_locks_and_waits(name, args, step, builds, base):
    """A save after (nearly) every system call, each resumed in a fresh machine: every
    F_GETLK, F_OFD_GETLK, flock LOCK_NB and F_GETLEASE probe after it sees what an
    uninterrupted run sees."""
    guest = Guest(builds.get(name, "musl"), args)
    m = measure(guest, base)
    assert m.outcome.status == 0
    for k in m.syscalls[::step]:
        assert_transparent(guest, [k], reference=m.outcome, base=base)
    third = m.length // 3
    assert_transparent(guest, [third, 2 * third], reference=m.outcome, base=base)


def test_damaged_lock_records_are_refused_with_one_line(builds, base):
    """fds.json's locks are untrusted input like the rest: each bad field is named."""
    import json

    from guestrun import Capture
    from vsnap.snapshot import image_bytes
    from vsnap.snapshot.codec import ImageError, decode, encode
    from vsnap.snapshot.image import parse
    from vsnap.snapshot.inspect import render
    from vsnap.snapshot.restore import restore_bytes
    from vsnap.testing import fresh_root, start
    guest = Guest(builds.get("filelocks", "musl"))
    m = measure(guest, base)

    def image_where(section: str):
        """An image saved at the first stop where the guest holds a lock of this kind."""
        root = fresh_root(guest, base)
        machine = start(guest, root, Capture(b""))
        for k in m.syscalls:
            machine.advance(k)
            if getattr(machine.system.locks, section):
                break
        manifest, parts = decode(image_bytes(machine))
        machine.close()
        assert json.loads(parts["fds.json"])["locks"]["flock" if section == "flocks"
                                                      else section]
        restore_bytes(encode(parts, manifest["program"]), root=str(root))[0].close()
        return root, manifest, parts

    def refused(root, manifest, parts, obj) -> str:
        damaged = dict(parts, **{"fds.json": json.dumps(obj).encode()})
        with pytest.raises(ImageError) as e:
            restore_bytes(encode(damaged, manifest["program"]), root=str(root))
        assert "\n" not in str(e.value)
        return str(e.value)

    cases = {"flocks": [("flock", "description", 999), ("flock", "type", 2)],
             "records": [("records", "owner", "somebody"),
                         ("records", "start", "0x7fffffffffffffff0"),
                         ("records", "end", "0x0"), ("records", "type", -1)],
             "leases": [("leases", "breaking", 1), ("leases", "description", -1)]}
    for section, bad in cases.items():
        root, manifest, parts = image_where(section)
        shown = render(parse(manifest, parts, "image"), "fds")  # vsnap inspect IMAGE fds
        assert {"flocks": "flock LOCK_", "records": "lock of the process F_",
                "leases": "lease F_"}[section] in shown.split("File locks:")[1]
        for name, field, value in bad:
            obj = json.loads(parts["fds.json"])
            if field == "end":
                obj["locks"][name][0]["start"] = "0x10"
            obj["locks"][name][0][field] = value
            assert f"locks.{name}[0]" in refused(root, manifest, parts, obj)
        obj = json.loads(parts["fds.json"])
        name = bad[0][0]
        if name != "records":  # one flock lock, one lease per description
            obj["locks"][name].append(dict(obj["locks"][name][0]))
            assert f"locks.{name}[" in refused(root, manifest, parts, obj)


@pytest.mark.skipif(BUSYBOX is None, reason="no /bin/busybox here")
def test_poll_on_the_terminal_waits_for_input_that_comes_later(tmp_path):
    """`vsnap run` with its stdin a pipe that stays empty for a while: ash's read polls and
    waits, as on Linux, instead of reading nothing."""
    import subprocess
    import time

    from conftest import VSNAP
    root = make_root(tmp_path / "root")
    script = 'read x; echo "[$x]"; read -t 0.2 y; echo "timeout rc=$?"; read z; echo "[$z]"'
    p = subprocess.Popen([*VSNAP, "run", BUSYBOX, "sh", "-c", script], cwd=root,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    p.stdin.write(b"late\n")
    p.stdin.flush()
    time.sleep(1.0)
    p.stdin.write(b"later\n")
    p.stdin.flush()
    out, err = p.communicate(timeout=120)  # closes stdin: end of input
    assert b"Traceback" not in err
    assert out == b"[late]\ntimeout rc=1\n[later]\n", (out, err)
