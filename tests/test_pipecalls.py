"""pipe and pipe2 as system calls (kernel/pipecalls.py, kernel/pipefile.py), one process:

* every answer a pipe gives, against Linux (pipecalls.c, musl and glibc): flags, fstat,
  /proc/self/fd and fdinfo, FIONREAD, poll, F_SETPIPE_SZ, packet mode, partial and atomic
  writes, EPIPE + SIGPIPE's siginfo, descriptions shared by dup and ends that follow them;
* a call that waits (a read of an empty pipe, a write into a full one) parks the process, and a
  signal ends it as Linux does (pipewait.c): EINTR, or the bytes a write moved before it waited;
  with nothing that could end the wait, the run ends with one line and status 1;
* open file descriptions counted across fd tables (FdTable.fork, for fork);
* pipes in checkpoint images: transparent saves at many instructions (pipeckpt.c), what
  `vsnap inspect` shows, bad pipe records refused.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_in_root, make_root, run_cli, run_native
from vsnap.abi import errno as E
from vsnap.errors import Blocked, SyscallError
from vsnap.fdtable import FdTable, OpenFile
from vsnap.kernel import Capture
from vsnap.kernel.pipefile import AnonPipe, PipeEnd
from vsnap.pipes import PAGE_SIZE
from vsnap.snapshot import image_bytes
from vsnap.snapshot.codec import ImageError, decode, encode
from vsnap.snapshot.image import parse
from vsnap.snapshot.inspect import render
from vsnap.snapshot.pipeimage import kernel_fields, parse_kernel
from vsnap.snapshot.fields import Reader
from vsnap.snapshot.restore import restore_bytes
from vsnap.testing import Guest, assert_transparent, checkpoint_points, fresh_root, measure, start

FLAVOURS = ("musl", "glibc")
SIGALRM = 14
FOREVER = (b"vsnap: the guest waits forever: read on a pipe, and no other guest process "
           b"could end the wait; stopped it")


@pytest.fixture(scope="module", autouse=True)
def prebuilt(builds):
    builds.prebuild(["pipecalls", "pipeckpt", "pipewait"], FLAVOURS)


vsnap_run = run_in_root


# -- against Linux ---------------------------------------------------------------------------------

@pytest.mark.parametrize("flavour", FLAVOURS)
def test_pipe_calls_match_linux(builds, tmp_path, flavour):
    prog = builds.get("pipecalls", flavour)
    native = run_native(prog, cwd=make_root(tmp_path / "n"))
    under, _, notices = vsnap_run(prog, tmp_path)
    assert native.status == 0, native.text()
    assert under.stdout == native.stdout
    assert under.status == native.status
    assert notices == []  # nothing refused: every call here is implemented
    # the lines that would pass without pipes at all are not what the test rests on
    assert b"SIGPIPE count 1 code 0 pid_ok 1 uid_ok 1" in under.stdout
    assert b"readlink is pipe:[st_ino] 1" in under.stdout


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_buffered_pipes_match_linux(builds, tmp_path, flavour):
    prog = builds.get("pipeckpt", flavour)
    native = run_native(prog, cwd=make_root(tmp_path / "n"))
    under, _, notices = vsnap_run(prog, tmp_path)
    assert native.status == 0, native.text()
    assert under.stdout == native.stdout
    assert notices == []


def _parked_at(guest: Guest, base) -> int:
    """The instruction count just before the system call that waits forever (the last)."""
    m = measure(guest, base)
    assert m.outcome.status == 1
    return m.syscalls[-1] - 1


@pytest.mark.parametrize("mode", ["partial", "full", "read"])
def test_a_signal_ends_a_parked_pipe_call_as_on_linux(builds, tmp_path, mode):
    """Linux: a blocking write that moved bytes before it waited returns their count when a
    signal comes; one that moved none, or a read, fails with EINTR. Natively alarm(1) sends
    the signal; here it is sent to the process while it is parked."""
    prog = builds.get("pipewait", "musl")
    native = run_native(prog, [mode], cwd=make_root(tmp_path / "n"))
    # without its alarm the guest waits forever (under vsnap the alarm would end the wait
    # by itself, test_an_alarm_ends_a_parked_pipe_call): the signal comes from outside
    guest = Guest(prog, (mode, "noalarm"))
    k = _parked_at(guest, tmp_path)
    cap = Capture()
    m = start(guest, fresh_root(guest, tmp_path), cap)
    assert m.advance(k) is None
    m.system.host_signals.append(SIGALRM)
    result = m.run()
    assert (bytes(cap.out), result.status) == (native.stdout, native.status)
    assert native.stdout.startswith({"partial": b"partial: 65536 ,", "full": b"full: -1 Inter",
                                     "read": b"read: -1 Inter"}[mode])


def test_an_alarm_ends_a_parked_pipe_call(builds, tmp_path):
    prog = builds.get("pipewait", "musl")
    native = run_native(prog, ["read"], cwd=make_root(tmp_path / "n"))
    under, _, _ = vsnap_run(prog, tmp_path, ["read"])
    assert (under.stdout, under.status) == (native.stdout, native.status)


def test_reading_a_pipe_only_it_could_fill_waits_forever(builds, tmp_path):
    """Linux hangs; vsnap, with no other process that could write, ends the run with one line
    and status 1, after the same output."""
    prog = builds.get("pipeckpt", "musl")
    with pytest.raises(subprocess.TimeoutExpired):
        run_native(prog, ["forever"], cwd=make_root(tmp_path / "n"), timeout=2)
    whole = run_native(prog, cwd=make_root(tmp_path / "n2"))
    root = make_root(tmp_path / "v", prog)
    out = run_cli("run", "--root", str(root), str(root / "prog"), "forever")
    assert out.status == 1
    assert out.stdout == whole.stdout + b"reading an empty pipe I alone could write\n"
    assert out.stderr.strip().splitlines()[-1] == FOREVER
    assert b"Traceback" not in out.stderr


def test_writing_a_full_pipe_only_it_could_drain_waits_forever(builds, tmp_path):
    prog = builds.get("pipewait", "musl")
    with pytest.raises(subprocess.TimeoutExpired):
        run_native(prog, ["full", "noalarm"], cwd=make_root(tmp_path / "n"), timeout=2)
    under, result, _ = vsnap_run(prog, tmp_path, ["full", "noalarm"])
    assert result.status == 1 and under.stdout == b""
    assert "waits forever: write on a pipe" in (result.message or "")


# -- the write protocol and reference counts -------------------------------------------------------

class FakeProcess:
    """What PipeEnd.write touches of a process."""

    def __init__(self):
        from types import SimpleNamespace
        self.pending_write = None
        self.posted = []
        self.signals = SimpleNamespace(post=self.posted.append)
        self.task = SimpleNamespace(pid=1000, uid=1000)
        self.sys = SimpleNamespace(next_pipe_ino=8193)


def test_a_parked_write_goes_on_where_it_stopped():
    pipe = AnonPipe(8192, 1000, 1000, 0)
    end = PipeEnd(pipe, False, True)
    f = OpenFile("pipe", "pipe:[8192]", 1, ops=end)
    p = FakeProcess()
    data = bytes(range(256)) * 400                     # 102400 bytes, 25 pages
    with pytest.raises(Blocked) as b:
        end.write(p, f, data)
    assert p.pending_write == {"key": [8192, len(data)], "done": 65536, "first": False}
    assert not b.value.ready()
    got = pipe.read(1 << 20)
    assert b.value.ready()
    # a save while parked carries the progress: through kernel.json and back
    saved = json.loads(json.dumps(kernel_fields(p)))
    p.pending_write = parse_kernel(Reader("image", "kernel.json"), saved)["pending_write"]
    assert end.write(p, f, data) == len(data)          # the call runs again and completes
    assert p.pending_write is None
    assert got + pipe.read(1 << 20) == data            # nothing written twice or lost


def test_a_signal_during_a_parked_write_returns_what_it_moved():
    pipe = AnonPipe(8192, 1000, 1000, 0)
    end = PipeEnd(pipe, False, True)
    f = OpenFile("pipe", "pipe:[8192]", 1, ops=end)
    p = FakeProcess()
    with pytest.raises(Blocked) as b:
        end.write(p, f, b"x" * 70000)
    assert b.value.interrupted() == 65536 and p.pending_write is None
    with pytest.raises(Blocked) as b:
        end.write(p, f, b"y")                          # full: nothing moved, EINTR
    assert b.value.interrupted() == -E.EINTR and p.pending_write is None


def test_no_reader_sends_sigpipe_as_the_writer_itself():
    pipe = AnonPipe(8192, 1000, 1000, 0, readers=0)
    end = PipeEnd(pipe, False, True)
    p = FakeProcess()
    with pytest.raises(SyscallError) as e:
        end.write(p, OpenFile("pipe", "pipe:[8192]", 1, ops=end), b"z")
    assert e.value.errno == E.EPIPE
    (info,) = p.posted
    assert (info.signo, info.code, info.pid, info.uid) == (13, 0, 1000, 1000)


def _pipe_files():
    pipe = AnonPipe(8192, 0, 0, 0)
    return pipe, (OpenFile("pipe", "r", 0, ops=PipeEnd(pipe, True, False)),
                  OpenFile("pipe", "w", 1, ops=PipeEnd(pipe, False, True)))


def test_descriptions_are_counted_across_fd_tables():
    pipe, (rd, wr) = _pipe_files()
    parent = FdTable()
    r, w = parent.install(rd), parent.install(wr, cloexec=True)
    child = parent.fork()
    assert child.fds[r].file is rd and child.fds[w].cloexec and not child.fds[r].cloexec
    assert (rd.refs, wr.refs) == (2, 2)
    child.close(w)                          # the child's close leaves the parent's end open
    assert (pipe.readers, pipe.writers) == (1, 1) and wr.ops is not None
    parent.place(9, wr)                     # dup2: one description, two fds
    parent.close(w)
    assert pipe.writers == 1
    parent.close(9)                         # the last reference anywhere: the end closes
    assert pipe.writers == 0 and wr.ops is None
    child.close_all()
    assert pipe.readers == 1                # the parent still reads
    parent.close(r)
    assert pipe.readers == 0


def test_dup2_onto_the_same_description_keeps_it_open():
    pipe, (rd, wr) = _pipe_files()
    t = FdTable()
    r = t.install(rd)
    t.install(wr)
    t.place(7, rd)
    t.place(7, rd)                          # dup2(fd, fd2) where fd2 already holds it
    assert rd.refs == 2 and pipe.readers == 1
    t.close(r)
    t.close(7)
    assert pipe.readers == 0


@settings(max_examples=150, deadline=None, derandomize=True)
@given(ops=st.lists(st.tuples(st.sampled_from(["pipe", "dup", "dup2", "close", "fork",
                                               "exit"]),
                              st.integers(0, 7), st.integers(0, 7), st.integers(0, 12)),
                    max_size=40))
def test_reference_counts_follow_every_fd_in_every_table(ops):
    """Random pipe/dup/dup2/close/fork/exit over several fd tables, against a model: a
    description's count is the fds that hold it, in all tables; its end is open exactly while
    that is above 0, and each pipe's readers and writers count its open descriptions."""
    tables, made = [FdTable()], []
    for op, t, u, fd in ops:
        table = tables[t % len(tables)]
        try:
            if op == "pipe":
                pipe, (rd, wr) = _pipe_files()
                made += [rd, wr]
                table.install(rd)
                table.install(wr)
            elif op == "dup":
                table.install(table.get_raw(fd))
            elif op == "dup2":
                table.place(u, table.get_raw(fd))
            elif op == "close":
                table.close(fd)
            elif op == "fork" and len(tables) < 4:
                tables.append(table.fork())
            elif op == "exit" and len(tables) > 1:
                table.close_all()
                tables.remove(table)
        except SyscallError:
            pass                            # EBADF: the model changes nothing either
        for f in made:
            held = sum(e.file is f for tb in tables for e in tb.fds.values())
            assert f.refs == held
            assert (f.ops is not None) == (held > 0)
        for pipe in {id(f.ops.pipe): f.ops.pipe for f in made if f.ops is not None}.values():
            live = [f for f in made if f.ops is not None and f.ops.pipe is pipe]
            assert pipe.readers == sum(f.ops.reading for f in live)
            assert pipe.writers == sum(f.ops.writing for f in live)


# -- checkpoints -----------------------------------------------------------------------------------

@pytest.mark.parametrize("flavour", FLAVOURS)
def test_pipes_survive_checkpoints(builds, tmp_path, flavour):
    guest = Guest(builds.get("pipeckpt", flavour))
    m = measure(guest, tmp_path)
    assert m.outcome.status == 0 and b"g read 10000" in m.outcome.stdout
    for k in m.syscalls[1::5]:              # around the pipe calls: just before, at, after
        for j in (k - 1, k + 1):
            assert_transparent(guest, [j], reference=m.outcome, base=tmp_path)

    @settings(max_examples=6, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(points=checkpoint_points(m))
    def prop(points):
        assert_transparent(guest, points, reference=m.outcome, base=tmp_path)

    prop()


def test_every_pipe_state_of_pipecalls_survives_a_checkpoint(builds, tmp_path):
    """pipecalls.c saved around its system calls: packet pages, grown pipes, fchmod'ed and
    flock'ed pipes, ends opened again through /proc (O_RDWR), ends closed, EMFILE."""
    guest = Guest(builds.get("pipecalls", "musl"))
    m = measure(guest, tmp_path)
    assert m.outcome.status == 0
    # the fill loops make most calls: a sample of them, and the later sections more densely
    step = 5 if os.environ.get("VSNAP_SLOW") else 15  # the long tier: every fifth call
    for k in sorted(set(m.syscalls[::97] + m.syscalls[-260::step])):
        assert_transparent(guest, [k], reference=m.outcome, base=tmp_path)


def _live(builds, tmp_path, at: float = 0.45):
    guest = Guest(builds.get("pipeckpt", "musl"))
    m0 = measure(guest, tmp_path)
    m = start(guest, fresh_root(guest, tmp_path), Capture())
    assert m.advance(int(m0.length * at)) is None
    return m


def test_inspect_shows_each_pipe_with_what_it_holds(builds, tmp_path):
    m = _live(builds, tmp_path)
    pipes = {}
    for f in m.process.fds.descriptions():
        if f.ops is not None:
            pipes[f.ops.pipe.ino] = f.ops.pipe
    assert len(pipes) == 4 and any(p.nread for p in pipes.values())
    img = parse(*decode(image_bytes(m)), "live")
    held = sum(p.nread for p in pipes.values())
    assert f"pipes        4, holding {held} bytes in all" in render(img, "summary")
    text = render(img, "fds")
    for ino, pipe in pipes.items():
        line = next(x for x in text.splitlines() if x.startswith(f"  pipe:[{ino}]"))
        assert f" {pipe.nread} bytes buffered in {len(pipe.slots)} of its {pipe.pages} " in line
    m.close()


def _tampered(data: bytes, change) -> bytes:
    manifest, parts = decode(data)
    fds = json.loads(parts["fds.json"])
    change(fds)
    parts["fds.json"] = json.dumps(fds).encode()
    return encode(parts, manifest["program"])


def _first_with_bytes(fds):
    return next(p for p in fds["pipes"] if p["slots"])


@pytest.mark.parametrize("change, says", [
    (lambda d: d["pipes"][0].update(readers=2), "says 2 readers"),
    (lambda d: _first_with_bytes(d)["slots"][0].__setitem__(1, "%%%"), "not base64"),
    (lambda d: _first_with_bytes(d)["slots"][0].__setitem__(0, PAGE_SIZE), "outside its"),
    (lambda d: d["pipes"][0].update(size=12345), "power-of-two"),
    (lambda d: d["pipes"][0].update(mode=0o100600), "not a FIFO"),
    (lambda d: d["pipes"].append(dict(d["pipes"][0])), "no description holds"),
    (lambda d: next(x for x in d["descriptions"] if x["kind"] == "pipe").update(pipe=99),
     "descriptions["),
    (lambda d: next(x for x in d["descriptions"] if x["kind"] == "pipe").update(end="write"),
     "access mode"),
])
def test_bad_pipe_records_are_refused(builds, tmp_path, change, says):
    m = _live(builds, tmp_path)
    good = image_bytes(m)
    m.close()
    restore_bytes(good)[0].close()          # the untouched image resumes
    with pytest.raises(ImageError) as e:
        restore_bytes(_tampered(good, change))
    assert says in str(e.value) and "\n" not in str(e.value)
