"""Start-up: a plain `vsnap run` loads only what a run needs.

`vsnap run hello` in a fresh process is mostly Python importing things (see README,
"Start-up"); the heavy modules other commands use (the disassembler, the property-test
engine, the ELF library, the image code, the version lookup, the progress bar) must not be
imported by a run that does not use them. Checked on the modules a real `python -m vsnap run`
process holds at exit, not by timing (timing is for benchmarks/run.py).
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO

# Modules a plain run must not load, and what uses them instead.
HEAVY = {
    "capstone": "--trace (trace.py)",
    "hypothesis": "vsnap check, vsnap.testing",
    "elftools": "loader: only for files vsnap refuses (elfhead.py reads programs)",
    "vsnap.snapshot": "save, resume, inspect, --save-at",
    "vsnap.check": "vsnap check",
    "vsnap.testing": "the testing API",
    "importlib.metadata": "vsnap --version, images (version.py)",
    "json": "the save channel, when a save is asked for (control.py)",
    "pdb": "pulled in by pyelftools",
    "tqdm": "progress bars (progress.py), on a terminal only",
}

# `python -m vsnap ARGV` with a hook that writes the names in sys.modules at exit, taken
# before the hook itself imports anything
PROBE = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def dump():
    names = sorted(sys.modules)
    with open(out, "w") as f:
        f.write("\\n".join(names))
atexit.register(dump)
sys.argv[0] = "vsnap"
runpy.run_module("vsnap", run_name="__main__", alter_sys=True)
"""


def probe(tmp_path, *argv: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """The modules a `python -m vsnap ARGV` process holds when it exits."""
    out = tmp_path / "modules.txt"
    proc = subprocess.run([sys.executable, "-c", PROBE, str(out), *argv], cwd=tmp_path,
                          capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    return proc, set(out.read_text().split("\n"))


def modules_after(tmp_path, *argv: str) -> set[str]:
    proc, modules = probe(tmp_path, *argv)
    assert proc.returncode == 0, proc.stderr.decode()
    return modules


def heavy_in(modules: set[str]) -> dict[str, str]:
    return {m: why for m, why in HEAVY.items()
            if any(name == m or name.startswith(m + ".") for name in modules)}


def test_plain_run_loads_no_heavy_module(builds, tmp_path):
    hello = builds.get("hello", "musl")
    modules = modules_after(tmp_path, "run", hello)
    assert "vsnap.machine" in modules and "unicorn" in modules  # the probe saw the run
    assert heavy_in(modules) == {}


@pytest.mark.parametrize("flavour", ["musl-pie", "glibc"])
def test_other_flavours_load_no_elf_library(builds, tmp_path, flavour):
    modules = modules_after(tmp_path, "run", builds.get("hello", flavour))
    assert "elftools" not in modules


def test_the_probe_sees_heavy_modules_when_they_are_used(builds, tmp_path):
    """The same probe on `vsnap --version` and on a file vsnap refuses: the modules show up,
    so the test above can fail."""
    assert "importlib.metadata" in heavy_in(modules_after(tmp_path, "--version"))
    bad = tmp_path / "arm64"
    data = bytearray(open(builds.get("hello", "musl"), "rb").read())
    data[18:20] = (183).to_bytes(2, "little")  # EM_AARCH64: pyelftools names it
    bad.write_bytes(bytes(data))
    proc, modules = probe(tmp_path, "run", str(bad))
    assert proc.returncode == 126 and b"EM_AARCH64" in proc.stderr
    assert "elftools" in heavy_in(modules)
