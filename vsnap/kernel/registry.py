"""The one explicit system call table: number -> handler, with how to show its arguments.

Each handler module decorates its functions with @syscall("name", "argument kinds"); the
kernel package imports every handler module once, so this table is complete before a guest
runs. The argument kinds drive --strace: fd, int, hex, ptr, path, buf (bytes at a pointer,
whose length is the next argument), size, oflags, mode, str.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from ..abi import syscalls


@dataclass(frozen=True)
class Entry:
    number: int
    name: str
    handler: Callable
    nargs: int
    kinds: tuple[str, ...]


SYSCALLS: dict[int, Entry] = {}


def syscall(name: str, kinds: str = ""):
    """Register the decorated function as the handler of system call `name`."""
    number = syscalls.NUMBERS[name]

    def register(fn):
        # the code object's count, not inspect.signature: this runs for every handler at
        # every start, and signature() over 150 handlers cost a few ms of `vsnap run hello`
        code = fn.__code__
        assert not code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS) \
            and not code.co_kwonlyargcount, f"{name}: plain positional arguments only"
        nargs = code.co_argcount - 1  # minus the kernel
        kind_list = tuple(kinds.split()) if kinds else ("int",) * nargs
        assert len(kind_list) == nargs, f"{name}: {nargs} arguments, kinds {kind_list}"
        assert number not in SYSCALLS, f"{name} registered twice"
        SYSCALLS[number] = Entry(number, name, fn, nargs, kind_list)
        return fn

    return register
