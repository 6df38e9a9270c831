"""vsnap: a teaching sandbox for process checkpoint/restart.

Real static x86-64 Linux programs run in the Unicorn CPU emulator; a small Unix kernel written
in Python serves their system calls inside a sandbox directory, deterministically.
"""
from .errors import VsnapError
from .kernel import Capture, Console
from .machine import Machine, RunResult

__all__ = ["Capture", "Console", "Machine", "RunResult", "VsnapError", "run"]
__version__ = "0.1.0"


def run(program: str, *args: str, root: str = ".", stdin: bytes = b"",
        max_instructions: int | None = None, count: bool = False, **kw) -> tuple:
    """Run a guest program to the end, capturing its output: (RunResult, stdout, stderr).
    `max_instructions` stops a runaway guest; `count` counts its instructions."""
    cap = Capture(stdin)
    m = Machine(program, args, root=root, console=cap.console, **kw)
    result = m.run(max_instructions=max_instructions, count=count)
    return result, bytes(cap.out), bytes(cap.err)
