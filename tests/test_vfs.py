"""Tests for vsnap.vfs: the sandbox root must never be escaped, and must walk paths like Linux.

Three kinds of test: named escape attempts, ordinary lookups, and properties (any random path
stays inside the root; and, where chroot(2) is allowed, the answers equal the real Linux kernel's
under chroot, which is exactly the semantics the sandbox promises).
"""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from vsnap.abi import errno as E
from vsnap.errors import SyscallError
from vsnap.kernel import Capture, Process
from vsnap.system import System
from vsnap.memory import AddressSpace
from vsnap.vfs import MAXSYMLINKS, Resolved, Sandbox, host_errno_to_guest

SANDBOX_PASSWD = "sandbox passwd\n"
HOST_SECRET = "host secret\n"


def write(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def base(tmp_path):
    """tmp/outside/secret.txt, tmp/etc/passwd (a decoy beside the root), and tmp/root/..."""
    write(tmp_path / "outside" / "secret.txt", HOST_SECRET)
    write(tmp_path / "etc" / "passwd", HOST_SECRET)
    root = tmp_path / "root"
    write(root / "etc" / "passwd", SANDBOX_PASSWD)
    write(root / "home" / "a.txt", "a")
    write(root / "home" / "sub" / "b.txt", "b")
    write(root / "file.txt", "file")
    write(root / "bin" / "prog", "ELF")
    return tmp_path


@pytest.fixture
def root(base):
    return base / "root"


def sandbox(root, **kw) -> Sandbox:
    """A sandbox with a system and one process attached (pid 1000, no fds), which gives it
    /dev and /proc."""
    sb = Sandbox(str(root), **kw)
    system = System(sb, Capture().console)
    system.current = Process(system, None, AddressSpace(None))
    # /proc/self/exe is the process's program (Process.exe_host/exe_guest)
    system.current.exe_host, system.current.exe_guest = sb.exe_host_path, sb.exe_guest_path
    return sb


@pytest.fixture
def sb(root):
    return sandbox(root, exe_guest_path="/bin/prog")


def inside(sb: Sandbox, r: Resolved) -> bool:
    return r.host is not None and os.path.commonpath([sb.root, r.host]) == sb.root


def errno_of(sb, path, cwd="/", **kw) -> int:
    with pytest.raises(SyscallError) as info:
        sb.resolve(path, cwd, **kw)
    return info.value.errno


def is_sandbox_passwd(sb, r):
    return inside(sb, r) and r.exists and open(r.host).read() == SANDBOX_PASSWD


# ---------------------------------------------------------------- escape attempts, one by one

def test_escape_absolute_dotdot_stays_at_root(sb):
    r = sb.resolve("/../../../etc/passwd")
    assert r.guest == "/etc/passwd" and is_sandbox_passwd(sb, r)


def test_escape_relative_dotdot_from_root(sb):
    assert is_sandbox_passwd(sb, sb.resolve("../../../../etc/passwd", "/"))


def test_escape_dotdot_from_deep_cwd(sb):
    r = sb.resolve("../../../../../../etc/passwd", "/home/sub")
    assert r.guest == "/etc/passwd" and is_sandbox_passwd(sb, r)


def test_escape_cwd_made_of_dotdots(sb):
    assert is_sandbox_passwd(sb, sb.resolve("etc/passwd", "/../../.."))


def test_escape_symlink_to_slash_is_sandbox_root(sb, root):
    os.symlink("/", root / "home" / "up")
    r = sb.resolve("/home/up/etc/passwd")
    assert r.guest == "/etc/passwd" and is_sandbox_passwd(sb, r)


def test_escape_symlink_to_host_etc_is_rerooted(sb, root):
    os.symlink("/etc", root / "l")
    assert is_sandbox_passwd(sb, sb.resolve("/l/passwd"))


def test_escape_symlink_relative_dotdots_clamp_at_root(sb, root):
    os.symlink("../../../../../../etc", root / "home" / "l")
    assert is_sandbox_passwd(sb, sb.resolve("/home/l/passwd"))


def test_escape_symlink_to_absolute_host_dir_outside(sb, root, base):
    os.symlink(str(base / "outside"), root / "l")
    assert errno_of(sb, "/l/secret.txt") == E.ENOENT


def test_escape_symlink_to_absolute_host_path_of_root_itself(sb, root):
    # Even a host path that happens to lie inside the root is read as a guest path.
    os.symlink(str(root / "home"), root / "l")
    assert errno_of(sb, "/l/a.txt") == E.ENOENT


def test_escape_final_symlink_to_outside_file(sb, root, base):
    os.symlink(str(base / "outside" / "secret.txt"), root / "l")
    assert errno_of(sb, "/l") == E.ENOENT


def test_escape_dangling_symlink_create_stays_inside(sb, root):
    os.symlink("/newfile", root / "l")       # open(O_CREAT) follows a dangling link
    r = sb.resolve("/l")
    assert (r.guest, r.host, r.exists) == ("/newfile", str(root / "newfile"), False)


def test_escape_dangling_symlink_to_host_dir_cannot_create(sb, root, base):
    os.symlink(str(base / "created"), root / "l")    # its directories do not exist in the root
    assert errno_of(sb, "/l") == E.ENOENT
    assert not (base / "created").exists()


def test_escape_chained_symlinks(sb, root):
    os.symlink("b", root / "a")
    os.symlink("home/../../../..", root / "b")
    r = sb.resolve("/a/etc/passwd")
    assert r.guest == "/etc/passwd" and is_sandbox_passwd(sb, r)


def test_escape_dotdot_after_symlink_uses_target_parent(sb, root):
    os.symlink("/home/sub", root / "l")
    assert sb.resolve("/l/..").guest == "/home"          # Linux: parent of the target
    assert sb.resolve("/l/../../../..").host == sb.root


def test_escape_self_loop_eloop(sb, root):
    os.symlink("l", root / "l")
    assert errno_of(sb, "/l") == E.ELOOP
    assert errno_of(sb, "/l/x") == E.ELOOP


def test_escape_mutual_loop_eloop(sb, root):
    os.symlink("/b", root / "a")
    os.symlink("../a", root / "b")
    assert errno_of(sb, "/a/etc/passwd") == E.ELOOP


def test_escape_link_chain_limit_is_40(sb, root):
    os.symlink("file.txt", root / "l0")
    for i in range(1, MAXSYMLINKS + 1):
        os.symlink(f"l{i - 1}", root / f"l{i}")
    assert sb.resolve(f"/l{MAXSYMLINKS - 1}").guest == "/file.txt"   # 40 links: fine
    assert errno_of(sb, f"/l{MAXSYMLINKS}") == E.ELOOP                 # 41 links


def test_escape_directory_loop_counts_every_link(sb, root):
    os.symlink("/home", root / "home" / "x")
    assert sb.resolve("/home/" + "x/" * 40 + "a.txt").exists
    assert errno_of(sb, "/home/" + "x/" * 41 + "a.txt") == E.ELOOP


def test_escape_through_regular_file_enotdir(sb):
    # A lexical normaliser would turn this into /etc/passwd; Linux says ENOTDIR.
    assert errno_of(sb, "/file.txt/../etc/passwd") == E.ENOTDIR


def test_escape_trailing_slash_on_file_enotdir(sb):
    assert errno_of(sb, "/file.txt/") == E.ENOTDIR
    assert errno_of(sb, "/file.txt/.") == E.ENOTDIR


def test_escape_symlink_to_file_then_dotdot(sb, root):
    os.symlink("file.txt", root / "l")
    assert errno_of(sb, "/l/..") == E.ENOTDIR


def test_escape_path_too_long(sb):
    ok = "/" + "./" * 2043 + "file.txt"            # 4095 bytes + the NUL = PATH_MAX: allowed
    assert len(ok) == 4095 and sb.resolve(ok).exists
    assert errno_of(sb, "/" * 4088 + "file.txt") == E.ENAMETOOLONG     # 4096 bytes
    assert errno_of(sb, b"/" * 5000) == E.ENAMETOOLONG


def test_escape_component_too_long(sb):
    assert errno_of(sb, "/home/" + "n" * 256) == E.ENAMETOOLONG
    assert errno_of(sb, "/" + "n" * 256 + "/../etc/passwd") == E.ENAMETOOLONG
    assert sb.resolve("/home/" + "n" * 255).exists is False


def test_escape_empty_path_enoent(sb):
    assert errno_of(sb, "") == E.ENOENT
    assert errno_of(sb, b"", "/home") == E.ENOENT


def test_escape_nul_byte_einval(sb):
    assert errno_of(sb, "/etc\0/../../..") == E.EINVAL


def test_escape_bytes_path_with_dotdot(sb):
    assert is_sandbox_passwd(sb, sb.resolve(b"/../../etc/passwd"))


def test_escape_non_utf8_name_stays_inside(sb, root):
    assert errno_of(sb, b"/home/\xff\xfe/../../../\xff") == E.ENOENT   # \xff\xfe is missing
    r = sb.resolve(b"/home/\xff\xfe")
    assert not r.exists and r.host == os.fsdecode(os.fsencode(sb.root) + b"/home/\xff\xfe")
    os.mkdir(os.fsencode(r.host))
    r = sb.resolve(b"/home/\xff\xfe/../../../\xff")
    assert r.guest == "/" + os.fsdecode(b"\xff") and inside(sb, r) and not r.exists


def test_escape_real_dev_inside_root_is_ignored(sb, root, base):
    (root / "dev").mkdir()
    os.symlink(str(base / "outside" / "secret.txt"), root / "dev" / "null")
    write(root / "dev" / "sda", "disk")
    assert sb.resolve("/dev/null") == Resolved("/dev/null", None, "null", True)
    assert errno_of(sb, "/dev/sda") == E.ENOENT


def test_escape_real_proc_self_exe_inside_root_is_ignored(sb, root):
    (root / "proc" / "self").mkdir(parents=True)
    os.symlink("/etc/passwd", root / "proc" / "self" / "exe")
    assert sb.resolve("/proc/self/exe").guest == "/bin/prog"


def test_escape_proc_self_dotdot(sb):
    assert is_sandbox_passwd(sb, sb.resolve("/proc/self/../../../etc/passwd"))


def test_escape_dev_null_is_not_a_directory(sb):
    assert errno_of(sb, "/dev/null/../../etc/passwd") == E.ENOTDIR
    assert errno_of(sb, "/dev/null/") == E.ENOTDIR


def test_escape_follow_false_returns_link_not_target(sb, root, base):
    os.symlink(str(base / "outside" / "secret.txt"), root / "l")
    r = sb.resolve("/l", follow=False)
    assert r == Resolved("/l", str(root / "l"), None, True) and os.path.islink(r.host)


def test_escape_trailing_slash_follows_even_without_follow(sb, root):
    os.symlink("/etc", root / "l")
    assert sb.resolve("/l/", follow=False).guest == "/etc"


def test_escape_link_target_of_slashes_and_dotdots(sb, root):
    os.symlink("//..//..//", root / "home" / "l")
    assert sb.resolve("/home/l").host == sb.root


def test_escape_exe_pointing_at_itself_eloop(root):
    sb = sandbox(root, exe_guest_path="/proc/self/exe")
    assert errno_of(sb, "/proc/self/exe") == E.ELOOP


def test_escape_guest_path_of_host_outside_and_sibling_prefix(sb, base):
    assert sb.guest_path_of_host(str(base / "outside")) is None
    assert sb.guest_path_of_host(str(base / "root2")) is None          # a prefix, not a parent
    assert sb.guest_path_of_host(str(base / "root" / ".." / "etc")) is None


def test_escape_guest_path_of_host_via_host_symlink(sb, root, base):
    os.symlink(str(base / "outside"), root / "l")
    assert sb.guest_path_of_host(str(root / "l")) is None


def test_escape_host_path_rejects_dotdot(sb):
    with pytest.raises(ValueError):
        sb.host_path("/home/../../etc")
    with pytest.raises(ValueError):
        sb.host_path("home")


# ---------------------------------------------------------------- ordinary lookups

def test_absolute_file(sb, root):
    assert sb.resolve("/home/a.txt") == Resolved("/home/a.txt", str(root / "home/a.txt"), None, True)


def test_relative_to_cwd(sb, root):
    assert sb.resolve("sub/b.txt", "/home").host == str(root / "home/sub/b.txt")
    assert sb.resolve("../a.txt", "/home/sub").guest == "/home/a.txt"


def test_dots_and_double_slashes_are_normalised(sb):
    assert sb.resolve("//home/./sub//.//b.txt").guest == "/home/sub/b.txt"
    assert sb.resolve(".", "/home/sub").guest == "/home/sub"


def test_root_itself(sb):
    assert sb.resolve("/") == Resolved("/", sb.root, None, True)
    assert sb.resolve("..", "/").host == sb.root


def test_final_component_missing(sb, root):
    r = sb.resolve("/home/new.txt")
    assert r == Resolved("/home/new.txt", str(root / "home/new.txt"), None, False)
    assert sb.resolve("newdir/", "/home").exists is False


def test_missing_intermediate_enoent(sb):
    assert errno_of(sb, "/nope/x") == E.ENOENT
    assert errno_of(sb, "/nope/..") == E.ENOENT


def test_follow_relative_symlink_inside_root(sb, root):
    os.symlink("sub/b.txt", root / "home" / "lb")
    os.symlink("home/sub", root / "ld")
    assert sb.resolve("/home/lb").guest == "/home/sub/b.txt"
    assert sb.resolve("/ld/b.txt").host == str(root / "home/sub/b.txt")
    assert sb.resolve("/home/lb", follow=False).guest == "/home/lb"


def test_symlink_with_trailing_slash_target_must_be_dir(sb, root):
    os.symlink("file.txt/", root / "l")
    assert errno_of(sb, "/l") == E.ENOTDIR


def test_dev_and_proc_virtual_files(sb):
    assert sb.resolve("/dev/null") == Resolved("/dev/null", None, "null", True)
    assert sb.resolve("tty", "/dev").special == "tty"
    assert sb.resolve("/dev/").special == "dir"
    assert sb.resolve("/proc").special == "dir"
    # /proc/self is a link to the pid, as on Linux: paths through it end in /proc/1000
    assert sb.resolve("/proc/self/") == Resolved("/proc/1000", None, "dir", True)
    assert sb.resolve("/proc/self", follow=False).special == "link"
    assert sb.readlink("/proc/self") == "1000"
    assert sb.resolve("/proc/self/maps") == Resolved("/proc/1000/maps", None, "proc:maps", True)
    assert sb.resolve("/proc/self/..").guest == "/proc"
    assert sb.resolve("/proc/self/task/1000/status").special == "proc:status"
    assert sb.resolve("/dev/stdin", follow=False).special == "link"
    assert sb.readlink("/dev/fd") == "/proc/self/fd"
    for path in ("/proc/1", "/proc/1001/status", "/proc/self/fd/0", "/proc/self/task/1",
                 "/dev/sda", "/proc/self/status/x", "/proc/self/fd/00"):
        assert errno_of(sb, path) in (E.ENOENT, E.ENOTDIR), path


def test_proc_self_exe(sb, root):
    assert sb.resolve("/proc/self/exe") == Resolved("/bin/prog", str(root / "bin/prog"), None, True)
    assert sb.resolve("/proc/self/exe", follow=False).special == "link"
    assert errno_of(sb, "/proc/self/exe/", follow=False) == E.ENOTDIR   # followed: a file
    assert sb.readlink("/proc/self/exe") == "/bin/prog"
    assert sb.readlink("exe", "/proc/self") == "/bin/prog"


def test_proc_self_exe_of_a_program_outside_the_root(root):
    sb = sandbox(root, exe_host_path="/elsewhere/prog")
    r = sb.resolve("/proc/self/exe")
    assert (r.special, r.host) == ("exe", None)   # opened by the kernel, read-only
    assert sb.readlink("/proc/self/exe") == "/elsewhere/prog"
    assert errno_of(sb, "/proc/self/exe/x") == E.ENOTDIR


def test_no_kernel_no_virtual_files(root):
    (root / "dev").mkdir()
    write(root / "dev" / "null", "real")
    bare = Sandbox(str(root))
    for path in ("/dev/null", "/proc/self", "/proc"):
        assert errno_of(bare, path) == E.ENOENT


def test_readlink(sb, root):
    os.symlink("/etc", root / "l")
    assert sb.readlink("/l") == "/etc"
    for path, errno in (("/home/a.txt", E.EINVAL), ("/dev/null", E.EINVAL), ("/nope", E.ENOENT),
                        ("/l/", E.EINVAL)):
        with pytest.raises(SyscallError) as info:
            sb.readlink(path)
        assert info.value.errno == errno, path


def test_guest_path_of_host(sb, root):
    assert sb.guest_path_of_host(str(root)) == "/"
    assert sb.guest_path_of_host(str(root / "home" / "sub")) == "/home/sub"
    assert sb.host_path("/home/./sub") == str(root / "home" / "sub")


def test_root_must_be_a_directory(base):
    with pytest.raises(ValueError):
        Sandbox(str(base / "root" / "file.txt"))
    with pytest.raises(ValueError):
        Sandbox(str(base / "missing"))


def test_root_is_realpathed(base):
    os.symlink(str(base / "root"), base / "rootlink")
    sb = Sandbox(str(base / "rootlink"))
    assert sb.root == os.path.realpath(base / "root")
    assert sb.resolve("/home/a.txt").host == os.path.join(sb.root, "home", "a.txt")


def test_host_errno_to_guest():
    assert host_errno_to_guest(FileNotFoundError(2, "x")) == E.ENOENT
    assert host_errno_to_guest(OSError("no errno")) == E.EIO


# ---------------------------------------------------------------- properties

LINKS = {  # name -> target, all inside the tree below
    "l_root": "/", "l_up": "../../..", "l_etc": "/etc", "l_self": "l_self", "l_a": "l_b",
    "l_b": "l_a", "d/l_parent": "..", "d/e/l_abs": "/d/e", "l_file": "f", "l_d": "d",
    "d/l_deep": "../../../../d/e", "l_dangling": "/nope/x", "l_new": "/d/new",
    "d/e/l_chain": "../l_parent/l_d/e/l_abs",
}
NAMES = ["d", "e", "f", "etc", "passwd", "outside", "secret.txt", "nope"] + \
    sorted({k.rsplit("/", 1)[-1] for k in LINKS})


def build_tree(root, outside):
    for d in ("d/e", "etc"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for f in ("f", "d/f", "d/e/f", "etc/passwd"):
        write(root / f, "x")
    for name, target in LINKS.items():
        os.symlink(target, root / name)
    os.symlink(str(outside), root / "outside")
    os.symlink(str(outside / "secret.txt"), root / "d" / "secret.txt")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("tree")
    write(base / "outside" / "secret.txt", HOST_SECRET)
    for name in ("d/e", "etc"):                     # decoys beside the root, to be found by escapes
        (base / name).mkdir(parents=True, exist_ok=True)
    write(base / "etc" / "passwd", HOST_SECRET)
    build_tree(base / "root", base / "outside")
    return sandbox(base / "root")


paths = st.tuples(
    st.booleans(),
    st.lists(st.sampled_from(NAMES + ["..", ".", ""]), min_size=1, max_size=12),
).map(lambda t: ("/" if t[0] else "") + "/".join(t[1]))
cwds = st.sampled_from(["/", "/d", "/d/e", "/etc", "/l_d", "/../d", "/l_up"])


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=paths, cwd=cwds, follow=st.booleans())
def test_property_never_leaves_root(tree, path, cwd, follow):
    try:
        r = tree.resolve(path, cwd, follow=follow)
    except SyscallError as err:
        assert err.errno in (E.ENOENT, E.ENOTDIR, E.ELOOP)
        return
    if r.host is None:
        assert r.guest.split("/")[1] in ("dev", "proc") and r.special
        return
    assert inside(tree, r) and r.host == tree.host_path(r.guest)
    if r.host != tree.root:
        parent = os.path.realpath(os.path.dirname(r.host))
        assert os.path.commonpath([tree.root, parent]) == tree.root
    if r.exists and follow and not path.endswith("/"):
        assert not os.path.islink(r.host)
        assert os.path.commonpath([tree.root, os.path.realpath(r.host)]) == tree.root
    if not r.exists:
        assert not os.path.lexists(r.host) and os.path.isdir(os.path.dirname(r.host))


def linux_answers(root: str, queries: list[tuple[str, str, bool]]):
    """Ask the real kernel, chrooted at root, in a forked child: ("ok", dev, ino) or ("err", n)."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(rfd)
            out = []
            try:
                os.chroot(root)
            except OSError:
                out = None
            for cwd, path, follow in queries if out is not None else ():
                try:
                    os.chdir(cwd)
                    s = (os.stat if follow else os.lstat)(path)
                    out.append(["ok", s.st_dev, s.st_ino])
                except OSError as e:
                    out.append(["err", e.errno])
            os.write(wfd, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    data = b""
    while chunk := os.read(rfd, 65536):
        data += chunk
    os.close(rfd)
    os.waitpid(pid, 0)
    return json.loads(data)


def compare_with_linux(sb: Sandbox, queries):
    answers = linux_answers(sb.root, queries)
    if answers is None:
        pytest.skip("chroot(2) is not allowed here")
    for (cwd, path, follow), linux in zip(queries, answers):
        where = f"resolve({path!r}, {cwd!r}, follow={follow})"
        try:
            r = sb.resolve(path, cwd, follow=follow)
        except SyscallError as err:
            assert linux == ["err", err.errno], where
            continue
        if not r.exists:
            assert linux == ["err", E.ENOENT], where
            continue
        s = os.lstat(r.host)
        assert linux == ["ok", s.st_dev, s.st_ino], where


needs_root = pytest.mark.skipif(not hasattr(os, "chroot") or os.geteuid() != 0,
                                reason="the Linux oracle needs chroot(2), which needs root")


@needs_root
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(queries=st.lists(st.tuples(cwds, paths, st.booleans()), min_size=1, max_size=30))
def test_property_matches_linux_under_chroot(tree, queries):
    # No /dev or /proc in NAMES: those are virtual here and real under chroot.
    compare_with_linux(tree, [(c, p, f) for c, p, f in queries if p])


@needs_root
def test_limits_match_linux_under_chroot(sb, root):
    os.symlink("file.txt", root / "l0")
    for i in range(1, MAXSYMLINKS + 2):
        os.symlink(f"l{i - 1}", root / f"l{i}")
    os.symlink("/home", root / "home" / "x")
    queries = [("/", p, True) for p in (
        "/l39", "/l40", "/home/" + "x/" * 40 + "a.txt", "/home/" + "x/" * 41 + "a.txt",
        "/" * 4087 + "file.txt", "/" * 4088 + "file.txt", "/" + "n" * 255, "/" + "n" * 256,
        "/file.txt/.", "/file.txt/..", "/file.txt/", "/home/", "/nope/..",
    )]
    compare_with_linux(sb, queries)
