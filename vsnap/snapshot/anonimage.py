"""eventfd and epoll descriptions in an image (fds.json's descriptions, kinds "eventfd" and
"epoll"), as CRIU keeps them (its eventfd and eventpoll entries):

* an eventfd description carries its counter: {"eventfd": {"count", "semaphore", "ident"}};
* an epoll description carries its interest list and ready list: {"epoll": {"items":
  [[description, fd, events, data, order], ...], "ready": [item index, ...]}}. Each item
  names the description it watches by its index in fds.json and the fd it was added under
  (which may be closed now: epoll keys items by both); `events` keeps what Linux keeps (a
  fired one-shot item has only its mode bits left); `order` ranks every item of the image
  by when it was added, which is the order a file's wake reaches the epolls watching it.
  The ready list is what an edge-triggered item has seen: an item on it was woken since
  it was last reported.

Read back from an untrusted image, an item must watch another description of the image
that epoll can watch, once per (description, fd); the epolls inside epolls must form no
cycle and nest at most EP_MAX_NESTS deep. Restore makes every description first and links
the items after (restore_links), registering them with the wait queues of what they watch.
"""
from __future__ import annotations

from ..epollset import MAX_NESTS, EpollSet, Item
from ..eventcount import EventCounter
from ..fdtable import MAX_FDS
from .inodes import CannotSave

MAX_ITEMS = 1 << 16
WATCHABLE = {"pipe", "eventfd", "epoll", "console", "fifo", "socket"}  # what kernel/epoll.pollable allows


# eventfd ---------------------------------------------------------------------------------------

def save_eventfd(f, ctx) -> dict:
    return {"eventfd": f.ops.counter.saved()}


def parse_eventfd(r, raw, path, ctx) -> dict:
    rec = r.key(raw, "eventfd", path)
    try:
        EventCounter.load(rec)
    except ValueError as e:
        r.fail(path + ".eventfd", str(e))
    if raw["flags"] & 3 != 2:
        r.fail(path + ".flags", "an eventfd is open for reading and writing")
    return {"eventfd": rec}


def restore_eventfd(f, d, ctx) -> None:
    from ..kernel.eventfd import EventfdOps
    counter = EventCounter.load(d["eventfd"])
    system = ctx.m.system
    system.eventfd_ids.add(counter.ident)
    f.ops = EventfdOps(counter, system)


# epoll -----------------------------------------------------------------------------------------

def save_epoll(f, ctx) -> dict:
    ep = f.ops.ep
    ep.purge()  # items whose description was released are gone, as on Linux
    items = list(ep.items.values())
    out = []
    for item in items:
        index = next((i for i, d in enumerate(ctx.descs) if d is item.file), None)
        if index is None:
            raise CannotSave(f"vsnap: cannot save this guest: an epoll watches fd {item.fd}, "
                             f"a {item.file.kind} no process holds (in flight?), which vsnap "
                             f"cannot checkpoint yet")
        out.append([index, item.fd, item.events, item.data, item.order])
    return {"epoll": {"items": out,
                      "ready": [items.index(i) for i in ep.ready if i in items]}}


def rank_orders(records: list) -> None:
    """Renumber the items' `order` over the whole image 0, 1, 2...: the ranks are what counts,
    and the image's bytes stay the same from run to run."""
    items = [it for rec in records if rec["kind"] == "epoll" for it in rec["epoll"]["items"]]
    for rank, it in enumerate(sorted(items, key=lambda it: it[4])):
        it[4] = rank


def parse_epoll(r, raw, path, ctx) -> dict:
    rec = r.obj(r.key(raw, "epoll", path), path + ".epoll")
    items, seen = [], set()
    for i, it in enumerate(r.list(r.key(rec, "items", path + ".epoll"), path + ".items",
                                  MAX_ITEMS)):
        where = f"{path}.epoll.items[{i}]"
        if not isinstance(it, list) or len(it) != 5:
            r.fail(where, "expected [description, fd, events, data, order]")
        desc = r.int(it[0], where, 0, MAX_FDS - 1)
        fd = r.int(it[1], where, 0, MAX_FDS - 1)
        if (desc, fd) in seen:
            r.fail(where, f"description {desc} with fd {fd} is registered twice")
        seen.add((desc, fd))
        items.append([desc, fd, r.int(it[2], where, 0, 0xFFFFFFFF),
                      r.int(it[3], where, 0, (1 << 64) - 1), r.int(it[4], where, 0)])
    ready = [r.int(x, path + ".epoll.ready", 0, max(0, len(items) - 1))
             for x in r.list(r.key(rec, "ready", path + ".epoll"), path + ".ready",
                             MAX_ITEMS)]
    if len(set(ready)) != len(ready) or (ready and not items):
        r.fail(path + ".epoll.ready", "an item twice, or no items")
    return {"epoll": {"items": items, "ready": ready}}


def check_links(r, descs: list) -> None:
    """No two eventfds have one eventfd-id; every epoll item watches another description
    that epoll can watch; the epolls inside epolls form no cycle and nest at most MAX_NESTS
    levels (as epoll_ctl's ELOOP)."""
    idents = [d["eventfd"]["ident"] for d in descs if d["kind"] == "eventfd"]
    if len(set(idents)) != len(idents):
        r.fail("descriptions", "two eventfds with one eventfd-id")
    for i, d in enumerate(descs):
        if d["kind"] != "epoll":
            continue
        for j, (desc, *_rest) in enumerate(d["epoll"]["items"]):
            where = f"descriptions[{i}].epoll.items[{j}]"
            if desc >= len(descs) or desc == i:
                r.fail(where, f"watches description {desc}, which is not another one")
            if descs[desc]["kind"] not in WATCHABLE:
                r.fail(where, f"watches a {descs[desc]['kind']}, which epoll cannot watch")
    kids = {i: [it[0] for it in d["epoll"]["items"] if descs[it[0]]["kind"] == "epoll"]
            for i, d in enumerate(descs) if d["kind"] == "epoll"}
    depth: dict[int, int] = {}

    def down(i: int, path: tuple) -> int:
        if i in path:
            r.fail(f"descriptions[{i}].epoll", "epolls inside each other in a cycle")
        if i not in depth:
            depth[i] = max((1 + down(k, path + (i,)) for k in kids[i]), default=0)
        return depth[i]

    for i in kids:
        if down(i, ()) > MAX_NESTS:
            r.fail(f"descriptions[{i}].epoll", f"epolls nested deeper than {MAX_NESTS}")


def restore_epoll(f, d, ctx) -> None:
    from ..kernel.epoll import EpollOps
    f.ops = EpollOps(EpollSet())
    ctx.later.append(lambda files: _items(f, d, files))


def _items(f, d, files: list) -> list:
    """The items of one epoll, not yet registered with their wait queues (restore_links)."""
    from ..kernel.epoll import EpollOps
    ep = f.ops.ep
    made = []
    for desc, fd, events, data, order in d["epoll"]["items"]:
        target = files[desc]
        queues = getattr(target.ops, "wait_queues", lambda f: [])(target)
        sub = target.ops.ep if isinstance(target.ops, EpollOps) else None
        item = Item(ep, target, fd, events, data, queues, sub)
        ep.items[(id(target), fd)] = item
        made.append((order, item))
    ep.ready = [made[i][1] for i in d["epoll"]["ready"]]
    return made


def restore_links(later: list, files: list) -> None:
    """Make every epoll's items, then register them all with their wait queues in the order
    they were added (so a wake reaches the epolls in the same order as before the save)."""
    from ..epollset import _ORDER
    made = [pair for fn in later for pair in fn(files)]
    for _, item in sorted(made, key=lambda pair: pair[0]):
        item.order = next(_ORDER)
        for q in item.queues:
            q.add(item.woken)


# vsnap inspect ----------------------------------------------------------------------------------

def describe_lines(img) -> list[str]:
    """`vsnap inspect IMG fds`: each eventfd's counter and each epoll's items (the fd each
    was added under and the file it watches, its events and data, whether it is ready)."""
    def fds_of(i: int) -> list[int]:
        return [e["fd"] for e in img.fds if e["description"] == i]
    out = []
    for i, d in enumerate(img.descriptions):
        if d["kind"] == "eventfd":
            c = d["eventfd"]
            out.append(f"  eventfd (fd {', '.join(map(str, fds_of(i))) or '-'}): count "
                       f"{c['count']}{', semaphore' if c['semaphore'] else ''}")
        elif d["kind"] == "epoll":
            ep = d["epoll"]
            out.append(f"  epoll (fd {', '.join(map(str, fds_of(i))) or '-'}): "
                       f"{len(ep['items'])} items, {len(ep['ready'])} ready")
            for j, (desc, fd, events, data, _) in enumerate(ep["items"]):
                out.append(f"    fd {fd} {img.descriptions[desc]['path']}  events {events:#x} "
                           f"data {data:#x}{'  ready' if j in ep['ready'] else ''}")
    return ["", "Eventfds and epolls:", *out] if out else []
