"""Live "run to k" machines kept between the examples of one guest (`vsnap check`,
benchmarks/check.py): each example's image is taken from the nearest live machine behind k and
resumed in a copy of its root, so no example runs its prefix from exec again (vsnap.testing
has the one-example-at-a-time form, run_with_checkpoints, and what both compare)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .kernel import Capture
from .scratch import discard
from .testing import Guest, Outcome, _counter, _finish, fresh_root, run_to_end, start


class LiveRuns:
    """Faster examples for one guest: the same save-resume-compare as run_with_checkpoints,
    without running every prefix from exec again.

    A few live machines ("run to k", at most `keep`, fewer for a guest of much memory) stay
    between examples. For points [k, ...], the live one with the largest position <= k advances
    to k (a fresh one starts from exec if none is behind k; beyond `keep`, the one closest
    behind another is dropped), its image is taken, its root is copied as it is at that instant
    (contents, modes, times, symlinks and hard links kept: the image's identity checks look at
    size, mtime and content) to a fresh directory, and the image is restored into the copy,
    with the output and unread stdin it had so far. The restored guest goes on through the
    remaining points (each a save and a resume in that copy, as in run_with_checkpoints) to the
    end. The live machine's root is never touched by a restored guest: it goes on to later
    points in later examples.

    What it relies on: advancing a machine in steps (to k1, then k2) is the same run as
    advancing it to k2 at once (Machine.advance), and taking an image does not change the
    machine it is taken from. If it did (a checkpoint with a side effect on the guest), a later
    example served by the same live machine would start from the changed state: the
    difference would still be found, but at a later k than with run_with_checkpoints, whose
    every example starts from exec. Used by `vsnap check` and benchmarks/check.py; tests
    about chains of resumes use run_with_checkpoints."""

    # 16 measured best on benchmarks/check.py (wordfreq 89/s with 4, 96 with 8, 107 with 16);
    # a guest that touches much memory gets fewer, so that they hold at most about MEMORY
    KEEP, MEMORY = 16, 1 << 30

    def __init__(self, guest: Guest, base, keep: int | None = None):
        self.guest, self.base, self.keep = guest, Path(base), keep or self.KEEP
        self.live: list = []   # [machine, capture, root]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        for entry in list(self.live):
            self._drop(entry)

    def _to(self, k: int):
        """A live machine stopped at instruction k, or None if the guest ends before."""
        behind = [e for e in self.live if e[0].instructions <= k]
        if behind:
            entry = max(behind, key=lambda e: e[0].instructions)
        else:
            cap = Capture(self.guest.stdin)
            root = fresh_root(self.guest, self.base)
            entry = [start(self.guest, root, cap), cap, root]
            self.live.append(entry)
        if entry[0].advance(k) is not None:
            self._drop(entry)  # it ended before k: of no use to any later example
            return None
        peak = max(e[0].mem.peak_touched for e in self.live)
        if len(self.live) > min(self.keep, max(2, self.MEMORY // max(peak, 1))):
            # drop the one that follows another most closely: the one behind it serves its
            # points too, for a few instructions more, and the others stay spread over the run
            # (dropping the one furthest behind, they all gathered near the end, and most
            # points had to start from exec again)
            ordered = sorted(self.live, key=lambda e: e[0].instructions)
            gaps = [(b[0].instructions - a[0].instructions, i + 1)
                    for i, (a, b) in enumerate(zip(ordered, ordered[1:])) if b is not entry]
            self._drop(ordered[min(gaps)[1]])
        return entry

    def _drop(self, entry) -> None:
        self.live.remove(entry)
        entry[0].close()
        discard(str(entry[2]))

    def run(self, points, budget: int | None = None) -> Outcome:
        """The outcome of checkpoints at `points` (as run_with_checkpoints gives it)."""
        from .snapshot import image_bytes
        from .snapshot.restore import restore_bytes
        points = sorted(points)
        entry = self._to(points[0])
        if entry is None:  # no point is ever reached: the uninterrupted run
            return run_to_end(self.guest)
        live, live_cap, live_root = entry
        data = image_bytes(live)
        root = self.base / f"copy-{os.getpid()}-{next(_counter)}"
        try:
            moved = copy_root(live_root, root)
            cap = Capture()
            cap.out[:], cap.err[:], cap.inp[:] = live_cap.out, live_cap.err, live_cap.inp
            m, _ = restore_bytes(data, root=str(root), console=cap.console,
                                 where=f"checkpoint at {points[0]}")
            # the guest's inode numbers follow the host inodes they were given for (restore
            # moves those of open files itself): the copies stand for the same files
            m.system.inodes = {moved.get(key, key): ino for key, ino in m.system.inodes.items()}
            for k in points[1:]:
                if m.advance(k) is not None:
                    break
                data = image_bytes(m)
                m.close()
                m, _ = restore_bytes(data, console=cap.console, where=f"checkpoint at {k}")
            try:
                return _finish(m, cap, root, budget)
            finally:
                m.close()
        finally:
            discard(str(root))


def copy_root(src: Path, dest: Path) -> dict:
    """Copy a root as it is (contents, modes, access and modification times, symlinks, FIFOs;
    files linked to one another stay linked), reading it without changing it: the guest sees
    access times, so src's files and directories are read with O_NOATIME, and a symlink's
    times are put back after readlink. Returns host (dev, ino) in src -> (dev, ino) of its
    copy."""
    from .kernel.inodetimes import open_noatime
    moved: dict = {}
    dirs = []

    def times(st_):
        return (st_.st_atime_ns, st_.st_mtime_ns)

    def walk(s: str, d: str, st_dir) -> None:
        os.mkdir(d)
        dirs.append((d, st_dir))
        dfd = open_noatime(s, os.O_RDONLY | os.O_DIRECTORY)
        try:
            names = sorted(os.listdir(dfd))
            for name in names:
                sp, dp = os.path.join(s, name), os.path.join(d, name)
                st_ = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                key = (st_.st_dev, st_.st_ino)
                mode = st_.st_mode
                if stat.S_ISLNK(mode):
                    os.symlink(os.readlink(name, dir_fd=dfd), dp)
                    os.utime(name, ns=times(st_), dir_fd=dfd, follow_symlinks=False)
                    os.utime(dp, ns=times(st_), follow_symlinks=False)
                    continue
                if stat.S_ISDIR(mode):
                    walk(sp, dp, st_)
                elif key in moved:
                    os.link(moved[key][1], dp)
                    continue
                elif stat.S_ISREG(mode):
                    _copy_file(dfd, name, dp, st_)
                elif stat.S_ISFIFO(mode):
                    os.mkfifo(dp, stat.S_IMODE(mode))
                    os.chmod(dp, stat.S_IMODE(mode))
                    os.utime(dp, ns=times(st_))
                else:
                    raise OSError(f"cannot copy {sp}: neither file, directory, link nor FIFO")
                d_st = os.lstat(dp)
                moved[key] = ((d_st.st_dev, d_st.st_ino), dp)
        finally:
            os.close(dfd)

    walk(str(src), str(dest), os.stat(src))
    for d, st_ in reversed(dirs):  # last: adding entries changes a directory's times
        os.chmod(d, stat.S_IMODE(st_.st_mode))
        os.utime(d, ns=times(st_))
    return {key: new for key, (new, _) in moved.items()}


def _copy_file(dfd: int, name: str, dest: str, st_) -> None:
    try:
        src = os.open(name, os.O_RDONLY | getattr(os, "O_NOATIME", 0), dir_fd=dfd)
    except PermissionError:  # O_NOATIME on a file the host user does not own
        src = os.open(name, os.O_RDONLY, dir_fd=dfd)
    try:
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            left = st_.st_size
            while left > 0:
                n = (os.copy_file_range(src, out, left) if hasattr(os, "copy_file_range")
                     else os.write(out, os.read(src, min(left, 1 << 20))))
                if n == 0:
                    break
                left -= n
            if left:
                raise OSError(f"{dest}: copied {st_.st_size - left} of {st_.st_size} bytes")
            os.fchmod(out, stat.S_IMODE(st_.st_mode))
            os.utime(out, ns=(st_.st_atime_ns, st_.st_mtime_ns))
        finally:
            os.close(out)
    finally:
        os.close(src)
