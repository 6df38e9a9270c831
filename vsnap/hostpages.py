"""Host memory for a new Unicorn engine: its translation buffer on small pages at first.

Unicorn allocates a translation buffer of 1 GiB per engine (reserved, not committed) and asks
for transparent huge pages on it (MADV_HUGEPAGE); writing its prologue at engine start then
makes the host zero a whole 2 MiB page, about 0.3 ms, up to 1 ms on a busy host (perf: 40% of
starting an engine in clear_page_erms). A guest of a few thousand instructions translates a
few kilobytes of code, and vsnap check starts two engines per example. So the engine starts
with huge pages off for this process (prctl PR_SET_THP_DISABLE, checked by Linux at each
page fault): the first 2 MiB of the buffer take small pages as they are touched, and the
rest of it, for long runs that translate more, still gets huge pages.
"""
from __future__ import annotations

import contextlib
import ctypes
import sys

PR_SET_THP_DISABLE, PR_GET_THP_DISABLE = 41, 42

_prctl = None
if sys.platform.startswith("linux"):
    try:
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        _prctl = None


@contextlib.contextmanager
def small_pages():
    """No new transparent huge pages for this process inside the block (the setting the
    process had is put back after it)."""
    if _prctl is None:
        yield
        return
    was = _prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)
    changed = was == 0 and _prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0
    try:
        yield
    finally:
        if changed:
            _prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0)
