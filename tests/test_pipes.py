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
from vsnap.pipes import (PAGE_SIZE, PIPE_BUF, PIPE_MAX_SIZE, POLLERR, POLLHUP, POLLIN, POLLOUT,
                         POLLRDNORM, POLLWRNORM, BrokenPipe, Pipe, WouldBlock, round_size)

from conftest import GUESTS, IS_ROOT, require_native

KiB = 1024

# -- running pipefill's scripts on a Pipe ---------------------------------------------------------


def fnv(data: bytes) -> int:
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


# pipefill's byte pattern repeats every 256 bytes: byte i of a script is (i * 7 + 3) mod 256
PATTERN = bytes((i * 7 + 3) & 0xFF for i in range(256)) * (2 + (1 << 21) // 256)


def host_pipe_max_size() -> int:
    with open("/proc/sys/fs/pipe-max-size") as f:
        return int(f.read())


def run_script(script: str, max_size: int = PIPE_MAX_SIZE) -> str:
    """What pipefill.c prints for one script, computed with a Pipe (pipe2(O_NONBLOCK))."""
    pipe, counter, out = Pipe(), 0, []
    rd = wr = True
    packet = script.startswith("D,")
    script = script.removeprefix("D,")

    def put(n: int) -> int:
        nonlocal counter
        data = PATTERN[counter % 256:counter % 256 + n]
        try:
            r = pipe.write(data, nonblock=True, packet=packet)
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
                out.append(str(pipe.set_size(n, max_size=max_size)))
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
    "D,f1", "D,f4097", "D,w10,w20,r5,n,r100,r100", "D,w5000,r4000,n,r4000,n,r10",
    "D,w100,r50,p,r50,p",
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
        scripts.append(("D," if rng.random() < 0.2 else "") + (",".join(ops) or "p"))
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
        assert run_script(script, host_pipe_max_size()) == line, script


def test_fill_numbers_are_the_page_slot_ones(pipefill):
    """The native numbers are what the slot rule predicts (so the comparison is not vacuous):
    1-byte writes merge up to 65536, 4097-byte ones leave 1-byte pages and fit 45066."""
    got = dict(zip(FIXED, native(pipefill, FIXED)))
    assert got["f1"] == "65536/65536/-11"
    assert got["f4096"] == "65536/16/-11"
    assert got["f4097"] == "45066/11/-11"
    assert got["f100000"] == "65536/1/-11"


def test_random_scripts_match_linux(pipefill):
    scripts = random_scripts(1500, seed=11)
    got = native(pipefill, scripts)
    assert len(got) == len(scripts)
    for script, line in zip(scripts, got):
        assert run_script(script, host_pipe_max_size()) == line, script


# -- the rules one by one -------------------------------------------------------------------------

def test_new_pipe_holds_64k_and_has_one_end_each():
    pipe = Pipe()
    assert (pipe.size, pipe.readers, pipe.writers, pipe.nread) == (65536, 1, 1, 0)


def test_read_gives_what_waits_up_to_n():
    pipe = Pipe()
    pipe.write(b"hello, world")
    assert pipe.read(5) == b"hello"
    assert pipe.nread == 7
    assert pipe.read(100) == b", world"


def test_read_spans_pages():
    pipe = Pipe()
    pipe.write(b"a" * 4096)
    pipe.write(b"b" * 4096)
    assert pipe.read(8192) == b"a" * 4096 + b"b" * 4096


def test_empty_pipe_blocks_or_fails_eagain_while_a_writer_is_open():
    pipe = Pipe()
    with pytest.raises(WouldBlock):
        pipe.read(10)
    with pytest.raises(SyscallError) as e:
        pipe.read(10, nonblock=True)
    assert e.value.errno == E.EAGAIN
    assert not pipe.readable()


def test_eof_when_the_last_writer_closes_after_the_bytes_are_read():
    pipe = Pipe()
    pipe.write(b"xy")
    pipe.close_end(reading=False)
    assert pipe.readable() and pipe.hangup
    assert pipe.read(1) == b"x"
    assert pipe.read(10) == b"y"
    assert pipe.read(10) == b"" and pipe.read(10, nonblock=True) == b""


def test_zero_byte_read_returns_at_once():
    assert Pipe().read(0) == b""


def test_write_without_reader_is_a_broken_pipe_but_an_empty_write_is_not():
    pipe = Pipe()
    pipe.close_end(reading=True)
    with pytest.raises(BrokenPipe):
        pipe.write(b"x")
    with pytest.raises(BrokenPipe):
        pipe.write_some(b"x" * 100000)
    assert pipe.write(b"") == 0        # Linux: "Null write succeeds", before the reader check
    assert pipe.writable()              # a blocked writer wakes up to get its EPIPE


def test_small_writes_are_atomic():
    pipe = Pipe()
    pipe.write(b"a" * 65535)            # 15 full pages and one of 4095 bytes
    assert pipe.write(b"b", nonblock=True) == 1
    with pytest.raises(SyscallError) as e:
        pipe.write(b"c" * 2, nonblock=True)   # the last page has no room, no page is free
    assert e.value.errno == E.EAGAIN
    with pytest.raises(WouldBlock):
        pipe.write(b"c" * PIPE_BUF)
    assert pipe.nread == 65536


def test_a_small_write_takes_a_new_page_when_the_last_lacks_room():
    pipe = Pipe()
    pipe.write(b"a" * 4000)
    pipe.write(b"b" * 200)             # does not fit after 4000 bytes: a second page
    assert [len(s.data) for s in pipe.slots] == [4000, 200]
    pipe.write(b"c" * 96)              # fits: merged
    assert [len(s.data) for s in pipe.slots] == [4000, 296]


def test_reading_does_not_give_back_room_before_the_offset():
    pipe = Pipe()
    pipe.write(b"a" * 4000)
    pipe.read(3000)
    pipe.write(b"b" * 100)             # 3000 + 1000 + 100 > 4096: a new page
    assert len(pipe.slots) == 2


def test_large_nonblocking_write_is_partial():
    pipe = Pipe()
    pipe.write(b"a" * 1000)
    assert pipe.write(b"b" * 100000, nonblock=True) == 1696 + 15 * 4096
    with pytest.raises(SyscallError):
        pipe.write(b"b" * 100000, nonblock=True)


def test_blocking_write_completes_with_a_reader_draining():
    """A handler's loop: write_some, park on WouldBlock until writable(), go on without the
    merge; the reader gets every byte in order."""
    pipe = Pipe()
    data = bytes(i * 31 % 251 for i in range(300_000))
    done, first, got, parks = 0, True, bytearray(), 0
    while done < len(data):
        try:
            done += pipe.write_some(data[done:], merge=first)
        except WouldBlock:
            parks += 1
            assert not pipe.writable()
            got += pipe.read(7000)          # the reader runs; the writer is woken
            assert pipe.writable()
        first = False
    while pipe.nread:
        got += pipe.read(65536)
    assert bytes(got) == data and parks > 3


def test_no_merge_after_waiting():
    pipe = Pipe()
    pipe.write(b"a" * 100)
    assert pipe.write_some(b"b" * 10, merge=False) == 10
    assert [len(s.data) for s in pipe.slots] == [100, 10]


def test_packet_mode_keeps_write_boundaries():
    """pipe2(O_DIRECT): each write is a packet (split at pages); a read takes one packet and
    drops what did not fit in its buffer; nothing merges into a packet page."""
    pipe = Pipe()
    pipe.write(b"abc", packet=True)
    pipe.write(b"defg", packet=True)
    assert len(pipe.slots) == 2
    assert pipe.read(100) == b"abc"
    assert pipe.read(2) == b"de"
    assert pipe.nread == 0
    pipe.write(b"x" * 5000, packet=True)
    assert pipe.read(10000) == b"x" * 4096 and pipe.read(10000) == b"x" * 904


def test_poll_bits_of_each_end():
    pipe = Pipe()
    assert (pipe.poll(True), pipe.poll(False)) == (0, POLLOUT | POLLWRNORM)
    pipe.write(b"a" * 65536)
    assert (pipe.poll(True), pipe.poll(False)) == (POLLIN | POLLRDNORM, 0)
    pipe.read(10)                       # the first page is still in use: still no POLLOUT
    assert pipe.poll(False) == 0 and not pipe.writable()
    pipe.read(4086)
    assert pipe.poll(False) == POLLOUT | POLLWRNORM
    pipe.close_end(reading=False)
    assert pipe.poll(True) == POLLIN | POLLRDNORM | POLLHUP
    pipe.close_end(reading=True)
    assert pipe.poll(False) & POLLERR


def test_ends_are_counted():
    pipe = Pipe()
    pipe.open_end(reading=True)
    pipe.close_end(reading=True)
    pipe.close_end(reading=True)
    assert pipe.readers == 0
    with pytest.raises(ValueError):
        pipe.close_end(reading=True)


@pytest.mark.parametrize("arg,size", [(0, 4096), (1, 4096), (4096, 4096), (4097, 8192),
                                      (65536, 65536), (100000, 131072), (1 << 31, 1 << 31)])
def test_round_size(arg, size):
    assert round_size(arg) == size


def test_set_size_rules():
    pipe = Pipe()
    assert pipe.set_size(5000) == 8192 and pipe.size == 8192
    assert pipe.set_size(1048576) == 1048576
    for arg, errno in ((1048577, E.EPERM), ((1 << 31) + 1, E.EINVAL), (-1, E.EINVAL)):
        with pytest.raises(SyscallError) as e:
            pipe.set_size(arg)
        assert e.value.errno == errno
    assert pipe.set_size(4 << 20, privileged=True) == 4 << 20
    assert pipe.set_size(2 << 20) == 2 << 20    # shrinking is always allowed
    pipe.write(b"a")
    pipe.write(b"b" * 4096)                     # two pages in use: 4097 bytes
    with pytest.raises(SyscallError) as e:
        pipe.set_size(4096)
    assert e.value.errno == E.EBUSY
    pipe.read(4096)                             # one page of 1 byte left
    assert pipe.set_size(4096) == 4096


# -- checkpoint records ---------------------------------------------------------------------------

def test_saved_round_trips_through_json():
    pipe = Pipe()
    pipe.write(bytes(range(256)) * 20)
    pipe.read(1000)
    pipe.close_end(reading=False)
    again = Pipe.load(json.loads(json.dumps(pipe.saved())))
    assert again.saved() == pipe.saved()
    assert again.read(1 << 20) == (bytes(range(256)) * 20)[1000:]


def good_record() -> dict:
    pipe = Pipe()
    pipe.write(b"abc")
    return pipe.saved()


@pytest.mark.parametrize("change,words", [
    (lambda d: d.pop("slots"), "keys"),
    (lambda d: d.update(extra=1), "keys"),
    (lambda d: d.update(size=12288), "power-of-two"),
    (lambda d: d.update(size=2048), "power-of-two"),
    (lambda d: d.update(size=1 << 32), "power-of-two"),
    (lambda d: d.update(size="65536"), "non-negative integer"),
    (lambda d: d.update(readers=-1), "non-negative integer"),
    (lambda d: d.update(writers=True), "non-negative integer"),
    (lambda d: d.update(size=4096, slots=[[0, "YQ==", False], [0, "Yg==", False]]), "more than"),
    (lambda d: d.update(slots=[[4000, "YWFh" * 40, False]]), "outside"),
    (lambda d: d.update(slots=[[-1, "YQ==", False]]), "outside"),
    (lambda d: d.update(slots=[[0, "", False]]), "empty"),
    (lambda d: d.update(slots=[[0, "not base64!", False]]), "base64"),
    (lambda d: d.update(slots=[[0, "YQ==", 1]]), "packet flag"),
    (lambda d: d.update(slots=[[0, "YQ=="]]), "packet flag"),
    (lambda d: d.update(slots="abc"), "list"),
])
def test_load_refuses_what_linux_cannot_hold(change, words):
    record = good_record()
    change(record)
    with pytest.raises(ValueError, match=words):
        Pipe.load(record)


def test_load_refuses_a_non_dict():
    with pytest.raises(ValueError):
        Pipe.load([1, 2])


# -- a state machine against a model: a bytearray and two counts ----------------------------------

SIZES = st.sampled_from([0, 1, 2, 100, 1000, 4095, 4096, 4097, 5000, 8192, 20000, 70000])


class PipeMachine(RuleBasedStateMachine):
    """The Pipe must hand the bytes over in order, never hold more than its capacity, keep
    PIPE_BUF writes whole, take at least every free page's worth, and report through
    readable/writable/poll exactly what the next read or write does."""

    def __init__(self):
        super().__init__()
        self.pipe = Pipe()
        self.model = bytearray()
        self.readers = self.writers = 1
        self.counter = 0

    def data(self, n: int) -> bytes:
        self.counter += 1
        return bytes((self.counter + i) & 0xFF for i in range(n))

    @rule(n=SIZES, nonblock=st.booleans())
    def write(self, n, nonblock):
        data = self.data(n)
        free = self.pipe.pages - len(self.pipe.slots)
        try:
            taken = self.pipe.write(data, nonblock=nonblock)  # packets: only in the native test
        except BrokenPipe:
            assert self.readers == 0 and n > 0
            return
        except (WouldBlock, SyscallError) as e:
            assert not isinstance(e, SyscallError) or (nonblock and e.errno == E.EAGAIN)
            assert isinstance(e, SyscallError) == nonblock
            assert n > 0 and self.readers > 0 and free == 0
            return
        assert self.readers > 0 or n == 0
        if n <= PIPE_BUF:
            assert taken == n                     # atomic: all of it, or an exception
        assert min(n, free * PAGE_SIZE) <= taken <= min(n, free * PAGE_SIZE + PAGE_SIZE - 1)
        self.model += data[:taken]

    @rule(n=SIZES.filter(bool))
    def fill(self, n):
        """Non-blocking n-byte writes until one fails: full pipes with room in the last page."""
        for _ in range(PIPE_MAX_SIZE // n + 2):
            before = len(self.model)
            self.write(n, True)
            if len(self.model) == before:
                return

    @rule(n=SIZES, nonblock=st.booleans())
    def read(self, n, nonblock):
        try:
            got = self.pipe.read(n, nonblock=nonblock)
        except WouldBlock:
            assert not nonblock and n > 0 and not self.model and self.writers > 0
            return
        except SyscallError as e:
            assert nonblock and e.errno == E.EAGAIN
            assert n > 0 and not self.model and self.writers > 0
            return
        assert got == bytes(self.model[:n])
        del self.model[:n]

    @rule(reading=st.booleans())
    def open_end(self, reading):
        self.pipe.open_end(reading)
        if reading:
            self.readers += 1
        else:
            self.writers += 1

    @precondition(lambda self: self.readers + self.writers > 0)
    @rule(reading=st.booleans())
    def close_end(self, reading):
        if (self.readers if reading else self.writers) == 0:
            with pytest.raises(ValueError):
                self.pipe.close_end(reading)
            return
        self.pipe.close_end(reading)
        if reading:
            self.readers -= 1
        else:
            self.writers -= 1

    @rule(arg=st.sampled_from([0, 4096, 5000, 8192, 65536, 262144, 1048576, 1048577]))
    def set_size(self, arg):
        used = len(self.pipe.slots)
        try:
            size = self.pipe.set_size(arg)
        except SyscallError as e:
            assert (e.errno == E.EPERM and arg > 1048576) or \
                (e.errno == E.EBUSY and round_size(arg) // PAGE_SIZE < used)
            return
        assert size == round_size(arg) == self.pipe.size

    @rule()
    def checkpoint(self):
        record = json.loads(json.dumps(self.pipe.saved()))
        self.pipe = Pipe.load(record)
        assert self.pipe.saved() == record

    @invariant()
    def agrees(self):
        pipe = self.pipe
        assert pipe.nread == len(self.model) <= pipe.size
        assert (pipe.readers, pipe.writers) == (self.readers, self.writers)
        assert pipe.readable() == (bool(self.model) or self.writers == 0)
        assert bool(pipe.poll(True) & POLLIN) == bool(self.model)
        assert bool(pipe.poll(True) & POLLHUP) == (self.writers == 0)
        assert bool(pipe.poll(False) & POLLERR) == (self.readers == 0)
        if self.readers:
            # POLLOUT and writable() promise that a PIPE_BUF write goes through whole
            trial = Pipe.load(pipe.saved())
            try:
                fits = trial.write(b"z" * PIPE_BUF, nonblock=True) == PIPE_BUF
            except SyscallError:
                fits = False
            assert fits == pipe.writable() == bool(pipe.poll(False) & POLLOUT)


# the default tier runs 40 programs of pipe calls; the long one (--slow) 400
PipeMachine.TestCase.settings = settings(max_examples=400 if os.environ.get("VSNAP_SLOW")
                                         else 40, stateful_step_count=40,
                                         deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
TestPipeMachine = PipeMachine.TestCase
