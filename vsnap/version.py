"""vsnap's version: the installed package's (pyproject.toml's). `vsnap --version` prints it and
every image's manifest records it (as "vsnap"), so a bug report can name both.

Looked up at first use, not at import: importlib.metadata (and the email parser it pulls in)
costs about 15 ms, a tenth of a `vsnap run hello`, and a plain run never asks for the version.
"""
from __future__ import annotations

import functools


@functools.cache
def version() -> str:
    from importlib import metadata
    try:
        return metadata.version("vsnap")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> str:
    # `from vsnap.version import __version__` still works, and looks the version up then
    if name == "__version__":
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
