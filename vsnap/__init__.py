"""vsnap: a teaching sandbox for process checkpoint/restart.

Real static x86-64 Linux programs run in the Unicorn CPU emulator; a small Unix kernel written
in Python serves their system calls inside a sandbox directory, deterministically.
"""
from .errors import VsnapError
from .kernel import Capture, Console
from .machine import Machine, RunResult

__all__ = ["Capture", "Console", "Machine", "RunResult", "VsnapError", "__version__", "run"]


def run(program: str, *args: str, root: str = ".", stdin: bytes = b"",
        max_instructions: int | None = None, count: bool = False, **kw) -> tuple:
    """Run a guest program to the end, capturing its output: (RunResult, stdout, stderr).
    `max_instructions` stops a runaway guest; `count` counts its instructions. vsnap's own
    notices (an unimplemented call...) go to `log=` (stderr by default; a list collects them,
    False drops them: see vsnap/diag.py); result.refused counts what was refused."""
    cap = Capture(stdin)
    m = Machine(program, args, root=root, console=cap.console, **kw)
    result = m.run(max_instructions=max_instructions, count=count)
    return result, bytes(cap.out), bytes(cap.err)


def __getattr__(name: str):
    # vsnap.__version__ is the package metadata's (images record it too), looked up at first
    # use: see version.py
    if name == "__version__":
        from .version import version
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
