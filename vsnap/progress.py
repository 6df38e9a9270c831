"""Progress on a terminal for long work: `vsnap check`'s examples, and counted runs (--stats,
--max-instructions, --save-at, --save-every), which can take minutes.

A bar is drawn on stderr only when stderr is a terminal and --quiet is not given, and only
once the work has gone on for DELAY_S: a short run prints nothing more than before, and
anything that is not a terminal (a pipe, a log file, CI, the tests) gets exactly the bytes it
got before. The bar is cleared when the work ends, before vsnap's last lines.

tqdm draws it: small, no dependencies of its own, long maintained, thread-safe, and it knows
terminals (width, rates, units). It is imported only when a bar is about to be drawn, never by
a plain `vsnap run` (start-up: README, tests/test_startup.py).

While a bar is up, whatever else goes to the terminal (the guest's output, vsnap's notices and
--strace lines) clears it first and is written under the same lock; the bar comes back at the
next tick. So the bar never splits a line of the guest's output.
"""
from __future__ import annotations

import sys
import threading

DELAY_S = 0.5    # work shorter than this shows no bar at all
TICK_S = 0.2     # how often a counted run's bar reads the instruction count


def wanted(quiet: bool = False, stream=None) -> bool:
    """A bar goes to `stream` (stderr) only if it is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return not quiet and stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real file
        return False


def _bar(stream, **kw):
    from tqdm import tqdm
    return tqdm(file=stream, delay=DELAY_S, leave=False, dynamic_ncols=True, disable=False,
                **kw)


class _Guard:
    """Writes that share the terminal with a bar: clear the bar if it is up, then write,
    under the bar's lock (the tick thread draws under it too)."""

    def __init__(self, bar):
        self.bar = bar
        self._cleared_at = float("-inf")  # the bar's last drawing when it was last cleared

    def _up(self) -> bool:
        bar = self.bar  # drawn at least once (past its delay), and since the last clear
        return (bar.last_print_t >= bar.start_t + bar.delay
                and bar.last_print_t != self._cleared_at)

    def around(self, write):
        bar = self.bar

        def guarded(*args, **kw):
            with bar.get_lock():
                if self._up():
                    bar.clear(nolock=True)
                    bar.fp.flush()
                    self._cleared_at = bar.last_print_t
                return write(*args, **kw)
        return guarded


class Examples(_Guard):
    """vsnap check: examples done of the total (more while hypothesis shrinks a failure), the
    rate, and the checkpoints of the example running now."""

    def __init__(self, total: int, stream=None):
        super().__init__(_bar(sys.stderr if stream is None else stream, total=total,
                              unit="example", desc="vsnap check"))

    def __call__(self, done: int, total: int, points) -> None:
        """check.check's progress callback: example `done` starts, checkpointed at `points`."""
        bar = self.bar
        with bar.get_lock():
            if done > total and bar.total != done:
                bar.total = done  # shrinking a failure: more examples than asked for
                bar.set_description_str("vsnap check (shrinking)", refresh=False)
            bar.set_postfix_str("saves at " + " ".join(f"{k:,}" for k in points),
                                refresh=False)
            bar.update(done - 1 - bar.n)  # the ones before this have finished

    def close(self) -> None:
        self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Instructions(_Guard):
    """A counted run: the current instruction, the rate, and the way to `total` when there is
    one (the budget of --max-instructions). A thread reads the machine's count every TICK_S:
    the run itself does no work for the bar."""

    def __init__(self, machine, total: int | None = None, stream=None):
        super().__init__(_bar(sys.stderr if stream is None else stream, total=total,
                              unit=" instructions", unit_scale=True, desc="vsnap"))
        self.machine = machine
        self.note = ""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True,
                                        name="vsnap-progress")
        self._thread.start()

    def _tick(self) -> None:
        bar, cpu = self.bar, self.machine.cpu
        while not self._done.wait(TICK_S):
            n = cpu.instructions
            if n is None:  # counting off for a moment (between legs of a --save-at run)
                continue
            with bar.get_lock():
                if self.note:
                    bar.set_postfix_str(self.note, refresh=False)
                bar.update(n - bar.n)  # draws, once DELAY_S has passed

    def close(self) -> None:
        """Stop ticking and take the bar off the terminal (again: a no-op)."""
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
        self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
