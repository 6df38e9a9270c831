"""vsnap.liveruns.LiveRuns (the examples of `vsnap check`): a live machine run to k, its image
resumed in a copy of its root, must check what run_with_checkpoints checks (a fresh run from
exec for every example), and must leave the live machine's own run undisturbed."""
import os

import pytest

from guestrun import guest
from vsnap.build import build
from vsnap.kernel import Capture
from vsnap.liveruns import LiveRuns
from vsnap.testing import (Guest, first_difference, fresh_root, measure, planted_bug,
                           run_with_checkpoints, start)

# files written, held open, hard-linked, deleted while open, mapped (shared, read-only: the
# mapping shows the writes); a timer whose
# ticks follow the instruction count; every round prints what it sees
FILES = r"""
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
static volatile int ticks;
static void on_alarm(int s) { (void)s; ticks++; }
int main(void) {
    int fd = open("data.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
    write(fd, "hello world\n", 12);
    link("data.txt", "alias.txt");
    int g = open("ghost.tmp", O_RDWR | O_CREAT | O_TRUNC, 0600);
    write(g, "ghostly", 7);
    unlink("ghost.tmp");
    ftruncate(fd, 4096);
    const char *p = mmap(0, 4096, PROT_READ, MAP_SHARED, fd, 0);
    signal(SIGALRM, on_alarm);
    struct itimerval it = {{0, 40}, {0, 40}};
    setitimer(ITIMER_REAL, &it, 0);
    unsigned long x = 1;
    for (int round = 0; round < 5; round++) {
        for (long i = 0; i < 20000; i++) x = x * 6364136223846793005UL + (unsigned long)i;
        char c = 'a' + round;
        pwrite(fd, &c, 1, 100 + round);
        struct stat st;
        fstat(fd, &st);
        char gb[8] = {0}, ab[8] = {0};
        pread(g, gb, 7, 0);
        int a = open("alias.txt", O_RDONLY);
        pread(a, ab, 5, 100);
        close(a);
        pwrite(g, "G", 1, round);
        printf("round %d ticks %d nlink %ld ino %ld ghost %s alias %s map %.5s x %lx\n", round,
               ticks, (long)st.st_nlink, (long)st.st_ino, gb, ab, p + 100, x & 0xfff);
        fflush(stdout);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, 0);
    return 0;
}
"""


@pytest.fixture(scope="module")
def files_guest(tmp_path_factory):
    src = tmp_path_factory.mktemp("files") / "files.c"
    src.write_text(FILES)
    return Guest(build(str(src)))


def points_of(m, n_even: int = 8, n_calls: int = 10) -> list:
    """Points spread over the run and next to system calls, ascending (one live machine
    serves them all, in turn)."""
    even = [m.length * (i + 1) // (n_even + 1) for i in range(n_even)]
    step = max(1, len(m.syscalls) // n_calls)
    calls = [n + d for n in m.syscalls[::step] for d in (-1, 0, 1)]
    return sorted({k for k in even + calls if 0 <= k < m.length})


def root_state(root, atime: bool = True) -> dict:
    """Everything of a root a guest can see: names, kinds, modes, sizes, link counts, times,
    contents."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = open(p, "rb").read() if os.path.isfile(p) and not os.path.islink(p) else None
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_nlink,
                                             st.st_atime_ns if atime else None,
                                             st.st_mtime_ns, data)
    return out


@pytest.mark.parametrize("name", ["files", "rewrite", "counter", "signals"])
def test_live_runs_match_and_leave_the_live_machine_alone(name, files_guest, tmp_path):
    g = files_guest if name == "files" else guest(name)
    m = measure(g, tmp_path)
    points = points_of(m)
    with LiveRuns(g, tmp_path, keep=1) as live:
        for k in points:
            diff = first_difference(m.outcome, live.run([k]))
            assert diff is None, f"{name} at {k}: {diff}"
        assert len(live.live) == 1
        served, cap, root = live.live[0]
        assert served.instructions == points[-1]
        # its root is the root of a run that went straight to the same point
        cap2 = Capture(g.stdin)
        root2 = fresh_root(g, tmp_path)
        other = start(g, root2, cap2)
        assert other.advance(points[-1]) is None
        assert root_state(root, atime=False) == root_state(root2, atime=False)
        other.close()
        # one more example at the point where it stands changes nothing of it, access times
        # included (those of files it created are host times, so only comparable here)
        before = root_state(root)
        assert first_difference(m.outcome, live.run([points[-1]])) is None
        assert root_state(root) == before and served.instructions == points[-1]
        # and it ends as the uninterrupted run does: saving never changed it
        result = served.run()
        assert (bytes(cap.out), bytes(cap.err), result.status) == \
               (m.outcome.stdout, m.outcome.stderr, m.outcome.status)
    if name == "files":  # the guest did what the test is about
        assert b"ticks 0" not in m.outcome.stdout.splitlines()[-1]
        assert b"ghost G" in m.outcome.stdout and b"nlink 2" in m.outcome.stdout
        assert b"map abcde" in m.outcome.stdout


def test_live_runs_chains_match(files_guest, tmp_path):
    m = measure(files_guest, tmp_path)
    ks = points_of(m, 6, 4)
    with LiveRuns(files_guest, tmp_path) as live:
        for i in range(0, len(ks) - 2, 3):
            chain = ks[i:i + 3]
            assert first_difference(m.outcome, live.run(chain)) is None, chain


@pytest.mark.parametrize("bug, program", [("offset", "rewrite"), ("register", "rewrite"),
                                          ("page", "counter"), ("sigmask", "signals")])
def test_live_runs_find_planted_bugs_where_fresh_runs_do(bug, program, tmp_path):
    g = guest(program)
    m = measure(g, tmp_path)
    points = points_of(m)
    budget = 2 * m.length + 1_000_000  # a bug may send the resumed guest into a loop
    with planted_bug(bug):
        old = [k for k in points if first_difference(
            m.outcome, run_with_checkpoints(g, [k], tmp_path, budget=budget))]
        with LiveRuns(g, tmp_path, keep=2) as live:
            new = [k for k in points
                   if first_difference(m.outcome, live.run([k], budget=budget))]
    assert old, f"the planted {bug!r} bug shows at none of the points"
    assert new == old
