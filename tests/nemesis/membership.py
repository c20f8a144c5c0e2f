"""Membership changes during a fault run: one node joins, later an original one leaves,
while the nemesis goes on against the rest.

At ``join_at`` seconds an empty replica (the next free id) starts and ``redquorum join``
adds it; from ``leave_at`` seconds, once the join finished, ``redquorum leave`` removes the
"leaver", an original replica drawn from the seed that the nemesis spares (so the cluster
ends with as many replicas as it began with). Each command runs as a subprocess with the
cluster's configuration as an operator keeps it, the original members (direct addresses:
the commands' links are never faulted, the proxies' are); the joiner is reached at the
address the membership record holds for it. A command that fails, typically because a replica was down
during the transfer (the copy needs every old and new home), runs again after a pause:
the membership record says where the change stands, so it resumes. Only once the leave
finished is the leaver checked for keys it kept (cleanup drops them all) and stopped.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.harness import ROOT

from .cluster import Cluster

RATE = "50000"  # keys per second the transfer may copy: the runs hold few keys
ATTEMPT_TIMEOUT = 150.0  # one command: a phase waits up to 120 s for the proxies
RETRY_PAUSE = 0.5


@dataclass
class Change:
    verb: str  # join | leave
    target: str
    started: float | None = None  # seconds into the run
    finished: float | None = None
    attempts: int = 0
    failures: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.started is None:
            return f"{self.verb} {self.target}: not started"
        if self.finished is None:
            return f"{self.verb} {self.target}: unfinished after {self.attempts} attempts"
        return (f"{self.verb} {self.target} {self.started:.1f}–{self.finished:.1f}s "
                f"({self.attempts} attempts)")


def pick_leaver(seed: int, replicas: list[str]) -> str:
    return random.Random(f"{seed}:membership").choice(replicas)


class MembershipDriver:
    def __init__(self, cluster: Cluster, joiner: str, leaver: str, join_at: float,
                 leave_at: float, log: Callable[[str], None] = print) -> None:
        self.cluster = cluster
        self.join = Change("join", joiner)
        self.leave = Change("leave", leaver)
        self.join_at = join_at
        self.leave_at = leave_at
        self.log = log
        self.leftover: int | None = None  # user keys the leaver still held when it left
        self.errors: list[str] = []
        self._deadline = float("inf")
        self._t0 = 0.0
        self._thread: threading.Thread | None = None

    @property
    def changes(self) -> list[Change]:
        return [self.join, self.leave]

    def done(self) -> bool:
        return self.leave.finished is not None

    def start(self, origin: float) -> None:
        self._t0 = origin
        self._thread = threading.Thread(target=self._play, name="membership", daemon=True)
        self._thread.start()

    def finish(self, bound: float) -> bool:
        """Let the changes run up to ``bound`` s more; whether both finished."""
        self._deadline = time.monotonic() + bound
        if self._thread is not None:
            self._thread.join(bound + ATTEMPT_TIMEOUT)
        return self.done()

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _say(self, text: str) -> None:
        self.log(f"[member  {self._now():6.2f}s] {text}")

    def _play(self) -> None:
        try:
            self._sleep_until(self.join_at)
            replica = self.cluster.add_replica(self.join.target)
            self._say(f"started {self.join.target} at {replica.address}")
            if not self._drive(self.join, f"{self.join.target}={replica.address}"):
                return
            self._sleep_until(self.leave_at)
            if not self._drive(self.leave, self.leave.target):
                return
            self.leftover = self.cluster.user_key_count(self.leave.target)
            self.cluster.retire_replica(self.leave.target)
            self._say(f"stopped {self.leave.target} ({self.leftover} user keys left on it)")
        except Exception as exc:  # reported with the run's findings, not fatal to it
            self.errors.append(f"membership: {exc!r}")
            self._say(f"failed: {exc!r}")

    def _sleep_until(self, at: float) -> None:
        while self._now() < at and time.monotonic() < self._deadline:
            time.sleep(0.05)

    def _drive(self, change: Change, target: str) -> bool:
        change.started = self._now()
        self._say(f"redquorum {change.verb} {target}")
        while time.monotonic() < self._deadline:
            change.attempts += 1
            failure = self._attempt(change.verb, target)
            if failure is None:
                change.finished = self._now()
                self._say(f"{change.verb} {change.target} done")
                return True
            change.failures.append(failure)
            self._say(f"{change.verb} {change.target} failed, again: {failure}")
            time.sleep(RETRY_PAUSE)
        return False

    def _attempts(self) -> int:
        return self.join.attempts + self.leave.attempts

    def _attempt(self, verb: str, target: str) -> str | None:
        args = [sys.executable, "-m", "redquorum.cli", verb, target,
                *self.cluster.cluster_flags(leave_out=(self.join.target,)), "--rate", RATE]
        env = {k: v for k, v in dict(os.environ, PYTHONPATH=str(ROOT)).items()
               if not k.startswith("REDQUORUM_")}
        try:
            done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=ATTEMPT_TIMEOUT, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f"no end within {ATTEMPT_TIMEOUT:.0f}s"
        if done.returncode == 0:
            return None
        (self.cluster.base_dir / f"{verb}.{self._attempts()}.stderr").write_text(done.stderr)
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        said = [line for line in lines if line.startswith(f"redquorum {verb}")]
        return ((said or lines or [f"exit {done.returncode}"])[-1])[:200]
