"""The guests of vsnap's own tests, as vsnap.testing Guests (the logic lives there)."""
from __future__ import annotations

import functools
from pathlib import Path

from vsnap.build import build
from vsnap.testing import Guest, fresh_root, measure, snapshot_files, start  # noqa: F401
from vsnap.kernel import Capture  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "programs" / "data" / "sample.txt"

# every good program in programs/, with arguments that keep the run short
PROGRAMS = {
    "hello": [],
    "counter": ["3", "counter.log"],
    "wordfreq": ["sample.txt", "5"],
    "primes": ["20000", "1"],
    "malloc_stress": [],
    "rewrite": ["records.dat"],
    "listdir": ["."],
    "syscalls": ["300"],
    "compute": ["200000"],
    "signals": [],
}


@functools.lru_cache(maxsize=None)
def program(name: str) -> str:
    return build(str(REPO / "programs" / f"{name}.c"))


@functools.lru_cache(maxsize=None)
def guest(name: str) -> Guest:
    return Guest(program(name), tuple(PROGRAMS[name]), {"sample.txt": SAMPLE.read_bytes()})


@functools.lru_cache(maxsize=None)
def measured(name: str, base: str):
    return measure(guest(name), base)


def length(name: str, base: str) -> int:
    return measured(name, base).length


def root_for(base: Path, name: str = "counter") -> Path:
    return fresh_root(guest(name), base)
