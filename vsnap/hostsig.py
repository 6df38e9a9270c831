"""Signals sent to a running `vsnap run` from the host reach the guest, as they would reach a
real process: Ctrl-C is SIGINT for the guest, `kill -USR1 <vsnap's pid>` is its SIGUSR1.

The signals are blocked in every thread of vsnap and taken by one thread with sigwait, so the
Python main thread never runs a handler in the middle of an emulated instruction. The thread
queues the signal for the kernel and stops the CPU (which interrupts even a loop without system
calls); the main loop delivers it. `vsnap save` does not use a signal at all (control.py), so
the two can never be confused.
"""
from __future__ import annotations

import os
import select
import signal
import threading

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT, signal.SIGALRM,
             signal.SIGRTMAX - 2)  # `vsnap save PID --signal`: the guest's SIGCKPT
RETRY_S = 0.01


class HostSignals:
    def __init__(self, system, cpu):
        self.system, self.cpu = system, cpu
        self.arrived = threading.Condition()
        self.closed = False
        # Host and guest numbers agree on x86-64 Linux, the only host the numbers are used
        # on; elsewhere we translate by name.
        from .abi.signals import NUMBERS
        def name(s) -> str:
            try:
                return signal.Signals(s).name
            except ValueError:  # a real-time signal between SIGRTMIN and SIGRTMAX
                return "SIGCKPT" if int(s) == int(signal.SIGRTMAX) - 2 else ""
        self.to_guest = {int(s): NUMBERS.get(name(s), int(s)) for s in FORWARDED}
        self.old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        system.wait_for_host_signal = self.wait
        # a read of the terminal waits on stdin and on this pipe, so a signal interrupts it
        self.wake_r, self.wake_w = os.pipe()
        system.host_wake_fd = self.wake_r  # hostnet.wait_parked wakes on it too
        if system.console.wait is None and system.console.host_stdin:
            system.console.wait = self.wait_for_stdin
        threading.Thread(target=self._take, daemon=True, name="vsnap-signals").start()

    def _take(self) -> None:
        while not self.closed:
            signo = signal.sigwait(FORWARDED)
            if self.closed:
                return
            with self.arrived:
                self.system.host_signals.append(self.to_guest[int(signo)])
                self.arrived.notify_all()
            os.write(self.wake_w, b"!")
            # the main loop may be between two emu_start calls: ask until it has taken it
            while self.system.host_signals and not self.closed:
                self.cpu.stop()
                with self.arrived:
                    self.arrived.wait(RETRY_S)

    def wait(self) -> bool:
        """Block the main thread until a host signal arrives (pause() with no timer)."""
        with self.arrived:
            while not self.system.host_signals and not self.closed:
                self.arrived.wait()
        return bool(self.system.host_signals)

    def wait_for_stdin(self, timeout: float | None) -> str:
        """Console.wait for vsnap's own stdin: "data", "signal" or "timeout"."""
        if self.system.host_signals:
            return "signal"
        ready, _, _ = select.select([0, self.wake_r], [], [], timeout)
        if self.wake_r in ready:
            os.read(self.wake_r, 4096)
            return "signal"
        return "data" if ready else "timeout"

    def close(self) -> None:
        self.closed = True
        with self.arrived:
            self.arrived.notify_all()
        signal.pthread_sigmask(signal.SIG_SETMASK, self.old_mask)
        for fd in (self.wake_r, self.wake_w):
            os.close(fd)
