"""Determinism: two runs of the same program are the same run.

Equivalence of run and save/resume needs a deterministic machine: virtual clocks, fixed pids,
seeded getrandom and AT_RANDOM, rdtsc from the virtual clock, stable inode numbers and
virtual file times. Two runs in two fresh roots must give the same stdout, stderr, exit status
and files left behind (contents, permission bits, and the times of the files the guest wrote);
and --seed changes the randomness and nothing else (but the time, which follows the
instructions the program runs on other bytes).
"""
from __future__ import annotations

import os
import re
import stat
import subprocess

import pytest

from conftest import VSNAP, make_root, run_api, run_cli, snapshot_tree


@pytest.fixture(scope="module", autouse=True)
def prebuilt(builds):
    builds.prebuild(["counter", "malloc_stress", "determinism", "rdtsc", "dirstat"], ["musl"])
    builds.prebuild(["counter", "determinism"], ["glibc"])


def file_times(root) -> dict:
    """The host mtimes of the regular files under root (the guest's writes stamp them)."""
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and name != "prog":
                out[os.path.relpath(path, root)] = st.st_mtime_ns
    return out


def run_twice(builds, tmp_path, name, flavour="musl", args=(), cli_args=()):
    prog = builds.get(name, flavour)
    runs = []
    for i in range(2):
        root = make_root(tmp_path / f"run{i}", prog)
        out = run_cli("run", *cli_args, "./prog", *args, cwd=root)
        runs.append((out, snapshot_tree(root, modes=True), file_times(root)))
    return runs


@pytest.mark.parametrize("name,flavour,args", [
    ("counter", "musl", ("5", "ticks.log")),
    ("counter", "glibc", ("5", "ticks.log")),
    ("malloc_stress", "musl", ()),
    ("determinism", "musl", ()),
    ("determinism", "glibc", ()),
])
def test_two_runs_are_identical(builds, tmp_path, name, flavour, args):
    (a, files_a, times_a), (b, files_b, times_b) = run_twice(builds, tmp_path, name, flavour,
                                                             args)
    assert a.status == 0, a.text()
    assert (a.stdout, a.stderr, a.status) == (b.stdout, b.stderr, b.status)
    assert files_a == files_b
    assert times_a == times_b, "the files the guest wrote have host times, not virtual ones"


def parse(stdout: bytes) -> dict:
    out = {}
    for line in stdout.decode().splitlines():
        key, _, value = line.partition(" ")
        out[key] = value
    return out


def test_determinism_values_look_like_a_machine(builds, tmp_path):
    """The virtual machine's answers are plausible: a real-looking time, moving clocks, a pid,
    16 random bytes, and a real file's stat."""
    root = make_root(tmp_path / "root", builds.get("determinism"))
    out = run_cli("run", "./prog", cwd=root)
    assert out.status == 0, out.text()
    v = parse(out.stdout)
    assert int(v["time"]) > 1_500_000_000
    assert float(v["realtime"]) >= int(v["time"])
    assert v["getrandom"] != v["AT_RANDOM"]
    assert re.fullmatch(r"[0-9a-f]{32}", v["getrandom"]) and v["getrandom"] != "0" * 32
    assert re.fullmatch(r"[0-9a-f]{32}", v["AT_RANDOM"]) and v["AT_RANDOM"] != "0" * 32
    assert v["getrandom_n"] == "16"
    m = re.fullmatch(r"ino (\d+) dev (\d+) mtime (\d+)\.(\d+) size 5", v["made.txt"])
    assert m, v["made.txt"]
    pid, ppid = map(int, re.fullmatch(r"(\d+) ppid (\d+)", v["pid"]).groups())
    assert pid > 1 and ppid >= 1
    assert (root / "made.txt").read_bytes() == b"made\n"


def test_api_and_cli_agree(builds, tmp_path):
    prog = builds.get("determinism")
    root1 = make_root(tmp_path / "cli", prog)
    cli = run_cli("run", "./prog", cwd=root1)
    root2 = make_root(tmp_path / "api", prog)
    api, _ = run_api(str(root2 / "prog"), root=root2)
    assert (cli.stdout, cli.stderr, cli.status) == (api.stdout, api.stderr, api.status)
    assert file_times(root1) == file_times(root2)


def test_seed_changes_only_the_randomness(builds, tmp_path):
    prog = builds.get("determinism")
    outs = {}
    for seed in ("0", "1", "1"):
        root = make_root(tmp_path / f"seed{seed}-{len(outs)}", prog)
        outs.setdefault(seed, []).append(
            parse(run_cli("run", "--seed", seed, "./prog", cwd=root).stdout))
    assert outs["1"][0] == outs["1"][1], "the same seed gives the same run"
    s0, s1 = outs["0"][0], outs["1"][0]
    assert s0["getrandom"] != s1["getrandom"]
    assert s0["AT_RANDOM"] != s1["AT_RANDOM"]
    # made.txt's mtime comes after the bytes were printed, which takes a few instructions
    # more or less for other bytes: virtual time follows instructions (clock.py)
    s0["made.txt"] = re.sub(r"mtime \S+ ", "", s0["made.txt"])
    s1["made.txt"] = re.sub(r"mtime \S+ ", "", s1["made.txt"])
    assert {k: v for k, v in s0.items() if k not in ("getrandom", "AT_RANDOM")} == \
        {k: v for k, v in s1.items() if k not in ("getrandom", "AT_RANDOM")}


def test_default_seed_is_zero(builds, tmp_path):
    prog = builds.get("determinism")
    a = run_cli("run", "./prog", cwd=make_root(tmp_path / "a", prog))
    b = run_cli("run", "--seed", "0", "./prog", cwd=make_root(tmp_path / "b", prog))
    assert a.stdout == b.stdout


def test_rdtsc_is_virtual_and_deterministic(builds, tmp_path):
    # the budget turns the hang into a quick exit 152; the program needs a few thousand
    outs = [run_cli("run", "--max-instructions", "50000", "./prog", timeout=60,
                    cwd=make_root(tmp_path / f"run{i}", builds.get("rdtsc"))) for i in range(2)]
    for out in outs:
        assert out.status == 0, out.text()
        assert out.stdout.endswith(b"monotonic\n"), out.stdout
    assert outs[0].stdout == outs[1].stdout


def test_directory_and_symlink_times_are_virtual(builds, tmp_path):
    (a, files_a, _), (b, files_b, _) = run_twice(builds, tmp_path, "dirstat")
    assert a.status == 0, a.text()
    assert files_a == files_b
    assert a.stdout == b.stdout


def test_host_umask_does_not_reach_the_guest(builds, tmp_path):
    root = make_root(tmp_path / "root", builds.get("listdir"))
    proc = subprocess.run([*VSNAP, "run", "./prog"], cwd=root, capture_output=True,
                          preexec_fn=lambda: os.umask(0o077))
    assert proc.returncode == 0, proc.stderr
    modes = {rel: mode for rel, (_, mode) in snapshot_tree(root, modes=True).items()}
    assert modes["listdir.out/alpha.txt"] == oct(0o644)   # open(..., 0644), guest umask 022
    assert modes["listdir.out/sub"] == oct(0o755)         # mkdir(..., 0755)
