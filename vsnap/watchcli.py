"""The command line of `vsnap run --watch` (vsnap/watch.py is the supervisor itself): its
options, and the Watch they make. Kept apart from cli.py, and light to import: the watch and
its store are loaded only when --watch is given.
"""
from __future__ import annotations

from .errors import UsageError


def add_options(p, count0) -> None:
    """`vsnap run`'s --watch and the options that go with it."""
    p.add_argument("--watch", action="store_true", help="supervise the guest as systemd "
                   "would (vsnap/watch.py): socket activation (each --listen PORT a "
                   "listening socket passed as fd 3..), the fd store at $NOTIFY_SOCKET, a "
                   "restart when it ends (the stored fds handed back)")
    p.add_argument("--watch-socket", action="append", default=[], metavar="PATH",
                   help="with --watch: an AF_UNIX listening socket at PATH in the sandbox "
                   "(@NAME: abstract) passed to the guest as fd 3.. (repeatable)")
    p.add_argument("--fdstore-max", type=count0, default=None, metavar="N",
                   help="with --watch: FileDescriptorStoreMax (default 64)")
    p.add_argument("--restart-from-checkpoint", action="store_true", help="with --watch: "
                   "restart the guest from the last image it saved to its checkpoint "
                   "template (sys_checkpoint, SIGCKPT), the live sockets put back in place "
                   "of the saved ones (vsnap/watchimage.py)")
    p.add_argument("--restart", choices=("always", "on-failure"), default=None,
                   help="with --watch: Restart= (default always: an exit 0 ends the watch "
                   "only after STOPPING=1)")


def from_args(a, program: str, env: list, net):
    """`vsnap run --watch`: the Watch that makes the machine (vsnap/watch.py), or None."""
    if not a.watch:
        used = [o for o, v in (("--watch-socket", a.watch_socket),
                               ("--fdstore-max", a.fdstore_max), ("--restart", a.restart),
                               ("--restart-from-checkpoint", a.restart_from_checkpoint or None))
                if v not in (None, [])]
        if used:
            raise UsageError(f"vsnap: {used[0]} is an option of --watch; add --watch")
        return None
    if a.save_at or a.save_every or a.exit:
        raise UsageError("vsnap: --watch with --save-at/--save-every/--exit: a watched run "
                         "cannot be saved yet (its fd store is not in images)")
    from .fdstore import DEFAULT_STORE_MAX
    from .hostnet import parse_listen
    from .watch import Watch
    limit = DEFAULT_STORE_MAX if a.fdstore_max is None else a.fdstore_max
    if limit > 1000:
        raise UsageError(f"vsnap: --fdstore-max {limit}: at most 1000 (the guest's fds "
                         f"3.. must stay under RLIMIT_NOFILE, 1024)")
    return Watch(program, a.args, argv0=a.program if a.program.endswith(".c") else None,
                 env=env, unix_listen=a.watch_socket, net=net, fdstore_max=limit,
                 listen=[parse_listen(t) for t in a.listen or ()],
                 restart=a.restart or "always", from_checkpoint=a.restart_from_checkpoint,
                 root=a.root, seed=a.seed,
                 max_memory=a.max_memory, max_processes=a.max_processes)
