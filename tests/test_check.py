"""vsnap check finds deliberate checkpoint bugs and shrinks each to one checkpoint point."""
import subprocess
import sys

import pytest

from guestrun import guest
from vsnap.build import build
from vsnap.check import check, report
from vsnap.testing import Guest, planted_bug

SBRK = r"""
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
/* the program break by hand, with the raw brk system call (musl's sbrk only answers sbrk(0)) */
static char *grow(long n) {
    char *old = (char *)syscall(SYS_brk, 0);
    syscall(SYS_brk, old + n);
    return old;
}
int main(void) {
    char *a = grow(4096);
    strcpy(a, "first block");
    printf("%s\n", a);
    char *b = grow(4096);
    strcpy(b, "second block");
    printf("%s / %s, break moved %ld\n", a, b, (long)((char *)syscall(SYS_brk, 0) - a));
    return 0;
}
"""


@pytest.fixture(scope="module")
def sbrk_guest(tmp_path_factory):
    src = tmp_path_factory.mktemp("sbrk") / "sbrk.c"
    src.write_text(SBRK)
    return Guest(build(str(src)))


@pytest.mark.parametrize("bug, program", [("offset", "rewrite"), ("register", "rewrite"),
                                          ("page", "counter"), ("sigmask", "signals"),
                                          ("brk", "sbrk")])
def test_check_finds_each_planted_bug_and_shrinks_it(bug, program, sbrk_guest):
    g = sbrk_guest if program == "sbrk" else guest(program)
    with planted_bug(bug):
        verdict = check(g, examples=80, seed_=1)
    assert not verdict.transparent, f"the planted {bug!r} bug went unnoticed"
    assert len(verdict.points) == 1, verdict.points  # shrunk to a single checkpoint
    text = report(g, verdict)
    assert "NOT transparent" in text and "vsnap run --save-at" in text and "rip=" in text


def test_check_passes_the_real_implementation(sbrk_guest):
    for g in (sbrk_guest, guest("rewrite"), guest("signals")):
        verdict = check(g, examples=15, seed_=2)
        assert verdict.transparent, report(g, verdict)


def test_vsnap_check_cli_exit_statuses(tmp_path):
    prog = guest("rewrite").program
    ok = subprocess.run([sys.executable, "-m", "vsnap", "check", "--examples", "5", prog,
                         "r.dat"], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and "transparent" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "vsnap", "check", "--examples", "40", prog,
                          "r.dat"], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "VSNAP_PLANT_BUG": "offset"})
    assert bad.returncode == 1 and "NOT transparent" in bad.stdout, bad.stdout + bad.stderr
