"""The command line: vsnap build, and vsnap run with its options.

Most tests use small guests from tests/guests/, run as `vsnap run FILE.c`, which builds them on
the fly (cached by content in ~/.cache/vsnap, so only the first session compiles).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (GUESTS, PROGRAMS, VSNAP, assert_no_traceback, make_root, require_native,
                      run_cli, run_native)
from vsnap.machine import DEFAULT_ENV


@pytest.fixture(scope="module", autouse=True)
def prebuilt(builds):
    builds.prebuild(["hello", "cat", "exit7", "strace_me", "getenv", "readfile", "nosys", "args"],
                    ["musl"])


def guest(name: str) -> str:
    return str(GUESTS / f"{name}.c")


# ------------------------------------------------------------------------------------------------
# vsnap build

def test_build_writes_a_program_that_runs_natively(tmp_path):
    shutil.copyfile(PROGRAMS / "hello.c", tmp_path / "hello.c")
    out = run_cli("build", "hello.c", cwd=tmp_path)
    assert out.status == 0, out.text()
    assert out.stdout.decode().strip() == "hello"
    prog = tmp_path / "hello"
    assert os.access(prog, os.X_OK)
    assert prog.read_bytes()[:4] == b"\x7fELF"
    native = run_native(str(prog), cwd=tmp_path)
    assert (native.status, native.stdout) == (0, b"Hello, world!\nEXIT-SUCCESS\n")


@pytest.mark.parametrize("pie", [False, True], ids=["static", "static-pie"])
def test_build_output_option(tmp_path, pie):
    out = run_cli("build", str(PROGRAMS / "hello.c"), "-o", "h", *(["--pie"] if pie else []),
                  cwd=tmp_path)
    assert out.status == 0, out.text()
    data = (tmp_path / "h").read_bytes()
    e_type = int.from_bytes(data[16:18], "little")
    assert e_type == (3 if pie else 2)  # ET_DYN for static-pie, ET_EXEC for static
    native = run_native(str(tmp_path / "h"), cwd=tmp_path)
    assert native.stdout == b"Hello, world!\nEXIT-SUCCESS\n"
    vs = run_cli("run", "./h", cwd=tmp_path)
    assert (vs.status, vs.stdout, vs.stderr) == (0, native.stdout, b"")


def test_build_error_is_one_line(tmp_path):
    (tmp_path / "bad.c").write_text("int main(void) { return undefined_name; }\n")
    out = run_cli("build", "bad.c", cwd=tmp_path)
    assert_no_traceback(out)
    assert out.status != 0
    text = out.text()
    assert text.count("\n") == 1 and text.startswith("vsnap: ") and "bad.c" in text, text
    assert not (tmp_path / "bad").exists()


def test_build_into_a_missing_directory_is_one_line(tmp_path):
    out = run_cli("build", str(PROGRAMS / "hello.c"), "-o", "no/such/dir/h", cwd=tmp_path)
    assert_no_traceback(out)
    assert out.status != 0 and out.text().count("\n") == 1, out.text()
    assert out.text().startswith("vsnap: cannot write no/such/dir/h"), out.text()


def test_builds_to_one_output_at_once_each_leave_a_whole_program(tmp_path):
    """Parallel builds (make -j, the test suite's workers) to the same -o path: each renames a
    whole file into place (a fixed temporary name let one build rename another's half copy,
    or fail)."""
    from concurrent.futures import ThreadPoolExecutor

    from vsnap.build import build
    cached = build(str(PROGRAMS / "hello.c"))
    out = str(tmp_path / "h")
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: build(str(PROGRAMS / "hello.c"), out), range(64)))
    assert results == [out] * 64
    assert (tmp_path / "h").read_bytes() == Path(cached).read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["h"]  # no temporary left behind


def test_run_builds_c_on_the_fly(tmp_path):
    shutil.copyfile(PROGRAMS / "hello.c", tmp_path / "hello.c")
    out = run_cli("run", "hello.c", cwd=tmp_path)
    assert (out.status, out.stdout, out.stderr) == (0, b"Hello, world!\nEXIT-SUCCESS\n", b"")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hello.c"]  # built into the cache


def test_console_script():
    script = Path(sys.executable).with_name("vsnap")
    if not script.exists():
        pytest.skip("the vsnap console script is not installed beside this python")
    proc = subprocess.run([str(script), "run", str(PROGRAMS / "hello.c")], capture_output=True)
    assert (proc.returncode, proc.stdout) == (0, b"Hello, world!\nEXIT-SUCCESS\n")


def test_no_command_is_a_usage_error():
    out = run_cli()
    assert out.status == 2 and b"usage" in out.stderr
    assert_no_traceback(out)


# ------------------------------------------------------------------------------------------------
# vsnap run: the guest's stdin, stdout, exit status and arguments

def test_stdin_passes_through(tmp_path):
    data = bytes(range(256)) * 400 + b"last line\n"  # binary, and larger than a pipe buffer
    out = run_cli("run", guest("cat"), stdin=data, cwd=tmp_path)
    assert out.status == 0, out.text()
    assert out.stdout == data


def test_stdin_api(builds, tmp_path):
    import vsnap
    result, out, err = vsnap.run(builds.get("cat"), root=str(tmp_path), stdin=b"via the API\n")
    assert (result.status, out, err) == (0, b"via the API\n", b"")


def test_exit_status_is_the_guests(tmp_path):
    out = run_cli("run", guest("exit7"), cwd=tmp_path)
    assert (out.status, out.stdout, out.stderr) == (7, b"", b"")


def test_arguments_reach_the_guest_untouched(tmp_path):
    """Everything after the program belongs to the guest, even words that look like options."""
    out = run_cli("run", guest("args"), "--strace", "-x", "a b", "", cwd=tmp_path)
    assert out.status == 0, out.text()
    lines = out.stdout.decode().splitlines()
    assert lines[0] == "argc 5"
    assert lines[2:] == ["argv[1] --strace", "argv[2] -x", "argv[3] a b", "argv[4] "]
    assert out.stderr == b""


def test_argv0_is_the_guest_path_of_the_program(builds, tmp_path):
    root = make_root(tmp_path / "root", builds.get("args"))
    (root / "bin").mkdir()
    shutil.move(root / "prog", root / "bin" / "args")
    out = run_cli("run", "bin/args", "x", cwd=root)
    assert out.stdout == b"argc 2\nargv[0] /bin/args\nargv[1] x\n"


# ------------------------------------------------------------------------------------------------
# --strace, --trace, --stats

def test_strace(tmp_path):
    out = run_cli("run", "--strace", guest("strace_me"), cwd=tmp_path)
    assert out.status == 0, out.text()
    assert out.stdout == b"Hello, world!\n"  # the guest's stdout is untouched
    lines = out.text().splitlines()
    assert 'write(1, "Hello, world!\\n", 14) = 14' in lines
    assert lines[-1] == "exit_group(0) = ?"
    failing = [x for x in lines if x.startswith('open("/no/such/file"')]
    assert len(failing) == 1 and failing[0].endswith(") = -1 ENOENT"), lines
    assert not any(x.startswith("vsnap:") for x in lines)


def test_strace_glibc_hello(builds, tmp_path):
    """glibc's stdio writes the whole buffer with one write() when stdout is not a terminal."""
    root = make_root(tmp_path / "root", builds.get("hello", "glibc"))
    out = run_cli("run", "--strace", "./prog", cwd=root)
    lines = out.text().splitlines()
    assert 'write(1, "Hello, world!\\nEXIT-SUCCESS\\n", 27) = 27' in lines
    assert lines[-1] == "exit_group(0) = ?"


def test_trace(tmp_path):
    out = run_cli("run", "--trace", "5", guest("exit7"), cwd=tmp_path)
    assert out.status == 7
    lines = out.text().splitlines()
    assert len(lines) == 5, lines
    for line in lines:
        assert re.fullmatch(r"0x[0-9a-f]+: [0-9a-f]+ +[a-z]\w*( .*)?", line), line
    addrs = [int(x.split(":")[0], 16) for x in lines]
    assert addrs == sorted(addrs) and len(set(addrs)) == 5  # start-up code runs straight on


def test_stats(tmp_path):
    out = run_cli("run", "--stats", str(PROGRAMS / "hello.c"), cwd=tmp_path)
    assert out.status == 0 and out.stdout == b"Hello, world!\nEXIT-SUCCESS\n"
    m = re.fullmatch(r"vsnap: (\d+) instructions, (\d+) system calls, (\d+\.\d+) s wall, "
                     r"(\d+\.\d+) s virtual, exit status 0, peak memory (\d+) KiB touched\n",
                     out.text())
    assert m, out.text()
    instructions, syscalls, seconds = int(m[1]), int(m[2]), float(m[3])
    # virtual time: 1 ns per instruction, 1 us per system call (hello never sleeps)
    assert m[4] == f"{(instructions + 1000 * syscalls) / 1e9:.6f}"
    assert 8 <= int(m[5]) < 1024  # a stack page or two, the program's data, its heap
    assert 500 < instructions < 100_000
    assert 3 <= syscalls < 50
    assert 0 <= seconds < 30
    again = run_cli("run", "--stats", str(PROGRAMS / "hello.c"), cwd=tmp_path)
    counts = re.match(r"vsnap: \d+ instructions, \d+ system calls", again.text())
    assert counts and m[0].startswith(counts[0])  # the same counts every run


# ------------------------------------------------------------------------------------------------
# --env, --root, the guest's cwd

def test_env(tmp_path):
    out = run_cli("run", "--env", "FOO=bar baz", "--env", "HOME=/home/me", "--env", "EMPTY=",
                  guest("getenv"), "FOO", "HOME", "EMPTY", "PATH", "LANG", "TERM", "USER",
                  cwd=tmp_path)
    assert out.status == 0, out.text()
    defaults = dict(e.split("=", 1) for e in DEFAULT_ENV)
    assert out.stdout.decode().splitlines() == [
        "FOO=bar baz", "HOME=/home/me", "EMPTY=", f"PATH={defaults['PATH']}",
        f"LANG={defaults['LANG']}", f"TERM={defaults['TERM']}", "USER=(unset)"]


def test_env_is_not_the_hosts(tmp_path):
    env = dict(os.environ, VSNAP_TEST_SECRET="host")
    proc = subprocess.run([*VSNAP, "run", guest("getenv"), "VSNAP_TEST_SECRET"], cwd=tmp_path,
                          env=env, capture_output=True)
    assert proc.stdout == b"VSNAP_TEST_SECRET=(unset)\n"


def test_env_without_equals_is_a_usage_error(tmp_path):
    out = run_cli("run", "--env", "NOVALUE", guest("getenv"), cwd=tmp_path)
    assert_no_traceback(out)
    assert out.status == 2
    assert out.text().count("\n") == 1 and "NOVALUE" in out.text()


def test_root_option(tmp_path):
    root = tmp_path / "sandbox"
    root.mkdir()
    (root / "data.txt").write_bytes(b"inside the root\n")
    (tmp_path / "data.txt").write_bytes(b"outside the root\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = run_cli("run", "--root", str(root), guest("readfile"), "/data.txt", cwd=elsewhere)
    assert (out.status, out.stdout) == (0, b"inside the root\n"), out.text()
    # the guest cannot climb out of its root
    out = run_cli("run", "--root", str(root), guest("readfile"), "/../../data.txt", cwd=elsewhere)
    assert out.stdout == b"inside the root\n"


def test_cwd_is_the_hosts_cwd_inside_the_root(tmp_path):
    (tmp_path / "input.txt").write_bytes(b"input in cwd\n")
    out = run_cli("run", guest("readfile"), "input.txt", cwd=tmp_path)
    assert (out.status, out.stdout) == (0, b"input in cwd\n"), out.text()
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    (sub / "input.txt").write_bytes(b"input in a/b\n")
    out = run_cli("run", "--root", str(tmp_path), guest("readfile"), "input.txt", cwd=sub)
    assert out.stdout == b"input in a/b\n"
    out = run_cli("run", "--root", str(tmp_path), guest("readfile"), "/a/b/input.txt", cwd=sub)
    assert out.stdout == b"input in a/b\n"
    out = run_cli("run", "--root", "../..", guest("readfile"), "../../input.txt", cwd=sub)
    assert out.stdout == b"input in cwd\n"


def test_missing_file_is_the_guests_error(tmp_path):
    out = run_cli("run", guest("readfile"), "nothere.txt", cwd=tmp_path)
    assert out.status == 1
    assert out.stderr == b"nothere.txt: No such file or directory\n"


# ------------------------------------------------------------------------------------------------
# unimplemented system calls

def test_unimplemented_syscall(tmp_path):
    out = run_cli("run", guest("nosys"), cwd=tmp_path)
    assert_no_traceback(out)
    assert out.status == 0, out.text()
    assert out.stdout.decode().splitlines() == ["io_setup: -1 ENOSYS"] * 2 + ["335: -1 ENOSYS"] * 2
    lines = out.text().splitlines()
    assert lines.count("vsnap: guest called unimplemented syscall 206 (io_setup)") == 1, lines
    assert len([x for x in lines if "unimplemented syscall 335" in x]) == 1, lines
    assert len(lines) == 2, lines


def test_unimplemented_syscall_strace(tmp_path):
    out = run_cli("run", "--strace", guest("nosys"), cwd=tmp_path)
    lines = out.text().splitlines()
    assert sum(x.startswith("io_setup(") and x.endswith("= -1 ENOSYS") for x in lines) == 2
    assert lines.count("vsnap: guest called unimplemented syscall 206 (io_setup)") == 1


def test_native_cat_agrees(builds, tmp_path):
    """The cat guest is a real program: natively it does the same."""
    require_native()
    out = run_native(builds.get("cat"), cwd=tmp_path, stdin=b"abc\n")
    assert out.stdout == b"abc\n"
