"""vsnap: a teaching sandbox for process checkpoint/restart.

Real static x86-64 Linux programs run in the Unicorn CPU emulator; a small Unix kernel written
in Python serves their system calls inside a sandbox directory, deterministically.
"""
from .errors import VsnapError

__all__ = ["Capture", "Console", "Machine", "RunResult", "VsnapError", "__version__", "run"]

# The public names are loaded at first use (PEP 562), not by `import vsnap`: the CLI imports
# vsnap.cli first and loads the machine only for the commands that run one (start-up, see
# README), and `vsnap build` or `vsnap save PID` never load it.
_LAZY = {"Capture": "kernel", "Console": "kernel", "Machine": "machine", "RunResult": "machine"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if name == "__version__":
        # the package metadata's (images record it too), looked up at first use: version.py
        from .version import version
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def run(program: str, *args: str, root: str = ".", stdin: bytes = b"",
        max_instructions: int | None = None, count: bool = False, **kw) -> tuple:
    """Run a guest program to the end, capturing its output: (RunResult, stdout, stderr).
    `max_instructions` stops a runaway guest; `count` counts its instructions. vsnap's own
    notices (an unimplemented call...) go to `log=` (stderr by default; a list collects them,
    False drops them: see vsnap/diag.py); result.refused counts what was refused."""
    from .kernel import Capture
    from .machine import Machine
    cap = Capture(stdin)
    m = Machine(program, args, root=root, console=cap.console, **kw)
    result = m.run(max_instructions=max_instructions, count=count)
    return result, bytes(cap.out), bytes(cap.err)
