"""Bad programs and bad guests: one clear line from vsnap, a defined exit status, no traceback.

Bad programs (files vsnap cannot run) give exit status 126, as a shell's "cannot execute"; a
missing program gives 127 (as a shell says "command not found"). Guests that fault or exceed a budget die the way Linux
would kill them: 139 (SIGSEGV), 132 (SIGILL), 152 (SIGXCPU, --max-instructions), 137 (SIGKILL,
--max-memory), with one line that says what happened and how to change it.
"""
from __future__ import annotations

import re
import shutil
import struct
import subprocess

import pytest

import vsnap
from conftest import (FLAVOURS, assert_no_traceback, make_root, run_api, run_cli,
                      run_native)
from vsnap.errors import BadProgram

STATUS_BAD_PROGRAM = 126
STATUS_MISSING = 127  # as a shell reports a command it cannot find


def elf_segments(data: bytes):
    """(offset, filesz) of each PT_LOAD of an ELF64 file, read by hand."""
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    out = []
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data,
                                                                 phoff + i * phentsize)
        if p_type == 1:
            out.append((p_offset, p_filesz))
    return out


def elf32_header() -> bytes:
    """A minimal, well-formed ELF32 i386 executable header with one PT_LOAD."""
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)       # ELFCLASS32, LSB, version 1
    ehdr = ident + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, 0x08048054, 52, 0, 0, 52, 32, 1,
                               40, 0, 0)                       # ET_EXEC, EM_386
    phdr = struct.pack("<IIIIIIII", 1, 0, 0x08048000, 0x08048000, 0x60, 0x60, 5, 0x1000)
    return ehdr + phdr + b"\xb8\x01\x00\x00\x00\xcd\x80" + bytes(5)  # mov eax, 1; int 0x80


@pytest.fixture(scope="module")
def real_elf(builds) -> bytes:
    with open(builds.get("hello", "musl"), "rb") as f:
        return f.read()


def need_gcc():
    if shutil.which("gcc") is None:
        pytest.skip("no gcc")


def make_bad(kind: str, d, real_elf: bytes):
    """Create a bad program of this kind in directory d; return (its name, words the message
    must contain)."""
    if kind == "text":
        (d / "notes.txt").write_text("just some text\n")
        return "notes.txt", ["not an ELF file"]
    if kind == "script":
        (d / "script.sh").write_text("#!/bin/sh\necho hi\n")
        return "script.sh", ["script"]
    if kind == "empty":
        (d / "empty").write_bytes(b"")
        return "empty", ["(empty|not an ELF file)"]
    if kind == "truncated-header":
        (d / "trunc100").write_bytes(real_elf[:100])
        return "trunc100", ["truncated"]
    if kind == "truncated-segment":
        offset, filesz = max(elf_segments(real_elf), key=lambda s: s[1])
        (d / "truncseg").write_bytes(real_elf[:offset + filesz // 2])
        return "truncseg", ["truncated"]
    if kind == "elf32-patched":
        data = bytearray(real_elf)
        data[4] = 1  # EI_CLASS = ELFCLASS32
        (d / "elf32").write_bytes(bytes(data))
        return "elf32", ["32-bit"]
    if kind == "elf32-handmade":
        (d / "i386").write_bytes(elf32_header())
        return "i386", ["32-bit"]
    if kind == "aarch64":
        data = bytearray(real_elf)
        data[18:20] = struct.pack("<H", 183)  # e_machine = EM_AARCH64
        (d / "arm64").write_bytes(bytes(data))
        return "arm64", ["x86-64"]
    if kind in ("dynamic", "object"):
        need_gcc()
        (d / "tiny.c").write_text("int main(void) { return 0; }\n")
        name = "dyn" if kind == "dynamic" else "tiny.o"
        flags = [] if kind == "dynamic" else ["-c"]
        proc = subprocess.run(["gcc", *flags, "-o", str(d / name), str(d / "tiny.c")],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"gcc cannot build a {kind} file here: {proc.stderr.strip()}")
        return name, (["dynamically linked", "-static"] if kind == "dynamic"
                      else ["not a program"])
    if kind == "directory":
        (d / "adir").mkdir()
        return "adir", ["directory"]
    raise ValueError(kind)


BAD_KINDS = ["text", "script", "empty", "truncated-header", "truncated-segment",
             "elf32-patched", "elf32-handmade", "aarch64", "dynamic", "object", "directory"]


def assert_one_line(text: str) -> str:
    assert text.endswith("\n") and text.count("\n") == 1, f"not one line: {text!r}"
    assert text.startswith("vsnap: "), text
    return text.strip()


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_program_cli(kind, tmp_path, real_elf):
    name, words = make_bad(kind, tmp_path, real_elf)
    out = run_cli("run", name, cwd=tmp_path)
    assert_no_traceback(out)
    line = assert_one_line(out.text())
    assert out.status == STATUS_BAD_PROGRAM, line
    assert out.stdout == b""
    assert name in line, f"the message does not name the file: {line}"
    for word in words:
        assert re.search(word, line), f"{word!r} not in {line!r}"
    assert "static x86-64" in line  # and says what vsnap does run


@pytest.mark.parametrize("kind", ["text", "truncated-segment", "elf32-patched", "dynamic",
                                  "directory"])
def test_bad_program_api(kind, tmp_path, real_elf):
    """The Python API raises BadProgram (a VsnapError) with the same one-line message."""
    name, words = make_bad(kind, tmp_path, real_elf)
    with pytest.raises(BadProgram) as info:
        vsnap.run(str(tmp_path / name), root=str(tmp_path))
    assert info.value.status == STATUS_BAD_PROGRAM
    assert isinstance(info.value, vsnap.VsnapError)
    assert "\n" not in str(info.value)
    for word in words:
        assert re.search(word, str(info.value))


def test_missing_program(tmp_path):
    out = run_cli("run", "no-such-program", cwd=tmp_path)
    assert_no_traceback(out)
    line = assert_one_line(out.text())
    assert out.status == STATUS_MISSING
    assert "no-such-program" in line and "no such file" in line


def test_missing_root(tmp_path, builds):
    prog = builds.get("hello", "musl")
    out = run_cli("run", "--root", str(tmp_path / "nowhere"), prog, cwd=tmp_path)
    assert_no_traceback(out)
    line = assert_one_line(out.text())
    assert out.status == 2
    assert "nowhere" in line and "not a directory" in line


def test_bad_option_values(tmp_path):
    for args in (["--max-memory", "lots"], ["--max-instructions", "0"]):
        out = run_cli("run", *args, "x", cwd=tmp_path)
        assert_no_traceback(out)
        assert out.status == 2  # argparse's usage error
        assert args[0] in out.text()


# ------------------------------------------------------------------------------------------------
# guests that fault: vsnap reports the death as Linux would, and agrees with the native run

FAULTS = {
    "segv": (139, "SIGSEGV", [r"Segmentation fault at 0x10 \(rip=0x[0-9a-f]+: mov\b"],
             b"about to write to address 0x10\n"),
    "ill": (132, "SIGILL", [r"Illegal instruction", r"\(rip=0x[0-9a-f]+: ud2\)"],
            b"about to execute ud2\n"),
}


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_cli(name, flavour, builds, tmp_path):
    status, _, patterns, stdout = FAULTS[name]
    root = make_root(tmp_path / "root", builds.get(name, flavour))
    out = run_cli("run", "./prog", cwd=root)
    assert_no_traceback(out)
    line = assert_one_line(out.text())
    assert out.status == status, line
    assert out.stdout == stdout
    for pattern in patterns:
        assert re.search(pattern, line), f"{pattern!r} not in {line!r}"


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_matches_native(name, builds, tmp_path):
    status, _, _, stdout = FAULTS[name]
    root = make_root(tmp_path / "root", builds.get(name, "musl"))
    native = run_native(str(root / "prog"), cwd=root)
    assert (native.status, native.stdout) == (status, stdout)
    got, result = run_api(str(root / "prog"), root=root)
    assert (got.status, got.stdout, got.stderr) == (native.status, native.stdout, native.stderr)


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_api(name, builds, tmp_path):
    status, signal, patterns, stdout = FAULTS[name]
    root = make_root(tmp_path / "root", builds.get(name, "musl"))
    got, result = run_api(str(root / "prog"), root=root)
    assert (result.status, result.signal) == (status, signal)
    assert got.stdout == stdout and got.stderr == b""  # the message is vsnap's, not the guest's
    for pattern in patterns:
        assert re.search(pattern, result.message)


# ------------------------------------------------------------------------------------------------
# budgets

@pytest.mark.parametrize("flavour", FLAVOURS)
def test_instruction_budget(flavour, builds, tmp_path):
    root = make_root(tmp_path / "root", builds.get("spin", flavour))
    out = run_cli("run", "--max-instructions", "100000", "./prog", cwd=root, timeout=60)
    assert_no_traceback(out)
    line = assert_one_line(out.text())
    assert out.status == 152, line
    assert "--max-instructions" in line
    assert out.stdout == b"spinning forever\n"


def test_instruction_budget_exactly_enough(builds, tmp_path):
    """A budget of exactly the instructions a program needs lets it finish; one fewer stops it."""
    root = make_root(tmp_path / "root", builds.get("hello", "musl"))
    stats = run_cli("run", "--stats", "./prog", cwd=root)
    m = re.search(r"vsnap: (\d+) instructions", stats.text())
    assert m, stats.text()
    n = int(m.group(1))
    enough = run_cli("run", "--max-instructions", str(n), "./prog", cwd=root)
    assert enough.status == 0, enough.text()
    assert enough.stdout == stats.stdout
    short = run_cli("run", "--max-instructions", str(n - 1), "./prog", cwd=root)
    assert short.status == 152, short.text()


def test_instruction_budget_count_never_exceeds_budget(builds, tmp_path):
    root = make_root(tmp_path / "root", builds.get("hello", "musl"))
    m = vsnap.Machine(str(root / "prog"), root=str(root), cwd=str(root),
                      console=vsnap.Console(write_out=lambda b: None, write_err=lambda b: None))
    result = m.run(count=True)
    n = result.instructions
    assert result.status == 0 and n > 1000
    m = vsnap.Machine(str(root / "prog"), root=str(root), cwd=str(root),
                      console=vsnap.Console(write_out=lambda b: None, write_err=lambda b: None))
    budget = 1000
    stopped = m.run(max_instructions=budget)
    assert stopped.status == 152
    assert stopped.instructions <= budget, (
        f"stopped by a budget of {budget} but reports {stopped.instructions} instructions "
        f"(rip {m.cpu.read('rip'):#x} is the start of the block it counted and did not run)")


@pytest.mark.parametrize("flavour", ["musl", "glibc"])
def test_memory_budget(flavour, builds, tmp_path):
    root = make_root(tmp_path / "root", builds.get("memhog", flavour))
    out = run_cli("run", "--max-memory", "64M", "./prog", cwd=root, timeout=60)
    assert_no_traceback(out)
    line = assert_one_line(out.text())
    assert out.status == 137, line
    assert "--max-memory" in line
    assert out.stdout == b""  # the guest never saw malloc fail: it was stopped
