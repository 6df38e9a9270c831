"""Build guest C programs with `zig cc` (the `ziglang` package): a cross compiler that pip
installs, so any laptop can make x86_64-linux-musl static programs without a Linux toolchain.

Builds are cached by content: the same source and flags give the same binary path, and a
second `vsnap run prog.c` does not compile again.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

from .errors import BuildFailed

TARGET = "x86_64-linux-musl"
# zig turns on UBSan at -O0, which makes undefined behaviour a trap instead of what C
# programs (and a teaching tool's crash examples) expect: keep it off at every level
# <vsnap/checkpoint.h> (sys_checkpoint, SIGCKPT) for every guest built here; other compilers
# get the directory from `vsnap build --print-include-dir`
INCLUDE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")
CFLAGS = ("-O2", "-g", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-fno-sanitize=undefined",
          "-I", INCLUDE_DIR)


def cache_dir() -> str:
    base = os.environ.get("VSNAP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vsnap")
    path = os.path.join(base, "build")
    os.makedirs(path, exist_ok=True)
    return path


def host_library(name: str, source: bytes):
    """A C source built with `zig cc` into a shared library for the host (vsnap's own hooks:
    counter.py, tlb.py), cached by the source's hash, and loaded. Raises OSError or
    subprocess.SubprocessError when it cannot be built."""
    import ctypes
    key = hashlib.sha256(source + sys.platform.encode()).hexdigest()[:16]
    path = os.path.join(os.path.dirname(cache_dir()), f"{name}-{key}.so")
    if not os.path.exists(path):
        with tempfile.TemporaryDirectory() as d:
            src, tmp = os.path.join(d, f"{name}.c"), os.path.join(d, f"{name}.so")
            with open(src, "wb") as f:
                f.write(source)
            subprocess.run([*zig_command(), "cc", "-shared", "-O2", "-nostdlib", "-fPIC",
                            "-o", tmp, src], check=True, capture_output=True, timeout=300)
            part = f"{path}.{os.getpid()}.tmp"  # into the cache atomically (another file
            shutil.copyfile(tmp, part)          # system, maybe: copy, then rename)
            os.replace(part, path)
    return ctypes.CDLL(path)


def zig_command() -> list[str]:
    return [sys.executable, "-m", "ziglang"]


def build(source: str, output: str | None = None, *, pie: bool = False,
          extra_flags: tuple[str, ...] = ()) -> str:
    """Compile `source` (C) into a static x86-64 Linux program; return the program's path."""
    try:
        with open(source, "rb") as f:
            text = f.read()
    except OSError as e:
        raise BuildFailed(f"vsnap: cannot read {source}: {e.strerror}; give a C source file")
    link = ("-static-pie", "-fPIE") if pie else ("-static",)
    flags = (*CFLAGS, *link, *extra_flags)
    # the source's own path is in the key too: its debug info names it, and gdb follows it
    where = os.path.abspath(source).encode()
    key = hashlib.sha256(text + repr(flags).encode() + TARGET.encode() + where
                         + _headers()).hexdigest()[:20]
    name = os.path.splitext(os.path.basename(source))[0]
    cached = os.path.join(cache_dir(), f"{name}-{key}")
    if not os.path.exists(cached):
        _compile(source, cached, flags)
    if output is None:
        return cached
    # a unique temporary name beside the output: two builds to the same path at once (make -j,
    # parallel tests) each rename a whole file, never write into one another's
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(output)),
                                   prefix=f".{os.path.basename(output)}.")
    except OSError as e:
        raise BuildFailed(f"vsnap: cannot write {output}: {e.strerror}")
    os.close(fd)
    try:
        shutil.copyfile(cached, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, output)
    except BaseException as e:
        os.unlink(tmp)
        if isinstance(e, OSError):
            raise BuildFailed(f"vsnap: cannot write {output}: {e.strerror}") from None
        raise
    return output


def _headers() -> bytes:
    """vsnap's own headers, in the cache key: a build that includes one follows it."""
    out = b""
    folder = os.path.join(INCLUDE_DIR, "vsnap")
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        with open(os.path.join(folder, name), "rb") as f:
            out += name.encode() + f.read()
    return out


def _compile(source: str, out: str, flags) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(out), prefix=".build-")
    os.close(fd)
    cmd = [*zig_command(), "cc", "-target", TARGET, *flags, "-o", tmp, source]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        os.unlink(tmp)
        raise BuildFailed(f"vsnap: cannot start zig ({e}); install the ziglang package")
    if proc.returncode != 0:
        os.unlink(tmp)
        if "No module named ziglang" in proc.stderr:
            raise BuildFailed("vsnap: the ziglang package is missing; pip install ziglang")
        first = next((line for line in proc.stderr.splitlines() if "error" in line),
                     proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")
        raise BuildFailed(f"vsnap: {source} does not compile: {first.strip()}")
    os.replace(tmp, out)
