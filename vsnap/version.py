"""vsnap's version: the installed package's (pyproject.toml's). `vsnap --version` prints it and
every image's manifest records it (as "vsnap"), so a bug report can name both."""
from __future__ import annotations


def version() -> str:
    from importlib import metadata
    try:
        return metadata.version("vsnap")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


__version__ = version()
