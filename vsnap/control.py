"""The channel `vsnap save PID` uses to reach a running `vsnap run`.

A Unix socket per running vsnap, in a private folder: not a signal, because signals sent to
vsnap's pid belong to the guest (Ctrl-C, kill -USR1 reach it as they would reach a real process),
and a save request must never be mistaken for one. A thread in the running vsnap accepts one
JSON request at a time, asks the CPU to stop (Unicorn's emu_stop works from another thread and
interrupts even a loop with no system calls), waits for the main loop to save, and answers.
"""
from __future__ import annotations

import os
import socket
import threading

from .errors import VsnapError

RETRY_STOP_S = 0.01


class SaveFailed(VsnapError):
    pass


def runtime_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = os.path.join(base, "vsnap") if base else f"/tmp/vsnap-{os.getuid()}"
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def socket_path(pid: int) -> str:
    return os.path.join(runtime_dir(), f"{pid}.sock")


class Request:
    def __init__(self, path: str, stop: bool):
        self.path, self.stop = path, stop
        self.done = threading.Event()
        self.sent = threading.Event()  # the answer has left: a run that stops may now end
        self.reply: dict = {}


class ControlServer:
    """Listens for save requests; `pending` is the request the main loop must serve."""

    def __init__(self, cpu):
        self.cpu = cpu
        self.path = socket_path(os.getpid())
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(4)
        self.pending: Request | None = None
        self.closed = False
        self.wake = None  # wakes a main loop waiting in real time on host sockets
        threading.Thread(target=self._serve, daemon=True, name="vsnap-control").start()

    def _serve(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            import json  # here: a run that is never asked to save need not load it
            with conn:
                try:
                    raw = conn.makefile("rb").readline(1 << 16)
                    msg = json.loads(raw)
                    req = Request(str(msg["path"]), bool(msg.get("exit")))
                except (ValueError, KeyError, TypeError, OSError):
                    continue
                self.pending = req
                if self.wake is not None:
                    try:
                        self.wake()
                    except OSError:
                        pass
                # the main loop may be between two emu_start calls, where a stop request is
                # forgotten: ask again until it has taken the request
                while not req.done.wait(RETRY_STOP_S):
                    if self.closed:
                        req.reply = {"ok": False, "message": "the guest ended first"}
                        break
                    self.cpu.stop()
                try:
                    conn.sendall(json.dumps(req.reply).encode() + b"\n")
                except OSError:
                    pass
                finally:
                    req.sent.set()

    def take(self) -> Request | None:
        req, self.pending = self.pending, None
        return req

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
            os.unlink(self.path)
        except OSError:
            pass


def request_save(pid: int, path: str, stop: bool, timeout: float = 30.0) -> dict:
    """Ask the `vsnap run` with this pid to save its guest to `path`; its answer."""
    import json
    sp = socket_path(pid)
    if not os.path.exists(sp):
        raise SaveFailed(f"vsnap: no vsnap run with pid {pid} is listening ({sp} is missing); "
                         f"check the pid with ps")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sp)
        s.sendall(json.dumps({"path": os.path.abspath(path), "exit": stop}).encode() + b"\n")
        raw = s.makefile("rb").readline(1 << 16)
    except OSError as e:
        raise SaveFailed(f"vsnap: cannot reach vsnap run {pid} ({e}); is it still running?")
    finally:
        s.close()
    try:
        return json.loads(raw)
    except ValueError:
        raise SaveFailed(f"vsnap: vsnap run {pid} ended before it answered") from None
