"""vsnap/pipes.py: the in-memory pipe, rule by rule, against a model, and against Linux.

The native comparison runs tests/guests/pipefill.c (scripts of non-blocking pipe operations on a
real pipe) and the same scripts on a Pipe, and compares every result: byte counts that fit for
many write sizes, partial writes, EAGAIN/EPIPE, F_SETPIPE_SZ, FIONREAD, poll bits.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vsnap.abi import errno as E
from vsnap.build import build
from vsnap.errors import BuildFailed, SyscallError
from vsnap.pipes import (PAGE_SIZE, PIPE_BUF, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM,
                         POLLWRNORM, BrokenPipe, Pipe, WouldBlock, round_size)

from conftest import GUESTS, IS_ROOT, require_native

KiB = 1024

# -- running pipefill's scripts on a Pipe ---------------------------------------------------------


def fnv(data: bytes) -> int:
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def run_script(script: str) -> str:
    """What pipefill.c prints for one script, computed with a Pipe (pipe2(O_NONBLOCK))."""
    pipe, counter, out = Pipe(), 0, []
    rd = wr = True

    def put(n: int) -> int:
        nonlocal counter
        data = bytes((counter + i) * 7 + 3 & 0xFF for i in range(n))
        try:
            r = pipe.write(data, nonblock=True)
        except SyscallError as e:
            return -e.errno
        except BrokenPipe:
            return -E.EPIPE
        counter += r
        return r

    for op in script.split(","):
        n = int(op[1:]) if op[1:].lstrip("-").isdigit() else 0
        if op[0] in "wz":
            out.append(str(put(n)))
        elif op[0] == "r":
            try:
                got = pipe.read(n, nonblock=True)
                out.append(f"{len(got)}:{fnv(got):08x}")
            except SyscallError as e:
                out.append(str(-e.errno))
        elif op[0] == "f":
            total = calls = 0
            while (r := put(n)) > 0:
                total, calls = total + r, calls + 1
            out.append(f"{total}/{calls}/{r}")
        elif op[0] == "s":
            try:
                out.append(str(pipe.set_size(n)))
            except SyscallError as e:
                out.append(str(-e.errno))
        elif op == "g":
            out.append(str(pipe.size))
        elif op == "n":
            out.append(str(pipe.nread))
        elif op == "p":
            out.append(f"{pipe.poll(True):x}/" if rd else "x/")
            out[-1] += f"{pipe.poll(False):x}" if wr else "x"
        elif op in ("cr", "cw"):
            pipe.close_end(op == "cr")
            rd, wr = rd and op != "cr", wr and op != "cw"
            out.append("ok")
        else:
            raise AssertionError(op)
    return " ".join(out)


FILL_SIZES = (1, 100, 1000, 4095, 4096, 4097, 5000, 8191, 8192, 12289, 65535, 65536, 100000)

FIXED = [f"f{n}" for n in FILL_SIZES] + [
    "w1,f4096", "w1,f4097", "w4000,r3000,f1000", "w1,r1,f1", "w4095,f2", "w4096,f4095",
    "w5000,p,n,g", "w65536,p,r10,p,w1,w4096,w1,n", "w65535,w1,w1,r4096,p,w4096,w1",
    "w1,s4096,g", "s1,g", "s0,g", "s5000,g", "s-1", "w1,w4096,s4096", "w1,w1,s4096,f100",
    "s1048576,f4097", "s1048577,g", "s2147483648", "s2147483649", "s8192,f4097,s4096,r8192,s4096",
    "z,cr,z,w1,p,n", "w1,cw,p,r5,r5,p", "p", "w10,r3,w4086,w1,r7,w1,f1",
]


def random_scripts(count: int, seed: int) -> list[str]:
    """Scripts that stress the slot arithmetic: mixed sizes, reads that leave page offsets,
    resizes, and an end closed now and then."""
    rng = random.Random(seed)
    sizes = (1, 2, 100, 1000, 2048, 4095, 4096, 4097, 5000, 8192, 8193, 20000, 65536, 70000)
    scripts = []
    for _ in range(count):
        ops, rd, wr = [], True, True
        for _ in range(rng.randint(1, 14)):
            kind = rng.choice("wwwrrffspgnc")
            if kind == "w" and wr:
                ops.append(f"w{rng.choice(sizes)}")
            elif kind == "r" and rd:
                ops.append(f"r{rng.choice(sizes)}")
            elif kind == "f" and wr:
                ops.append(f"f{rng.choice(sizes[2:])}")
            elif kind == "s":
                ops.append(f"s{rng.choice((0, 4096, 5000, 8192, 16384, 65536, 262144))}")
            elif kind == "c" and rd and wr:
                ops.append(rng.choice(("cr", "cw")))
                rd, wr = ops[-1] != "cr", ops[-1] != "cw"
            elif kind in "pgn":
                ops.append(kind)
        scripts.append(",".join(ops) or "p")
    return scripts


def drop_privileges() -> None:
    """Root with CAP_SYS_RESOURCE may grow a pipe past pipe-max-size; the guest may not."""
    if IS_ROOT:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)


@pytest.fixture(scope="module")
def pipefill():
    """The native program, in a directory the unprivileged user can reach (not root's cache)."""
    require_native()
    where = tempfile.mkdtemp(prefix="vsnap-pipefill-")
    os.chmod(where, 0o755)
    try:
        yield build(str(GUESTS / "pipefill.c"), os.path.join(where, "pipefill"))
    except BuildFailed as e:
        pytest.skip(f"cannot build pipefill.c: {e}")
    finally:
        shutil.rmtree(where)


def native(prog: str, scripts: list[str]) -> list[str]:
    proc = subprocess.run([prog, *scripts], capture_output=True, text=True, timeout=120,
                          preexec_fn=drop_privileges)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_fill_sizes_match_linux(pipefill):
    """How many bytes a stream of n-byte non-blocking writes fits, as Linux measures it."""
    got = native(pipefill, FIXED)
    assert len(got) == len(FIXED)
    for script, line in zip(FIXED, got):
        assert run_script(script) == line, script


def test_fill_numbers_are_the_page_slot_ones(pipefill):
    """The native numbers are what the slot rule predicts (so the comparison is not vacuous):
    1-byte writes merge up to 65536, 4097-byte ones leave 1-byte pages and fit 45066."""
    got = dict(zip(FIXED, native(pipefill, FIXED)))
    assert got["f1"] == "65536/65536/-11"
    assert got["f4096"] == "65536/16/-11"
    assert got["f4097"] == "45066/11/-11"
    assert got["f100000"] == "65536/1/-11"


def test_random_scripts_match_linux(pipefill):
    scripts = random_scripts(400, seed=11)
    got = native(pipefill, scripts)
    assert len(got) == len(scripts)
    for script, line in zip(scripts, got):
        assert run_script(script) == line, script
