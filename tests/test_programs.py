"""vsnap runs real static x86-64 Linux programs: a differential test against the real kernel.

Every good program in programs/, in every build flavour (musl and glibc, static and static-pie),
runs three times, each in a fresh directory of the same layout (the program at /prog, its input
files, and /dev/null when chrooted):

    natively          cwd = that directory; chrooted into it when we are root, so that paths
                      look exactly as under vsnap; otherwise the getcwd line is normalised
    vsnap CLI         `python -m vsnap run ./prog ARGS` with cwd = root = that directory
    vsnap Python API  vsnap.run(prog, *args, root=dir, cwd=dir)

and the three must agree on stdout bytes, stderr bytes, exit status, and the files left behind
(names, contents, permission bits). Each good program also ends its stdout with EXIT-SUCCESS.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from conftest import (FLAVOURS, SAMPLE, Outcome, assert_no_traceback, can_chroot, make_root,
                      require_native, run_api, run_cli, run_native, snapshot_tree)


@dataclass(frozen=True)
class Spec:
    args: tuple = ()
    inputs: dict = field(default_factory=dict)
    expect: tuple = ()  # lines that stdout must contain (programs/README.md's reference output)


GOOD = {
    "hello": Spec(expect=(b"Hello, world!\n",)),
    "counter": Spec(expect=(b"count 20\n", b"sum 66613690759\n")),
    "wordfreq": Spec(("sample.txt", "3"), {"sample.txt": SAMPLE.read_bytes()},
                     (b"570 words, 228 distinct\n", b"62 the\n", b"38 a\n", b"18 and\n")),
    "primes": Spec(expect=(b"primes below 2000000: 148933\n", b"share of primes: 0.074\n",
                           b"cddbf075512db695\n")),
    "malloc_stress": Spec(expect=(b"checksum 9ec66010e8e8cf92\n",)),
    "rewrite": Spec(("rewrite.dat",)),
    "listdir": Spec(),
    "syscalls": Spec(("2000",), expect=(b"writes 2000, reads 2000, getpids 21\n",)),
    "compute": Spec(("2000000",), expect=(
        b"xorshift64 after 2000000 steps: x=3d83c1a3b9d9c0c5 sum=b8b2104747db859a\n",)),
}

CASES = [pytest.param(name, flavour, id=f"{name}-{flavour}") for name in GOOD
         for flavour in FLAVOURS]


@pytest.fixture(scope="module", autouse=True)
def prebuilt(builds):
    """Build all programs in all flavours at once, in parallel, before the first test."""
    builds.prebuild(GOOD)


@pytest.fixture(scope="session")
def native(builds, tmp_path_factory):
    """native(name, flavour) -> (Outcome, files left behind), run once per session."""
    cache: dict = {}

    def get(name: str, flavour: str):
        require_native()
        key = (name, flavour)
        if key not in cache:
            prog, spec = builds.get(name, flavour), GOOD[name]
            chroot = can_chroot()
            root = make_root(tmp_path_factory.mktemp(f"native-{name}-{flavour}") / "root", prog,
                             inputs=spec.inputs, dev_null=chroot)
            out = run_native("/prog" if chroot else str(root / "prog"), spec.args, cwd=root,
                             chroot=chroot)
            if not chroot:  # the guest sees its root as /: make the native getcwd agree
                out.stdout = out.stdout.replace(f"cwd: {root.resolve()}\n".encode(), b"cwd: /\n")
            cache[key] = (out, snapshot_tree(root, modes=True))
        return cache[key]

    return get


def check_good(out: Outcome, spec: Spec, who: str) -> None:
    assert_no_traceback(out)
    assert out.status == 0, f"{who}: exit status {out.status}; stderr: {out.text()}"
    assert out.stderr == b"", f"{who}: unexpected stderr {out.text()}"
    assert out.stdout.endswith(b"\nEXIT-SUCCESS\n"), f"{who}: stdout ends {out.stdout[-200:]!r}"
    for line in spec.expect:
        assert line in out.stdout, f"{who}: {line!r} missing from stdout"


def compare(got: Outcome, got_files: dict, want: Outcome, want_files: dict) -> None:
    assert got.stdout == want.stdout
    assert got.stderr == want.stderr
    assert got.status == want.status
    assert sorted(got_files) == sorted(want_files), "different file names left behind"
    for rel in want_files:
        assert got_files[rel] == want_files[rel], f"{rel} differs (content, permission bits)"


@pytest.mark.parametrize("name,flavour", CASES)
def test_native_reference(name, flavour, native):
    """The native run itself is good, and prints programs/README.md's reference lines."""
    out, _ = native(name, flavour)
    check_good(out, GOOD[name], "native")


@pytest.mark.parametrize("name,flavour", CASES)
def test_cli_matches_native(name, flavour, builds, native, tmp_path):
    prog, spec = builds.get(name, flavour), GOOD[name]
    want, want_files = native(name, flavour)
    root = make_root(tmp_path / "root", prog, inputs=spec.inputs, dev_null=can_chroot())
    got = run_cli("run", "./prog", *spec.args, cwd=root)
    check_good(got, spec, "vsnap run")
    compare(got, snapshot_tree(root, modes=True), want, want_files)


@pytest.mark.parametrize("name,flavour", CASES)
def test_api_matches_native(name, flavour, builds, native, tmp_path):
    prog, spec = builds.get(name, flavour), GOOD[name]
    want, want_files = native(name, flavour)
    root = make_root(tmp_path / "root", prog, inputs=spec.inputs, dev_null=can_chroot())
    got, result = run_api(str(root / "prog"), spec.args, root=root)
    check_good(got, spec, "vsnap.run")
    assert result.signal is None and result.message is None
    compare(got, snapshot_tree(root, modes=True), want, want_files)


@pytest.mark.parametrize("name", GOOD)
def test_flavours_agree(name, native):
    """programs/README.md: all builds of a program print the same bytes and leave the same
    files (apart from the program itself)."""
    runs = {}
    for flavour in FLAVOURS:
        try:
            out, files = native(name, flavour)
        except pytest.skip.Exception:
            continue
        files = {k: v for k, v in files.items() if k != "prog"}
        runs[flavour] = (out.stdout, out.stderr, out.status, files)
    if len(runs) < 2:
        pytest.skip("fewer than two flavours could be built")
    first = next(iter(runs.values()))
    for flavour, run in runs.items():
        assert run == first, f"{flavour} differs from {next(iter(runs))}"


def test_guest_writes_only_inside_its_root(builds, tmp_path):
    """A run under vsnap writes only inside its root: the directory beside it stays empty."""
    prog = builds.get("listdir", "musl")
    beside = tmp_path / "beside"
    beside.mkdir()
    root = make_root(tmp_path / "root", prog)
    out = run_cli("run", "./prog", "/", cwd=root)
    assert out.status == 0, out.text()
    assert b"cwd: /\n" in out.stdout
    assert list(beside.iterdir()) == []
    assert (root / "listdir.out" / "alpha.txt").read_bytes() == b"alpha\n"
