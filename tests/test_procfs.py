"""/proc and /dev: the same guest natively (chrooted, with procfs mounted and the /dev nodes
made, as a real chroot is set up) and under vsnap, musl and glibc; busybox's view; and
checkpoints taken while each kind of virtual file is open."""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import IS_ROOT, NATIVE_ENV, NATIVE_OK, run_api, shell_status
from vsnap.testing import Guest, assert_transparent, measure

from conftest import BUSYBOX  # noqa: E402  (None: no static busybox here)
DATA = {"data/a.txt": b"abcdefgh"}
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
           "urandom": (1, 9), "tty": (5, 0)}
ARGS = ("one", "two words", "")


def make_root(path: Path, prog: str | None = None) -> Path:
    """A root as a chroot needs it: the program at /prog, the data, and empty dev/ and proc/
    (vsnap's own hide them; natively they are filled in at run time)."""
    path.mkdir()
    if prog:
        shutil.copyfile(prog, path / "prog")
        os.chmod(path / "prog", 0o755)
    for rel, data in DATA.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
    (path / "dev").mkdir()
    (path / "proc").mkdir()
    return path


def _native_setup(root: str):
    """In the child: a mount namespace of its own, procfs at root/proc, then chroot."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x00020000) != 0:                     # CLONE_NEWNS
        os._exit(97)
    libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None)   # MS_REC | MS_PRIVATE
    if libc.mount(b"proc", os.fsencode(root + "/proc"), b"proc", 0, None) != 0:
        os._exit(97)
    os.umask(0o022)
    os.chroot(root)
    os.chdir("/")
    os.setgroups([])
    os.setgid(1000)   # the guest's ids: /proc's permission checks are then the same
    os.setuid(1000)


def native_with_proc(root: Path, args=(), stdin: bytes = b""):
    """Run /prog natively in `root` with /proc and /dev as Linux has them; skip if this
    machine cannot (not root, no mount namespaces)."""
    if not (NATIVE_OK and IS_ROOT):
        pytest.skip("the native side needs root on x86-64 Linux (chroot, mount)")
    for name, (major, minor) in DEVICES.items():
        os.mknod(root / "dev" / name, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(root / "dev" / name, 0o666)  # past this process's umask
    for name, target in (("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("fd", "/proc/self/fd")):
        os.symlink(target, root / "dev" / name)
    for path in [root, *root.rglob("*")]:   # the guest owns its root, as under vsnap
        if not path.is_relative_to(root / "dev") and not path.is_relative_to(root / "proc"):
            os.chown(path, 1000, 1000, follow_symlinks=False)
    try:
        proc = subprocess.run(["/prog", *args], env=NATIVE_ENV, input=stdin,
                              capture_output=True, preexec_fn=lambda: _native_setup(str(root)),
                              timeout=60)
    finally:
        shutil.rmtree(root / "dev")
        (root / "dev").mkdir()
    if proc.returncode == 97:
        pytest.skip("cannot mount procfs in a private mount namespace here")
    return proc.stdout, proc.stderr, shell_status(proc.returncode)


@pytest.fixture(scope="module", params=["musl", "glibc"])
def procself(request, builds):
    return builds.get("procself", request.param)


def test_proc_and_dev_match_native(procself, tmp_path):
    root = make_root(tmp_path / "root", procself)
    out, result = run_api(str(root / "prog"), ARGS, root=root)
    assert result.status == 0 and out.stdout.endswith(b"EXIT-SUCCESS\n"), out.text()
    native = native_with_proc(root, ARGS)
    assert (out.stdout.decode(), out.stderr, out.status) == (native[0].decode(), *native[1:])


def test_proc_and_dev_content(procself, tmp_path):
    """What the native comparison cannot show alone: the lines are the ones meant (the
    comparison would also pass if both sides printed the same wrong thing)."""
    root = make_root(tmp_path / "root", procself)
    out, result = run_api(str(root / "prog"), ARGS, root=root)
    text = out.stdout.decode()
    assert "cmdline: /prog|one|two words||" in text
    assert "environ: PATH=/usr/local/bin:/usr/bin:/bin|HOME=/|LANG=C|TERM=dumb|" in text
    for line in ("auxv: equals the stack's=1 random=1 phdr=1 ends in AT_NULL=1",
                 "status: Name=prog State=R (running) Threads=1 Umask=0027",
                 "status: pids agree=1 uid agrees=1 gid agrees=1",
                 "status: SigBlk=1 SigIgn has HUP=1 SigCgt has USR1=1 pending TERM=1",
                 "stat: comm=prog state=R fields=52 pid agrees=1",
                 "stat: args agree=1 env agrees=1 threads=1 blocked agrees=1",
                 "statm: fields=7 size agrees with status=1",
                 "smaps: one record per VMA=1 sizes agree=1 map_files agree=1 (1)",
                 "map_files open: Operation not permitted", "status for writing: Permission denied",
                 "fd 1: pipe:[N]", "file: /data/a.txt", "dir: /data", "null: /dev/null",
                 "proc: /proc/PID/status", "deleted: /tmp/gone (deleted)",
                 "fdinfo file: pos=3 flags=102002", "fdinfo dir: pos=0 flags=2300000",
                 "reopen deleted: read=5 ghost offsets 5 5", "reopen file: read=4 abcd",
                 "stat through link: same inode=1", "lstat link: mode=120300",
                 "closed: No such file or directory",
                 "exe: /prog", "exe opens: 1 ELF", "cwd: /data", "root: /", "self: PID",
                 "thread-self: PID/task/PID", "mounts: self/mounts",
                 "stdin: /proc/self/fd/0", "fd: /proc/self/fd", "comm: prog",
                 "comm write=22 Name=a-name-longer-t comm=a-name-longer-t", "now=x$$",
                 "/dev/zero: chr=1 1,5", "/dev/full: chr=1 1,7", "/dev/urandom: chr=1 1,9",
                 "/dev/tty: chr=1 5,0", "zero: read=32 zeros=1 write=3", "lseek: zero=0 null=0",
                 "excl: -1 File exists", "zero: mmap ok=1 0",
                 "full: write=-1 No space left on device read=16", "urandom: read=32",
                 "/dev lists the ten=1", "/ lists dev=1 proc=1"):
        assert line + "\n" in text, line


def test_proc_files_are_deterministic(procself, tmp_path):
    """Every byte of /proc the guest reads is the same in two runs (pids, sizes, times)."""
    runs = []
    for i in range(2):
        root = make_root(tmp_path / f"root{i}", procself)
        runs.append(run_api(str(root / "prog"), ARGS, root=root)[0])
    assert runs[0] == runs[1]


EXE_OUTSIDE = r"""
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    char t[4096]; ssize_t n = readlink("/proc/self/exe", t, sizeof t - 1);
    t[n < 0 ? 0 : n] = 0;
    int fd = open("/proc/self/exe", O_RDONLY), w = open("/proc/self/exe", O_RDWR);
    char m[4] = ""; read(fd, m, 4);
    printf("%s|%d|%.3s|%d\n", t, fd >= 0, m + 1, w);
    return 0;
}
"""


def test_proc_self_exe_outside_the_root(tmp_path):
    """The program lies outside the root: exe names its host path (as Linux names a file
    outside a chroot) and opens read-only; writing is refused as for a running program."""
    from vsnap.build import build
    src = tmp_path / "exe_outside.c"
    src.write_text(EXE_OUTSIDE)
    prog = build(str(src))
    root = tmp_path / "root"
    root.mkdir()
    out, result = run_api(prog, root=root)
    path, opened, magic, refused = out.stdout.decode().strip().split("|")
    assert (path, opened, magic, refused) == (os.path.realpath(prog), "1", "ELF", "-1")


TTYNAME = r"""
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(void) {
    char t[64]; ssize_t n = readlink("/proc/self/fd/1", t, sizeof t - 1);
    int w = open("/dev/stdin", O_WRONLY), r = open("/dev/stdout", O_RDONLY);
    printf("%s|%.*s|%s|%d %d\n", ttyname(0) ? ttyname(0) : "none", (int)(n < 0 ? 0 : n), t,
           ttyname(1) ? ttyname(1) : "none", w >= 0, r >= 0);
    return 0;
}
"""


def test_ttyname_finds_the_terminal(tmp_path):
    """On a terminal the std fds name /dev/pts/0, and ttyname (which follows the link and
    checks that stat of the name is fstat of the fd) finds it; on pipes it finds nothing.
    A terminal reopens both ways; a pipe's other end is refused (vsnap has none to give)."""
    from vsnap.build import build
    from vsnap.kernel import Capture, Console
    from vsnap.machine import Machine
    src = tmp_path / "ttyname.c"
    src.write_text(TTYNAME)
    prog = build(str(src))
    (tmp_path / "root").mkdir()
    for tty, want in (((True, True, False), b"/dev/pts/0|/dev/pts/0|/dev/pts/0|1 1\n"),
                      ((False, False, False), b"none|pipe:[4097]|none|0 0\n")):
        cap = Capture()
        console = Console(read=cap.console.read, write_out=cap.out.extend,
                          write_err=cap.err.extend, tty=tty)
        Machine(prog, root=str(tmp_path / "root"), console=console).run()
        assert bytes(cap.out) == want, cap.err


# busybox -------------------------------------------------------------------------------------
def busybox(root: Path, *args: str) -> str:
    out, result = run_api(str(root / "bin" / "busybox"), args, root=root)
    assert result.status == 0, out.text()
    return out.stdout.decode()


@pytest.fixture
def bbroot(tmp_path):
    if BUSYBOX is None:
        pytest.skip("no /bin/busybox")
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    return root


def test_busybox_sees_proc_and_dev(bbroot):
    assert busybox(bbroot, "cat", "/proc/self/cmdline") == "/bin/busybox\0cat\0/proc/self/cmdline\0"
    assert busybox(bbroot, "readlink", "/proc/self/exe") == "/bin/busybox\n"
    listing = busybox(bbroot, "ls", "-l", "/proc/self/fd/")
    assert re.search(r"^l-wx------ .* 1 -> pipe:\[\d+\]$", listing, re.M), listing
    assert re.search(r"^lr-x------ .* 0 -> pipe:\[\d+\]$", listing, re.M), listing
    # (no pipes between processes in vsnap: od reads the device itself)
    od = busybox(bbroot, "od", "-An", "-tx1", "-N16", "/dev/urandom")
    assert len(od.split()) == 16 and len(set(od.split())) > 4
    assert od == busybox(bbroot, "od", "-An", "-tx1", "-N16", "/dev/urandom")  # seeded
    assert busybox(bbroot, "ls", "/").split() == ["bin", "dev", "proc"]
    assert "fd\nfull\nnull\npts\nrandom\nstderr\nstdin\nstdout\ntty\nurandom\nzero\n" == \
        busybox(bbroot, "ls", "/dev")
    assert busybox(bbroot, "head", "-c", "8", "/dev/zero") == "\0" * 8
    found = busybox(bbroot, "find", "/proc", "-name", "status").split()
    assert found == ["/proc/1000/status", "/proc/1000/task/1000/status"]


# checkpoints ----------------------------------------------------------------------------------
OPEN_ALL = r"""
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
/* each kind of virtual file open at once, read a little at a time between system calls */
int main(void) {
    int st = open("/proc/self/status", O_RDONLY), z = open("/dev/zero", O_RDONLY);
    int fu = open("/dev/full", O_WRONLY), ur = open("/dev/urandom", O_RDONLY);
    int ex = open("/proc/self/exe", O_RDONLY), nu = open("/dev/null", O_RDWR);
    int pd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY), dv = open("/dev", O_RDONLY);
    int cm = open("/proc/self/comm", O_WRONLY);
    write(cm, "renamed", 7);                  /* a new name: state the image must keep */
    int gh = open("/gone", O_RDWR | O_CREAT, 0600);
    write(gh, "x", 1); unlink("/gone");       /* deleted while open: a ghost in the image */
    char b[64], d[256]; unsigned long sum = 0;
    for (int i = 0; i < 12; i++) {
        ssize_t n = read(st, b, 16); if (n > 0) fwrite(b, 1, n, stdout);
        read(z, b, 8); for (int j = 0; j < 8; j++) sum += b[j];
        printf(" full=%zd", write(fu, "x", 1));
        read(ur, b, 4); printf(" rnd=%02x%02x", b[0] & 255, b[1] & 255);
        read(ex, b, 4); sum += b[0];
        n = syscall(SYS_getdents64, i % 2 ? pd : dv, d, 40);
        printf(" dents=%zd\n", n);
        write(nu, "y", 1);
    }
    int c2 = open("/proc/self/comm", O_RDONLY); ssize_t n = read(c2, d, 32);
    printf("comm=%.*s", (int)(n < 0 ? 0 : n), d);
    write(cm, "again", 5);                    /* through the fd opened before the saves */
    c2 = open("/proc/self/comm", O_RDONLY); n = read(c2, d, 32);
    printf("comm=%.*s", (int)(n < 0 ? 0 : n), d);
    char t[64], g[64], p[32]; n = readlink("/proc/self/fd/4", t, sizeof t - 1);
    snprintf(p, sizeof p, "/proc/self/fd/%d", gh);
    ssize_t m = readlink(p, g, sizeof g - 1);
    printf("sum=%lu link4=%.*s ghost=%.*s\n", sum, (int)(n < 0 ? 0 : n), t, (int)(m < 0 ? 0 : m), g);
    return 0;
}
"""


def test_checkpoints_with_every_virtual_kind_open(tmp_path):
    from vsnap.build import build
    src = tmp_path / "open_all.c"
    src.write_text(OPEN_ALL)
    guest = Guest(build(str(src)))
    m = measure(guest, tmp_path)
    assert m.outcome.status == 0 and b"full=-1" in m.outcome.stdout, m.outcome.stderr
    assert b"comm=renamed\ncomm=again\nsum=" in m.outcome.stdout
    assert b"link4=/dev/zero ghost=/gone (deleted)\n" in m.outcome.stdout
    late = [n for n in m.syscalls if n > m.syscalls[len(m.syscalls) // 3]]
    for points in ([late[0]], [late[len(late) // 2], late[-3]], [m.length - 2]):
        assert_transparent(guest, points, reference=m.outcome, base=tmp_path)
