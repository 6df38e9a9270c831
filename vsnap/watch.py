"""`vsnap run --watch`: vsnap supervises the guest as systemd supervises a service, with
systemd's own conventions, so a server written for systemd runs unchanged (seed 000's
Watcher, with vsnap in its place).

- Socket activation (sd_listen_fds(3)): the listening sockets are made by vsnap before the
  guest starts and are its fds 3.., with LISTEN_FDS, LISTEN_PID (the guest's own pid) and
  LISTEN_FDNAMES ("listen" for each) in its environment. They are kernel-side sockets that
  vsnap holds a reference to, so they outlive every guest process.
- The fd store (sd_notify(3)): NOTIFY_SOCKET names vsnap's own datagram socket, and what
  arrives there is kept in the System (vsnap/fdstore.py).
- Restarts (systemd.service(5) Restart=always, RestartSec=100ms, StartLimitBurst=5 per
  StartLimitIntervalSec=10s, all on the virtual clock): when the guest's first process ends
  (an exit, a crash, a signal) it is started again, a fresh exec of the same program and
  arguments as a new process (a new pid) in the same System, with LISTEN_FDS counting the
  listening sockets and then the stored fds, each named by its FDNAME. The clients behind
  the stored fds stay connected: their sockets never closed. Each restart is one line on
  vsnap's log. An exit with status 0 after STOPPING=1 ends the watch (with --restart
  on-failure, any exit with status 0 does); so does the start limit, with one line and a
  non-zero status.
- KillMode=control-group: the other processes of the service (whatever the old first process
  started) are killed (SIGKILL at once: systemd sends SIGTERM first and waits up to
  TimeoutStopSec=) before the new one starts. Processes vsnap started outside the service
  (Watch.start_outside: clients in tests) are not.

Machine._run_loop asks on_init_end(machine, result) when the first process ends: this is it.
"""
from __future__ import annotations

import copy
import os
import struct
import time
from collections import deque
from dataclasses import replace

from .abi.consts import RLIMIT_STACK
from .errors import SyscallError, UsageError
from .fdstore import DEFAULT_STORE_MAX, NOTIFY_NAME, SYSTEM_CRED, FdStore
from .fdtable import OpenFile
from .sockets import SOCK_STREAM, SOMAXCONN, release_files
from .task import GUEST_PID

RESTART_SEC = 100_000_000               # RestartSec= default: 100 ms
START_LIMIT_INTERVAL = 10_000_000_000   # StartLimitIntervalSec= default: 10 s
START_LIMIT_BURST = 5                   # StartLimitBurst= default
RESTART_POLICIES = ("always", "on-failure")


def activation_env(pid: int, names: list[str]) -> list[str]:
    """What sd_listen_fds reads: nothing when there is nothing to pass (as systemd)."""
    if not names:
        return []
    return [f"LISTEN_PID={pid}", f"LISTEN_FDS={len(names)}",
            f"LISTEN_FDNAMES={':'.join(names)}"]


def _fmt_death(result) -> str:
    if result.signal is not None:
        from .abi.signals import DESCRIPTIONS
        what = DESCRIPTIONS.get(result.signal, result.signal)
        return f"was killed by {result.signal} ({what})"
    return f"exited with status {result.status}"


HOST_STOP = (2, 15, 1)      # SIGINT (Ctrl-C), SIGTERM, SIGHUP sent to vsnap from the host


class _HostQueue(deque):
    """System.host_signals of a watched run: a signal that means "stop" (Ctrl-C, kill) is
    noted, so the service it ends is not restarted, as `systemctl stop` stops a service
    with Restart=always (the signal still reaches the guest, which may shut down cleanly)."""

    def __init__(self, watch, old):
        super().__init__(old)
        self.watch = watch

    def append(self, signo: int) -> None:
        if signo in HOST_STOP and self.watch.stop_signal is None:
            self.watch.stop_signal = signo
        super().append(signo)


class Watch:
    """One watched service: its Machine, its activation sockets, its store, the policy.

        w = Watch(program, args, env=..., unix_listen=["/srv.sock"])
        m = w.machine         # run it as any machine (driver.drive); w.close() after
    """

    def __init__(self, program: str, args=(), *, env=None, argv0=None, unix_listen=(),
                 listen=(), net=None, fdstore_max: int = DEFAULT_STORE_MAX,
                 restart: str = "always", notify_name: str = NOTIFY_NAME,
                 from_checkpoint: bool = False, **machine_kw):
        from .machine import DEFAULT_ENV, Machine
        if restart not in RESTART_POLICIES:
            raise ValueError(f"restart policy {restart!r}")
        self.restart, self.fdstore_max = restart, fdstore_max
        self.from_checkpoint = from_checkpoint      # --restart-from-checkpoint
        self.since_ns = time.time_ns()              # images older than the watch are not its
        self.base_env = list(DEFAULT_ENV) if env is None else list(env)
        self.base_env = [e for e in self.base_env if e.split("=", 1)[0] not in (
            "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET")]
        self.base_env.append(f"NOTIFY_SOCKET={notify_name}")
        ports = list(listen)              # --listen's ports, in their order (net allows them)
        names = ["listen"] * (len(ports) + len(unix_listen))
        m = Machine(program, args, argv0=argv0,
                    env=self.base_env + activation_env(GUEST_PID, names), **machine_kw)
        self.machine = m
        p = m.process
        assert p.task.pid == GUEST_PID
        # what each start of the service begins with, as the first began
        self.argv = [argv0 or m.exe or os.path.basename(program), *args]
        self.program_path, self.exe, self.prog = m.program_path, m.exe, m.program
        self.task0 = replace(p.task)
        self.limits0 = copy.deepcopy(p.limits)
        self.max_memory = m.mem.limit
        from .kernel.sockfile import FAMILIES
        family = FAMILIES[1]
        self.listeners: list[tuple[str, OpenFile]] = []
        m.system.net = net
        for port in ports:
            self.listeners.append(("listen", self._inet_listener(p, port)))
        for path in unix_listen:
            self.listeners.append(("listen", self._unix_listener(p, family, path)))
        self.store = FdStore(m.system, family, limit=fdstore_max, name=notify_name,
                             log=lambda line: m.system.notice(line))
        for i, (_, f) in enumerate(self.listeners):
            p.fds.place(3 + i, f)
        self.outside: set[int] = set()   # processes vsnap started that are not the service
        self.store.accepts = lambda pid: not self.is_outside(pid)
        self.rl_begin, self.rl_num = None, 0
        self._started(m.system.clock.monotonic_ns)
        self.restarts = 0
        self.ended_by: str | None = None   # why the watch ended: "exit", "start-limit", "host"
        self.stop_signal: int | None = None
        m.system.host_signals = _HostQueue(self, m.system.host_signals)
        m.on_init_end = self.on_init_end

    def _inet_listener(self, p, port: int) -> OpenFile:
        """A listening TCP socket on the guest's 0.0.0.0:PORT, which --listen PORT makes a
        real listener on the host's 127.0.0.1:PORT too (vsnap/hostnet.py); SO_REUSEADDR, as
        systemd sets it on its stream sockets."""
        from .inetaddr import AF_INET
        from .kernel.sockcalls import new_file
        from .kernel.sockfile import FAMILIES
        family = FAMILIES[AF_INET]
        sock = family.create(p, SOCK_STREAM, 0, SYSTEM_CRED)
        sock.opts["reuseaddr"] = True
        raw = struct.pack("<H", AF_INET) + struct.pack(">H", port) + bytes(12)
        said: list[str] = []      # hostnet's notice of a host port taken: the error's line
        notice, p.sys.notice = p.sys.notice, said.append
        try:
            family.bind(p, sock, raw)
            family.listen(p, sock, SOMAXCONN)
        except SyscallError as e:
            sock.release()
            raise UsageError(said[0].split("; the guest")[0] if said else
                             f"vsnap: --listen {port}: cannot listen there ({e})") from None
        finally:
            p.sys.notice = notice
        f = new_file(p, sock, 0)
        f.refs += 1
        return f

    def _unix_listener(self, p, family, path: str) -> OpenFile:
        """A listening AF_UNIX stream socket at `path` in the sandbox ("@NAME": abstract),
        made as systemd makes a ListenStream= socket (Backlog=SOMAXCONN), held by vsnap."""
        from .kernel.sockcalls import new_file
        sock = family.create(p, SOCK_STREAM, 0, SYSTEM_CRED)
        if path.startswith("@"):
            name = ("abstract", b"\0" + path[1:].encode())
        else:
            name = ("path", os.fsencode(path))
        try:
            family.bind(p, sock, name)
        except SyscallError as e:
            from .abi.errno import NAMES
            raise UsageError(f"vsnap: --watch-socket {path}: cannot bind it in the sandbox "
                             f"({NAMES.get(e.errno, e.errno)}: {e})") from None
        sock.listen(SOMAXCONN)
        f = new_file(p, sock, 0)
        f.refs += 1                   # vsnap's own reference: it outlives every guest process
        return f

    # -- the start limit ---------------------------------------------------------------------

    def _started(self, now: int) -> bool:
        """systemd's ratelimit_below: a window from its first start; False past the burst."""
        if self.rl_begin is None or now - self.rl_begin > START_LIMIT_INTERVAL:
            self.rl_begin, self.rl_num = now, 0
        if self.rl_num < START_LIMIT_BURST:
            self.rl_num += 1
            return True
        return False

    # -- the first process ended ---------------------------------------------------------------

    def on_init_end(self, m, result) -> bool:
        """The service's main process ended: start it again (True), or end the watch."""
        system = m.system
        old = system.init
        death = _fmt_death(result)
        self.store.sweep()
        if result.signal is None and result.status == 0 and (
                self.restart == "on-failure" or self.store.stopping):
            self.ended_by = "exit"
            why = "after STOPPING=1" if self.store.stopping else "(--restart on-failure)"
            system.notice(f"vsnap: --watch: the guest (pid {old.task.pid}) exited with "
                          f"status 0 {why}; the watch ends")
            return False
        if self.stop_signal is not None:
            from .abi.signals import NAMES
            self.ended_by = "host"
            system.notice(f"vsnap: --watch: the guest (pid {old.task.pid}) {death} after "
                          f"{NAMES.get(self.stop_signal, self.stop_signal)} from the host (as "
                          f"systemctl stop); the watch ends")
            return False
        clock = system.clock
        at = clock.monotonic_ns + RESTART_SEC
        if not self._started(at):
            self.ended_by = "start-limit"
            line = (f"vsnap: --watch: the guest (pid {old.task.pid}) {death}, and it was "
                    f"started {START_LIMIT_BURST} times within "
                    f"{START_LIMIT_INTERVAL // 10**9} s (StartLimitBurst="
                    f"{START_LIMIT_BURST}, StartLimitIntervalSec="
                    f"{START_LIMIT_INTERVAL // 10**9}s): not restarting it")
            result.message = line if result.message is None else result.message + "\n" + line
            if result.status == 0:
                result.status = 1
            return False
        image = None
        if self.from_checkpoint:
            from .watchimage import image_path
            image = image_path(old, self.since_ns)
        killed = self._retire(m, old, result)
        clock.monotonic_ns = at
        self.store.sweep()
        group = f"; killed {len(killed)} other process{'es' if len(killed) != 1 else ''} " \
                f"of it (KillMode=control-group)" if killed else ""
        head = f"vsnap: --watch: the guest (pid {old.task.pid}) {death}{group}; restarted as pid"
        if image is not None:
            resumed = self._resume(m, *image)
            if resumed is not None:
                self.restarts += 1
                system.notice(f"{head} {resumed}")
                return True
        names = [n for n, _ in self.listeners] + [n for n, _ in self.store.items]
        new = self._start(m)
        self.restarts += 1
        system.notice(f"{head} {new.task.pid} with LISTEN_FDS={len(names)}"
                      + (f" ({':'.join(names)})" if names else "")
                      + (f" (not from a checkpoint: {self.fresh_why})" if image else ""))
        return True

    def _resume(self, m, host: str | None, guest: str) -> str | None:
        """--restart-from-checkpoint: the service from its last image, as a new process;
        what the restart line says after "restarted as pid" (None: start from scratch,
        self.fresh_why says why)."""
        from . import watchimage
        if host is None:
            self.fresh_why = guest
            return None
        m2, why = watchimage.load(m, host)
        if m2 is None:
            self.fresh_why = f"{guest}: {why}"
            return None
        self.store.new_start()
        p = self.spawn(m, self.prog, self.program_path, self.exe, self.argv, None)
        live = [f for _, f in self.listeners] + [f for _, f in self.store.items]
        replaced, hung = watchimage.become(p, m2, live)
        known = {e.file.ops.sock.ino for e in p.fds.fds.values()
                 if e.file.kind == "socket" and e.file.ops is not None}
        gone = watchimage.forget(self.store, known)
        system = m.system
        system.processes[p.task.pid] = p
        system.init = p
        m._switch(p)
        return (f"{p.task.pid} from {guest}: {replaced} live socket"
                f"{'s' if replaced != 1 else ''} put back"
                + (f", {hung} saved connection{'s' if hung != 1 else ''} closed (gone since)"
                   if hung else "")
                + (f", stored fds the image does not know closed ({':'.join(gone)})"
                   if gone else ""))

    def _retire(self, m, old, result) -> list[int]:
        """The old main process is gone (vsnap, its parent, collects it at once), and the
        rest of the service with it (KillMode=control-group): the pids killed."""
        from .sched import ended
        system = m.system
        pid = old.task.pid
        ended(system, old, result)
        system.table.reap(pid)
        system.child_times.pop(pid, None)
        killed = []
        for q in sorted(system.processes):
            if self.is_outside(q):
                continue
            ended(system, system.processes[q], m._killed(9))
            killed.append(q)
        return killed

    def _start(self, m):
        """The service again: a new process (a new pid) running the program from its
        entry, fds 0-2 the console, 3.. the listeners then the store, its activation
        environment naming them."""
        names = [n for n, _ in self.listeners] + [n for n, _ in self.store.items]
        files = [f for _, f in self.listeners] + [f for _, f in self.store.items]
        self.store.new_start()
        p = self.spawn(m, self.prog, self.program_path, self.exe, self.argv, None)
        envp = self.base_env + activation_env(p.task.pid, names)
        for i, f in enumerate(files):
            p.fds.place(3 + i, f)
        self._exec(m, p, self.prog, self.exe, self.argv, envp)
        system = m.system
        system.init = p
        m._switch(p)
        return p

    def spawn(self, m, prog, host, guest, argv, envp):
        """A new process of vsnap's (999's child, its own group) with the console as fds
        0-2, the first process's identity, cwd and limits, on new hardware. With `envp` it
        is exec'd now; else the caller places its fds and calls _exec."""
        from .hardware import new_hardware
        from .kernel import Process
        system = m.system
        pid = system.table.spawn()
        cpu, mem = new_hardware(self.max_memory)
        p = Process(system, cpu, mem)
        p.task = replace(self.task0, pid=pid, pgid=pid, exit_status=None, exit_signal=None)
        p.limits = copy.deepcopy(self.limits0)
        for fd, stream in enumerate(("stdin", "stdout", "stderr")):
            p.fds.install(OpenFile("console", f"<{stream}>", 0 if fd == 0 else 1,
                                   stream=stream))
        p.exe_host, p.exe_guest, p.program = host, guest, prog
        p.task.exe = guest or ""
        if envp is not None:
            self._exec(m, p, prog, guest, argv, envp)
        return p

    def _exec(self, m, p, prog, guest, argv, envp) -> None:
        from .cpu import HWCAP
        from .loader import build_stack, load_segments
        from .sched import wire
        load_segments(prog, p.mem, guest or os.path.basename(argv[0]))
        sp = build_stack(prog, p.mem, argv, envp, m.system.random.bytes(16), HWCAP,
                         guest or argv[0], p.limits.soft(RLIMIT_STACK), layout=p.exec)
        p.cpu.write_many({"rsp": sp, "rip": prog.base + prog.entry, "rflags": 0x202})
        p.cpu.watch_rdtsc(prog.rdtsc_candidates())
        wire(p)
        m.system.processes[p.task.pid] = p

    def is_outside(self, pid: int) -> bool:
        """Is pid one of the processes vsnap started beside the service, or their child?"""
        table = self.machine.system.table
        while pid is not None and pid not in self.outside:
            proc = table.get(pid)
            pid = proc.ppid if proc is not None else None
        return pid is not None

    def start_outside(self, program: str, args=(), env=None) -> int:
        """Start another program beside the service, not part of it (a client, in tests):
        a restart does not kill it. Its pid."""
        from .loader import read_program
        from .machine import DEFAULT_ENV
        m = self.machine
        host = os.path.realpath(program)
        prog = read_program(host)
        guest = m.vfs.guest_path_of_host(host)
        argv = [guest or os.path.basename(program), *args]
        p = self.spawn(m, prog, host, guest, argv, list(DEFAULT_ENV if env is None else env))
        self.outside.add(p.task.pid)
        m.system.forked = True
        return p.task.pid

    def close(self) -> None:
        """The watch is over: the store and the listening sockets are let go."""
        self.store.close()
        listeners, self.listeners = self.listeners, []
        release_files([f for _, f in listeners], self.machine.system.locks)
