"""vsnap's own lines are not the guest's: --log FILE, --quiet, the refused calls in --stats,
the same for the Python API (log=, RunResult.refused), and vsnap --version (which every
image's manifest records)."""
from __future__ import annotations

import json
import re
import zipfile
from importlib import metadata

import pytest

import vsnap
from conftest import REPO, assert_no_traceback, run_cli
from vsnap.build import build

NOTICE_A = "vsnap: guest called unimplemented syscall 206 (io_setup)"
NOTICE_B = "vsnap: guest called unimplemented syscall 335 (syscall_335)"

# writes to its stderr, calls io_setup twice, works a while, then calls 335 twice
SOURCE = r"""
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    fprintf(stderr, "guest says hello on stderr\n");
    syscall(SYS_io_setup, 1L, 0L);
    syscall(SYS_io_setup, 1L, 0L);
    long s = 0;
    for (int i = 0; i < 300; i++) s += getppid();
    syscall(335L, 0L);
    syscall(335L, 0L);
    printf("done %ld\n", s);
    return 0;
}
"""
GUEST_ERR = b"guest says hello on stderr\n"


@pytest.fixture(scope="module")
def prog(tmp_path_factory) -> str:
    src = tmp_path_factory.mktemp("diag") / "refuser.c"
    src.write_text(SOURCE)
    return build(str(src))


def test_version_is_the_package_version_and_images_record_it(prog, tmp_path):
    out = run_cli("--version")
    assert out.status == 0, out.text()
    version = metadata.version("vsnap")
    assert out.stdout.decode() == f"vsnap {version}\n"
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^version = "(.*)"$', pyproject, re.M).group(1) == version
    assert vsnap.__version__ == version
    image = tmp_path / "a.img"
    out = run_cli("run", "--save-at", "1000", "-o", str(image), "--exit", prog, cwd=tmp_path)
    assert out.status == 0, out.text()
    with zipfile.ZipFile(image) as z:
        assert json.loads(z.read("manifest.json"))["vsnap"] == version
    out = run_cli("inspect", str(image))
    assert out.stdout.decode().splitlines()[0].endswith(f"(written by vsnap {version})")


def test_notices_go_to_stderr_once_per_call_by_default(prog, tmp_path):
    out = run_cli("run", prog, cwd=tmp_path)
    assert out.status == 0
    assert out.stderr.decode().splitlines() == [GUEST_ERR.decode().strip(), NOTICE_A, NOTICE_B]


def test_log_keeps_the_guests_stderr_as_on_linux(prog, tmp_path):
    log = tmp_path / "vsnap.log"
    log.write_text("an earlier line\n")
    out = run_cli("run", "--log", str(log), "--stats", prog, cwd=tmp_path)
    assert_no_traceback(out)
    assert out.status == 0
    assert out.stderr == GUEST_ERR  # the guest's own, and nothing else
    assert out.stdout.startswith(b"done ")
    lines = log.read_text().splitlines()
    assert lines[:3] == ["an earlier line", NOTICE_A, NOTICE_B]  # appended, not replaced
    assert re.fullmatch(r"vsnap: \d+ instructions, \d+ system calls, .* exit status 0(, peak memory \d+ KiB touched)?", lines[3])
    assert lines[4:] == ["vsnap: refused: io_setup x2, syscall_335 x2"]


def test_quiet_drops_the_notices_but_not_what_was_asked_for(prog, tmp_path):
    out = run_cli("run", "--quiet", prog, cwd=tmp_path)
    assert out.status == 0
    assert out.stderr == GUEST_ERR
    out = run_cli("run", "-q", "--stats", prog, cwd=tmp_path)
    lines = out.stderr.decode().splitlines()
    assert lines[0] == GUEST_ERR.decode().strip()
    assert lines[-1] == "vsnap: refused: io_setup x2, syscall_335 x2"
    assert NOTICE_A not in lines


def test_stats_adds_no_line_when_nothing_was_refused(tmp_path):
    out = run_cli("run", "--stats", str(REPO / "programs" / "hello.c"), cwd=tmp_path)
    lines = out.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vsnap: ") and "refused" not in lines[0]


def test_log_that_cannot_be_written_is_one_line(prog, tmp_path):
    out = run_cli("run", "--log", str(tmp_path / "no" / "such.log"), prog, cwd=tmp_path)
    assert_no_traceback(out)
    assert out.status == 2
    assert out.stderr.decode() == (f"vsnap: --log {tmp_path}/no/such.log: No such file or "
                                   f"directory\n")


def test_resume_log_and_refusals_carried_in_the_image(prog, tmp_path):
    """A notice given before the save is not repeated after resume, and the counts go on."""
    out = run_cli("run", "--stats", "--quiet", prog, cwd=tmp_path)
    total = int(re.search(rb"vsnap: (\d+) instructions", out.stderr).group(1))
    image = tmp_path / "half.img"
    log = tmp_path / "run.log"
    out = run_cli("run", "--log", str(log), "--save-at", str(total // 2), "-o", str(image),
                  "--exit", prog, cwd=tmp_path)
    assert out.status == 0, out.text()
    assert out.stderr == GUEST_ERR
    assert log.read_text().splitlines() == [NOTICE_A, f"vsnap: saved {image} at instruction "
                                            f"{total // 2}"]
    log2 = tmp_path / "resume.log"
    out = run_cli("resume", "--log", str(log2), "--stats", str(image), cwd=tmp_path)
    assert out.status == 0, out.text()
    assert out.stderr == b""
    lines = log2.read_text().splitlines()
    assert lines[0] == NOTICE_B
    assert lines[-1] == "vsnap: refused: io_setup x2, syscall_335 x2"


def test_api_collects_notices_in_a_list(prog, tmp_path):
    notices: list[str] = []
    result, out, err = vsnap.run(prog, root=str(tmp_path), log=notices)
    assert err == GUEST_ERR
    assert notices == [NOTICE_A, NOTICE_B]
    assert result.refused == {"io_setup": 2, "syscall_335": 2}


def test_api_log_false_and_default(prog, tmp_path, capfd):
    result, _, err = vsnap.run(prog, root=str(tmp_path), log=False)
    assert err == GUEST_ERR
    assert capfd.readouterr().err == ""
    assert result.refused == {"io_setup": 2, "syscall_335": 2}
    vsnap.run(prog, root=str(tmp_path))
    assert capfd.readouterr().err.splitlines() == [NOTICE_A, NOTICE_B]
    m = vsnap.Machine(prog, root=str(tmp_path), console=vsnap.Capture().console)
    m.log = lines = []
    m.run()
    assert lines == [NOTICE_A, NOTICE_B]


def test_api_rejects_a_log_it_cannot_use(prog, tmp_path):
    with pytest.raises(TypeError, match="log= takes"):
        vsnap.Machine(prog, root=str(tmp_path), log=42)
