"""One run: start a cluster, start the workload and the nemesis, stop both after
``duration``, heal everything, measure convergence, read back, check, and return a
``Result`` record (printed as one line and as a markdown row)."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import checker
from .cluster import Cluster, ClusterSpec
from .membership import Change, MembershipDriver, pick_leaver
from .nemesis import Nemesis, make_schedule, parse_kinds
from .workloads import WORKLOADS, Connection

SEED_VARIABLE = "REDQUORUM_NEMESIS_SEED"


def seed_from_environment(default: int | None = None) -> int:
    """The seed to replay (``REDQUORUM_NEMESIS_SEED``), else ``default``, else a fresh one."""
    text = os.environ.get(SEED_VARIABLE)
    if text:
        return int(text)
    return default if default is not None else random.SystemRandom().randrange(1, 10**9)


@dataclass
class RunSpec:
    workload: str = "set"
    mode: str = "causal"
    nemesis: str = "safe"
    seed: int = 1
    duration: float = 4.0
    replicas: int = 3
    n: int = 3
    w: int = 2
    r: int = 2
    clients: int = 4
    keys: int = 3
    appendfsync: str = "everysec"
    value_bytes: int = 0  # padding of each register value
    tombstone_grace: float | None = None
    passive_wait: float = 3.0  # for hinted handoff alone, before a read-repair pass
    converge_bound: float = 15.0
    sloppy_quorum: bool = True
    membership: bool = False  # a node joins, later an original one leaves (membership.py)
    membership_bound: float = 120.0  # seconds after the heal for unfinished changes


@dataclass
class Result:
    spec: RunSpec
    operations: int = 0
    acknowledged: int = 0
    faults: int = 0  # faults the nemesis applied
    lost: int | None = None  # set workload
    stale: int | None = None  # register workload
    del_undone: int | None = None
    phantom: int = 0
    converge: checker.Convergence | None = None
    proxy_deaths: list[str] = field(default_factory=list)
    proxies_answer: bool = False
    nemesis_errors: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)  # with a membership change
    misplaced: list[str] = field(default_factory=list)  # keys not on exactly their homes
    leftover: int | None = None  # user keys the node that left still held

    HEADER = ("| workload | mode | nemesis | replicas/n | seed | s | faults | ops | acked | lost "
              "| stale reads | DEL undone | phantom | converged in | proxy deaths |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def clean(self) -> bool:
        """Nothing found: no loss, no undone DEL, no phantom, converged, proxies alive."""
        return (not self.lost and not self.del_undone and not self.phantom
                and not self.proxy_deaths and self.proxies_answer and not self.nemesis_errors
                and self.converge is not None and self.converge.seconds is not None
                and self.changes_done() and not self.misplaced and not self.leftover)

    def changes_done(self) -> bool:
        return all(change.finished is not None for change in self.changes)

    def converged_text(self) -> str:
        c = self.converge
        if c is None:
            return "-"
        if c.seconds is None:
            return f"no ({c.divergent} keys differ)"
        return f"{c.seconds:.1f} s ({c.how})"

    def row(self) -> str:
        s = self.spec
        nemesis = (s.nemesis + (" +membership" if s.membership else "")
                   + ("" if s.sloppy_quorum else " (strict quorum)"))
        cells = [s.workload, s.mode, nemesis, f"{s.replicas}/{s.n}", str(s.seed), f"{s.duration:g}",
                 str(self.faults),
                 str(self.operations), str(self.acknowledged), _cell(self.lost), _cell(self.stale),
                 _cell(self.del_undone), str(self.phantom), self.converged_text(),
                 str(len(self.proxy_deaths))]
        return "| " + " | ".join(cells) + " |"

    def line(self) -> str:
        s = self.spec
        return (f"RESULT workload={s.workload} mode={s.mode} nemesis={s.nemesis} seed={s.seed} "
                f"duration={s.duration:g} faults={self.faults} ops={self.operations} "
                f"acked={self.acknowledged} lost={_cell(self.lost)} stale={_cell(self.stale)} "
                f"del_undone={_cell(self.del_undone)} phantom={self.phantom} "
                f"converged={self.converged_text()} proxy_deaths={len(self.proxy_deaths)} "
                f"proxies_answer={self.proxies_answer} errors={self.errors}"
                + (f" membership=[{'; '.join(c.describe() for c in self.changes)}] "
                   f"misplaced={len(self.misplaced)} leftover={_cell(self.leftover)}"
                   if self.changes else ""))


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)


def run(spec: RunSpec, base_dir: Path, log=print) -> Result:
    kinds = parse_kinds(spec.nemesis)
    replica_ids = [f"r{i}" for i in range(1, spec.replicas + 1)]
    leaver = pick_leaver(spec.seed, replica_ids) if spec.membership else None
    # the leaver's process is spared, its links are not
    targets = [ident for ident in replica_ids if ident != leaver]
    schedule = make_schedule(spec.seed, kinds, spec.duration, targets, 2, spec.w,
                             links_only=(leaver,) if leaver is not None else ())
    log(f"{SEED_VARIABLE}={spec.seed}  (workload={spec.workload} mode={spec.mode} "
        f"nemesis={spec.nemesis} duration={spec.duration:g}s, appendfsync {spec.appendfsync})")
    log(schedule.describe())
    cluster_spec = ClusterSpec(replicas=spec.replicas, proxies=2, mode=spec.mode, n=spec.n,
                               w=spec.w, r=spec.r, appendfsync=spec.appendfsync,
                               tombstone_grace=spec.tombstone_grace,
                               sloppy_quorum=spec.sloppy_quorum)
    result = Result(spec)
    with Cluster(cluster_spec, base_dir) as cluster:
        workload = WORKLOADS[spec.workload](cluster, spec.seed, spec.clients, spec.keys,
                                             spec.value_bytes)
        nemesis = Nemesis(cluster, schedule, log)
        driver = None
        if leaver is not None:
            driver = MembershipDriver(cluster, f"r{spec.replicas + 1}", leaver,
                                      join_at=spec.duration * 0.1, leave_at=spec.duration * 0.5,
                                      log=log)
            log(f"membership: join r{spec.replicas + 1} at {driver.join_at:.1f}s, leave "
                f"{leaver} from {driver.leave_at:.1f}s")
        origin = time.monotonic()
        workload.start(origin)
        nemesis.start(origin)
        if driver is not None:
            driver.start(origin)
        try:
            time.sleep(spec.duration)
            nemesis.stop()
            if driver is not None:  # changes left unfinished go on, healed, under the load
                nemesis.heal_all()
                driver.finish(spec.membership_bound)
                result.changes = driver.changes
                result.leftover = driver.leftover
                nemesis.errors.extend(driver.errors)
            workload.stop()
            nemesis.heal_all()
            deaths = nemesis.proxy_deaths + cluster.check_proxies()
            cluster.proxies_see_all()
            result.converge = checker.measure_convergence(cluster, spec.passive_wait,
                                                          spec.converge_bound)
            if driver is not None:
                result.misplaced = checker.wait_placed(cluster, spec.converge_bound)
            _check(result, workload, cluster)
        finally:
            write_history(workload.ops, base_dir / "history.jsonl")
        result.proxy_deaths = deaths + cluster.check_proxies()
        result.proxies_answer = all(_answers_ping(slot.port) for slot in cluster.slots)
        result.nemesis_errors = nemesis.errors
        result.faults = nemesis.applied
        if result.proxy_deaths or not result.proxies_answer:
            for slot in cluster.slots:
                log(f"proxy{slot.index} log: {slot.process.log_path}")
    log(result.line())
    for example in result.examples:
        log(f"  {example}")
    for line in result.converge.after_handoff if result.converge else []:
        log(f"  left different by handoff: {line}")
    for line in result.misplaced[:10]:
        log(f"  misplaced: {line}")
    for change in result.changes:
        for failure in change.failures:
            log(f"  {change.verb} attempt failed: {failure}")
    return result


def _check(result: Result, workload, cluster: Cluster) -> None:
    conn = Connection(cluster, 0)
    try:
        final = workload.final_read(conn)
    finally:
        conn.close()
    ops = workload.ops
    result.operations = len(ops)
    result.acknowledged = sum(1 for op in ops if op.outcome == "ok")
    for op in ops:
        if op.outcome != "ok":
            kind = _error_kind(op.error)
            result.errors[kind] = result.errors.get(kind, 0) + 1
    if workload.name == "set":
        verdict = checker.check_set(ops, final)
        result.lost, result.phantom, result.examples = verdict.lost, verdict.phantom, verdict.lost_examples
    else:
        verdict = checker.check_register(ops)
        result.stale, result.del_undone = verdict.stale, verdict.del_undone
        result.phantom, result.examples = verdict.phantom, verdict.examples


def _error_kind(error: str) -> str:
    """``NOQUORUM`` for an error reply, else the exception's name (``ConnectionError``…)."""
    name, _, text = error.partition(": ")
    return (text.split() or [name])[0] if name == "ResponseError" else name


def write_history(ops, path: Path) -> None:
    """Every operation, one JSON object a line, in invocation order: for replaying a finding."""
    with open(path, "w") as f:
        for op in sorted(ops, key=lambda op: op.invoke):
            f.write(json.dumps(dataclasses.asdict(op)) + "\n")


def _answers_ping(port: int | None) -> bool:
    if port is None:
        return False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.settimeout(5)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False
