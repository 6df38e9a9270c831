"""`vsnap core`: an image as an ELF core file that gdb opens.

The guest (tests/guests/coredump_chain.c) calls main -> outer -> inner; inner calls getppid()
as a marker and then loops. Each test stops it a few hundred instructions after the marker,
inside inner's loop, saves an image, and turns the image into a core file.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import os
import shutil
import tempfile
import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from vsnap import Console, Machine
from vsnap.build import build
from vsnap.loader import AT_ENTRY, AT_NULL, AT_PHDR, AT_PHNUM, read_program
from vsnap.snapshot import ImageError, checkpoint, load
from vsnap.snapshot.coredump import USER_REGS, core_bytes, fxsave, write_core
from vsnap.snapshot.inspect import code_reader

GUEST = Path(__file__).resolve().parent / "guests" / "coredump_chain.c"
GDB = shutil.which("gdb")
FRAME_POINTERS = ("-O0", "-fno-omit-frame-pointer")
# (static-pie?, extra flags): -O0 with frame pointers, static-pie, and the default -O2 -g
# (no frame pointers: gdb must unwind with the DWARF call frame information)
BUILDS = {"static-O0": (False, FRAME_POINTERS), "static-pie-O0": (True, FRAME_POINTERS),
          "static-O2": (False, ())}


@functools.lru_cache(maxsize=None)
def program(kind: str) -> str:
    pie, flags = BUILDS[kind]
    return build(str(GUEST), pie=pie, extra_flags=flags)


def symbol(prog: str, name: str) -> tuple[int, int]:
    """(address, size) of a function, relocated as vsnap loads the program."""
    with open(prog, "rb") as f:
        sym = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)[0]
        return read_program(prog).base + sym["st_value"], sym["st_size"]


def marker(prog: str, root: Path) -> int:
    """The instruction count at inner's getppid() marker."""
    m = Machine(prog, root=str(root), console=Console(write_out=lambda b: None))
    marks = []
    m.system.strace = lambda line: marks.append(m.cpu.instructions) \
        if line.startswith("getppid") else None
    m.run(count=True)
    return marks[0]


@pytest.fixture(scope="module", params=sorted(BUILDS))
def stopped(request, tmp_path_factory):
    """(program inside the root, loaded image, image path) with the guest stopped in inner."""
    root = tmp_path_factory.mktemp("core-" + request.param)
    prog = str(root / "chain")  # short, so that the core's pr_fname is the whole name
    shutil.copy(program(request.param), prog)
    at = marker(prog, root)
    m = Machine(prog, ["arg1"], root=str(root), console=Console(write_out=lambda b: None))
    assert m.advance(at + 300) is None
    start, size = symbol(prog, "inner")
    rip = m.cpu.snapshot_registers()["rip"]
    assert start <= rip < start + size, "the guest did not stop inside inner"
    path = str(root / "chain.img")
    checkpoint(m, path)
    return prog, load(path), path


def notes(elf: ELFFile) -> dict:
    seg = next(elf.iter_segments())
    assert seg["p_type"] == "PT_NOTE", "the PT_NOTE segment comes first"
    return {n["n_type"]: n for n in seg.iter_notes()}


def test_core_parses_with_notes_and_memory(stopped):
    prog, img, _ = stopped
    data = core_bytes(img)
    elf = ELFFile(io.BytesIO(data))
    assert elf["e_type"] == "ET_CORE" and elf["e_machine"] == "EM_X86_64"
    n = notes(elf)
    assert all(note["n_name"] == "CORE" for note in n.values())
    assert n["NT_PRSTATUS"]["n_descsz"] == 336
    assert n["NT_PRPSINFO"]["n_descsz"] == 136
    assert n["NT_FPREGSET"]["n_descsz"] == 512

    status = n["NT_PRSTATUS"]["n_desc"]
    assert struct.unpack_from("<ih", status, 0)[0] == 11 and struct.unpack_from(
        "<h", status, 12)[0] == 11  # si_signo, pr_cursig
    p = img.kernel["process"]
    assert struct.unpack_from("<4i", status, 32) == (p["pid"], p["ppid"], p["pgid"], p["sid"])
    regs = dict(zip(USER_REGS, struct.unpack_from("<27Q", status, 112)))
    for name in ("rip", "rsp", "rbp", "rax", "rdi", "fs_base", "gs_base", "r15"):
        assert regs[name] == img.registers[name], name
    assert regs["rflags"] == img.registers["rflags"]  # eflags in user_regs_struct
    assert (regs["cs"], regs["ss"], regs["orig_rax"]) == (0x33, 0x2B, (1 << 64) - 1)

    info = n["NT_PRPSINFO"]["n_desc"]
    assert info["pr_fname"].rstrip(b"\0") == b"chain"
    assert info["pr_psargs"].rstrip(b"\0") == b"/chain arg1"
    assert (info["pr_pid"], info["pr_uid"]) == (p["pid"], p["uid"])

    raw = n["NT_AUXV"]["n_desc"]
    auxv = dict(struct.iter_unpack("<QQ", raw))
    exe = read_program(prog)
    assert struct.unpack_from("<Q", raw, len(raw) - 16)[0] == AT_NULL
    assert auxv[AT_ENTRY] == exe.base + exe.entry and auxv[AT_PHNUM] == exe.phnum

    files = n["NT_FILE"]["n_desc"]
    assert files["page_size"] == 4096 and files["num_map_entries"] >= 2
    assert set(files["filename"]) == {img.program["path"].encode()}
    text = next(v for v in img.vmas if v["kind"] == "text")
    assert text["start"] in [e["vm_start"] for e in files["Elf_Nt_File_Entry"]]

    loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
    assert len(loads) == len(img.vmas)
    read = code_reader(img)  # inspect's own reader: an independent path to the same bytes
    for seg, v in zip(loads, img.vmas):
        assert (seg["p_vaddr"], seg["p_memsz"]) == (v["start"], v["end"] - v["start"])
        assert seg["p_filesz"] == seg["p_memsz"], "every region is written in full"
        assert seg["p_flags"] == ((4 if v["prot"] & 1 else 0) | (2 if v["prot"] & 2 else 0)
                                  | (1 if v["prot"] & 4 else 0))
        body = seg.data()
        for addr in range(v["start"], v["end"], 4096):
            off = addr - v["start"]
            assert body[off:off + 4096] == read(addr, 4096), f"page {addr:#x}"


def test_fpregset_is_fxsave(stopped):
    _, img, _ = stopped
    area = notes(ELFFile(io.BytesIO(core_bytes(img))))["NT_FPREGSET"]["n_desc"]
    r = img.registers
    fcw, fsw, _, _, _, _, mxcsr, _ = struct.unpack_from("<HHBxHQQII", area, 0)
    assert (fcw, fsw, mxcsr) == (r["fpcw"], r["fpsw"], r["mxcsr"])
    for i in range(16):
        assert area[160 + 16 * i:176 + 16 * i] == r[f"xmm{i}"].to_bytes(16, "little")


def test_fxsave_orders_the_x87_stack_from_top():
    regs = {"fpcw": 0x37F, "fpsw": 6 << 11, "mxcsr": 0x1F80,
            "fptag": 0xFFFF & ~(3 << 12) & ~(3 << 14),  # R6 and R7 in use, the rest empty
            **{f"xmm{i}": 0 for i in range(16)},
            **{f"fp{i}": (0x3FFF << 64) | (i + 1) << 60 for i in range(8)}}
    area = fxsave(regs)
    assert len(area) == 512
    assert area[4] == 0b11000000  # abridged tag: bit i set for each non-empty Ri
    assert area[32:48] == regs["fp6"].to_bytes(16, "little")  # ST(0) is R[TOP]
    assert area[48:64] == regs["fp7"].to_bytes(16, "little")
    assert area[64:80] == regs["fp0"].to_bytes(16, "little")  # ST(2) wraps to R0


def test_auxv_is_rebuilt_when_the_stack_holds_none(stopped):
    prog, img, _ = stopped
    vmas = [dict(v, pages=[]) if v["kind"] == "stack" else v for v in img.vmas]
    blank = dataclasses.replace(img, vmas=vmas)
    n = notes(ELFFile(io.BytesIO(core_bytes(blank))))
    auxv = list(struct.iter_unpack("<QQ", n["NT_AUXV"]["n_desc"]))
    exe = read_program(prog)
    assert auxv[-1] == (AT_NULL, 0)
    assert dict(auxv)[AT_ENTRY] == exe.base + exe.entry
    assert dict(auxv)[AT_PHDR] >= exe.base
    assert n["NT_PRPSINFO"]["n_desc"]["pr_fname"].rstrip(b"\0") == b"chain"


def test_a_changed_program_is_refused(stopped, tmp_path):
    _, img, _ = stopped
    other = tmp_path / "other"
    other.write_bytes(Path(program("static-O0")).read_bytes() + b"\0")
    with pytest.raises(ImageError, match="SHA-256"):
        core_bytes(dataclasses.replace(img, program=dict(img.program, path=str(other))))
    with pytest.raises(ImageError, match="cannot be read"):
        core_bytes(dataclasses.replace(img, program=dict(img.program, path=str(tmp_path))))


@pytest.mark.skipif(GDB is None, reason="gdb is not installed")
def test_gdb_shows_registers_and_backtrace(stopped, tmp_path):
    prog, img, _ = stopped
    core = str(tmp_path / "core")
    write_core(img, core)
    out = subprocess.run([GDB, "-batch", "-nx", "-ex", "info registers rip", "-ex", "bt",
                          prog, core], capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert "may not match" not in text, text
    assert "Core was generated by `/chain arg1'" in text, text
    assert "Program terminated with signal SIGSEGV" in text, text
    lines = out.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("rip"))
    assert int(lines[at].split()[1], 16) == img.registers["rip"], text
    assert "<inner+" in lines[at]
    frames = [line.split(" in ")[1].split()[0] if " in " in line else line.split()[1]
              for line in lines[at + 1:] if line.startswith("#")]  # bt's lines
    assert frames[:3] == ["inner", "outer", "main"], text


# --- a process that dies of SIGSEGV: "core" in its cwd (Linux's default core_pattern) ---------
FORK = Path(__file__).resolve().parent / "guests" / "coredump_fork.c"
FORK_FLAVOURS = ("musl", "glibc")


def fork_program(builds, flavour: str) -> str:
    if flavour == "musl":  # frame pointers and -O0: gdb's backtrace needs no guessing
        return build(str(FORK), extra_flags=FRAME_POINTERS)
    return builds.get("coredump_fork", flavour)


def fork_root(builds, tmp_path: Path, flavour: str, name: str = "root") -> Path:
    root = tmp_path / name
    root.mkdir()
    shutil.copy(fork_program(builds, flavour), root / "prog")
    return root


def native_core_pattern() -> str:
    return Path("/proc/sys/kernel/core_pattern").read_text().strip()


def native_fork(root: Path, args, *, as_nobody: bool = False):
    """The program natively in `root` (as vsnap's guest sees it: / is the root); the parent's
    lines, and whether the kernel left a file named core there (None when core_pattern sends
    cores elsewhere: a pipe or another name)."""
    from conftest import NATIVE_ENV, require_native
    require_native()

    def setup():
        os.umask(0o022)
        if as_nobody:
            os.setgid(65534)
            os.setuid(65534)

    out = subprocess.run([str(root / "prog"), *args], cwd=root, env=NATIVE_ENV,
                         capture_output=True, preexec_fn=setup, timeout=60)
    pattern = native_core_pattern()
    found = (root / "core").exists() if pattern == "core" else None
    return out.stdout, found


def vsnap_fork(root: Path, args, *extra):
    from conftest import run_cli
    return run_cli("run", "--root", str(root), *extra, str(root / "prog"), *args)


@pytest.mark.parametrize("flavour", FORK_FLAVOURS)
@pytest.mark.parametrize("limit", ["unlimited", "0", "1000"])
def test_dying_child_writes_core_in_its_cwd(builds, tmp_path, flavour, limit):
    """RLIMIT_CORE raised: the child's core is "core" in its cwd inside the root and its parent
    sees WCOREDUMP; 0 (or below a page, Linux's min_coredump): no file, no core bit."""
    arg = str(2**40) if limit == "unlimited" else limit
    root = fork_root(builds, tmp_path, flavour)
    out = vsnap_fork(root, [arg])
    assert out.status == 0, out.text()
    dumped = limit == "unlimited"
    line = f"child killed by signal 11, core dumped {'yes' if dumped else 'no'}\n".encode()
    assert out.stdout == line
    core = root / "core"
    assert core.exists() == dumped
    if dumped:
        data = core.read_bytes()
        elf = ELFFile(io.BytesIO(data))
        assert elf["e_type"] == "ET_CORE"
        status = notes(elf)["NT_PRSTATUS"]["n_desc"]
        assert struct.unpack_from("<ih", status, 0)[0] == 11
        assert struct.unpack_from("<i", status, 32)[0] != 1  # the child's pid, not init's
        assert oct(os.stat(core).st_mode & 0o777) == oct(0o600)
        # the same bytes in every run: no host time, no host pid in a core
        core.unlink()
        assert vsnap_fork(root, [arg]).stdout == line
        assert core.read_bytes() == data
    native = fork_root(builds, tmp_path, flavour, "native")
    stdout, found = native_fork(native, [arg])
    assert stdout == line  # WCOREDUMP, as Linux's (whatever core_pattern)
    if found is not None:
        assert found == dumped


def test_core_is_cut_at_the_limit(builds, tmp_path):
    root = fork_root(builds, tmp_path, "musl")
    out = vsnap_fork(root, ["8192"])
    assert out.stdout == b"child killed by signal 11, core dumped yes\n", out.text()
    assert (root / "core").stat().st_size == 8192
    assert (root / "core").read_bytes()[:4] == b"\x7fELF"


@pytest.mark.parametrize("setup", ["symlink", "hardlink", "directory", "readonly-dir"])
def test_core_file_rules(builds, tmp_path, setup):
    """fs/coredump.c: an old "core" is unlinked and a new one made O_EXCL|O_NOFOLLOW (a
    symlink is not followed, a hard link's other name keeps its bytes); a directory named core,
    or a directory the process cannot write, gets no core and the parent no core bit. Natively
    as uid 65534, where core_pattern is "core"."""
    results = {}
    # the native side runs as uid 65534: its root must be reachable by it (tmp_path is not)
    public = Path(tempfile.mkdtemp(prefix="vsnap-core-"))
    public.chmod(0o755)
    for side in ("vsnap", "native"):
        root = fork_root(builds, tmp_path if side == "vsnap" else public, "musl", side)
        sub = root / "d"
        sub.mkdir()
        (sub / "target").write_bytes(b"keep")
        if setup == "symlink":
            (sub / "core").symlink_to("target")
        elif setup == "hardlink":
            os.link(sub / "target", sub / "core")
        elif setup == "directory":
            (sub / "core").mkdir()
        for path in (root, sub, *sub.iterdir()):
            os.lchown(path, 65534, 65534)
        if setup == "readonly-dir":
            sub.chmod(0o555)
        args = [str(2**40), "plain", "d"]
        if side == "vsnap":
            out = vsnap_fork(root, args)
            assert out.status == 0, out.text()
            stdout = out.stdout
        else:
            if native_core_pattern() != "core":
                continue
            stdout, _ = native_fork(root, args, as_nobody=True)
            (root / "d").chmod(0o755)
        core = sub / "core"
        kind = "none" if not os.path.lexists(core) else "link" if core.is_symlink() else \
            "dir" if core.is_dir() else "file"
        results[side] = (stdout, kind, (sub / "target").read_bytes(),
                         core.read_bytes()[:4] if kind == "file" else None)
    shutil.rmtree(public)
    dumped = setup in ("symlink", "hardlink")
    assert results["vsnap"][0].endswith(b"yes\n" if dumped else b"no\n")
    assert results["vsnap"][2] == b"keep"
    if dumped:
        assert results["vsnap"][1:] == ("file", b"keep", b"\x7fELF")
    if "native" in results:
        assert results["vsnap"] == results["native"]


def test_a_socket_holder_dumps_core_and_the_run_goes_on(builds, tmp_path):
    """--core no longer saves the whole machine: a child holding a socketpair (which no image
    can hold) dumps core, and its parent goes on to print its wait status."""
    root = fork_root(builds, tmp_path, "musl")
    out = vsnap_fork(root, ["keep", "sock"], "--core", str(tmp_path / "host.core"))
    assert out.status == 0, out.text()
    assert out.stdout == (b"child killed by signal 11, core dumped yes\n"
                          b"parent's socket says ok\n"), out.text()
    host = list(tmp_path.glob("host.core.*"))
    assert len(host) == 1, out.text()  # the child's: FILE.PID
    pid = int(host[0].suffix[1:])
    assert host[0].read_bytes() == (root / "core").read_bytes()
    status = notes(ELFFile(io.BytesIO(host[0].read_bytes())))["NT_PRSTATUS"]["n_desc"]
    assert struct.unpack_from("<i", status, 32)[0] == pid
    assert f"wrote core file {host[0]}".encode() in out.stderr


@pytest.mark.skipif(GDB is None, reason="gdb is not installed")
def test_gdb_reads_the_in_root_core(builds, tmp_path):
    root = fork_root(builds, tmp_path, "musl")
    assert vsnap_fork(root, [str(2**40)]).status == 0
    out = subprocess.run([GDB, "-batch", "-nx", "-ex", "bt", str(root / "prog"),
                          str(root / "core")], capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert "Program terminated with signal SIGSEGV" in text, text
    lines = out.stdout.splitlines()
    last = max(i for i, line in enumerate(lines) if line.startswith("#0 "))  # bt's own
    frames = [line.split(" in ")[1].split()[0] for line in lines[last:] if line.startswith("#")]
    assert frames[:3] == ["inner", "outer", "main"], text


def test_live_record_matches_the_image(stopped):
    """The record made from the live process and the one from its image give one core."""
    from vsnap.corerecord import of_process
    prog, img, _ = stopped
    m = Machine(prog, ["arg1"], root=str(Path(prog).parent),
                console=Console(write_out=lambda b: None))
    assert m.advance(img.kernel["instructions"]) is None
    assert core_bytes(of_process(m.process)) == core_bytes(img)


BUSYBOX = "/bin/busybox"


@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="no /bin/busybox")
def test_proc_says_where_cores_go(tmp_path):
    """/proc/sys/kernel/core_pattern and core_uses_pid say what vsnap does: Linux's defaults;
    the guest, not root, cannot change them."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(BUSYBOX, root / "busybox")
    from conftest import run_cli
    out = run_cli("run", "--root", str(root), str(root / "busybox"), "sh", "-c",
                  "cat /proc/sys/kernel/core_pattern /proc/sys/kernel/core_uses_pid; "
                  "ls /proc/sys/kernel; echo x > /proc/sys/kernel/core_pattern; echo $?")
    assert out.stdout == b"core\n0\ncore_pattern\ncore_uses_pid\n1\n", out.text()
    assert b"Permission denied" in out.stderr


@pytest.mark.parametrize("flavour", FORK_FLAVOURS)
def test_a_vfork_child_dumps_core_under_core_option(builds, tmp_path, flavour):
    """A vfork child crashing in its parent's memory (which no image can hold) writes its core
    under --core, and its parent goes on, as natively."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(builds.get("coredump_vfork", flavour), root / "prog")
    out = vsnap_fork(root, [], "--core", str(tmp_path / "host.core"))
    line = b"vfork child killed by signal 11, core dumped yes\n"
    assert (out.status, out.stdout) == (0, line), out.text()
    assert (root / "core").read_bytes()[:4] == b"\x7fELF"
    assert len(list(tmp_path.glob("host.core.*"))) == 1
    native = tmp_path / "native"
    native.mkdir()
    shutil.copy(root / "prog", native / "prog")
    stdout, found = native_fork(native, [])
    assert stdout == line
    assert found in (None, True)
