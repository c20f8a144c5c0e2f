"""The nemesis: a fault schedule drawn from ``random.Random(seed)`` before the run starts,
then played against the cluster in real time, each step printed as it happens.

A schedule is a list of faults, each with a start and an end (its heal) inside the run.
Faults never overlap on the same target (a replica, a proxy, a link), but different
targets' faults do overlap, so the cluster sees combinations: a paused replica while a
proxy restarts, a link black-holed while another replica is down.

Faults that lose a replica's data (restart empty, from an older snapshot, with the AOF's
tail chopped off) only ever hit the "amnesiac" replicas, at most w − 1 of them, drawn from
the seed: every acknowledged write reached w replicas, so at least one copy always lives on
a replica that never forgets, and any loss the checker finds is the proxy's, not arithmetic.

Kinds (``--nemesis`` takes a comma-separated list, or a group name):
  kill       SIGKILL a replica, restart it on its AOF
  wipe       SIGKILL a replica, delete its data, restart it empty
  rollback   SIGKILL a replica, restore an earlier copy of its AOF, restart it
  truncate   SIGKILL a replica, chop the tail of its AOF (redis-check-aof --fix), restart it
  pause      SIGSTOP a replica, SIGCONT it
  partition  reset links (one proxy-replica link, a replica from every proxy, or the
             proxies split over the replicas), then heal
  blackhole  the same link sets, silently dropped (nothing moves) until the heal
  proxy      SIGKILL a proxy, start a new one

With a membership change (membership.py) the replica that leaves is never killed or
paused (its data must stay whole until its partitions are copied), but its links to the
proxies are cut and black-holed like the others', until it is gone.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .cluster import Cluster

KINDS = ("kill", "wipe", "rollback", "truncate", "pause", "partition", "blackhole", "proxy")
AMNESIA = ("wipe", "rollback", "truncate")
GROUPS = {
    "all": KINDS,
    "safe": ("kill", "pause", "partition", "blackhole", "proxy"),  # no replica forgets anything
    "amnesia": AMNESIA,
    "net": ("partition", "blackhole"),
    "none": (),
}

Link = tuple[int, str]  # (proxy index, replica id)


def parse_kinds(text: str) -> tuple[str, ...]:
    kinds: list[str] = []
    for part in text.split(","):
        part = part.strip()
        expanded = GROUPS.get(part, (part,))
        for kind in expanded:
            if kind not in KINDS:
                raise ValueError(f"unknown nemesis {kind!r}: choose from {', '.join(KINDS + tuple(GROUPS))}")
            if kind not in kinds:
                kinds.append(kind)
    return tuple(kinds)


@dataclass
class Fault:
    kind: str
    start: float
    end: float
    replica: str | None = None
    proxy: int | None = None
    links: tuple[Link, ...] = ()
    truncate_bytes: int = 0

    def targets(self) -> list[str]:
        if self.replica is not None:
            return [f"replica:{self.replica}"]
        if self.proxy is not None:
            return [f"proxy:{self.proxy}"]
        return [f"link:{p}:{r}" for p, r in self.links]

    def describe(self) -> str:
        if self.replica is not None:
            what = self.replica
        elif self.proxy is not None:
            what = f"proxy{self.proxy}"
        else:
            what = " ".join(f"p{p}-{r}" for p, r in self.links)
        extra = f" (-{self.truncate_bytes} B)" if self.kind == "truncate" else ""
        return f"{self.kind} {what}{extra}"


@dataclass
class Schedule:
    seed: int
    kinds: tuple[str, ...]
    amnesiacs: tuple[str, ...]
    faults: list[Fault] = field(default_factory=list)
    snapshots: list[tuple[float, str]] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"nemesis seed={self.seed} kinds={','.join(self.kinds) or 'none'} "
                 f"amnesiacs={','.join(self.amnesiacs) or '-'}"]
        for f in self.faults:
            lines.append(f"  {f.start:6.2f}–{f.end:6.2f}s  {f.describe()}")
        return "\n".join(lines)


def make_schedule(seed: int, kinds: tuple[str, ...], duration: float, replicas: list[str],
                  proxies: int, w: int, *, gap: tuple[float, float] = (0.2, 0.8),
                  length: tuple[float, float] = (0.3, 1.5),
                  links_only: tuple[str, ...] = ()) -> Schedule:
    """Draw faults until ``duration``; the last heal comes at ``duration`` at the latest.
    Replicas in ``links_only`` are never killed or paused, only cut off from proxies."""
    rng = random.Random(seed)
    amnesiacs = tuple(sorted(rng.sample(replicas, min(len(replicas), max(0, w - 1)))))
    schedule = Schedule(seed, kinds, amnesiacs)
    if not kinds:
        return schedule
    busy_until: dict[str, float] = {}
    t = rng.uniform(*gap)
    if "rollback" in kinds:
        for ident in amnesiacs:  # an early point in time to roll back to
            schedule.snapshots.append((round(t * 0.5, 3), ident))
    while t < duration - 0.2:
        kind = rng.choice(kinds)
        end = min(duration, t + rng.uniform(*length))
        fault = _draw_fault(rng, kind, t, end, replicas, proxies, amnesiacs, links_only)
        if fault is not None and all(busy_until.get(x, 0) <= t for x in fault.targets()):
            for target in fault.targets():
                busy_until[target] = end
            schedule.faults.append(fault)
            if kind == "rollback" and rng.random() < 0.5:
                schedule.snapshots.append((round(rng.uniform(0, t), 3), fault.replica))
        t += rng.uniform(*gap)
    schedule.snapshots.sort()
    return schedule


def _draw_fault(rng: random.Random, kind: str, start: float, end: float, replicas: list[str],
                proxies: int, amnesiacs: tuple[str, ...],
                links_only: tuple[str, ...] = ()) -> Fault | None:
    start, end = round(start, 3), round(end, 3)
    if kind in AMNESIA:
        if not amnesiacs:
            return None
        fault = Fault(kind, start, end, replica=rng.choice(amnesiacs))
        if kind == "truncate":
            fault.truncate_bytes = rng.choice((64, 512, 4096, 65536))
        return fault
    if kind in ("kill", "pause"):
        return Fault(kind, start, end, replica=rng.choice(replicas))
    if kind == "proxy":
        return Fault(kind, start, end, proxy=rng.randrange(proxies))
    return Fault(kind, start, end, links=_draw_links(rng, [*replicas, *links_only], proxies))


def _draw_links(rng: random.Random, replicas: list[str], proxies: int) -> tuple[Link, ...]:
    shape = rng.choice(("link", "replica", "split"))
    if shape == "link":
        return ((rng.randrange(proxies), rng.choice(replicas)),)
    if shape == "replica":
        ident = rng.choice(replicas)
        return tuple((p, ident) for p in range(proxies))
    # each proxy loses a different part of the cluster: proxy 0 keeps a random minority or
    # majority, the others keep the rest
    kept = set(rng.sample(replicas, rng.randint(1, len(replicas) - 1)))
    return tuple((p, r) for p in range(proxies) for r in replicas if (r in kept) != (p == 0))


class Nemesis:
    """Plays a schedule against a cluster from its own thread; ``heal_all`` ends every fault."""

    def __init__(self, cluster: Cluster, schedule: Schedule,
                 log: Callable[[str], None] = print) -> None:
        self.cluster = cluster
        self.schedule = schedule
        self.log = log
        self.active: list[Fault] = []
        self.applied = 0
        self.errors: list[str] = []
        self.proxy_deaths: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def start(self, origin: float) -> None:
        self._t0 = origin
        self._thread = threading.Thread(target=self._play, name="nemesis", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def _events(self) -> list[tuple[float, int, str, object]]:
        events: list[tuple[float, int, str, object]] = []
        for at, ident in self.schedule.snapshots:
            events.append((at, 0, "snapshot", ident))
        for fault in self.schedule.faults:
            events.append((fault.end, 1, "end", fault))  # at a tie a heal goes before a start
            events.append((fault.start, 2, "begin", fault))
        events.sort(key=lambda e: (e[0], e[1]))
        return events

    def _play(self) -> None:
        for at, _, what, item in self._events():
            while not self._stop.is_set():
                self._watch_proxies()
                left = at - (time.monotonic() - self._t0)
                if left <= 0:
                    break
                self._stop.wait(min(left, 0.1))
            if self._stop.is_set():
                return
            self._step(what, item)
        self._watch_proxies()

    def _step(self, what: str, item) -> None:
        try:
            if what == "snapshot":
                self._say(f"snapshot {item}")
                held = any(f.replica == item for f in self.active)
                self.cluster.snapshot(item, quiesce=not held)
            elif what == "begin":
                self._say(f"begin {item.describe()}")
                self._begin(item)
                self.active.append(item)
                self.applied += 1
            else:
                self.active.remove(item)
                self._say(f"heal  {item.describe()}")
                self._end(item)
        except Exception as exc:  # a fault that could not be applied is reported, not fatal
            self.errors.append(f"{what} {getattr(item, 'kind', item)}: {exc!r}")
            self._say(f"  failed: {exc!r}")

    def _say(self, text: str) -> None:
        self.log(f"[nemesis {time.monotonic() - self._t0:6.2f}s] {text}")

    def _watch_proxies(self) -> None:
        for death in self.cluster.check_proxies():
            self.proxy_deaths.append(death)
            self._say(f"PROXY DIED: {death}")

    def _begin(self, fault: Fault) -> None:
        c = self.cluster
        if fault.kind in ("kill",) + AMNESIA:
            c.kill_replica(fault.replica)
        elif fault.kind == "pause":
            c.pause_replica(fault.replica)
        elif fault.kind == "proxy":
            c.kill_proxy(c.slots[fault.proxy])
        elif fault.kind == "partition":
            for relay in self._relays(fault):
                relay.cut()
        elif fault.kind == "blackhole":
            for relay in self._relays(fault):
                relay.blackhole()

    def _end(self, fault: Fault) -> None:
        c = self.cluster
        if fault.kind == "wipe":
            c.wipe(fault.replica)
        elif fault.kind == "rollback":
            if not c.restore(fault.replica):
                c.wipe(fault.replica)
        elif fault.kind == "truncate":
            dropped = c.truncate_aof(fault.replica, fault.truncate_bytes)
            self._say(f"  dropped {dropped} B of {fault.replica}'s AOF")
        if fault.kind in ("kill",) + AMNESIA:
            c.start_replica(fault.replica)
        elif fault.kind == "pause":
            c.resume_replica(fault.replica)
        elif fault.kind == "proxy":
            c.restart_proxy(c.slots[fault.proxy])
        elif fault.kind in ("partition", "blackhole"):
            for relay in self._relays(fault):
                relay.heal()

    def _relays(self, fault: Fault) -> list:
        """The relays of the fault's links; a replica that left the cluster has none."""
        slots = self.cluster.slots
        return [relay for p, r in fault.links
                if (relay := slots[p].relays.get(r)) is not None]

    def heal_all(self) -> None:
        """End whatever is still active (the run stopped early, or a heal failed)."""
        for fault in list(self.active):
            self.active.remove(fault)
            self._say(f"heal  {fault.describe()} (final)")
            try:
                self._end(fault)
            except Exception as exc:
                self.errors.append(f"final heal {fault.kind}: {exc!r}")
        for ident, replica in list(self.cluster.replicas.items()):
            if not replica.running():
                self.cluster.start_replica(ident)
            else:
                self.cluster.resume_replica(ident)
        for slot in self.cluster.slots:
            for relay in list(slot.relays.values()):
                relay.heal()
            if slot.process is None:
                self.cluster.restart_proxy(slot)
        self._watch_proxies()
