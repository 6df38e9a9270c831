"""Where vsnap's own lines go: the notices about a guest (an unimplemented system call, a
refused option), confirmations and warnings. They are vsnap's, not the guest's, so they must
be keepable apart from the guest's stderr: a program's stderr under vsnap should look as it
does on Linux.

    Machine(..., log=None)        sys.stderr, as a command-line tool would (the default)
    Machine(..., log=[])          each line appended to the list (notebooks, tests)
    Machine(..., log=print)       any callable taking one line
    Machine(..., log=open(...))   anything with .write (a line and a newline each time)
    Machine(..., log=False)       nowhere
"""
from __future__ import annotations

import sys


def sink(log) -> callable:
    """A callable(line) for a `log=` value (see the module docstring)."""
    if log is None:
        return lambda line: sys.stderr.write(line + "\n")  # looked up each time: capturable
    if log is False:
        return lambda line: None
    if isinstance(log, list):
        return log.append
    if hasattr(log, "write"):
        def write(line: str) -> None:
            log.write(line + "\n")
            if hasattr(log, "flush"):
                log.flush()
        return write
    if callable(log):
        return log
    raise TypeError(f"log= takes None, False, a list, a callable or a file, not "
                    f"{type(log).__name__}")


def refused_summary(refused: dict[str, int]) -> str | None:
    """One line naming what the guest asked for and vsnap refused, with how often."""
    if not refused:
        return None
    items = sorted(refused.items(), key=lambda kv: (-kv[1], kv[0]))
    return "vsnap: refused: " + ", ".join(f"{what} x{n}" for what, n in items)
