"""The sandbox root: a real host directory that the guest sees as "/".

Threat model: the guest is untrusted and names files with arbitrary bytes. No guest path may reach
a host path outside the root: not by `..`, absolute paths, symlinks (absolute targets are re-rooted
at the sandbox root, relative ones walk on from the link's directory), loops or paths through files.
So the walk happens here, one lstat'ed component at a time; the host kernel never follows a link.
Out of scope: host processes that swap a directory for a symlink during a walk, and hard links or
mount points that the user put inside the root.
"""
from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass, field

from .abi import errno as E
from .access import MAY_EXEC
from .errors import SyscallError

PATH_MAX = 4096      # bytes, counting the terminating NUL: a 4096-byte path is too long
NAME_MAX = 255       # bytes in one component
MAXSYMLINKS = 40     # symlinks followed in one lookup, like Linux

# The virtual namespace: everything under these top-level names comes from `Sandbox.virtual`
# (kernel/virtual.py), never from the host, so a real /dev or /proc inside the root is hidden.
VIRTUAL_TOPS = ("dev", "proc")
VIRTUAL_DIR_MODE = stat.S_IFDIR | 0o555  # every virtual directory may be searched


@dataclass(frozen=True)
class VNode:
    """One virtual name, as the kernel's virtual tree describes it to the walk.

    special  what it is, for the open and stat paths ("null", "proc:status", "dir", ...)
    is_dir   a directory: the walk may go on through it
    link     a symbolic link: its text (what readlink gives)
    jump     following the link walks this guest path (absolute: from the root; relative:
             from the link's directory); None: the link leads to an object that has no path
             (Linux's "magic" links: an fd on a pipe or a deleted file, a program outside the
             root), and the walk ends on the link itself with `special`
    """

    special: str
    is_dir: bool = False
    link: str | None = None
    jump: str | None = None


def host_errno_to_guest(e: OSError) -> int:
    """The guest errno for a host OSError (Linux numbers)."""
    if e.errno is None:
        return E.EIO
    if sys.platform.startswith("linux"):
        return e.errno          # host and guest are both Linux: the numbers are the same
    # Elsewhere the numbers differ (macOS: ELOOP is 62). Python's OSError subclasses name the
    # common ones portably; the rest become EIO rather than a wrong Linux number.
    for cls, guest in _BY_CLASS:
        if isinstance(e, cls):
            return guest
    return E.EIO


_BY_CLASS = ((FileNotFoundError, E.ENOENT), (FileExistsError, E.EEXIST),
             (NotADirectoryError, E.ENOTDIR), (IsADirectoryError, E.EISDIR),
             (PermissionError, E.EACCES), (InterruptedError, E.EINTR),
             (BlockingIOError, E.EAGAIN), (ProcessLookupError, E.ESRCH))


def _split(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def _fail(errno: int, guest: str) -> SyscallError:
    return SyscallError(errno, guest)


@dataclass(frozen=True)
class Resolved:
    guest: str           # normalised absolute guest path, symlinks resolved ("/home/a.txt")
    host: str | None     # host path inside the root; None for virtual files
    special: str | None  # None for real files; a virtual node's kind ("null", ...) otherwise
    exists: bool         # False when only the final component is missing (O_CREAT, mkdir, ...)
    node: VNode | None = field(default=None, compare=False)  # the virtual node, if any


class Sandbox:
    """A host directory seen by the guest as "/", plus the virtual /dev and /proc files."""

    def __init__(self, root: str, exe_guest_path: str | None = None,
                 exe_host_path: str | None = None):
        real = os.path.realpath(root)
        if not os.path.isdir(real):
            raise ValueError(f"sandbox root {root!r} is not a directory")
        self.root = real
        self.exe_guest_path = exe_guest_path   # the program's guest path; None outside the root
        self.exe_host_path = exe_host_path     # the program file on the host
        # The virtual tree (an object with node(guest_path) -> VNode | None): the kernel
        # attaches its /dev and /proc here. Without one, nothing under them exists.
        self.virtual = None

    def resolve(self, path: str | bytes, cwd: str = "/", *, follow: bool = True,
                creds=None) -> Resolved:
        """Resolve a guest path like Linux's path walk, inside the root.

        follow=False leaves a final symlink unresolved (lstat, readlink, unlink, O_NOFOLLOW); a
        trailing slash still follows it, as on Linux. Raises SyscallError. The host path is only
        checked at the moment of the walk: open it with O_NOFOLLOW.

        With `creds` (an access.Credentials), each directory the path looks a name up in must
        grant them search (x) permission, as Linux's walk checks: the start directory for the
        first name, "." and ".." included; not the directories above `cwd`, which the walk
        starts from without passing through. Without creds nothing is checked (vsnap's own
        lookups: restoring an image).
        """
        raw = os.fsencode(path)
        if not raw:
            raise _fail(E.ENOENT, "empty path")
        if b"\0" in raw:
            raise _fail(E.EINVAL, "NUL byte in path")
        if len(raw) >= PATH_MAX:
            raise _fail(E.ENAMETOOLONG, f"path of {len(raw)} bytes")
        if not cwd.startswith("/"):
            raise ValueError(f"cwd must be an absolute guest path, not {cwd!r}")
        text = os.fsdecode(raw)
        must_dir = text.endswith("/")
        start = [] if text.startswith("/") else _split(cwd)
        # a stack of (component, whether the walk checks search permission to look it up):
        # todo.pop() is the next one; the components of cwd come first and are not checked
        todo = [(p, True) for p in reversed(_split(text))] + [(p, False) for p in reversed(start)]
        done: list[str] = []        # resolved guest components, each one checked
        modes: list[int] = []       # st_mode of each directory in `done`, for the search check
        links = 0
        while todo:
            name, checked = todo.pop()
            if checked and creds is not None:
                self._may_search(creds, done, modes)
            if name == ".":
                continue
            if name == "..":
                if done:
                    done.pop()
                    modes.pop()
                continue
            if len(os.fsencode(name)) > NAME_MAX:
                raise _fail(E.ENAMETOOLONG, f"component of {len(os.fsencode(name))} bytes")
            last = not todo
            follow_here = not last or follow or must_dir
            done.append(name)
            guest = "/" + "/".join(done)

            if done[0] in VIRTUAL_TOPS:             # the virtual namespace
                node = self.virtual.node(guest) if self.virtual is not None else None
                if node is None:
                    raise _fail(E.ENOENT, guest)
                if node.link is not None and follow_here:
                    links += 1
                    if links > MAXSYMLINKS:
                        raise _fail(E.ELOOP, guest)
                    if node.jump is not None:
                        done.pop()
                        if node.jump.startswith("/"):
                            done, modes = [], []
                        # /proc's links jump to their file without a search check (Linux's
                        # magic links); the virtual directories are all searchable anyway
                        todo.extend((p, False) for p in reversed(_split(node.jump)))
                        continue
                    # a magic link: what it leads to has no path, the walk ends on it
                    if not last:
                        raise _fail(E.ENOTDIR, guest)
                    return Resolved(guest, None, node.special, True, node)
                if not node.is_dir and (not last or must_dir):
                    raise _fail(E.ENOTDIR, guest)
                if last:  # a link not followed is a link, whatever it leads to
                    special = "link" if node.link is not None else node.special
                    return Resolved(guest, None, special, True, node)
                modes.append(VIRTUAL_DIR_MODE)
                continue

            host = os.path.join(self.root, *done)
            try:
                st = os.lstat(host)
            except FileNotFoundError:
                if last:
                    return Resolved(guest, host, None, False)
                raise _fail(E.ENOENT, guest) from None
            except OSError as e:
                raise _fail(host_errno_to_guest(e), guest) from None
            if stat.S_ISLNK(st.st_mode) and follow_here:
                links += 1
                if links > MAXSYMLINKS:
                    raise _fail(E.ELOOP, guest)
                try:
                    target = os.readlink(host)
                except OSError as e:
                    raise _fail(host_errno_to_guest(e), guest) from None
                done.pop()
                if target.startswith("/"):
                    done, modes = [], []            # absolute targets start at the sandbox root
                if last and target.endswith("/"):
                    must_dir = True
                todo.extend((p, checked) for p in reversed(_split(target)))
                continue
            if not stat.S_ISDIR(st.st_mode) and (not last or must_dir):
                raise _fail(E.ENOTDIR, guest)
            if last:
                return Resolved(guest, host, None, True)
            modes.append(st.st_mode)

        # Ended on "/", ".", ".." or a link to a directory: `done` is a checked directory.
        guest = "/" + "/".join(done)
        if done and done[0] in VIRTUAL_TOPS:
            node = self.virtual.node(guest) if self.virtual is not None else None
            if node is None:  # the directory went away (a closed fd's /proc/self/fd/N/..)
                raise _fail(E.ENOENT, guest)
            return Resolved(guest, None, node.special, True, node)
        return Resolved(guest, os.path.join(self.root, *done), None, True)

    def _may_search(self, creds, done: list[str], modes: list[int]) -> None:
        """EACCES unless `creds` may search the directory the walk stands in."""
        if modes:
            mode = modes[-1]
        else:
            try:
                mode = os.stat(self.root).st_mode
            except OSError as e:
                raise _fail(host_errno_to_guest(e), "/") from None
        if not creds.permits(mode, MAY_EXEC):
            raise _fail(E.EACCES, "/" + "/".join(done) + ": no search permission")

    def readlink(self, path: str | bytes, cwd: str = "/", *, creds=None) -> str:
        """The target text of a symlink, as stored (absolute targets are guest paths)."""
        r = self.resolve(path, cwd, follow=False, creds=creds)
        if r.node is not None and r.node.link is not None:
            return r.node.link
        if not r.exists:
            raise _fail(E.ENOENT, r.guest)
        if r.host is None:
            raise _fail(E.EINVAL, r.guest)
        try:
            return os.readlink(r.host)
        except OSError as e:
            raise _fail(host_errno_to_guest(e), r.guest) from None

    def guest_path_of_host(self, host_path: str) -> str | None:
        """"/sub/dir" for a host path inside the root, None for one outside it."""
        real = os.path.realpath(host_path)
        if os.path.commonpath([self.root, real]) != self.root:
            return None
        rel = os.path.relpath(real, self.root)
        return "/" if rel == "." else "/" + rel

    def host_path(self, guest_abs: str) -> str:
        """Plain join for an already-resolved guest path (no symlink handling, no `..`)."""
        parts = [p for p in _split(guest_abs) if p != "."]
        if not guest_abs.startswith("/") or ".." in parts:
            raise ValueError(f"not a resolved absolute guest path: {guest_abs!r}")
        return os.path.join(self.root, *parts)
